/**
 * SageQueue between real processes: forked children (test/fixtures/agent.cjs) attach to the same
 * /dev/shm segment as this test process and report what they saw over IPC.
 */
import { describe, expect, it } from 'vitest';
import { SageQueue } from '../../lib/index';
import { auditDeliveries, pairs, range } from '../helpers/frames';
import type { ConsumeResult, SizeSpec } from '../helpers/frames';
import { ChildRequestError, nowMs, queueName, spawnAgent, spawnAgents, track, until, useCleanup } from '../helpers/harness';
import type { PutResult, WaitGetResult } from '../helpers/harness';

useCleanup();

describe('SageQueue across processes: delivery', () => {
  it('one producer process to one consumer process: 20 000 messages arrive exactly once, in order, intact', async () => {
    const name = queueName('p1c1');
    const q = track(SageQueue.create(name, { capacity: 1 << 16, codec: 'raw' }));
    const [producer, consumer] = await spawnAgents(['producer', 'consumer']);
    await Promise.all([producer.call('open', { how: 'open', name }), consumer.call('open', { how: 'open', name })]);

    const consuming = consumer.call<ConsumeResult>('consume', { mode: 'get' }, 60_000);
    const sizes: SizeSpec = { min: 0, max: 300, bigEvery: 500, bigMin: 4000, bigMax: 12_000 };
    const sent = await producer.call<PutResult>('putFrames', { producer: 1, count: 20_000, sizes }, 60_000);
    expect(sent.count).toBe(20_000);
    q.close(); // the consumer drains what is left, then its get fails with ERR_QUEUE_CLOSED
    const r = await consuming;

    expect(r.bad).toEqual([]);
    expect(r.endedBy).toBe('closed');
    const got = pairs(r.frames);
    expect(got.length).toBe(20_000);
    const firstWrong = got.findIndex(([p, s], i) => p !== 1 || s !== i);
    expect(firstWrong).toBe(-1);
    const st = q.stats();
    expect(st).toMatchObject({ enqueued: 20_000, dequeued: 20_000, depth: 0, abandonedClaims: 0, lostInRead: 0 });
  }, 60_000);

  it('4 producer x 4 consumer processes on a 64 KiB queue: every message exactly once, uncorrupted, each producer in order within each consumer', async () => {
    const name = queueName('p4c4');
    const q = track(SageQueue.create(name, { capacity: 1 << 16, codec: 'raw' }));
    const N = 5000;
    // Mostly small, now and then up to ~16 KB (a quarter of the ring): the ring wraps and fills.
    const sizes: SizeSpec = { min: 0, max: 1500, bigEvery: 97, bigMin: 6000, bigMax: 16_000 };
    const producerModes = ['put', 'putMany', 'putAsync', 'put'];
    const consumerModes = ['get', 'getMany', 'for-await', 'iterate'];
    const consumers = await spawnAgents(consumerModes.map((m, i) => `consumer-${i}-${m}`));
    const producers = await spawnAgents(producerModes.map((m, i) => `producer-${i}-${m}`));
    await Promise.all([...consumers, ...producers].map((c) => c.call('open', { how: 'open', name })));

    const consuming = consumers.map((c, i) => c.call<ConsumeResult>('consume', { mode: consumerModes[i], batch: 32 }, 90_000));
    const t0 = nowMs();
    const puts = await Promise.all(
      producers.map((p, i) => p.call<PutResult>('putFrames', { producer: 10 + i, count: N, sizes, mode: producerModes[i], batch: 16 }, 90_000)),
    );
    expect(puts.map((p) => p.count)).toEqual([N, N, N, N]);
    q.close();
    const results = await Promise.all(consuming);
    const elapsed = nowMs() - t0;

    const sent = new Map(producers.map((_, i) => [10 + i, range(0, N)] as [number, number[]]));
    const audit = auditDeliveries(
      results.map((r) => pairs(r.frames)),
      sent,
    );
    expect(results.flatMap((r) => r.bad)).toEqual([]);
    expect(audit).toEqual({ missing: [], duplicates: [], unexpected: [], disorder: [] });
    expect(results.map((r) => r.endedBy)).toEqual(['closed', 'closed', 'iterator-end', 'iterator-end']);
    expect(results.reduce((a, r) => a + r.count, 0)).toBe(4 * N);
    expect(q.stats()).toMatchObject({ enqueued: 4 * N, dequeued: 4 * N, depth: 0, abandonedClaims: 0, lostInRead: 0, lockRecoveries: 0 });
    console.log(`[4x4] ${4 * N} messages in ${elapsed.toFixed(0)} ms; per consumer: ${results.map((r) => r.count).join(', ')}`);
  }, 90_000);

  it('qsize() seen from another process equals what the first process put (both directions)', async () => {
    const name = queueName('qsize');
    const q = track(SageQueue.create<number>(name, { capacity: 1 << 16 }));
    const child = await spawnAgent('peer');
    await child.call('open', { how: 'open', name });

    await child.call('putValues', { values: range(0, 37) });
    expect(q.qsize()).toBe(37);
    expect(q.empty()).toBe(false);
    expect(q.stats().depth).toBe(37);

    for (let i = 0; i < 11; i++) q.put(100 + i);
    expect(await child.call('qsize')).toBe(48);
    expect(q.get()).toBe(0);
    expect(await child.call('qsize')).toBe(47);
    expect(await child.call('get', { timeoutMs: 1000 })).toBe(1);
    expect(q.qsize()).toBe(46);
  });

  it('a descriptor sent to a child as JSON (or as a dict) attaches to the same queue: child puts, parent gets, and back', async () => {
    const name = queueName('desc');
    const q = track(SageQueue.create(name, { capacity: 1 << 16, codec: 'msgpack', maxsize: 100 }));
    const text = JSON.stringify(q.descriptor);
    const [viaJson, viaDict] = await spawnAgents(['descriptor-json', 'descriptor-dict']);

    const info = await viaJson.call('open', { how: 'descriptor-json', descriptor: text });
    expect(info).toMatchObject({ name, codec: 'msgpack', capacity: 1 << 16 });
    await viaJson.call('putValues', { values: [{ k: 'a', n: [1, 2, 3] }, 'text', 42] });
    expect(q.get(true, 5000)).toEqual({ k: 'a', n: [1, 2, 3] });
    expect(q.get(true, 5000)).toBe('text');
    expect(q.get(true, 5000)).toBe(42);

    await viaDict.call('open', { how: 'descriptor-dict', descriptor: JSON.parse(text) as unknown });
    await viaDict.call('putValues', { values: ['from the dict form'] });
    expect(q.get(true, 5000)).toBe('from the dict form');

    const pids = q.stats().processes.map((p) => p.pid);
    expect(pids).toEqual(expect.arrayContaining([process.pid, viaJson.pid, viaDict.pid]));

    q.put({ back: true });
    expect(await viaJson.call('get', { timeoutMs: 5000 })).toEqual({ back: true });
  });

  it('the codec recorded in the segment is used by an opener that names none; a mismatching codec is refused with ERR_CODEC_MISMATCH', async () => {
    const name = queueName('codec');
    const q = track(SageQueue.create(name, { capacity: 1 << 16, codec: 'json' }));
    const child = await spawnAgent('opener');

    const info = await child.call('open', { how: 'open', name });
    expect(info).toMatchObject({ codec: 'json' });
    // JSON turns a Date into its ISO string (v8 or msgpack would keep a Date): proof the child
    // encoded with the segment's codec.
    await child.call('putValues', { values: [{ when: new Date(0), n: 1 }] });
    expect(q.get(true, 5000)).toEqual({ when: '1970-01-01T00:00:00.000Z', n: 1 });

    const attachedBefore = q.stats().processes.length;
    for (const attempt of [
      { how: 'open', name, options: { codec: 'v8' } },
      { how: 'new', name, options: { codec: 'msgpack' } },
      { how: 'new', name, options: { codec: 'raw', capacity: 4096 } },
    ]) {
      const err = await child.call('open', attempt).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ChildRequestError);
      expect((err as ChildRequestError).code).toBe('ERR_CODEC_MISMATCH');
    }
    // A refused open leaves no handle attached behind it.
    expect(q.stats().processes.length).toBe(attachedBefore);
    // And the refusal changed nothing: the queue still works with its codec.
    await child.call('putValues', { values: [[1, 'two']] });
    expect(q.get(true, 5000)).toEqual([1, 'two']);
  });
});

