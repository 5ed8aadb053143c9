/**
 * The one interface every queue type speaks. Timeouts are in **milliseconds** (the SAGE Python
 * original used seconds). `undefined` means wait forever; negative or non-finite is a RangeError.
 */

/** Options of the async calls. */
export interface AsyncWaitOptions {
  /** Give up after this many milliseconds (rejects with QueueEmptyError/QueueFullError). */
  timeoutMs?: number;
  /** Abort the wait; the promise rejects with `signal.reason`, like Node's own APIs. */
  signal?: AbortSignal;
}

/** Synchronous queue operations (in-process and shared-memory queues). */
export interface QueueLike<T> {
  /**
   * Enqueue `item`. With `block` (the default) waits while the queue is full, up to `timeoutMs`.
   * Throws QueueFullError (not blocking, or timed out), QueueClosedError, MessageTooLargeError,
   * SerializationError.
   */
  put(item: T, block?: boolean, timeoutMs?: number): void;
  /**
   * Dequeue one item. With `block` (the default) waits while the queue is empty, up to
   * `timeoutMs`. Throws QueueEmptyError (not blocking, or timed out) or QueueClosedError once
   * the queue is closed and drained.
   */
  get(block?: boolean, timeoutMs?: number): T;
  /** `put(item, false)`. */
  putNowait(item: T): void;
  /** `get(false)`. */
  getNowait(): T;
  /** True when no message is waiting. */
  empty(): boolean;
  /** True when a put would have to wait. */
  full(): boolean;
  /** Number of messages in the queue. */
  qsize(): number;
  /** Close the queue: puts fail, gets drain what is left, every waiter settles. Idempotent. */
  close(): void;
}

/** Asynchronous queue operations: every queue type implements these; the router speaks only them. */
export interface AsyncQueueLike<T> extends AsyncIterable<T> {
  /** Enqueue `item`, waiting (without blocking the event loop) while the queue is full. */
  putAsync(item: T, options?: AsyncWaitOptions): Promise<void>;
  /** Dequeue one item, waiting (without blocking the event loop) while the queue is empty. */
  getAsync(options?: AsyncWaitOptions): Promise<T>;
  /** Yields items until the queue is closed and drained. */
  [Symbol.asyncIterator](): AsyncIterator<T>;
  /** Close the queue (see QueueLike.close). May return a promise for remote queue types. */
  close(): void | Promise<void>;
}

/**
 * Optional load report used by the router: the fill level in [0, 1] from real queue state.
 * Queue types that can report it implement this.
 */
export interface LoadReporting {
  bufferLoad(): number;
}

/** Both interfaces: what in-process and shared-memory queues implement. */
export interface SyncAndAsyncQueue<T> extends QueueLike<T>, AsyncQueueLike<T> {
  close(): void;
}

/** Runtime check that a value implements AsyncQueueLike. */
export function isAsyncQueueLike(value: unknown): value is AsyncQueueLike<unknown> {
  if (value === null || typeof value !== 'object') return false;
  const v = value as Record<string | symbol, unknown>;
  return (
    typeof v.putAsync === 'function' &&
    typeof v.getAsync === 'function' &&
    typeof v.close === 'function' &&
    typeof v[Symbol.asyncIterator] === 'function'
  );
}
