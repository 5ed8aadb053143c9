/**
 * BaseRouter failure handling, driven by a fake clock: failing targets (closed or full queues),
 * ejection after consecutive failures, ring-successor failover for keyed traffic, probing and
 * recovery, the bound on ejected targets, retries with jittered backoff then dead letters, the
 * accounting invariant, per-key order under failures with un-awaited route() calls, and the stop
 * signal reaching every target.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';

import {
  BaseRouter, HashRing, LocalQueue, Packet, QueueClosedError, QueueDescriptor, QueueFullError, SageQueue, isStopSignal,
  registerQueueImplementation, stableHash,
} from '../../lib/index';
import type { AsyncQueueLike, AsyncWaitOptions, Connection, DeadLetter, HealthState, RouterOptions, StrategyName } from '../../lib/index';
import { cleanup, queueName, track, trackQueueType } from '../helpers/harness';
import { FakeClock } from '../support/fake-clock';
import { OpaqueQueue } from '../support/opaque-queue';
import { seeded } from '../support/seeded';

// Queue types unregistered, handles released, segments destroyed after every test.
afterEach(cleanup);

/** What every FlakyQueue of a test appends to when it accepts a packet. */
type AcceptLog = Array<{ target: string; packet: Packet }>;

/**
 * An AsyncQueueLike over a LocalQueue that fails on demand: `down` makes every put throw
 * QueueClosedError; `failRate` fails that fraction of puts (QueueFullError, as if timed out).
 * Every accepted packet is appended to `log` in acceptance order.
 */
class FlakyQueue extends OpaqueQueue {
  down = false;
  failRate = 0;
  puts = 0;
  injected = 0;
  /** Called at each put, before it succeeds or fails (e.g. to look at the connection's health). */
  onPut: (() => void) | undefined;

  constructor(
    readonly name: string,
    readonly log: AcceptLog,
    readonly random: () => number = Math.random,
    maxsize = 0,
  ) {
    super(maxsize);
  }

  override async putAsync(item: unknown, options?: AsyncWaitOptions): Promise<void> {
    this.puts++;
    this.onPut?.();
    if (this.down) throw new QueueClosedError(`${this.name} is down`);
    if (this.failRate > 0 && this.random() < this.failRate) {
      this.injected++;
      throw new QueueFullError(`${this.name}: injected failure`, true);
    }
    await this.inner.putAsync(item, options);
    if (item instanceof Packet) this.log.push({ target: this.name, packet: item });
  }
}

function drain<T>(q: LocalQueue<T>): T[] {
  const out: T[] = [];
  while (!q.empty()) out.push(q.getNowait());
  return out;
}

interface Fixture {
  router: BaseRouter;
  clock: FakeClock;
  flaky: FlakyQueue[];
  conns: Connection[];
  log: AcceptLog;
  dlq: LocalQueue<DeadLetter> | undefined;
}

function setup(n: number, options: RouterOptions & { withDlq?: boolean; failRate?: number; seed?: number; clock?: FakeClock } = {}): Fixture {
  const { withDlq = false, failRate = 0, seed = 1, clock = new FakeClock(), ...routerOptions } = options;
  const dlq = withDlq ? new LocalQueue<DeadLetter>() : undefined;
  const random = seeded(seed);
  const router = new BaseRouter({ name: 'fo', clock, random: seeded(seed + 1000), ...(dlq ? { deadLetterQueue: dlq } : {}), ...routerOptions });
  const log: AcceptLog = [];
  const flaky = Array.from({ length: n }, (_, i) => {
    const q = new FlakyQueue(`t${i}`, log, random);
    q.failRate = failRate;
    return q;
  });
  const conns = flaky.map((q, i) => router.addConnection({ broadcastIndex: 0, parallelIndex: i, targetName: q.name, targetHandle: q }));
  return { router, clock, flaky, conns, log, dlq };
}

// ---------------------------------------------------------------------------------------------

