/**
 * Cross-process priority lanes (one SageQueue per level), with real child processes: a
 * CRITICAL message put after a LOW backlog is delivered first to a consumer in another process;
 * a consumer waiting on all four lanes at once wakes for whichever lane gets a message; under a
 * steady CRITICAL stream, aging delivers LOW within its bound; and with two producers racing
 * into every lane while a consumer keeps waiting, every message is delivered exactly once
 * (messages taken by a losing wait are kept, never dropped).
 */
import { afterEach, describe, expect, it } from 'vitest';

import { MessagePriority, PriorityMessageQueue } from '../../lib/index';
import { Child, queueName, sleep, useCleanup } from '../helpers/harness';

useCleanup();
const created: PriorityMessageQueue[] = [];
afterEach(() => {
  for (const q of created.splice(0)) q.destroy();
});

function lanes<T>(tag: string, capacity = 100_000): PriorityMessageQueue<T> {
  const q = PriorityMessageQueue.create<T>(queueName(tag), { capacity, backpressure: false, lane: { capacity: 8 << 20 } });
  created.push(q as PriorityMessageQueue);
  return q;
}

async function consumer(q: PriorityMessageQueue, agingAfter?: number): Promise<Child> {
  const c = new Child('priority-lanes.cjs', { label: 'lanes consumer' });
  await c.call('attach', { descriptor: q.descriptor, agingAfter });
  return c;
}

describe('cross-process priority lanes', () => {
  it('delivers a CRITICAL message put after a backlog of 2000 LOW messages first, to a consumer in another process', async () => {
    const q = lanes<string>('crit');
    await q.enqueueMany(Array.from({ length: 2000 }, (_, i) => ({ message: `low-${i}`, priority: MessagePriority.LOW })));
    await q.enqueue('critical', MessagePriority.CRITICAL);
    await q.enqueue('high', MessagePriority.HIGH);
    const c = await consumer(q);
    const got = await c.call<string[]>('take', { count: 2002, batchSize: 100, timeoutMs: 2000 });
    expect(got.slice(0, 3)).toEqual(['critical', 'high', 'low-0']);
    expect(got.slice(2)).toEqual(Array.from({ length: 2000 }, (_, i) => `low-${i}`));
  });

  it('a consumer waiting on all empty lanes wakes for a message on any lane (here LOW, then CRITICAL)', async () => {
    const q = lanes<string>('wait');
    const c = await consumer(q);
    const first = c.call<string[]>('take', { count: 1, batchSize: 10, timeoutMs: 10_000 });
    await sleep(100);
    await q.enqueue('low', MessagePriority.LOW);
    expect(await first).toEqual(['low']);
    const second = c.call<string[]>('take', { count: 1, batchSize: 10, timeoutMs: 10_000 });
    await sleep(100);
    await q.enqueue('crit', MessagePriority.CRITICAL);
    expect(await second).toEqual(['crit']);
  });

  it('ages: with agingAfter 16 and more CRITICAL messages than the consumer takes, the LOW message comes within 16 + 3 messages', async () => {
    const q = lanes<string>('aging');
    await q.enqueue('low', MessagePriority.LOW);
    await q.enqueueMany(Array.from({ length: 500 }, (_, i) => ({ message: `c-${i}`, priority: MessagePriority.CRITICAL })));
    const c = await consumer(q, 16);
    const got = await c.call<string[]>('take', { count: 100, batchSize: 7, timeoutMs: 2000 });
    const at = got.indexOf('low');
    expect(at).toBeGreaterThanOrEqual(0);
    expect(at).toBeLessThanOrEqual(16 + 3);
  });

  it('loses nothing and duplicates nothing when two producer processes race into all four lanes while the consumer keeps waiting', async () => {
    const q = lanes<{ p: number; i: number }>('race');
    const producers = await Promise.all([0, 1].map(async () => {
      const c = new Child('priority-lanes.cjs', { label: 'lanes producer' });
      await c.call('attach', { descriptor: q.descriptor });
      return c;
    }));
    const N = 2000;
    const sends = producers.map(async (p, pi) => {
      for (let i = 0; i < N; i += 50) {
        const entries = Array.from({ length: 50 }, (_, k) => ({ message: { p: pi, i: i + k }, priority: (i + k) % 4 }));
        await p.call('enqueue', { entries });
        if (i % 200 === 0) await sleep(1); // let the consumer drain to empty and wait again
      }
    });
    const seen = new Set<string>();
    let dup = 0;
    const deadline = Date.now() + 20_000;
    while (seen.size < 2 * N && Date.now() < deadline) {
      const batch = await q.dequeueBatch({ batchSize: 64, timeoutMs: 500 });
      for (const m of batch) {
        const key = `${m.p}:${m.i}`;
        if (seen.has(key)) dup++;
        seen.add(key);
      }
    }
    await Promise.all(sends);
    expect(dup).toBe(0);
    expect(seen.size).toBe(2 * N);
    expect(q.size).toBe(0);
  });

  it('dequeueBatchSync: a consumer blocked on all empty lanes in another process wakes for a LOW message, then serves CRITICAL before a LOW backlog', async () => {
    const q = lanes<string>('sync');
    const c = await consumer(q);
    const first = c.call<string[]>('takeSync', { count: 1, batchSize: 10, timeoutMs: 10_000 });
    await sleep(100);
    await q.enqueue('low', MessagePriority.LOW);
    expect(await first).toEqual(['low']);
    await q.enqueueMany(Array.from({ length: 500 }, (_, i) => ({ message: `low-${i}`, priority: MessagePriority.LOW })));
    await q.enqueue('critical', MessagePriority.CRITICAL);
    const all = await c.call<string[]>('takeSync', { count: 501, batchSize: 64, timeoutMs: 2000 });
    expect(all[0]).toBe('critical');
    expect(all.slice(1)).toEqual(Array.from({ length: 500 }, (_, i) => `low-${i}`));
    // nothing left: a timed wait returns [] once its time is up
    expect(await c.call<string[]>('takeSync', { count: 1, batchSize: 1, timeoutMs: 50 })).toEqual([]);
  });

  it('dequeueBatchSync: a signal this process listens for interrupts the wait with ERR_INTERRUPTED and its listener runs next', async () => {
    const q = lanes<string>('sync-signal');
    const c = await consumer(q);
    const result = c.call<{ code: string; name: string; listenerRan: boolean; elapsedMs: number }>('takeSyncWithListener', { signal: 'SIGUSR2', timeoutMs: 20_000 });
    await sleep(300);
    process.kill(c.pid, 'SIGUSR2');
    const r = await result;
    expect(r).toMatchObject({ code: 'ERR_INTERRUPTED', name: 'InterruptedError', listenerRan: true });
    expect(r.elapsedMs).toBeLessThan(15_000); // interrupted, not timed out
  });

  it('dequeueBatchSync: once the lanes are closed it returns what is left, then throws QueueClosedError', async () => {
    const q = lanes<string>('sync-close');
    await q.enqueue('last', MessagePriority.NORMAL);
    q.close();
    const other = PriorityMessageQueue.attach<string>(q.descriptor as NonNullable<typeof q.descriptor>, { backpressure: false });
    try {
      expect(other.dequeueBatchSync({ timeoutMs: 1000 })).toEqual(['last']);
      expect(() => other.dequeueBatchSync({ timeoutMs: 1000 })).toThrow(expect.objectContaining({ code: 'ERR_QUEUE_CLOSED' }));
    } finally {
      other.release();
    }
  });
});
