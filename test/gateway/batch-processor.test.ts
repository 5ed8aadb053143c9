/**
 * BatchProcessor / MessageDispatcher: a batch is flushed at batchSize (100), timeoutMs (10 ms)
 * after its first item, or on close; at most maxBatches are in flight; a failed batch is retried
 * after retryDelayMs up to maxRetries and then dead-lettered; add() waits when maxPending items
 * are buffered; stats in the design's shape.
 */
import { describe, expect, it } from 'vitest';

import { BatchProcessor, MessageDispatcher } from '../../lib/index';
import type { FlushReason } from '../../lib/index';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('BatchProcessor', () => {
  it('flushes a full batch of 100 at once, the rest 10 ms after its first item, and what is left on close', async () => {
    const batches: Array<{ n: number; reason: FlushReason; at: number }> = [];
    const t0 = performance.now();
    const p = new BatchProcessor<number>({ process: (b, info) => void batches.push({ n: b.length, reason: info.reason, at: performance.now() - t0 }) });
    for (let i = 0; i < 250; i++) p.addNow(i);
    expect(batches.map((b) => [b.n, b.reason])).toEqual([[100, 'size'], [100, 'size']]);
    await sleep(40);
    expect(batches.map((b) => [b.n, b.reason])).toEqual([[100, 'size'], [100, 'size'], [50, 'timeout']]);
    expect(batches[2]?.at).toBeGreaterThanOrEqual(9);
    p.addNow(1);
    p.addNow(2);
    await p.close();
    expect(batches.at(-1)).toMatchObject({ n: 2, reason: 'close' });
    expect(() => p.addNow(3)).toThrow(expect.objectContaining({ code: 'ERR_QUEUE_CLOSED' }));
    const s = p.stats();
    expect(s).toMatchObject({ total_dispatched: 4, successful_dispatches: 4, failed_dispatches: 0, success_rate: 1, messages_dispatched: 252 });
    expect(s.flushes).toEqual({ size: 2, timeout: 1, flush: 0, close: 1 });
    expect(typeof s.avg_latency_ms).toBe('number');
  });

  it('keeps at most maxBatches batches in flight', async () => {
    let inFlight = 0;
    let most = 0;
    const p = new BatchProcessor<number>({
      batchSize: 1,
      maxBatches: 3,
      process: async () => {
        inFlight++;
        most = Math.max(most, inFlight);
        await sleep(5);
        inFlight--;
      },
    });
    for (let i = 0; i < 20; i++) p.addNow(i);
    await p.close();
    expect(most).toBe(3);
    expect(p.stats().successful_dispatches).toBe(20);
  });

  it('retries a failed batch after retryDelayMs up to maxRetries, then dead-letters it', async () => {
    const attempts: number[] = [];
    const dead: Array<{ batch: number[]; attempts: number }> = [];
    const p = new BatchProcessor<number>({
      retryDelayMs: 10,
      maxRetries: 2,
      process: (_b, info) => {
        attempts.push(info.attempt);
        throw new Error('down');
      },
      onDeadLetter: (batch, _e, n) => dead.push({ batch, attempts: n }),
    });
    p.addNow(1);
    p.flush();
    await p.close();
    expect(attempts).toEqual([1, 2, 3]);
    expect(dead).toEqual([{ batch: [1], attempts: 3 }]);
    expect(p.stats()).toMatchObject({ total_dispatched: 3, successful_dispatches: 0, failed_dispatches: 3, success_rate: 0, retries: 2, messages_dead_lettered: 1 });
  });

  it('recovers when a retry succeeds', async () => {
    let fail = true;
    const got: number[][] = [];
    const p = new BatchProcessor<number>({ retryDelayMs: 5, process: (b) => { if (fail) { fail = false; throw new Error('once'); } got.push(b); } });
    p.addNow(7);
    await p.close();
    expect(got).toEqual([[7]]);
    expect(p.stats()).toMatchObject({ successful_dispatches: 1, failed_dispatches: 1, retries: 1, success_rate: 0.5 });
  });

  it('add() waits while maxPending items are buffered behind a stalled consumer (bounded memory)', async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const p = new BatchProcessor<number>({ batchSize: 2, maxBatches: 1, maxPending: 4, process: () => gate });
    for (let i = 0; i < 6; i++) await p.add(i); // 2 in flight + 4 pending
    let added = false;
    const blocked = p.add(99).then(() => (added = true));
    await sleep(20);
    expect(added).toBe(false);
    expect(p.pending).toBe(4);
    release();
    await blocked;
    await p.close();
    expect(p.stats().messages_dispatched).toBe(7);
  });

  it('an urgent item cuts its batch at once', () => {
    const got: number[][] = [];
    const p = new BatchProcessor<number>({ process: (b) => void got.push(b) });
    p.addNow(1);
    p.addNow(2, true);
    expect(got).toEqual([[1, 2]]);
    void p.close();
  });

  it('validates its options', () => {
    expect(() => new BatchProcessor({} as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => new BatchProcessor({ process: () => undefined, batchSize: 0 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => new MessageDispatcher({ process: () => undefined, maxBatches: -1 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
  });
});

describe('MessageDispatcher', () => {
  it('batches per destination and totals the stats', async () => {
    const got: string[] = [];
    const d = new MessageDispatcher<number>({ process: (dest, b) => void got.push(`${dest}:${b.join(',')}`) });
    await d.dispatch('a', 1);
    await d.dispatch('b', 2);
    await d.dispatch('a', 3);
    await d.close();
    expect(got.sort()).toEqual(['a:1,3', 'b:2']);
    const s = d.stats();
    expect(s).toMatchObject({ total_dispatched: 2, successful_dispatches: 2, messages_dispatched: 3 });
    expect(Object.keys(s.destinations).sort()).toEqual(['a', 'b']);
  });
});