describe('a failing target is ejected after ejectAfterFailures consecutive failures', () => {
  it('closed queue (puts throw QueueClosedError): fails, then after 3 failures is ejected with timesEjected 1 and nextProbeAt = now + ejectBaseMs', async () => {
    const clock = new FakeClock();
    const router = new BaseRouter({ clock, maxRetries: 0, ejectAfterFailures: 3, ejectBaseMs: 30_000 });
    const queues = [0, 1, 2].map(() => new LocalQueue<Packet>());
    const conns = queues.map((q, i) => router.addConnection({ broadcastIndex: 0, parallelIndex: i, targetName: `t${i}`, targetHandle: q }));
    queues[1]?.close();
    const t1 = conns[1] as Connection;

    const statuses: string[] = [];
    for (let i = 0; i < 9; i++) {
      const r = await router.route(new Packet(i));
      statuses.push(`${r.deliveries[0]?.target}:${r.deliveries[0]?.status}`);
      if (r.deliveries[0]?.target === 't1') {
        expect(r.ok).toBe(false);
        expect(r.deliveries[0]?.reason).toContain('ERR_QUEUE_CLOSED');
      }
      if (i === 4) expect(t1.health).toMatchObject({ state: 'healthy', consecutiveFailures: 2 });
      clock.advance(10);
    }
    expect(statuses.slice(0, 8)).toEqual([
      't0:delivered', 't1:failed', 't2:delivered', 't0:delivered', 't1:failed', 't2:delivered', 't0:delivered', 't1:failed',
    ]);
    expect(t1.health).toMatchObject({ state: 'ejected', timesEjected: 1, consecutiveFailures: 3, nextProbeAt: 1_000_000 + 70 + 30_000 });
    expect(t1.health.lastError).toContain('ERR_QUEUE_CLOSED');
    // Ejected: the rest skip it.
    for (let i = 0; i < 20; i++) expect((await router.route(new Packet(i))).deliveries[0]?.target).not.toBe('t1');
    expect(t1.counters).toMatchObject({ sent: 3, failed: 3, delivered: 0 });
  });

  it('full queue (each put times out after sendTimeoutMs): fails with ERR_QUEUE_FULL and is ejected after 3 failures', async () => {
    const clock = new FakeClock();
    const router = new BaseRouter({ clock, maxRetries: 0, ejectAfterFailures: 3, ejectBaseMs: 5000, sendTimeoutMs: 5 });
    const full = new LocalQueue<unknown>({ maxsize: 1 });
    full.put('occupant');
    const ok = new LocalQueue<unknown>();
    router.addConnection({ broadcastIndex: 0, parallelIndex: 0, targetName: 'ok', targetHandle: ok });
    const c = router.addConnection({ broadcastIndex: 0, parallelIndex: 1, targetName: 'full', targetHandle: full });
    const failures: string[] = [];
    for (let i = 0; i < 10; i++) {
      const r = await router.route(new Packet(i));
      if (!r.ok) failures.push(r.deliveries[0]?.reason ?? '');
    }
    expect(failures.length).toBe(3);
    for (const f of failures) expect(f).toContain('ERR_QUEUE_FULL');
    expect(c.health).toMatchObject({ state: 'ejected', timesEjected: 1, nextProbeAt: clock.now() + 5000 });
    expect(full.qsize()).toBe(1);
    expect(ok.qsize()).toBe(7);
  });

  it('a success resets the count: failures that are not consecutive never eject', async () => {
    const f = setup(1, { maxRetries: 0, ejectAfterFailures: 3 });
    const q = f.flaky[0] as FlakyQueue;
    for (let round = 0; round < 10; round++) {
      q.down = true;
      await f.router.route(new Packet(round));
      await f.router.route(new Packet(round));
      q.down = false;
      expect((await f.router.route(new Packet(round))).ok).toBe(true);
    }
    expect(f.conns[0]?.health).toMatchObject({ state: 'healthy', timesEjected: 0, consecutiveFailures: 0 });
  });
});

