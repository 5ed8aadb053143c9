/**
 * route()'s fast path (a copy put at once with the target's synchronous putNowait) against its
 * per-packet path (putAsync with timeout, retries, ejection, dead letters): the same targets, the
 * same counts; per-key order when one copy of a key has to take the per-packet path; item faults
 * and target faults on the synchronous put; routeMany over putNowait-only targets; the sampled
 * latency; KeyOrder's key identity; pick() and its argument checks; the lazy RouteReport.traceId.
 */
import { describe, expect, it } from 'vitest';

import {
  ArgumentRangeError, BaseRouter, InvalidArgumentTypeError, InvalidArgumentValueError, LocalQueue, Packet, QueueClosedError, QueueFullError,
  RouterDisposedError, markItemFault,
} from '../../lib/index';
import type { AsyncWaitOptions, Connection, DeadLetter, RouteReport, RouterOptions, RouterStats, StrategyName } from '../../lib/index';
import { KeyOrder } from '../../lib/router/dispatch';
import { isKeyedStrategy } from '../../lib/router/strategies';
import { KEYED_STRATEGIES, STRATEGIES } from '../../lib/router/strategy-names';
import { rejected, thrown } from '../support/expect-errors';
import { FakeClock } from '../support/fake-clock';
import { OpaqueQueue } from '../support/opaque-queue';
import { seeded } from '../support/seeded';

/** An async-only queue (OpaqueQueue) that logs what it accepted and counts putAsync calls. */
class AsyncLog extends OpaqueQueue {
  readonly log: unknown[] = [];
  putAsyncCalls = 0;
  override async putAsync(item: unknown, options?: AsyncWaitOptions): Promise<void> {
    this.putAsyncCalls++;
    await super.putAsync(item, options);
    this.log.push(item);
  }
}

/** The same with a synchronous putNowait (as LocalQueue and SageQueue have), counted too. */
class SyncLog extends AsyncLog {
  putNowaitCalls = 0;
  putNowait(item: unknown): void {
    this.putNowaitCalls++;
    this.inner.putNowait(item);
    this.log.push(item);
  }
}

type Kind = 'sync' | 'async';

function routerOver(kind: Kind, sizes: number[], options: RouterOptions = {}): { router: BaseRouter; queues: AsyncLog[] } {
  const router = new BaseRouter({ name: `fp-${kind}`, random: seeded(7), trace: false, ...options });
  const queues: AsyncLog[] = [];
  sizes.forEach((n, b) => {
    for (let p = 0; p < n; p++) {
      const q = kind === 'sync' ? new SyncLog() : new AsyncLog();
      queues.push(q);
      router.addConnection({ broadcastIndex: b, parallelIndex: p, targetName: `g${b}-t${p}`, targetHandle: q });
    }
  });
  return { router, queues };
}

/** Where each copy went: `b/target` per delivery, per packet. */
const placements = (reports: RouteReport[]): string[][] => reports.map((r) => r.deliveries.map((d) => `${d.broadcastIndex}/${d.target}/${d.status}/${d.attempts}`));

/** stats() without what may differ between two equal runs (name, latency). */
function counts(s: RouterStats): Omit<RouterStats, 'name' | 'routeLatencyMs'> {
  const { name: _name, routeLatencyMs: _latency, ...rest } = s;
  return rest;
}

const packetsFor = (n: number): Packet[] =>
  Array.from({ length: n }, (_, i) => new Packet(`payload-${i}`, { partitionKey: i % 5 === 0 ? null : `key-${i % 37}`, traceId: `t${i}` }));

