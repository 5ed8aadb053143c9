/**
 * A bad item is not a bad target: a packet the target cannot take (its codec cannot encode it,
 * it is too large, or the queue's error carries the ITEM_FAULT marker) is dead-lettered at once
 * with its reason — one attempt, no retry, nothing counted against the target, no ejection, no key
 * moved — by route() and by routeMany(); an unmarked error is still a target fault. Also
 * BaseRouter[Symbol.asyncDispose]: waits for routing in flight, then refuses new work, closes and
 * sends nothing.
 */
import { afterEach, describe, expect, it } from 'vitest';

import {
  BaseRouter, ITEM_FAULT, LocalQueue, MessageTooLargeError, Packet, QueueFullError, RouterDisposedError, SageQueue, isItemFault, markItemFault,
} from '../../lib/index';
import type { AsyncWaitOptions, Connection, DeadLetter, RouterOptions, StrategyName } from '../../lib/index';
import { cleanup, queueName, track } from '../helpers/harness';
import { FakeClock } from '../support/fake-clock';
import { OpaqueQueue } from '../support/opaque-queue';

// Handles released, segments destroyed after every test, whether it passed or not.
afterEach(cleanup);

interface JsonFixture {
  router: BaseRouter;
  queues: SageQueue<unknown>[];
  conns: Connection[];
  dlq: LocalQueue<DeadLetter>;
}

/** `n` SageQueue targets with the json codec (a BigInt cannot be encoded), a LocalQueue dead-letter queue. */
function jsonTargets(n: number, options: RouterOptions = {}): JsonFixture {
  const dlq = new LocalQueue<DeadLetter>();
  const router = new BaseRouter({ name: 'items', deadLetterQueue: dlq, ejectAfterFailures: 2, maxRetries: 3, retryBaseMs: 0, ...options });
  const queues = Array.from({ length: n }, () => track(SageQueue.create<unknown>(queueName('item'), { capacity: 1 << 18, codec: 'json' })));
  const conns = queues.map((q, i) => router.addConnection({ broadcastIndex: 0, parallelIndex: i, targetName: `t${i}`, targetHandle: q }));
  return { router, queues, conns, dlq };
}

/** Every packet (as its json wire form) waiting in `q`, in order. */
function drainWire(q: SageQueue<unknown>): Array<{ payload: { seq: number }; partitionKey: unknown }> {
  const out: Array<{ payload: { seq: number }; partitionKey: unknown }> = [];
  while (q.qsize() > 0) out.push(q.get(false) as { payload: { seq: number }; partitionKey: unknown });
  return out;
}

const untouched = { state: 'healthy', consecutiveFailures: 0, timesEjected: 0, nextProbeAt: null, lastError: null };

describe('isItemFault', () => {
  it('SerializationError and MessageTooLargeError codes are item faults, as is any error marked with markItemFault; QueueFullError and plain errors are not', () => {
    expect(isItemFault(Object.assign(new Error('x'), { code: 'ERR_SERIALIZATION' }))).toBe(true);
    expect(isItemFault(new MessageTooLargeError(10, 5))).toBe(true);
    const marked = markItemFault(new Error('schema says no'));
    expect(isItemFault(marked)).toBe(true);
    expect((marked as unknown as Record<symbol, unknown>)[ITEM_FAULT]).toBe(true);
    expect(ITEM_FAULT).toBe(Symbol.for('sage-queue.itemFault'));
    expect(isItemFault(new QueueFullError())).toBe(false);
    expect(isItemFault(new Error('boom'))).toBe(false);
    expect(isItemFault('ERR_SERIALIZATION')).toBe(false);
    expect(isItemFault(null)).toBe(false);
  });
});

