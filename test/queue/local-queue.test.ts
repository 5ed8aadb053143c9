import { getEventListeners } from 'node:events';
import { performance } from 'node:perf_hooks';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { LocalQueue } from '../../lib/queue/local-queue';
import {
  ArgumentRangeError,
  InvalidArgumentTypeError,
  QueueClosedError,
  QueueEmptyError,
  QueueFullError,
  WouldDeadlockError,
} from '../../lib/errors';
import { isAsyncQueueLike } from '../../lib/queue/queue-like';
import { rejected, thrown } from '../support/expect-errors';

/** Number of live Node timers (setTimeout handles) in this process. */
function activeTimers(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
}

/** Lets pending promise callbacks and a macrotask run. */
const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('LocalQueue basics', () => {
  it('returns items in FIFO order', () => {
    const q = new LocalQueue<number>();
    for (let i = 0; i < 5; i++) q.put(i);
    expect([q.get(), q.get(), q.get(), q.get(), q.get()]).toEqual([0, 1, 2, 3, 4]);
  });

  it('keeps FIFO order across the internal compaction of many items', () => {
    const q = new LocalQueue<number>();
    for (let i = 0; i < 5000; i++) q.put(i);
    for (let i = 0; i < 3000; i++) expect(q.get()).toBe(i);
    for (let i = 5000; i < 6000; i++) q.put(i);
    for (let i = 3000; i < 6000; i++) expect(q.get()).toBe(i);
    expect(q.empty()).toBe(true);
  });

  it('stores undefined and null items like any other', () => {
    const q = new LocalQueue<unknown>();
    q.put(undefined);
    q.put(null);
    expect(q.qsize()).toBe(2);
    expect(q.get()).toBeUndefined();
    expect(q.get()).toBeNull();
  });

  it('reports qsize, empty, full and bufferLoad from the real contents', () => {
    const q = new LocalQueue<string>({ maxsize: 2 });
    expect([q.qsize(), q.empty(), q.full(), q.bufferLoad()]).toEqual([0, true, false, 0]);
    q.put('a');
    expect([q.qsize(), q.empty(), q.full(), q.bufferLoad()]).toEqual([1, false, false, 0.5]);
    q.put('b');
    expect([q.qsize(), q.empty(), q.full(), q.bufferLoad()]).toEqual([2, false, true, 1]);
  });

  it('is unbounded with maxsize 0 (the default): never full, bufferLoad 0', () => {
    const q = new LocalQueue<number>();
    expect(q.maxsize).toBe(0);
    for (let i = 0; i < 10_000; i++) q.putNowait(i);
    expect(q.full()).toBe(false);
    expect(q.bufferLoad()).toBe(0);
  });

  it('exposes maxsize and closed getters', () => {
    const q = new LocalQueue({ maxsize: 7 });
    expect(q.maxsize).toBe(7);
    expect(q.closed).toBe(false);
    q.close();
    expect(q.closed).toBe(true);
  });

  it('implements AsyncQueueLike', () => {
    expect(isAsyncQueueLike(new LocalQueue())).toBe(true);
  });
});