describe('the fast path chooses and counts as the per-packet path does', () => {
  const strategies: StrategyName[] = ['round_robin', 'hash', 'consistent_hash', 'load_balance', 'broadcast'];
  for (const strategy of strategies) {
    it(`${strategy}, two broadcast groups (3 and 4 targets), 200 packets (every 5th unkeyed): same target per copy, same queue contents, same stats`, async () => {
      const fast = routerOver('sync', [3, 4], { strategy });
      const slow = routerOver('async', [3, 4], { strategy });
      const packets = packetsFor(200);
      const fastReports: RouteReport[] = [];
      const slowReports: RouteReport[] = [];
      for (const p of packets) fastReports.push(await fast.router.route(p));
      for (const p of packets) slowReports.push(await slow.router.route(p));
      expect(placements(fastReports)).toEqual(placements(slowReports));
      expect(fast.queues.map((q) => q.log)).toEqual(slow.queues.map((q) => q.log));
      expect(counts(fast.router.stats())).toEqual(counts(slow.router.stats()));
      // The fast router really took the fast path, the other could not.
      const fastQueues = fast.queues as SyncLog[];
      expect(fastQueues.reduce((a, q) => a + q.putAsyncCalls, 0)).toBe(0);
      expect(fastQueues.reduce((a, q) => a + q.putNowaitCalls, 0)).toBe(fast.router.stats().delivered);
      expect(slow.queues.reduce((a, q) => a + q.putAsyncCalls, 0)).toBe(slow.router.stats().delivered);
      expect(fast.router.stats().delivered).toBe(strategy === 'broadcast' ? 200 * 7 : 200 * 2);
    });
  }

  it('an ejected target is skipped by the fast path as by the per-packet path, and its probe is taken when due (router clock)', async () => {
    const clock = new FakeClock();
    const fast = routerOver('sync', [4], { strategy: 'hash', clock });
    const slow = routerOver('async', [4], { strategy: 'hash', clock });
    for (const r of [fast, slow]) (r.router.connections()[1] as Connection).eject(100, 1000);
    const run = async (r: { router: BaseRouter }): Promise<string[][]> => {
      const out: RouteReport[] = [];
      for (const p of packetsFor(40)) out.push(await r.router.route(p));
      return placements(out);
    };
    const before = [await run(fast), await run(slow)];
    expect(before[0]).toEqual(before[1]);
    expect(before[0]?.flat().some((s) => s.includes('g0-t1'))).toBe(false);
    clock.advance(100);
    const after = [await run(fast), await run(slow)];
    expect(after[0]).toEqual(after[1]);
    expect(after[0]?.flat().some((s) => s.includes('g0-t1'))).toBe(true);
    expect((fast.router.connections()[1] as Connection).health.state).toBe('healthy');
  });
});

/** A queue whose putNowait refuses (QueueFullError) the first `refuse` times, and whose putAsync waits for release(). */
class GatedQueue extends OpaqueQueue {
  readonly log: unknown[] = [];
  refuse = 1;
  #open!: () => void;
  readonly #gate = new Promise<void>((resolve) => {
    this.#open = resolve;
  });
  putNowait(item: unknown): void {
    if (this.refuse > 0) {
      this.refuse--;
      throw new QueueFullError('gated');
    }
    this.log.push(item);
  }
  override async putAsync(item: unknown): Promise<void> {
    await this.#gate;
    this.log.push(item);
  }
  release(): void {
    this.#open();
  }
}