describe('keyed failover, probing and recovery (consistent_hash, fake clock)', () => {
  it("an ejected target's keys go to its ring successor and nothing else moves; after the backoff it is probed; a failed probe ejects it for 2× the time; a successful probe makes it healthy and its keys return", async () => {
    const BASE = 30_000;
    const f = setup(5, { strategy: 'consistent_hash', maxRetries: 0, ejectAfterFailures: 3, ejectBaseMs: BASE, withDlq: true });
    const keys = Array.from({ length: 500 }, (_, i) => `k${i}`);
    const victim = f.flaky[2] as FlakyQueue;
    const vc = f.conns[2] as Connection;
    const seenStates: HealthState[] = [];
    victim.onPut = () => seenStates.push(vc.health.state);

    const where = async (): Promise<Map<string, string | null>> => {
      const m = new Map<string, string | null>();
      for (const k of keys) {
        const r = await f.router.route(new Packet(k, { partitionKey: k }));
        expect(r.ok).toBe(true);
        m.set(k, r.deliveries[0]?.target ?? null);
      }
      return m;
    };

    const home = await where();
    const victimKeys = keys.filter((k) => home.get(k) === 't2');
    expect(victimKeys.length).toBeGreaterThan(30);

    // t2 goes down: three consecutive failures eject it.
    victim.down = true;
    for (let i = 0; i < 3; i++) {
      const r = await f.router.route(new Packet('x', { partitionKey: victimKeys[i] as string }));
      expect(r.deliveries[0]).toMatchObject({ target: 't2', status: 'dead_lettered' });
    }
    expect(vc.health).toMatchObject({ state: 'ejected', timesEjected: 1, nextProbeAt: f.clock.now() + BASE });

    // Its keys go to the ring successor; nothing else moves.
    const ring = new HashRing(f.conns, (c) => c.targetName, 256);
    const successor = (k: string): string | undefined => ring.lookup(stableHash(k), (c) => c !== vc)?.targetName;
    const during = await where();
    for (const k of keys) {
      if (home.get(k) === 't2') expect(during.get(k)).toBe(successor(k));
      else expect(during.get(k)).toBe(home.get(k));
    }

    // After the backoff the next t2 packet is a probe; t2 is still down: ejected again for 2×.
    f.clock.advance(BASE);
    seenStates.length = 0;
    const probe1 = await f.router.route(new Packet('p1', { partitionKey: victimKeys[0] as string }));
    expect(seenStates).toEqual(['probing']);
    expect(probe1.deliveries[0]).toMatchObject({ target: 't2', status: 'dead_lettered' });
    expect(vc.health).toMatchObject({ state: 'ejected', timesEjected: 2, nextProbeAt: f.clock.now() + 2 * BASE });

    f.clock.advance(2 * BASE - 1);
    expect((await where()).get(victimKeys[0] as string)).toBe(successor(victimKeys[0] as string)); // not yet
    expect(vc.health.state).toBe('ejected');

    // t2 recovers; after the longer backoff the probe succeeds and every key is home again.
    victim.down = false;
    f.clock.advance(1);
    seenStates.length = 0;
    const probe2 = await f.router.route(new Packet('p2', { partitionKey: victimKeys[1] as string }));
    expect(seenStates).toEqual(['probing']);
    expect(probe2.deliveries[0]).toMatchObject({ target: 't2', status: 'delivered' });
    expect(vc.health).toMatchObject({ state: 'healthy', consecutiveFailures: 0, nextProbeAt: null, timesEjected: 2 });
    expect(await where()).toEqual(home);
  });

  it('a send that was in flight when its target was ejected, and then succeeds, does not cancel the probe: the target is probed after ejectBaseMs', async () => {
    const clock = new FakeClock();
    const gates: Array<{ resolve: () => void; reject: (e: unknown) => void }> = [];
    const gated: AsyncQueueLike<unknown> = {
      putAsync: () => new Promise<void>((resolve, reject) => gates.push({ resolve, reject })),
      getAsync: () => Promise.reject(new Error('unused')),
      close: () => {},
      [Symbol.asyncIterator]: () => ({ next: () => Promise.resolve({ done: true, value: undefined }) }),
    };
    const router = new BaseRouter({ clock, maxRetries: 0, ejectAfterFailures: 1, ejectBaseMs: 100 });
    const c = router.addConnection({ broadcastIndex: 0, parallelIndex: 0, targetName: 't', targetHandle: gated });
    const first = router.route(new Packet(1));
    const second = router.route(new Packet(2));
    await Promise.resolve();
    expect(gates.length).toBe(2);
    gates[1]?.reject(new QueueFullError('timed out', true));
    expect((await second).ok).toBe(false);
    expect(c.health).toMatchObject({ state: 'ejected', nextProbeAt: clock.now() + 100 });
    gates[0]?.resolve(); // the older send lands after the ejection
    expect((await first).ok).toBe(true);
    clock.advance(100);
    // Either the late success counts as a passed probe (healthy), or the ejection runs its course
    // and the target is probed now. It must not stay ejected with no probe ever scheduled.
    const available = c.isAvailable();
    expect({ available, state: c.health.state, nextProbeAt: c.health.nextProbeAt }).toMatchObject({ available: true });
  });

  it('isAvailable() turns an ejected target into probing once nextProbeAt has come, not before', async () => {
    const f = setup(2, { maxRetries: 0, ejectAfterFailures: 1, ejectBaseMs: 100 });
    (f.flaky[0] as FlakyQueue).down = true;
    await f.router.route(new Packet(1));
    const c = f.conns[0] as Connection;
    expect(c.health.state).toBe('ejected');
    f.clock.advance(99);
    expect(c.isAvailable()).toBe(false);
    expect(c.health.state).toBe('ejected');
    f.clock.advance(1);
    expect(c.isAvailable()).toBe(true);
    expect(c.health.state).toBe('probing');
  });
});