describe('LocalQueue non-blocking and fail-fast sync calls', () => {
  it('getNowait on an empty queue throws QueueEmptyError (timedOut false)', () => {
    const e = thrown(() => new LocalQueue().getNowait(), QueueEmptyError, 'ERR_QUEUE_EMPTY');
    expect(e.timedOut).toBe(false);
    expect(e.message).toMatch(/empty/);
  });

  it('putNowait on a full queue throws QueueFullError and keeps the contents', () => {
    const q = new LocalQueue<number>({ maxsize: 1 });
    q.putNowait(1);
    const e = thrown(() => q.putNowait(2), QueueFullError, 'ERR_QUEUE_FULL');
    expect(e.timedOut).toBe(false);
    expect(q.qsize()).toBe(1);
    expect(q.getNowait()).toBe(1);
  });

  it('get(false) and put(x, false) behave like the nowait variants', () => {
    const q = new LocalQueue<number>({ maxsize: 1 });
    thrown(() => q.get(false), QueueEmptyError, 'ERR_QUEUE_EMPTY');
    q.put(1, false);
    thrown(() => q.put(2, false), QueueFullError, 'ERR_QUEUE_FULL');
  });

  it('get(true) with no timeout on an empty queue throws WouldDeadlockError pointing to getAsync', () => {
    const e = thrown(() => new LocalQueue().get(true), WouldDeadlockError, 'ERR_WOULD_DEADLOCK');
    expect(e.message).toMatch(/getAsync/);
    thrown(() => new LocalQueue().get(), WouldDeadlockError, 'ERR_WOULD_DEADLOCK');
  });

  it('get(true, ms) on an empty queue throws QueueEmptyError at once, explaining why it cannot wait', () => {
    const start = performance.now();
    const e = thrown(() => new LocalQueue().get(true, 1000), QueueEmptyError, 'ERR_QUEUE_EMPTY');
    expect(performance.now() - start).toBeLessThan(1000); // did not sit out the timeout it was given
    expect(e.timedOut).toBe(false);
    expect(e.message).toMatch(/no other code can run/);
  });

  it('put(x, true) with no timeout on a full queue throws WouldDeadlockError pointing to putAsync', () => {
    const q = new LocalQueue<number>({ maxsize: 1 });
    q.put(1);
    const e = thrown(() => q.put(2, true), WouldDeadlockError, 'ERR_WOULD_DEADLOCK');
    expect(e.message).toMatch(/putAsync/);
  });

  it('put(x, true, ms) on a full queue throws QueueFullError at once (timedOut false)', () => {
    const q = new LocalQueue<number>({ maxsize: 1 });
    q.put(1);
    const e = thrown(() => q.put(2, true, 500), QueueFullError, 'ERR_QUEUE_FULL');
    expect(e.timedOut).toBe(false);
    expect(e.message).toMatch(/no other code can run/);
  });
});