describe('per-key order across the two paths', () => {
  it('route() not awaited: the first copy of a key is refused synchronously and waits in putAsync; later copies of the key wait behind it though the queue accepts at once; other keys do not wait', async () => {
    const q = new GatedQueue();
    const router = new BaseRouter({ name: 'fp-order', strategy: 'hash' });
    router.addConnection({ broadcastIndex: 0, parallelIndex: 0, targetName: 'only', targetHandle: q });
    const routes: Array<Promise<RouteReport>> = [];
    for (let seq = 0; seq < 5; seq++) routes.push(router.route(new Packet({ key: 'k', seq }, { partitionKey: 'k' })));
    const other = await router.route(new Packet({ key: 'j', seq: 0 }, { partitionKey: 'j' }));
    expect(other.ok).toBe(true);
    // Only the other key went in: k's copies wait for its first one.
    expect(q.log.map((p) => (p as Packet<{ key: string }>).payload.key)).toEqual(['j']);
    q.release();
    const reports = await Promise.all(routes);
    expect(reports.every((r) => r.ok && r.deliveries[0]?.attempts === 1)).toBe(true);
    const kSeqs = q.log.map((p) => (p as Packet<{ key: string; seq: number }>).payload).filter((x) => x.key === 'k').map((x) => x.seq);
    expect(kSeqs).toEqual([0, 1, 2, 3, 4]);
    // Once nothing of the key is in flight, it takes the fast path again.
    await router.route(new Packet({ key: 'k', seq: 5 }, { partitionKey: 'k' }));
    expect((q.log.at(-1) as Packet<{ seq: number }>).payload.seq).toBe(5);
    const s = router.stats();
    expect({ sent: s.sent, delivered: s.delivered, attempts: s.attempts, retried: s.retried }).toEqual({ sent: 7, delivered: 7, attempts: 7, retried: 0 });
    expect(s.connections[0]?.counters).toMatchObject({ sent: 7, delivered: 7, failed: 0 });
  });

  it('a full LocalQueue (maxsize 2): copies of a key that overflow wait in putAsync with the send timeout, and the key keeps its order as a consumer drains', async () => {
    const q = new LocalQueue<Packet<{ seq: number }>>({ maxsize: 2 });
    const router = new BaseRouter({ name: 'fp-full', strategy: 'consistent_hash', sendTimeoutMs: 5000 });
    router.addConnection({ broadcastIndex: 0, parallelIndex: 0, targetName: 'only', targetHandle: q });
    const routes = Array.from({ length: 10 }, (_, seq) => router.route(new Packet({ seq }, { partitionKey: 42 })));
    const got: number[] = [];
    while (got.length < 10) got.push((await q.getAsync({ timeoutMs: 5000 })).payload.seq);
    expect(got).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect((await Promise.all(routes)).every((r) => r.ok)).toBe(true);
  });
});