describe('never more than maxEjectedFraction of a group is ejected', () => {
  const cases: Array<[number, number, number]> = [
    [4, 0.5, 2],
    [4, 0.25, 1],
    [6, 0.5, 3],
    [10, 0.3, 3],
  ];
  for (const [n, fraction, limit] of cases) {
    it(`${n} targets, all failing, maxEjectedFraction ${fraction}: at most ${limit} ejected at any time`, async () => {
      const f = setup(n, { maxRetries: 1, ejectAfterFailures: 1, ejectBaseMs: 1_000_000, maxEjectedFraction: fraction });
      for (const q of f.flaky) q.down = true;
      let most = 0;
      for (let i = 0; i < 10 * n; i++) {
        const r = await f.router.route(new Packet(i));
        expect(r.ok).toBe(false);
        most = Math.max(most, f.conns.filter((c) => c.health.state === 'ejected').length);
      }
      expect(most).toBe(limit);
    });
  }
});

describe('retries with jittered exponential backoff, then the dead-letter queue', () => {
  it('maxRetries 2, all targets failing: tried 3 times (one per target), sleeps base·r then 2·base·r, then a dead letter with reason, attempts and lastTarget', async () => {
    const clock = new FakeClock();
    const dlq = new LocalQueue<DeadLetter>();
    const router = new BaseRouter({
      name: 'retrier', clock, maxRetries: 2, retryBaseMs: 100, ejectAfterFailures: 1000, deadLetterQueue: dlq, random: () => 0.5,
    });
    const tried: string[] = [];
    const queues = [0, 1, 2].map((i) => {
      const q = new FlakyQueue(`t${i}`, []);
      q.down = true; // puts throw QueueClosedError
      q.onPut = () => tried.push(q.name);
      return q;
    });
    const conns = queues.map((q, i) => router.addConnection({ broadcastIndex: 0, parallelIndex: i, targetName: q.name, targetHandle: q }));
    const p = new Packet({ body: 1 }, { partitionKey: null });
    const r = await router.route(p);

    expect([...tried].sort()).toEqual(['t0', 't1', 't2']); // each target once: a retry avoids the targets that failed
    const last = tried[2] as string;
    expect(r).toMatchObject({ ok: false, delivered: 0, deadLettered: 1, failed: 0 });
    expect(r.deliveries[0]).toMatchObject({ status: 'dead_lettered', attempts: 3, retries: 2, target: last });
    expect(r.deliveries[0]?.reason).toContain('ERR_QUEUE_CLOSED');
    expect(clock.sleeps).toEqual([50, 100]);
    expect(conns.map((c) => c.counters.sent)).toEqual([1, 1, 1]);
    expect(conns.map((c) => c.counters.retried)).toEqual(conns.map((c) => (c.targetName === last ? 0 : 1)));

    const letters = drain(dlq);
    expect(letters.length).toBe(1);
    const letter = letters[0] as DeadLetter;
    expect(letter).toMatchObject({ deadLetter: true, router: 'retrier', attempts: 3, lastTarget: last, broadcastIndex: 0 });
    expect(letter.reason).toContain('ERR_QUEUE_CLOSED');
    expect(letter.packet.traceId).toBe(p.traceId);
    expect(letter.packet.payload).toEqual({ body: 1 });
    expect(Packet.from(letter.packet).traceId).toBe(p.traceId);
  });

  it('the n-th backoff is jittered within [0, base·2^(n-1)]: 300 packets, sleeps recorded, caps growing', async () => {
    const clock = new FakeClock();
    const dlq = new LocalQueue<DeadLetter>();
    const router = new BaseRouter({ clock, maxRetries: 3, retryBaseMs: 10, retryMaxMs: 10_000, ejectAfterFailures: 100_000, deadLetterQueue: dlq, random: seeded(7) });
    for (let i = 0; i < 3; i++) {
      const q = new LocalQueue<Packet>();
      q.close();
      router.addConnection({ broadcastIndex: 0, parallelIndex: i, targetName: `t${i}`, targetHandle: q });
    }
    for (let i = 0; i < 300; i++) expect((await router.route(new Packet(i))).deadLettered).toBe(1);
    expect(clock.sleeps.length).toBe(300 * 3);
    const byRetry = [0, 1, 2].map((n) => clock.sleeps.filter((_, i) => i % 3 === n));
    byRetry.forEach((sleeps, n) => {
      const cap = 10 * 2 ** n;
      for (const s of sleeps) {
        expect(s).toBeGreaterThanOrEqual(0);
        expect(s).toBeLessThanOrEqual(cap);
      }
      // Full jitter: spread over the whole range, not pinned to the cap.
      expect(Math.max(...sleeps)).toBeGreaterThan(cap * 0.9);
      expect(Math.min(...sleeps)).toBeLessThan(cap * 0.1);
    });
    const means = byRetry.map((s) => s.reduce((a, b) => a + b, 0) / s.length);
    expect(means[1]).toBeGreaterThan(means[0] as number);
    expect(means[2]).toBeGreaterThan(means[1] as number);
    expect(dlq.qsize()).toBe(300);
  });

  it('a retry really waits for its backoff: with a manual clock the second attempt happens only once the clock passes the sleep', async () => {
    const clock = new FakeClock({ mode: 'manual' });
    const f = setup(2, { clock, maxRetries: 1, retryBaseMs: 100, ejectAfterFailures: 100, random: () => 0.5 });
    const router = f.router;
    const [down, up] = f.flaky as [FlakyQueue, FlakyQueue];
    down.down = true;
    let settled = false;
    const routed = router.route(new Packet('x')).then((r) => {
      settled = true;
      return r;
    });
    const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
    await flush();
    expect(down.puts).toBe(1);
    expect(clock.sleeps).toEqual([50]);
    expect(clock.pendingSleeps).toBe(1);
    clock.advance(49);
    await flush();
    expect(up.puts).toBe(0);
    expect(settled).toBe(false);
    clock.advance(1);
    await flush();
    expect(up.puts).toBe(1);
    expect((await routed).deliveries[0]).toMatchObject({ status: 'delivered', target: 't1', attempts: 2 });
  });

  it('the backoff is capped by retryMaxMs', async () => {
    const clock = new FakeClock();
    const router = new BaseRouter({ clock, maxRetries: 5, retryBaseMs: 100, retryMaxMs: 250, ejectAfterFailures: 1000, random: () => 0.999 });
    const q = new LocalQueue<Packet>();
    q.close();
    router.addConnection({ broadcastIndex: 0, parallelIndex: 0, targetName: 't', targetHandle: q });
    await router.route(new Packet(1));
    expect(clock.sleeps.map((s) => Math.round(s * 1000) / 1000)).toEqual([99.9, 199.8, 249.75, 249.75, 249.75]);
  });

  it('a retry that succeeds elsewhere is delivered, reports its attempts and the reason of the failure before', async () => {
    const f = setup(2, { maxRetries: 2, ejectAfterFailures: 100 });
    (f.flaky[0] as FlakyQueue).down = true;
    const r = await f.router.route(new Packet(1));
    expect(r.ok).toBe(true);
    expect(r.deliveries[0]).toMatchObject({ status: 'delivered', target: 't1', attempts: 2, retries: 1 });
    expect(r.deliveries[0]?.reason).toContain('ERR_QUEUE_CLOSED');
  });
});