describe('LocalQueue async waits', () => {
  it('getAsync waits for the next put and receives it directly', async () => {
    const q = new LocalQueue<string>();
    const pending = q.getAsync();
    q.put('x');
    expect(q.qsize()).toBe(0); // handed over, not stored
    await expect(pending).resolves.toBe('x');
  });

  it('waiting getters are served in arrival order', async () => {
    const q = new LocalQueue<number>();
    const a = q.getAsync();
    const b = q.getAsync();
    const c = q.getAsync();
    q.put(1);
    q.put(2);
    q.put(3);
    expect(await Promise.all([a, b, c])).toEqual([1, 2, 3]);
  });

  it('getAsync timing out rejects QueueEmptyError (timedOut true) once timeoutMs has passed, not before', async () => {
    const q = new LocalQueue();
    const start = performance.now();
    const e = await rejected(q.getAsync({ timeoutMs: 150 }), QueueEmptyError, 'ERR_QUEUE_EMPTY');
    const elapsed = performance.now() - start;
    expect(elapsed).toBeGreaterThanOrEqual(145); // timers may fire a little early, never 5 ms early
    expect(elapsed).toBeLessThan(150 + 2000); // and it does not wait on indefinitely (generous: busy machines)
    expect(e.timedOut).toBe(true);
    expect(e.message).toMatch(/timed out after 150 ms/);
  });

  it('putAsync timing out rejects QueueFullError (timedOut true) once timeoutMs has passed, and does not enqueue', async () => {
    const q = new LocalQueue<number>({ maxsize: 1 });
    q.put(1);
    const start = performance.now();
    const e = await rejected(q.putAsync(2, { timeoutMs: 120 }), QueueFullError, 'ERR_QUEUE_FULL');
    const elapsed = performance.now() - start;
    expect(elapsed).toBeGreaterThanOrEqual(115);
    expect(elapsed).toBeLessThan(120 + 2000);
    expect(e.timedOut).toBe(true);
    expect(e.message).toMatch(/timed out after 120 ms/);
    expect(q.get()).toBe(1);
    expect(q.empty()).toBe(true);
  });

  it('a timed-out getter leaves no waiter behind: the next item goes to the next getAsync', async () => {
    const q = new LocalQueue<number>();
    await rejected(q.getAsync({ timeoutMs: 10 }), QueueEmptyError, 'ERR_QUEUE_EMPTY');
    q.put(42);
    expect(q.qsize()).toBe(1);
    await expect(q.getAsync()).resolves.toBe(42);
  });

  it('a wait that succeeds clears its timer', async () => {
    const q = new LocalQueue<number>();
    const before = activeTimers();
    const pending = q.getAsync({ timeoutMs: 60_000 });
    expect(activeTimers()).toBe(before + 1);
    q.put(1);
    await pending;
    expect(activeTimers()).toBe(before);
  });

  it('accepts timeouts beyond the 32-bit setTimeout limit without firing early', async () => {
    const q = new LocalQueue<number>();
    const pending = q.getAsync({ timeoutMs: 2 ** 31 + 1000 });
    await tick();
    q.put(5);
    await expect(pending).resolves.toBe(5);
  });

  it('putAsync waits while full and resumes when a get frees space', async () => {
    const q = new LocalQueue<number>({ maxsize: 1 });
    await q.putAsync(1);
    let done = false;
    const pending = q.putAsync(2).then(() => {
      done = true;
    });
    await tick();
    expect(done).toBe(false);
    expect(q.get()).toBe(1);
    await pending;
    expect(done).toBe(true);
    expect(q.get()).toBe(2);
  });

  it('waiting putters enter the queue in arrival order', async () => {
    const q = new LocalQueue<number>({ maxsize: 2 });
    q.put(0);
    q.put(1);
    const putters = [2, 3, 4, 5].map((n) => q.putAsync(n));
    const got: number[] = [];
    for (let i = 0; i < 6; i++) got.push(await q.getAsync());
    await Promise.all(putters);
    expect(got).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('a putNowait right after a get does not overtake a waiting putAsync', async () => {
    const q = new LocalQueue<string>({ maxsize: 1 });
    q.put('a');
    const waiting = q.putAsync('b');
    expect(q.get()).toBe('a'); // the freed slot goes to the waiting putter at once
    thrown(() => q.putNowait('c'), QueueFullError, 'ERR_QUEUE_FULL');
    await waiting;
    expect(q.get()).toBe('b');
  });
});

describe('LocalQueue abort', () => {
  it('an aborted getAsync rejects with signal.reason', async () => {
    const q = new LocalQueue();
    const ac = new AbortController();
    const reason = new Error('stop waiting');
    const pending = q.getAsync({ signal: ac.signal });
    ac.abort(reason);
    await expect(pending).rejects.toBe(reason);
  });

  it('an already-aborted signal rejects with its reason at once, even when an item is ready', async () => {
    const q = new LocalQueue<number>();
    q.put(1);
    const reason = new Error('already');
    await expect(q.getAsync({ signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
    await expect(q.putAsync(2, { signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
    expect(q.qsize()).toBe(1);
  });

  it('an aborted getAsync does not swallow a later item: the next getAsync receives it', async () => {
    const q = new LocalQueue<number>();
    const ac = new AbortController();
    const aborted = q.getAsync({ signal: ac.signal });
    ac.abort();
    await expect(aborted).rejects.toMatchObject({ name: 'AbortError' });
    q.put(7);
    await expect(q.getAsync()).resolves.toBe(7);
  });

  it('an aborted putAsync does not enqueue its item later', async () => {
    const q = new LocalQueue<number>({ maxsize: 1 });
    q.put(1);
    const ac = new AbortController();
    const aborted = q.putAsync(2, { signal: ac.signal });
    ac.abort(new Error('no'));
    await expect(aborted).rejects.toThrow('no');
    expect(q.get()).toBe(1);
    expect(q.empty()).toBe(true);
  });

  it('an aborted wait clears its timer and removes its abort listener', async () => {
    const q = new LocalQueue();
    const ac = new AbortController();
    const before = activeTimers();
    const pending = q.getAsync({ timeoutMs: 60_000, signal: ac.signal });
    expect(activeTimers()).toBe(before + 1);
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(1);
    ac.abort();
    await pending.catch(() => undefined);
    expect(activeTimers()).toBe(before);
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
  });

  it('a wait that times out removes its abort listener', async () => {
    const q = new LocalQueue();
    const ac = new AbortController();
    await rejected(q.getAsync({ timeoutMs: 5, signal: ac.signal }), QueueEmptyError, 'ERR_QUEUE_EMPTY');
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
  });

  it('an AbortSignal.timeout rejects with its TimeoutError reason', async () => {
    const q = new LocalQueue();
    await expect(q.getAsync({ signal: AbortSignal.timeout(10) })).rejects.toMatchObject({ name: 'TimeoutError' });
  });
});

describe('LocalQueue close', () => {
  it('put, putNowait and putAsync fail with QueueClosedError after close', async () => {
    const q = new LocalQueue<number>();
    q.close();
    thrown(() => q.put(1), QueueClosedError, 'ERR_QUEUE_CLOSED');
    thrown(() => q.putNowait(1), QueueClosedError, 'ERR_QUEUE_CLOSED');
    await rejected(q.putAsync(1), QueueClosedError, 'ERR_QUEUE_CLOSED');
  });

  it('get still returns what is left, then throws QueueClosedError (also for get(false) and getAsync)', async () => {
    const q = new LocalQueue<number>();
    q.put(1);
    q.put(2);
    q.put(3);
    q.close();
    expect(q.get()).toBe(1);
    expect(q.getNowait()).toBe(2);
    await expect(q.getAsync()).resolves.toBe(3);
    thrown(() => q.get(), QueueClosedError, 'ERR_QUEUE_CLOSED');
    thrown(() => q.get(false), QueueClosedError, 'ERR_QUEUE_CLOSED');
    await rejected(q.getAsync({ timeoutMs: 1000 }), QueueClosedError, 'ERR_QUEUE_CLOSED');
  });

  it('pending getters reject QueueClosedError promptly on close and leave no timers', async () => {
    const q = new LocalQueue();
    const before = activeTimers();
    const getters = [q.getAsync(), q.getAsync({ timeoutMs: 60_000 })];
    const start = performance.now();
    q.close();
    for (const g of getters) await rejected(g, QueueClosedError, 'ERR_QUEUE_CLOSED');
    expect(performance.now() - start).toBeLessThan(60_000); // settled by close, not by the 60 s timeout
    expect(activeTimers()).toBe(before);
  });

  it('pending putters reject QueueClosedError on close and their items are not enqueued', async () => {
    const q = new LocalQueue<number>({ maxsize: 1 });
    q.put(1);
    const putters = [q.putAsync(2), q.putAsync(3, { timeoutMs: 60_000 })];
    q.close();
    for (const p of putters) await rejected(p, QueueClosedError, 'ERR_QUEUE_CLOSED');
    expect(q.get()).toBe(1);
    thrown(() => q.get(), QueueClosedError, 'ERR_QUEUE_CLOSED');
  });

  it('close is idempotent', () => {
    const q = new LocalQueue();
    q.close();
    expect(() => q.close()).not.toThrow();
    expect(q.closed).toBe(true);
  });

  it('Symbol.dispose closes the queue', () => {
    const q = new LocalQueue();
    q[Symbol.dispose]();
    expect(q.closed).toBe(true);
  });

  it('for await yields every item and ends once the queue is closed and drained', async () => {
    const q = new LocalQueue<number>();
    q.put(1);
    q.put(2);
    const seen: number[] = [];
    const consumer = (async () => {
      for await (const item of q) seen.push(item);
    })();
    await tick();
    q.put(3);
    q.close();
    await consumer;
    expect(seen).toEqual([1, 2, 3]);
  });
});

describe('LocalQueue argument validation', () => {
  it('rejects bad constructor options with typed errors and codes', () => {
    thrown(() => new LocalQueue({ maxsize: -1 }), ArgumentRangeError, 'ERR_OUT_OF_RANGE');
    thrown(() => new LocalQueue({ maxsize: 1.5 }), ArgumentRangeError, 'ERR_OUT_OF_RANGE');
    thrown(() => new LocalQueue({ maxsize: '3' as unknown as number }), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => new LocalQueue({ maxSize: 3 } as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => new LocalQueue(5 as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
  });

  it('rejects a non-boolean block', () => {
    const q = new LocalQueue<number>();
    thrown(() => q.put(1, 'yes' as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => q.get(1 as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    expect(q.empty()).toBe(true);
  });

  it('rejects negative, NaN and infinite sync timeouts with RangeError, non-numbers with TypeError', () => {
    const q = new LocalQueue<number>();
    q.put(1);
    for (const bad of [-1, Number.NaN, Number.POSITIVE_INFINITY]) {
      const e = thrown(() => q.get(true, bad), ArgumentRangeError, 'ERR_OUT_OF_RANGE');
      expect(e).toBeInstanceOf(RangeError);
      thrown(() => q.put(2, true, bad), ArgumentRangeError, 'ERR_OUT_OF_RANGE');
    }
    thrown(() => q.get(true, '10' as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    expect(q.qsize()).toBe(1); // nothing was taken or added by the rejected calls
  });

  it('rejects bad async options with typed errors and codes', async () => {
    const q = new LocalQueue<number>();
    await rejected(q.getAsync({ timeoutMs: -5 }), ArgumentRangeError, 'ERR_OUT_OF_RANGE');
    await rejected(q.getAsync({ timeoutMs: Number.NaN }), ArgumentRangeError, 'ERR_OUT_OF_RANGE');
    await rejected(q.putAsync(1, { timeoutMs: Number.POSITIVE_INFINITY }), ArgumentRangeError, 'ERR_OUT_OF_RANGE');
    await rejected(q.getAsync({ timeout: 10 } as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    await rejected(q.getAsync({ signal: {} } as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    await rejected(q.putAsync(1, null as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    await rejected(q.putAsync(1, 'fast' as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    expect(q.empty()).toBe(true);
  });
});

describe('LocalQueue model property', () => {
  type Op = { kind: 'put'; value: number } | { kind: 'get' } | { kind: 'putBlocking'; value: number } | { kind: 'getBlocking' };

  it('any sequence of sync puts and gets matches a model array', () => {
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ kind: fc.constant('put' as const), value: fc.integer() }),
      fc.record({ kind: fc.constant('putBlocking' as const), value: fc.integer() }),
      fc.constant({ kind: 'get' as const }),
      fc.constant({ kind: 'getBlocking' as const }),
    );
    fc.assert(
      fc.property(fc.nat({ max: 5 }), fc.array(op, { maxLength: 200 }), (maxsize, ops) => {
        const q = new LocalQueue<number>({ maxsize });
        const model: number[] = [];
        for (const o of ops) {
          const isFull = maxsize > 0 && model.length >= maxsize;
          if (o.kind === 'put' || o.kind === 'putBlocking') {
            const call = (): void => (o.kind === 'put' ? q.putNowait(o.value) : q.put(o.value, true, 0));
            if (isFull) expect(call).toThrow(QueueFullError);
            else {
              call();
              model.push(o.value);
            }
          } else {
            const call = (): number => (o.kind === 'get' ? q.getNowait() : q.get(true, 0));
            if (model.length === 0) expect(call).toThrow(QueueEmptyError);
            else expect(call()).toBe(model.shift());
          }
          expect(q.qsize()).toBe(model.length);
          expect(q.empty()).toBe(model.length === 0);
          expect(q.full()).toBe(maxsize > 0 && model.length >= maxsize);
        }
      }),
    );
  });
});
