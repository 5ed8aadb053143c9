/**
 * BaseRouter's events, in real failure scenarios over real SageQueues (a full queue is a target
 * fault, a payload the codec cannot encode an item fault), with a fake clock for the ejection
 * and probe times: retry (attempt, target, backoff), eject (times, duration, reason), recover
 * (the probe succeeded), dead-letter (status, fault, attempts, target) and route (latency) each
 * carry the right payload, and exactly as many are emitted as the router's stats count.
 */
import { afterEach, describe, expect, it } from 'vitest';

import { BaseRouter, LocalQueue, Packet, SageQueue } from '../../lib/index';
import type { DeadLetterEvent, EjectEvent, RecoverEvent, RetryEvent, RouteEvent, RouterOptions } from '../../lib/index';
import { cleanup, queueName, track } from '../helpers/harness';
import { FakeClock } from '../support/fake-clock';

afterEach(cleanup);

interface Recorded {
  retry: RetryEvent[];
  eject: EjectEvent[];
  recover: RecoverEvent[];
  deadLetter: DeadLetterEvent[];
  route: RouteEvent[];
}

function record(router: BaseRouter): Recorded {
  const r: Recorded = { retry: [], eject: [], recover: [], deadLetter: [], route: [] };
  router.on('retry', (e) => r.retry.push(e));
  router.on('eject', (e) => r.eject.push(e));
  router.on('recover', (e) => r.recover.push(e));
  router.on('dead-letter', (e) => r.deadLetter.push(e));
  router.on('route', (e) => r.route.push(e));
  return r;
}

/** A SageQueue holding at most one message, filled: every put to it fails (ERR_QUEUE_FULL). */
function fullQueue(codec: 'v8' | 'json' = 'v8'): SageQueue {
  const q = track(SageQueue.create(queueName('full'), { capacity: 1 << 16, maxsize: 1, codec }));
  q.put('filler');
  return q;
}

function router(options: RouterOptions): BaseRouter {
  return new BaseRouter({ sendTimeoutMs: 0, retryBaseMs: 8, retryMaxMs: 100, random: () => 0.5, ...options });
}