describe('route(): an item the json codec cannot encode (BigInt payload)', () => {
  for (const strategy of ['hash', 'consistent_hash'] as StrategyName[]) {
    it(`${strategy}: dead-lettered with attempts 1 and its reason; 5 bad packets in a row (ejectAfterFailures 2) leave the target healthy, uncounted and its key where it was`, async () => {
      const { router, queues, conns, dlq } = jsonTargets(3, { strategy });
      const key = 'user-7';
      const first = await router.route(new Packet({ seq: 0 }, { partitionKey: key }));
      expect(first.ok).toBe(true);
      const home = first.deliveries[0]?.parallelIndex as number;
      const target = conns[home] as Connection;
      const countersBefore = { ...target.counters };

      for (let i = 1; i <= 5; i++) {
        const r = await router.route(new Packet({ seq: i, big: 10n ** 20n }, { partitionKey: key }));
        expect(r).toMatchObject({ ok: false, delivered: 0, deadLettered: 1, failed: 0 });
        expect(r.deliveries[0]).toMatchObject({ status: 'dead_lettered', attempts: 1, retries: 0, target: `t${home}`, fault: 'item' });
        expect(r.deliveries[0]?.reason).toMatch(/^ERR_SERIALIZATION: the json codec cannot encode/);
      }

      const letters: DeadLetter[] = [];
      while (!dlq.empty()) letters.push(dlq.getNowait());
      expect(letters).toHaveLength(5);
      for (const [i, letter] of letters.entries()) {
        expect(letter).toMatchObject({ deadLetter: true, router: 'items', attempts: 1, lastTarget: `t${home}`, fault: 'item', broadcastIndex: 0 });
        expect(letter.reason).toMatch(/^ERR_SERIALIZATION/);
        expect(letter.packet.payload).toEqual({ seq: i + 1, big: 10n ** 20n });
      }

      for (const c of conns) expect(c.health).toEqual(untouched);
      expect(target.counters).toEqual(countersBefore); // the refused items count nowhere on the target
      const s = router.stats();
      expect({ retried: s.retried, sent: s.sent, delivered: s.delivered, deadLettered: s.deadLettered, failed: s.failed, attempts: s.attempts }).toEqual({
        retried: 0, sent: 6, delivered: 1, deadLettered: 5, failed: 0, attempts: 6,
      });

      // The key stays on its target: the next good packets of the key go there, in order.
      for (let i = 6; i < 10; i++) {
        const r = await router.route(new Packet({ seq: i }, { partitionKey: key }));
        expect(r.deliveries[0]).toMatchObject({ status: 'delivered', parallelIndex: home, attempts: 1 });
      }
      expect(drainWire(queues[home] as SageQueue<unknown>).map((m) => m.payload.seq)).toEqual([0, 6, 7, 8, 9]);
      expect(queues.filter((_, i) => i !== home).map((q) => q.qsize())).toEqual([0, 0]);
    });
  }

  it('without a dead-letter queue the bad packet is failed after 1 attempt, with the same reason, and the target is not blamed', async () => {
    const router = new BaseRouter({ strategy: 'round_robin', maxRetries: 3, retryBaseMs: 0, ejectAfterFailures: 1 });
    const q = track(SageQueue.create<unknown>(queueName('item'), { capacity: 1 << 16, codec: 'json' }));
    const c = router.addConnection({ broadcastIndex: 0, parallelIndex: 0, targetName: 'only', targetHandle: q });
    const r = await router.route(new Packet(1n));
    expect(r.deliveries[0]).toMatchObject({ status: 'failed', attempts: 1, retries: 0, target: 'only', fault: 'item' });
    expect(r.deliveries[0]?.reason).toMatch(/^ERR_SERIALIZATION/);
    expect(c.health).toEqual(untouched);
    expect(c.counters).toEqual({ sent: 0, delivered: 0, failed: 0, retried: 0, bytes: 0 });
  });
});

/**
 * A LocalQueue-backed target that refuses packets whose payload has `bad` set, with the error
 * `refusal()` makes.
 */
class PickyQueue extends OpaqueQueue {
  constructor(readonly refusal: () => Error) {
    super();
  }
  override async putAsync(item: unknown, options?: AsyncWaitOptions): Promise<void> {
    if (item instanceof Packet && (item.payload as { bad?: boolean }).bad === true) throw this.refusal();
    return this.inner.putAsync(item, options);
  }
}