describe('SageQueue across processes: close wakes waiters elsewhere', () => {
  it.each([
    ['a synchronous get(true)', false],
    ['a pending getAsync()', true],
  ])('close() in one process wakes %s blocked in another process within 100 ms', async (_label, async) => {
    const name = queueName('closewake');
    const q = track(SageQueue.create(name, { capacity: 1 << 16 }));
    const child = await spawnAgent('waiter');
    await child.call('open', { how: 'open', name });

    const waiting = child.request<WaitGetResult>('waitGet', { async });
    await child.waitEvent('blocking');
    // Only close once the child is really asleep in the wait (its slot counts a waiter).
    await until(() => q.stats().processes.find((p) => p.pid === child.pid && p.waiting > 0), 'the child to sleep in its wait');

    const tClose = nowMs();
    q.close();
    const r = await Promise.race([
      waiting,
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the waiter did not wake within 5 s')), 5000)),
    ]);
    const latency = r.t - tClose;
    console.log(`[close->wake] ${async ? 'getAsync' : 'get(true)'}: ${latency.toFixed(2)} ms`);
    expect(r.error?.code).toBe('ERR_QUEUE_CLOSED');
    expect(latency).toBeGreaterThanOrEqual(0);
    expect(latency).toBeLessThan(100);
  });
});