describe('route() never reports a bare success when a copy was not delivered', () => {
  it('without a dead-letter queue: all targets failing → status failed, ok false', async () => {
    const f = setup(2, { maxRetries: 1, ejectAfterFailures: 100 });
    for (const q of f.flaky) q.down = true;
    const r = await f.router.route(new Packet(1));
    expect(r).toMatchObject({ ok: false, delivered: 0, deadLettered: 0, failed: 1 });
    expect(r.deliveries[0]).toMatchObject({ status: 'failed', attempts: 2 });
    expect(r.deliveries[0]?.reason).toContain('ERR_QUEUE_CLOSED');
  });

  it('no downstream connections at all → failed, ok false', async () => {
    const r = await new BaseRouter().route(new Packet(1));
    expect(r).toMatchObject({ ok: false, delivered: 0, failed: 1 });
    expect(r.deliveries[0]?.reason).toContain('no downstream connections');
  });

  it('broadcast with one failing copy → ok false, delivered 2, failed 1', async () => {
    const f = setup(3, { strategy: 'broadcast', maxRetries: 0, ejectAfterFailures: 100 });
    (f.flaky[1] as FlakyQueue).down = true;
    const r = await f.router.route(new Packet(1));
    expect(r).toMatchObject({ ok: false, delivered: 2, failed: 1 });
  });

  it('a dead-letter queue that refuses the letter → failed, with both reasons', async () => {
    const dlq = new LocalQueue<DeadLetter>();
    dlq.close();
    const f = setup(1, { maxRetries: 0, deadLetterQueue: dlq });
    (f.flaky[0] as FlakyQueue).down = true;
    const r = await f.router.route(new Packet(1));
    expect(r).toMatchObject({ ok: false, deadLettered: 0, failed: 1 });
    expect(r.deliveries[0]?.reason).toMatch(/ERR_QUEUE_CLOSED.*dead-letter queue refused/);
  });
});

