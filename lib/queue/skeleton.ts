/**
 * The pieces every queue type's async side is made of, written once: wait-option parsing, the
 * "fast path, else wait and arm" step, and the async iterator that drains until the queue is
 * closed. LocalQueue, SageQueue and RedisQueue use these.
 */
import { QueueClosedError } from '../errors';
import { checkKnownKeys, checkOptions, checkSignal, checkTimeoutMs } from '../validate';
import type { WaiterList, WaiterOptions } from './async-waiters';
import type { AsyncWaitOptions } from './queue-like';

export interface WaitOptions {
  timeoutMs: number | undefined;
  signal: AbortSignal | undefined;
}

/** Validates AsyncWaitOptions (`timeoutMs`: finite ms >= 0; `signal`: an AbortSignal). */
export function parseWaitOptions(options: unknown): WaitOptions {
  const opts = checkOptions<AsyncWaitOptions>(options);
  checkKnownKeys(opts, ['timeoutMs', 'signal']);
  return { timeoutMs: checkTimeoutMs(opts.timeoutMs, 'options.timeoutMs'), signal: checkSignal(opts.signal, 'options.signal') };
}

export interface ArmedWaitOptions extends WaiterOptions {
  /** Asks whatever reports readiness (a native notifier, a blocking read) to tell us. */
  arm(): void;
  /** Called when the last waiter left without being served (timeout, abort, rejection). */
  disarm(): void;
}

/**
 * Queues a waiter after the fast path failed, then arms readiness reporting; when the last
 * waiter leaves without being served, disarms it again so nothing keeps running for nobody.
 */
export function waitArmed<R, P>(waiters: WaiterList<R, P>, payload: P, options: ArmedWaitOptions): Promise<R> {
  const { arm, disarm, ...wait } = options;
  const p = waiters.wait(payload, wait);
  arm();
  p.catch(() => {
    if (waiters.size === 0) disarm();
  });
  return p;
}

/**
 * Yields what `take` returns until it rejects with QueueClosedError (the queue is closed and
 * drained), which ends the iteration; any other error is thrown to the consumer.
 */
export async function* drainUntilClosed<T>(take: () => Promise<T>): AsyncGenerator<T, void, undefined> {
  for (;;) {
    let item: T;
    try {
      item = await take();
    } catch (e) {
      if (e instanceof QueueClosedError) return;
      throw e;
    }
    yield item;
  }
}