describe('route(): item faults from custom queues', () => {
  const cases: Array<[string, () => Error]> = [
    ['an error marked with markItemFault', () => markItemFault(new Error('payload fails the schema'))],
    ['a MessageTooLargeError', () => new MessageTooLargeError(2048, 1024)],
  ];
  for (const [label, refusal] of cases) {
    it(`${label}: dead-lettered at once (attempts 1, fault item), the target keeps its health and its keys`, async () => {
      const dlq = new LocalQueue<DeadLetter>();
      const router = new BaseRouter({ strategy: 'consistent_hash', deadLetterQueue: dlq, ejectAfterFailures: 1, maxRetries: 2, retryBaseMs: 0 });
      const picky = [new PickyQueue(refusal), new PickyQueue(refusal)];
      const conns = picky.map((q, i) => router.addConnection({ broadcastIndex: 0, parallelIndex: i, targetName: `p${i}`, targetHandle: q }));
      const home = (await router.route(new Packet({ n: 0 }, { partitionKey: 'k' }))).deliveries[0]?.parallelIndex as number;
      const r = await router.route(new Packet({ bad: true }, { partitionKey: 'k' }));
      expect(r.deliveries[0]).toMatchObject({ status: 'dead_lettered', attempts: 1, target: `p${home}`, fault: 'item' });
      const letter = dlq.getNowait();
      expect(letter).toMatchObject({ attempts: 1, fault: 'item', lastTarget: `p${home}` });
      expect(letter.reason).toContain(refusal().message);
      expect(conns.map((c) => c.health)).toEqual([untouched, untouched]);
      expect((await router.route(new Packet({ n: 1 }, { partitionKey: 'k' }))).deliveries[0]).toMatchObject({ status: 'delivered', parallelIndex: home });
    });
  }

  it('the same refusal without the marker is a target fault: retried on the other target, and the refusing one is ejected (ejectAfterFailures 1)', async () => {
    const dlq = new LocalQueue<DeadLetter>();
    const router = new BaseRouter({ strategy: 'round_robin', deadLetterQueue: dlq, ejectAfterFailures: 1, maxRetries: 1, retryBaseMs: 0, maxEjectedFraction: 1 });
    const picky = [new PickyQueue(() => new Error('payload fails the schema')), new OpaqueQueue()];
    const conns = picky.map((q, i) => router.addConnection({ broadcastIndex: 0, parallelIndex: i, targetName: `p${i}`, targetHandle: q }));
    const r = await router.route(new Packet({ bad: true }));
    expect(r.deliveries[0]).toMatchObject({ status: 'delivered', attempts: 2, target: 'p1' });
    expect(conns[0]?.health).toMatchObject({ state: 'ejected', consecutiveFailures: 1, timesEjected: 1 });
    expect(conns[0]?.counters).toMatchObject({ failed: 1, retried: 1 });
  });
});

describe('routeMany(): a batch with one bad item', () => {
  it('40 packets over 8 keys to 2 json SageQueues, #17 a BigInt: 39 delivered exactly once in key order, #17 dead-lettered (attempts 1), no target blamed, no key moved', async () => {
    const { router, queues, conns, dlq } = jsonTargets(2, { strategy: 'consistent_hash' });
    const keyOf = (i: number): string => `key-${i % 8}`;
    // Where each key lives before the batch.
    const homes = new Map<string, number>();
    for (let k = 0; k < 8; k++) {
      const r = await router.route(new Packet({ seq: -1 - k }, { partitionKey: keyOf(k) }));
      homes.set(keyOf(k), r.deliveries[0]?.parallelIndex as number);
    }
    queues.forEach((q) => drainWire(q));
    expect(new Set(homes.values()).size).toBe(2); // both targets hold keys, so both get a batch

    const packets = Array.from({ length: 40 }, (_, i) => new Packet(i === 17 ? { seq: i, big: 1n } : { seq: i }, { partitionKey: keyOf(i) }));
    const r = await router.routeMany(packets);
    expect(r).toMatchObject({ packets: 40, delivered: 39, deadLettered: 1, failed: 0, ok: false });
    expect(r.problems).toHaveLength(1);
    expect(r.problems[0]).toMatchObject({ status: 'dead_lettered', attempts: 1, retries: 0, fault: 'item', parallelIndex: homes.get(keyOf(17)) });
    expect(r.problems[0]?.reason).toMatch(/^ERR_SERIALIZATION/);

    const letter = dlq.getNowait();
    expect(letter).toMatchObject({ attempts: 1, fault: 'item', lastTarget: `t${homes.get(keyOf(17))}` });
    expect(letter.packet.payload).toEqual({ seq: 17, big: 1n });
    expect(dlq.empty()).toBe(true);

    // Every good packet once, on its key's home, in send order per key.
    const got = queues.map((q) => drainWire(q));
    const seqs = got.flat().map((m) => m.payload.seq).sort((a, b) => a - b);
    expect(seqs).toEqual(Array.from({ length: 40 }, (_, i) => i).filter((i) => i !== 17));
    got.forEach((messages, t) => {
      for (const m of messages) expect(homes.get(m.partitionKey as string)).toBe(t);
      for (let k = 0; k < 8; k++) {
        const order = messages.filter((m) => m.partitionKey === keyOf(k)).map((m) => m.payload.seq);
        expect(order).toEqual([...order].sort((a, b) => a - b));
      }
    });
    for (const c of conns) {
      expect(c.health).toEqual(untouched);
      expect(c.counters.failed).toBe(0);
      expect(c.counters.retried).toBe(0);
    }
    const s = router.stats();
    expect({ sent: s.sent, delivered: s.delivered, deadLettered: s.deadLettered, failed: s.failed, retried: s.retried }).toEqual({
      sent: 48, delivered: 47, deadLettered: 1, failed: 0, retried: 0,
    });
  });
});