describe('faults on the synchronous put', () => {
  it('an item fault dead-letters the copy at once: one attempt, no putAsync, no retry, the target not blamed, its key not moved', async () => {
    const dlq = new LocalQueue<DeadLetter>();
    const queues = [0, 1, 2].map(() => new SyncLog());
    const bad = queues.map(() => 0);
    queues.forEach((q, i) => {
      const put = q.putNowait.bind(q);
      q.putNowait = (item: unknown): void => {
        if ((item as Packet).payload === 'bad') {
          bad[i]++;
          throw markItemFault(new Error('this item is bad'));
        }
        put(item);
      };
    });
    const router = new BaseRouter({ name: 'fp-item', strategy: 'hash', deadLetterQueue: dlq, ejectAfterFailures: 1, maxRetries: 3, retryBaseMs: 0 });
    queues.forEach((q, i) => router.addConnection({ broadcastIndex: 0, parallelIndex: i, targetName: `t${i}`, targetHandle: q }));
    const owner = router.pick(new Packet(null, { partitionKey: 'user-7' })) as Connection;
    const report = await router.route(new Packet('bad', { partitionKey: 'user-7' }));
    expect(report.deliveries).toEqual([
      { broadcastIndex: 0, target: owner.targetName, parallelIndex: owner.parallelIndex, status: 'dead_lettered', attempts: 1, retries: 0, reason: 'Error: this item is bad', fault: 'item' },
    ]);
    expect(bad.reduce((a, b) => a + b, 0)).toBe(1);
    expect(queues.reduce((a, q) => a + q.putAsyncCalls, 0)).toBe(0);
    expect(owner.health).toEqual({ state: 'healthy', consecutiveFailures: 0, timesEjected: 0, nextProbeAt: null, lastError: null });
    expect(owner.counters).toMatchObject({ sent: 0, delivered: 0, failed: 0, retried: 0 });
    expect(dlq.getNowait()).toMatchObject({ deadLetter: true, fault: 'item', attempts: 1, lastTarget: owner.targetName });
    const next = await router.route(new Packet('good', { partitionKey: 'user-7' }));
    expect(next.deliveries[0]).toMatchObject({ target: owner.targetName, status: 'delivered', attempts: 1 });
    const s = router.stats();
    expect({ sent: s.sent, attempts: s.attempts, delivered: s.delivered, deadLettered: s.deadLettered, retried: s.retried }).toEqual({
      sent: 2, attempts: 2, delivered: 1, deadLettered: 1, retried: 0,
    });
  });

  /** A queue that fails every put by its own fault, synchronously (putNowait) and asynchronously (putAsync), or only putAsync. */
  class Broken extends OpaqueQueue {
    putAsyncCalls = 0;
    override async putAsync(): Promise<void> {
      this.putAsyncCalls++;
      throw new QueueClosedError('broken');
    }
  }
  class BrokenSync extends Broken {
    putNowaitCalls = 0;
    putNowait(): void {
      this.putNowaitCalls++;
      throw new QueueClosedError('broken');
    }
  }

  it('a target fault falls back to the per-packet path: the same retries, failures, ejection, failover and dead letter as a queue without putNowait', async () => {
    const run = async (Cls: typeof Broken): Promise<{ reports: RouteReport[]; stats: object; health: object[]; letters: number; broken: Broken }> => {
      const dlq = new LocalQueue<DeadLetter>();
      const clock = new FakeClock({ advanceOnSleep: true });
      const router = new BaseRouter({
        name: 'fp-target', strategy: 'round_robin', deadLetterQueue: dlq, clock, random: seeded(1), maxRetries: 2, retryBaseMs: 1, ejectAfterFailures: 2, ejectBaseMs: 1000,
      });
      const broken = new Cls();
      router.addConnection({ broadcastIndex: 0, parallelIndex: 0, targetName: 'broken', targetHandle: broken });
      router.addConnection({ broadcastIndex: 0, parallelIndex: 1, targetName: 'fine', targetHandle: new OpaqueQueue() });
      const reports: RouteReport[] = [];
      for (let i = 0; i < 6; i++) reports.push(await router.route(new Packet(i, { traceId: `p${i}` })));
      router.removeConnection(0, 1);
      reports.push(await router.route(new Packet('last', { traceId: 'last' })));
      const s = router.stats();
      return { reports, stats: counts(s), health: s.connections.map((c) => c.health), letters: dlq.qsize(), broken };
    };
    const withSync = await run(BrokenSync);
    const asyncOnly = await run(Broken);
    expect(placements(withSync.reports)).toEqual(placements(asyncOnly.reports));
    expect(withSync.reports.map((r) => r.deliveries.map((d) => d.reason))).toEqual(asyncOnly.reports.map((r) => r.deliveries.map((d) => d.reason)));
    expect(withSync.stats).toEqual(asyncOnly.stats);
    expect(withSync.health).toEqual(asyncOnly.health);
    expect(withSync.letters).toBe(asyncOnly.letters);
    // It did fail: retried, ejected, and the last packet (no other target) was dead-lettered.
    expect(asyncOnly.stats).toMatchObject({ retried: expect.any(Number) });
    expect((asyncOnly.stats as RouterStats).retried).toBeGreaterThan(0);
    expect((asyncOnly.health[0] as { timesEjected: number }).timesEjected).toBeGreaterThan(0);
    expect(asyncOnly.letters).toBe(1);
    // Every failed attempt went through putAsync, as before; the synchronous tries counted nothing.
    expect(withSync.broken.putAsyncCalls).toBe(asyncOnly.broken.putAsyncCalls);
    expect((withSync.broken as BrokenSync).putNowaitCalls).toBeGreaterThan(0);
  });

  it('a synchronous refusal whose putAsync then succeeds is one delivered attempt, nothing counted against the target', async () => {
    const q = new GatedQueue();
    q.refuse = 3;
    q.release();
    const router = new BaseRouter({ name: 'fp-refuse', strategy: 'round_robin' });
    const c = router.addConnection({ broadcastIndex: 0, parallelIndex: 0, targetName: 'only', targetHandle: q });
    for (let i = 0; i < 5; i++) expect((await router.route(new Packet(i))).deliveries[0]).toMatchObject({ status: 'delivered', attempts: 1, retries: 0 });
    expect(c.health.consecutiveFailures).toBe(0);
    expect(c.counters).toMatchObject({ sent: 5, delivered: 5, failed: 0 });
    expect(q.log.map((p) => (p as Packet).payload)).toEqual([0, 1, 2, 3, 4]);
  });
});