describe('accounting invariant', () => {
  it('sent = delivered + deadLettered + failed in router.stats() over 1000 mixed packets with 20% injected failures', async () => {
    const clock = new FakeClock({ advanceOnSleep: true });
    const f = setup(4, {
      clock, withDlq: true, failRate: 0.2, seed: 11, maxRetries: 2, retryBaseMs: 5, ejectAfterFailures: 3, ejectBaseMs: 50, strategy: 'round_robin',
    });
    // A second broadcast group, and a dead-letter queue that refuses now and then.
    const g1 = [0, 1].map((i) => {
      const q = new FlakyQueue(`g1-t${i}`, f.log, seeded(50 + i));
      q.failRate = 0.2;
      f.router.addConnection({ broadcastIndex: 1, parallelIndex: i, targetName: q.name, targetHandle: q });
      return q;
    });
    const pick = seeded(99);
    const strategies: Array<StrategyName | null> = [null, 'hash', 'consistent_hash', 'load_balance', 'broadcast'];
    const totals = { copies: 0, delivered: 0, deadLettered: 0, failed: 0 };
    for (let i = 0; i < 1000; i++) {
      const strategy = strategies[Math.floor(pick() * strategies.length)] as StrategyName | null;
      const key = pick() < 0.8 ? `k${Math.floor(pick() * 50)}` : null;
      const r = await f.router.route(new Packet({ i }, { partitionKey: key, partitionStrategy: strategy }));
      expect(r.delivered + r.deadLettered + r.failed).toBe(r.deliveries.length);
      expect(r.ok).toBe(r.delivered === r.deliveries.length);
      totals.copies += r.deliveries.length;
      totals.delivered += r.delivered;
      totals.deadLettered += r.deadLettered;
      totals.failed += r.failed;
    }
    const s = f.router.stats();
    const accepted = f.log.length;
    const lettered = (f.dlq as LocalQueue<DeadLetter>).qsize();
    const injected = [...f.flaky, ...g1].reduce((a, q) => a + q.injected, 0);
    console.log(
      `[invariant, 1000 packets] stats: sent ${s.sent}, delivered ${s.delivered}, deadLettered ${s.deadLettered}, failed ${s.failed}, ` +
        `retried ${s.retried}; copies routed ${totals.copies}; injected failures ${injected}`,
    );
    // What physically happened agrees with the stats and the reports.
    expect(s.delivered).toBe(accepted);
    expect(s.deadLettered).toBe(lettered);
    expect({ delivered: s.delivered, deadLettered: s.deadLettered, failed: s.failed }).toEqual({
      delivered: totals.delivered, deadLettered: totals.deadLettered, failed: totals.failed,
    });
    expect(s.routed).toBe(1000);
    expect(injected).toBeGreaterThan(100);
    // Per connection, each attempt either delivered or failed.
    for (const c of s.connections) expect(c.counters.sent).toBe(c.counters.delivered + c.counters.failed);
    // The documented invariant.
    expect(s.sent).toBe(s.delivered + s.deadLettered + s.failed);
  });
});

interface KeyOrderRun {
  f: Fixture;
  victimName: string;
  vc: Connection;
  ownedByVictim: number;
  owner: (key: string) => string;
  delivered: number;
  deadLettered: number;
  failed: number;
  ejectedSeen: boolean;
}

/**
 * 10k packets over 100 keys (consistent_hash, 5 targets, 5% injected failures), all route() calls
 * fired before any is awaited. The target owning the most keys is down while the queues accept
 * packets 3000..6999, then comes back.
 */