/** A LocalQueue-backed target whose first `failures` puts throw QueueFullError. */
class FailsFirst extends OpaqueQueue {
  constructor(public failures: number) {
    super();
  }
  override async putAsync(item: unknown, options?: AsyncWaitOptions): Promise<void> {
    if (this.failures > 0) {
      this.failures--;
      throw new QueueFullError('injected', true);
    }
    return this.inner.putAsync(item, options);
  }
}

describe('BaseRouter[Symbol.asyncDispose]', () => {
  it('waits for a route() still in its retry backoff, then refuses new work (ERR_ROUTER_DISPOSED); the target queue stays open and got no stop signal', async () => {
    const clock = new FakeClock({ mode: 'manual' });
    const target = new FailsFirst(1);
    const router = new BaseRouter({ name: 'disposable', clock, random: () => 0.5, retryBaseMs: 100 });
    router.addConnection({ broadcastIndex: 0, parallelIndex: 0, targetName: 't', targetHandle: target });
    const routed = router.route(new Packet({ n: 1 }));
    for (let i = 0; i < 10 && clock.pendingSleeps === 0; i++) await new Promise((r) => setImmediate(r));
    expect(clock.pendingSleeps).toBe(1); // the first attempt failed; the retry waits 50 ms

    let disposed = false;
    const disposing = router[Symbol.asyncDispose]().then(() => {
      disposed = true;
    });
    for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
    expect(disposed).toBe(false);
    await expect(router.route(new Packet({ n: 2 }))).rejects.toMatchObject({ code: 'ERR_ROUTER_DISPOSED' });

    clock.advance(50);
    expect((await routed).deliveries[0]).toMatchObject({ status: 'delivered', attempts: 2 });
    await disposing;
    expect(disposed).toBe(true);

    await expect(router.routeMany([new Packet(3)])).rejects.toBeInstanceOf(RouterDisposedError);
    await expect(router.sendStopSignal()).rejects.toMatchObject({ code: 'ERR_ROUTER_DISPOSED' });
    expect(() => router.addConnection({ broadcastIndex: 0, parallelIndex: 1, targetName: 'u', targetHandle: new LocalQueue() })).toThrow(RouterDisposedError);
    expect(router.stats().connections).toEqual([]);
    expect(router.stats().delivered).toBe(1);

    // Only the routed packet is in the queue (no stop signal), and the queue still works.
    expect(((await target.getAsync({ timeoutMs: 0 })) as Packet).payload).toEqual({ n: 1 });
    await target.putAsync('still open');
    expect(await target.getAsync({ timeoutMs: 0 })).toBe('still open');

    await router[Symbol.asyncDispose](); // idempotent
  });
});