describe('routeMany over targets with putNowait and no putMany', () => {
  it('puts each copy at once (no putAsync), counts each once, and sends the rest the per-packet way when one is refused', async () => {
    const fast = routerOver('sync', [3], { strategy: 'hash' });
    const packets = packetsFor(300).filter((p) => p.isKeyed());
    const report = await fast.router.routeMany(packets);
    expect(report).toMatchObject({ packets: packets.length, delivered: packets.length, deadLettered: 0, failed: 0, ok: true });
    const queues = fast.queues as SyncLog[];
    expect(queues.reduce((a, q) => a + q.putAsyncCalls, 0)).toBe(0);
    const s = fast.router.stats();
    expect({ sent: s.sent, attempts: s.attempts, delivered: s.delivered }).toEqual({ sent: packets.length, attempts: packets.length, delivered: packets.length });
    for (const c of s.connections) expect(c.counters.sent).toBe(c.counters.delivered);
    expect(s.connections.reduce((a, c) => a + c.counters.sent, 0)).toBe(packets.length);

    const gated = new GatedQueue();
    gated.refuse = 1;
    gated.release();
    const router = new BaseRouter({ name: 'fp-many', strategy: 'hash' });
    router.addConnection({ broadcastIndex: 0, parallelIndex: 0, targetName: 'only', targetHandle: gated });
    const r = await router.routeMany(Array.from({ length: 5 }, (_, seq) => new Packet(seq, { partitionKey: 'k' })));
    expect(r).toMatchObject({ delivered: 5, ok: true });
    expect(gated.log.map((p) => (p as Packet).payload)).toEqual([0, 1, 2, 3, 4]);
  });
});

describe('stats() latency samples and route events', () => {
  it('one route() in 8 is timed for stats(); every one is timed while a route listener is attached', async () => {
    const { router } = routerOver('sync', [2]);
    for (let i = 0; i < 64; i++) await router.route(new Packet(i));
    expect(router.stats().routeLatencyMs.samples).toBe(8);
    const seen: number[] = [];
    router.on('route', (e) => seen.push(e.latencyMs));
    for (let i = 0; i < 10; i++) await router.route(new Packet(i));
    expect(seen).toHaveLength(10);
    expect(seen.every((ms) => ms >= 0)).toBe(true);
    // Calls 65 to 74: the 65th and the 73rd are sampled.
    expect(router.stats().routeLatencyMs.samples).toBe(10);
  });
});

describe('RouteReport.traceId', () => {
  it("is the packet's, read when asked for, and in the report's JSON", async () => {
    const { router } = routerOver('sync', [1]);
    const p = new Packet('x');
    const report = await router.route(p);
    expect(report.traceId).toBe(p.traceId);
    expect(JSON.parse(JSON.stringify(report))).toMatchObject({ traceId: p.traceId, strategy: 'round_robin', delivered: 1, ok: true });
    report.traceId = 'changed';
    expect(report.traceId).toBe('changed');
  });
});

