/**
 * PriorityMessageQueue in-process: strict priority between levels, FIFO within a level, the
 * aging bound (a LOW message is served within agingAfter + 3 dequeues under constant CRITICAL
 * load), watermark backpressure (wait and reject modes; CRITICAL/HIGH never throttled), the
 * id de-duplication window, stats in the design's shape, and argument validation.
 */
import { describe, expect, it } from 'vitest';

import { BackpressureError, MessagePriority, PriorityMessageQueue, QueueClosedError, parsePriority } from '../../lib/index';

const { CRITICAL, HIGH, NORMAL, LOW } = MessagePriority;

describe('MessagePriority', () => {
  it('has CRITICAL=0 < HIGH=1 < NORMAL=2 < LOW=3 (lower is more urgent) and parses names case-insensitively', () => {
    expect([CRITICAL, HIGH, NORMAL, LOW]).toEqual([0, 1, 2, 3]);
    expect(parsePriority('critical')).toBe(0);
    expect(parsePriority('LOW')).toBe(3);
    expect(() => parsePriority(4)).toThrow(expect.objectContaining({ code: 'ERR_UNKNOWN_PRIORITY' }));
    expect(() => parsePriority('urgent')).toThrow(expect.objectContaining({ code: 'ERR_UNKNOWN_PRIORITY' }));
    expect(() => parsePriority(null)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
  });
});

describe('PriorityMessageQueue (in-process)', () => {
  it('serves levels in strict priority and each level FIFO', async () => {
    const q = new PriorityMessageQueue<string>({ backpressure: false });
    for (let i = 0; i < 3; i++) for (const p of [LOW, NORMAL, HIGH, CRITICAL]) await q.enqueue(`${p}-${i}`, p);
    expect(q.takeBatch(12)).toEqual(['0-0', '0-1', '0-2', '1-0', '1-1', '1-2', '2-0', '2-1', '2-2', '3-0', '3-1', '3-2']);
  });

  it('ages: under a constant CRITICAL load a LOW message is served within agingAfter + 3 dequeues', () => {
    const k = 8;
    const q = new PriorityMessageQueue<string>({ agingAfter: k, backpressure: false, capacity: 100_000 });
    q.tryEnqueue('low', LOW);
    q.tryEnqueue('normal', NORMAL);
    q.tryEnqueue('high', HIGH);
    let served = 0;
    let lowAt = -1;
    while (lowAt < 0 && served < 1000) {
      q.tryEnqueue(`c${served}`, CRITICAL); // one new CRITICAL for every dequeue: never empty
      q.tryEnqueue(`c${served}b`, CRITICAL);
      const [m] = q.takeBatch(1);
      served++;
      if (m === 'low') lowAt = served;
    }
    expect(lowAt).toBeGreaterThan(0);
    expect(lowAt).toBeLessThanOrEqual(k + 3);
    expect(q.stats().aged_count).toBeGreaterThanOrEqual(3);
  });

  it('ages inside one batch too: a 100-message batch under a CRITICAL backlog carries the LOW message once agingAfter CRITICALs went first', () => {
    const q = new PriorityMessageQueue<string>({ agingAfter: 10, backpressure: false });
    q.tryEnqueue('low', LOW);
    for (let i = 0; i < 200; i++) q.tryEnqueue(`c${i}`, CRITICAL);
    const batch = q.takeBatch(100);
    expect(batch.indexOf('low')).toBe(10);
  });

  it('dequeueBatch returns what is there at once, waits for the first message when empty, and [] on timeout', async () => {
    const q = new PriorityMessageQueue<number>();
    expect(await q.dequeueBatch({ timeoutMs: 20 })).toEqual([]);
    const pending = q.dequeueBatch({ batchSize: 10 });
    setTimeout(() => void q.enqueue(7, NORMAL), 5);
    expect(await pending).toEqual([7]);
    q.close();
    await expect(q.dequeueBatch()).rejects.toBeInstanceOf(QueueClosedError);
  });

  it('dequeueBatchSync in-process never waits: what is there in priority order, [] with a timeout, ERR_WOULD_DEADLOCK without one, QueueClosedError once drained', () => {
    const q = new PriorityMessageQueue<string>({ backpressure: false });
    expect(q.dequeueBatchSync({ timeoutMs: 1000 })).toEqual([]);
    expect(() => q.dequeueBatchSync()).toThrow(expect.objectContaining({ code: 'ERR_WOULD_DEADLOCK' }));
    q.tryEnqueue('low', LOW);
    q.tryEnqueue('crit', CRITICAL);
    expect(q.dequeueBatchSync()).toEqual(['crit', 'low']);
    q.tryEnqueue('a', NORMAL);
    q.tryEnqueue('b', NORMAL);
    expect(q.dequeueBatchSync({ batchSize: 1 })).toEqual(['a']);
    q.close();
    expect(q.dequeueBatchSync({ timeoutMs: 0 })).toEqual(['b']);
    expect(() => q.dequeueBatchSync({ timeoutMs: 0 })).toThrow(QueueClosedError);
    expect(() => q.dequeueBatchSync()).toThrow(QueueClosedError);
  });

  it('dequeueBatchSync validates its options with typed errors (no signal: it blocks the thread)', () => {
    const q = new PriorityMessageQueue<string>();
    q.tryEnqueue('x', NORMAL);
    expect(() => q.dequeueBatchSync({ batchSize: 0 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => q.dequeueBatchSync({ timeoutMs: -5 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => q.dequeueBatchSync({ signal: new AbortController().signal } as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => q.dequeueBatchSync('soon' as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(q.size).toBe(1); // a refused call took nothing
  });

  it('batches() ends once the queue is closed and drained', async () => {
    const q = new PriorityMessageQueue<number>();
    for (let i = 0; i < 5; i++) q.tryEnqueue(i, NORMAL);
    q.close();
    const seen: number[] = [];
    for await (const b of q.batches({ batchSize: 2 })) seen.push(...b);
    expect(seen).toEqual([0, 1, 2, 3, 4]);
  });

  it('drops a duplicate id within the window (counted) and accepts it after the window', async () => {
    let now = 1000;
    const q = new PriorityMessageQueue<string>({ dedup: { windowMs: 100, now: () => now } });
    expect(await q.enqueue('a', NORMAL, { id: 'm1' })).toBe('enqueued');
    expect(await q.enqueue('a again', NORMAL, { id: 'm1' })).toBe('duplicate');
    now += 101;
    expect(await q.enqueue('a later', NORMAL, { id: 'm1' })).toBe('enqueued');
    expect(q.takeBatch(10)).toEqual(['a', 'a later']);
    expect(q.stats().duplicate_count).toBe(1);
  });

  it('reject mode: above the high watermark NORMAL/LOW are refused with ERR_BACKPRESSURE until usage falls below the low mark; CRITICAL and HIGH pass', async () => {
    const q = new PriorityMessageQueue<number>({ capacity: 10, backpressure: { highWatermark: 0.8, lowWatermark: 0.5, mode: 'reject' } });
    for (let i = 0; i < 8; i++) await q.enqueue(i, NORMAL);
    await expect(q.enqueue(99, LOW)).rejects.toMatchObject({ code: 'ERR_BACKPRESSURE', timedOut: false });
    expect(() => q.tryEnqueue(99, NORMAL)).toThrow(BackpressureError);
    expect(await q.enqueue(100, CRITICAL)).toBe('enqueued');
    expect(await q.enqueue(101, HIGH)).toBe('enqueued');
    q.takeBatch(4); // 10 -> 6: still above the low mark (hysteresis)
    expect(q.isThrottling).toBe(true);
    q.takeBatch(2); // 4 of 10: below 0.5
    expect(q.isThrottling).toBe(false);
    expect(await q.enqueue(5, LOW)).toBe('enqueued');
    const s = q.stats();
    expect(s.rejected_count).toBe(2);
    expect(s.is_throttling).toBe(false);
  });

  it('wait mode: a throttled NORMAL enqueue waits for release, and times out with a timedOut BackpressureError', async () => {
    const q = new PriorityMessageQueue<number>({ capacity: 10, backpressure: { highWatermark: 0.5, lowWatermark: 0.2, pollMs: 1 } });
    for (let i = 0; i < 5; i++) q.tryEnqueue(i, HIGH);
    await expect(q.enqueue(1, NORMAL, { timeoutMs: 20 })).rejects.toMatchObject({ code: 'ERR_BACKPRESSURE', timedOut: true });
    const waiting = q.enqueue(2, NORMAL, { timeoutMs: 5000 });
    setTimeout(() => q.takeBatch(5), 10);
    expect(await waiting).toBe('enqueued');
  });

  it('enqueueMany: one write per level, outcomes per entry (duplicate, throttled in reject mode)', async () => {
    const q = new PriorityMessageQueue<string>({ capacity: 4, dedup: {}, backpressure: { highWatermark: 0.5, lowWatermark: 0.25, mode: 'reject' } });
    q.tryEnqueue('x', HIGH);
    q.tryEnqueue('y', HIGH);
    const out = await q.enqueueMany([
      { message: 'a', priority: CRITICAL, id: '1' },
      { message: 'b', priority: LOW, id: '2' },
      { message: 'c', priority: CRITICAL, id: '1' },
    ]);
    expect(out).toEqual(['enqueued', 'throttled', 'duplicate']);
    expect(q.stats().levels).toEqual({ CRITICAL: 1, HIGH: 2, NORMAL: 0, LOW: 0 });
  });

  it('reports stats in the design shape', () => {
    const q = new PriorityMessageQueue<number>();
    q.tryEnqueue(1, LOW);
    q.takeBatch(1);
    q.tryEnqueue(2, HIGH);
    expect(q.stats()).toEqual({
      size: 1, enqueue_count: 2, dequeue_count: 1, duplicate_count: 0, rejected_count: 0, aged_count: 0,
      levels: { CRITICAL: 0, HIGH: 1, NORMAL: 0, LOW: 0 }, usage_ratio: 1 / 10_000, is_throttling: false, capacity: 10_000, kind: 'local',
    });
  });

  it('validates its arguments with typed errors', async () => {
    expect(() => new PriorityMessageQueue({ capacity: 0 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => new PriorityMessageQueue({ backpressure: { highWatermark: 0.3, lowWatermark: 0.5 } })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => new PriorityMessageQueue({ agingAfter: 'x' } as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => new PriorityMessageQueue({ typo: 1 } as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    const q = new PriorityMessageQueue();
    await expect(q.enqueue(1, 7 as never)).rejects.toMatchObject({ code: 'ERR_UNKNOWN_PRIORITY' });
    await expect(q.enqueue(1, NORMAL, { id: 5 } as never)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    await expect(q.dequeueBatch({ batchSize: 0 })).rejects.toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
    await expect(q.dequeueBatch({ timeoutMs: -1 })).rejects.toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
  });
});