async function keyOrderScenario(): Promise<KeyOrderRun> {
  const clock = new FakeClock({ advanceOnSleep: true });
  const f = setup(5, {
    clock, strategy: 'consistent_hash', withDlq: true, failRate: 0.05, seed: 3, maxRetries: 3, retryBaseMs: 2, ejectAfterFailures: 3, ejectBaseMs: 40,
  });
  const ring = new HashRing(f.conns, (c) => c.targetName, 256);
  const owner = (key: string): string => ring.lookup(stableHash(key))?.targetName as string;
  const owned = new Map<string, number>();
  for (let k = 0; k < 100; k++) owned.set(owner(`key-${k}`), (owned.get(owner(`key-${k}`)) ?? 0) + 1);
  const victimName = [...owned.entries()].sort((a, b) => b[1] - a[1])[0]?.[0] as string;
  const victim = f.flaky.find((q) => q.name === victimName) as FlakyQueue;
  const vc = f.conns.find((c) => c.targetName === victimName) as Connection;
  let ejectedSeen = false;
  for (const q of f.flaky) {
    q.onPut = () => {
      const accepted = f.log.length;
      victim.down = accepted >= 3000 && accepted < 7000;
      if (vc.health.state === 'ejected') ejectedSeen = true;
    };
  }
  const routes: Array<Promise<{ delivered: number; deadLettered: number; failed: number }>> = [];
  for (let i = 0; i < 10_000; i++) {
    const key = `key-${i % 100}`;
    routes.push(f.router.route(new Packet({ key, seq: Math.floor(i / 100) }, { partitionKey: key })));
  }
  const reports = await Promise.all(routes);
  return {
    f, victimName, vc, owner, ejectedSeen,
    ownedByVictim: owned.get(victimName) as number,
    delivered: reports.reduce((a, r) => a + r.delivered, 0),
    deadLettered: reports.reduce((a, r) => a + r.deadLettered, 0),
    failed: reports.reduce((a, r) => a + r.failed, 0),
  };
}

describe('per-key order under failures, retries and an ejection, with route() not awaited one by one', () => {
  it('10k packets over 100 keys, fired all at once: each key is accepted by the queues in send order, each packet at most once', async () => {
    const r = await keyOrderScenario();
    expect(r.delivered + r.deadLettered).toBe(10_000);
    expect(r.failed).toBe(0);
    expect(r.ejectedSeen).toBe(true);
    expect(r.f.flaky.reduce((a, q) => a + q.injected, 0)).toBeGreaterThan(200);

    const lastSeq = new Map<string, number>();
    const seen = new Set<string>();
    let outOfOrder = 0;
    let duplicates = 0;
    for (const { packet } of r.f.log) {
      const { key, seq } = packet.payload as { key: string; seq: number };
      if (seen.has(`${key}/${seq}`)) duplicates++;
      seen.add(`${key}/${seq}`);
      if (seq <= (lastSeq.get(key) ?? -1)) outOfOrder++;
      lastSeq.set(key, seq);
    }
    expect({ outOfOrder, duplicates }).toEqual({ outOfOrder: 0, duplicates: 0 });
    expect(r.f.log.length).toBe(r.delivered);
    // The victim's keys really went elsewhere while it was down.
    const movedAway = r.f.log.filter((e) => e.target !== r.victimName && r.owner((e.packet.payload as { key: string }).key) === r.victimName).length;
    expect(movedAway).toBeGreaterThan(0);
    console.log(
      `[per-key order] delivered ${r.delivered}, dead-lettered ${r.deadLettered}; victim ${r.victimName} owns ${r.ownedByVictim} of 100 keys, ` +
        `ejected ${r.vc.health.timesEjected}x, its keys delivered elsewhere ${movedAway}x; injected failures ${r.f.flaky.reduce((a, q) => a + q.injected, 0)}; ` +
        `victim health at the end ${JSON.stringify(r.vc.health)}`,
    );
  });

  it('in the same run, the victim is probed back in after its outage and takes its keys again', async () => {
    const r = await keyOrderScenario();
    const victimAt = r.f.log.flatMap((e, i) => (e.target === r.victimName ? [i] : []));
    expect(victimAt.filter((i) => i < 3000).length).toBeGreaterThan(0);
    expect(victimAt.filter((i) => i >= 3000 && i < 7000).length).toBe(0);
    expect(victimAt.filter((i) => i >= 7000).length).toBeGreaterThan(0);
    expect(r.vc.health.state).toBe('healthy');
  });
});