describe('isKeyedStrategy', () => {
  it('agrees with KEYED_STRATEGIES for every strategy', () => {
    expect(STRATEGIES.filter((s) => isKeyedStrategy(s))).toEqual(STRATEGIES.filter((s) => KEYED_STRATEGIES.has(s)));
  });
});

describe('KeyOrder keys', () => {
  it('1, "1" and 1n are different keys; byte keys are equal by content and never equal a string key', async () => {
    const order = new KeyOrder();
    let release!: () => void;
    const inFlight = new Promise<void>((resolve) => {
      release = resolve;
    });
    const p = (key: Packet['partitionKey']): Packet => new Packet(null, { partitionKey: key });
    order.hold(p(1), 0, inFlight);
    order.hold(p(new Uint8Array([1, 2])), 0, inFlight);
    expect(order.busy(p(1), 0)).toBe(true);
    expect(order.busy(p(1), 1)).toBe(false);
    expect(order.busy(p('1'), 0)).toBe(false);
    expect(order.busy(p(1n), 0)).toBe(false);
    expect(order.busy(p(new Uint8Array([1, 2])), 0)).toBe(true);
    expect(order.busy(p(Buffer.from([1, 2])), 0)).toBe(true);
    expect(order.busy(p('0102'), 0)).toBe(false);
    expect(order.busy(p(new Uint8Array([1, 2, 3]).subarray(0, 2)), 0)).toBe(true);
    release();
    await inFlight;
    await Promise.resolve();
    expect(order.busy(p(1), 0)).toBe(false);
    expect(order.busy(p(new Uint8Array([1, 2])), 0)).toBe(false);
  });
});

describe('pick()', () => {
  it("is route()'s target for keyed strategies, in the given group; takes round_robin's turn; undefined without a group or an available target", async () => {
    const { router } = routerOver('sync', [3, 5], { strategy: 'consistent_hash' });
    for (let i = 0; i < 50; i++) {
      const packet = new Packet(i, { partitionKey: `user-${i}` });
      const picked = [router.pick(packet)?.targetName, router.pick(packet, 1)?.targetName];
      const report = await router.route(packet);
      expect(picked).toEqual(report.deliveries.map((d) => d.target));
    }
    const rr = routerOver('sync', [3], { strategy: 'round_robin' }).router;
    expect([0, 1, 2, 3].map(() => rr.pick(new Packet(null))?.parallelIndex)).toEqual([0, 1, 2, 0]);
    expect((await rr.route(new Packet(null))).deliveries[0]?.parallelIndex).toBe(1);
    expect(router.pick(new Packet(null, { partitionKey: 'k' }), 7)).toBeUndefined();
    expect(new BaseRouter().pick(new Packet(null))).toBeUndefined();
    for (const c of rr.connections()) c.markDown('test');
    expect(rr.pick(new Packet(null))).toBeUndefined();
    // pick() counts nothing.
    expect(router.stats().routed).toBe(50);
  });

  it('argument checks: ERR_INVALID_ARG_TYPE, ERR_OUT_OF_RANGE, ERR_INVALID_ARG_VALUE (broadcast), ERR_ROUTER_DISPOSED', async () => {
    const { router } = routerOver('sync', [2], { strategy: 'hash' });
    thrown(() => router.pick({ payload: 1 } as unknown as Packet), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => router.pick(new Packet(1), '0' as unknown as number), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => router.pick(new Packet(1), -1), ArgumentRangeError, 'ERR_OUT_OF_RANGE');
    thrown(() => router.pick(new Packet(1), 0.5), ArgumentRangeError, 'ERR_OUT_OF_RANGE');
    thrown(() => router.pick(new Packet(1, { partitionStrategy: 'broadcast' })), InvalidArgumentValueError, 'ERR_INVALID_ARG_VALUE');
    await rejected(router.route({} as unknown as Packet), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    await router[Symbol.asyncDispose]();
    thrown(() => router.pick(new Packet(1)), RouterDisposedError, 'ERR_ROUTER_DISPOSED');
  });
});