describe('router events', () => {
  it('a full target: one retry event per retry (attempt, target, backoff, reason), then one dead-letter event', async () => {
    const clock = new FakeClock();
    const dlq = new LocalQueue();
    const r = router({ name: 'ev-retry', maxRetries: 2, deadLetterQueue: dlq, ejectAfterFailures: 10, clock });
    const target = fullQueue();
    r.addConnection({ broadcastIndex: 0, parallelIndex: 0, targetName: 'full-0', targetHandle: target });
    const events = record(r);
    const packet = new Packet({ n: 1 });
    const report = await r.route(packet);
    expect(report.deliveries[0]).toMatchObject({ status: 'dead_lettered', attempts: 3, fault: 'target' });
    expect(events.retry).toHaveLength(2);
    events.retry.forEach((e, i) => {
      expect(e).toMatchObject({ router: 'ev-retry', traceId: packet.traceId, broadcastIndex: 0, target: 'full-0', parallelIndex: 0, attempt: i + 1 });
      expect(e.reason).toMatch(/ERR_QUEUE_FULL|full/);
    });
    // full jitter with random() = 0.5: half the cap (8 ms, then 16 ms)
    expect(events.retry.map((e) => e.delayMs)).toEqual([4, 8]);
    expect(clock.sleeps).toEqual([4, 8]);
    expect(events.deadLetter).toEqual([
      { router: 'ev-retry', traceId: packet.traceId, broadcastIndex: 0, target: 'full-0', status: 'dead_lettered', fault: 'target', reason: expect.any(String), attempts: 3 },
    ]);
    expect(dlq.qsize()).toBe(1);
    expect(events.route).toHaveLength(1);
    expect(events.route[0]).toMatchObject({ router: 'ev-retry', traceId: packet.traceId, ok: false, copies: 1, strategy: 'round_robin' });
    expect(r.stats()).toMatchObject({ retried: 2, deadLettered: 1 });
  });

  it('without a dead-letter queue the dead-letter event says failed', async () => {
    const r = router({ name: 'ev-failed', maxRetries: 0, clock: new FakeClock() });
    r.addConnection({ broadcastIndex: 0, parallelIndex: 0, targetName: 'full-0', targetHandle: fullQueue() });
    const events = record(r);
    await r.route(new Packet(1));
    expect(events.retry).toEqual([]);
    expect(events.deadLetter).toMatchObject([{ status: 'failed', fault: 'target', attempts: 1, target: 'full-0' }]);
  });

  it('an item fault (the codec cannot encode the payload): dead-letter event with fault item, no retry, no eject', async () => {
    const dlq = new LocalQueue();
    const r = router({ name: 'ev-item', maxRetries: 3, deadLetterQueue: dlq, ejectAfterFailures: 1, clock: new FakeClock() });
    const q = track(SageQueue.create(queueName('json'), { capacity: 1 << 16, codec: 'json' }));
    r.addConnection({ broadcastIndex: 0, parallelIndex: 0, targetName: 'json-0', targetHandle: q });
    const events = record(r);
    const report = await r.route(new Packet({ big: 1n }));
    expect(report.deliveries[0]).toMatchObject({ status: 'dead_lettered', fault: 'item' });
    expect(events.retry).toEqual([]);
    expect(events.eject).toEqual([]);
    expect(events.deadLetter).toMatchObject([{ router: 'ev-item', status: 'dead_lettered', fault: 'item', attempts: 1, target: 'json-0' }]);
  });

  it('a target that keeps failing is ejected (eject event), and recovers once a probe gets through (recover event)', async () => {
    const clock = new FakeClock();
    const r = router({ name: 'ev-eject', strategy: 'round_robin', maxRetries: 1, ejectAfterFailures: 2, ejectBaseMs: 1000, clock, deadLetterQueue: new LocalQueue() });
    const bad = fullQueue();
    const good = track(SageQueue.create(queueName('good'), { capacity: 1 << 16 }));
    r.addConnection({ broadcastIndex: 0, parallelIndex: 0, targetName: 'bad', targetHandle: bad });
    r.addConnection({ broadcastIndex: 0, parallelIndex: 1, targetName: 'good', targetHandle: good });
    const events = record(r);
    for (let i = 0; i < 6 && events.eject.length === 0; i++) expect((await r.route(new Packet(i))).ok).toBe(true);
    expect(events.eject).toEqual([
      { router: 'ev-eject', target: 'bad', broadcastIndex: 0, parallelIndex: 0, timesEjected: 1, ejectedForMs: 1000, reason: expect.stringMatching(/ERR_QUEUE_FULL/) },
    ]);
    expect(events.retry.every((e) => e.target === 'bad')).toBe(true);
    expect(events.recover).toEqual([]);
    // ejected: every packet goes to good, nothing tries bad
    const retriesBefore = events.retry.length;
    for (let i = 0; i < 4; i++) await r.route(new Packet(i));
    expect(events.retry).toHaveLength(retriesBefore);
    // bad drains; after the ejection time a probe gets through
    bad.get();
    clock.advance(1001);
    for (let i = 0; i < 4 && events.recover.length === 0; i++) await r.route(new Packet(i));
    expect(events.recover).toEqual([{ router: 'ev-eject', target: 'bad', broadcastIndex: 0, parallelIndex: 0, timesEjected: 1 }]);
    expect(r.stats().connections[0]?.health.state).toBe('healthy');
    expect(events.deadLetter).toEqual([]);
  });

  it('route events carry each route() latency; none are built while nobody listens', async () => {
    let t = 0;
    const clock = { now: () => t, sleep: async () => undefined };
    const r = router({ name: 'ev-route', clock });
    const q = new LocalQueue();
    r.addConnection({ broadcastIndex: 0, parallelIndex: 0, targetName: 'local', targetHandle: {
      putAsync: async (item: unknown) => {
        t += 0.25; // each put takes 250 µs of router clock
        await q.putAsync(item);
      },
      getAsync: (o?: object) => q.getAsync(o),
      close: () => q.close(),
      [Symbol.asyncIterator]: () => q[Symbol.asyncIterator](),
    } as unknown as LocalQueue });
    await r.route(new Packet('unobserved'));
    const seen: RouteEvent[] = [];
    const listener = (e: RouteEvent): void => void seen.push(e);
    r.on('route', listener);
    const p = new Packet('observed');
    await r.route(p);
    r.off('route', listener);
    await r.route(new Packet('unobserved again'));
    expect(seen).toEqual([{ router: 'ev-route', traceId: p.traceId, strategy: 'round_robin', latencyMs: 0.25, ok: true, copies: 1 }]);
  });
});