describe('sendStopSignal', () => {
  it('reaches every connection even when one throws synchronously, one is closed, one is full and one cannot be opened', async () => {
    const router = new BaseRouter({ name: 'stopper', sendTimeoutMs: 30 });
    const good = [new LocalQueue<unknown>(), new LocalQueue<unknown>()];
    const throwing: AsyncQueueLike<unknown> = {
      putAsync(): Promise<void> {
        throw new Error('synchronous boom');
      },
      getAsync: () => Promise.reject(new Error('unused')),
      close: () => {},
      [Symbol.asyncIterator]: () => ({ next: () => Promise.resolve({ done: true, value: undefined }) }),
    };
    const closed = new LocalQueue<unknown>();
    closed.close();
    const full = new LocalQueue<unknown>({ maxsize: 1 });
    full.put('occupant');
    const type = `router-stop-${randomBytes(3).toString('hex')}`;
    registerQueueImplementation(type, () => {
      throw new Error('cannot open');
    });
    trackQueueType(type);
    const unopenable = new QueueDescriptor({ queueId: `stop-${randomBytes(4).toString('hex')}`, queueType: type });

    router.addConnection({ broadcastIndex: 0, parallelIndex: 0, targetName: 'good0', targetHandle: good[0] as LocalQueue<unknown> });
    router.addConnection({ broadcastIndex: 0, parallelIndex: 1, targetName: 'throws', targetHandle: throwing });
    router.addConnection({ broadcastIndex: 0, parallelIndex: 2, targetName: 'closed', targetHandle: closed });
    router.addConnection({ broadcastIndex: 1, parallelIndex: 0, targetName: 'full', targetHandle: full });
    router.addConnection({ broadcastIndex: 1, parallelIndex: 1, targetName: 'unopenable', targetHandle: unopenable });
    router.addConnection({ broadcastIndex: 1, parallelIndex: 2, targetName: 'good1', targetHandle: good[1] as LocalQueue<unknown> });

    const t0 = performance.now();
    const out = await router.sendStopSignal('shutdown');
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(out.delivered.sort()).toEqual(['good0[0.0]', 'good1[1.2]']);
    expect(out.failed.map((x) => x.target).sort()).toEqual(['closed[0.2]', 'full[1.0]', 'throws[0.1]', 'unopenable[1.1]']);
    const reasons = Object.fromEntries(out.failed.map((x) => [x.target, x.reason]));
    expect(reasons['throws[0.1]']).toContain('synchronous boom');
    expect(reasons['closed[0.2]']).toContain('ERR_QUEUE_CLOSED');
    expect(reasons['full[1.0]']).toContain('ERR_QUEUE_FULL');
    expect(reasons['unopenable[1.1]']).toContain('cannot open');
    for (const q of good) {
      const got = q.getNowait();
      expect(isStopSignal(got)).toBe(true);
      expect(got).toEqual({ sageStop: true, router: 'stopper', reason: 'shutdown' });
    }
  });
});

describe('routeMany under a failing batch', () => {
  it('5000 packets to one SageQueue, #4500 too large: the other 4999 are each delivered exactly once (none twice when a later putMany chunk fails)', async () => {
    const name = queueName('many');
    const q = SageQueue.create<unknown>(name, { capacity: 1 << 22 });
    track(q);
    const router = new BaseRouter({ maxRetries: 0 });
    router.addConnection({ broadcastIndex: 0, parallelIndex: 0, targetName: 't', targetHandle: q });
    const packets = Array.from({ length: 5000 }, (_, i) => new Packet(i === 4500 ? 'x'.repeat(q.maxMessageSize + 10) : { seq: i }));
    const r = await router.routeMany(packets);
    expect(r).toMatchObject({ packets: 5000, delivered: 4999, failed: 1, ok: false });
    const counts = new Map<number, number>();
    while (q.qsize() > 0) {
      const m = q.get(false) as { payload: { seq: number } };
      counts.set(m.payload.seq, (counts.get(m.payload.seq) ?? 0) + 1);
    }
    const twice = [...counts.values()].filter((n) => n > 1).length;
    expect({ distinct: counts.size, twice }).toEqual({ distinct: 4999, twice: 0 });
    expect(router.stats().delivered).toBe(4999);
  });
});
