/**
 * LocalQueue: an in-process bounded FIFO that speaks both QueueLike (sync) and AsyncQueueLike.
 *
 * Everything here runs on one JS thread, so a synchronous call can never wait for another
 * producer or consumer: blocking sync calls that cannot succeed at once fail fast (they would
 * otherwise hang forever). Waiting is done by the async calls, which hand items over directly
 * to the oldest waiter.
 */
import { WaiterList } from './async-waiters';
import { DescriptorError, QueueClosedError, QueueEmptyError, QueueFullError, WouldDeadlockError, describe } from '../errors';
import { QueueDescriptor } from './descriptor';
import type { AsyncWaitOptions, LoadReporting, SyncAndAsyncQueue } from './queue-like';
import { drainUntilClosed, parseWaitOptions } from './skeleton';
import { checkBoolean, checkInteger, checkKnownKeys, checkOptions, checkTimeoutMs } from '../validate';

export interface LocalQueueOptions {
  /** Maximum number of items; 0 (the default) means unbounded. */
  maxsize?: number;
}

/**
 * The maxsize a descriptor carries (metadata.maxsize, default 0). Any type is accepted, so the
 * class can also be registered under a type name of the application's own.
 */
function descriptorMaxsize(desc: QueueDescriptor): number {
  const maxsize = desc.metadata.maxsize ?? 0;
  if (typeof maxsize !== 'number' || !Number.isSafeInteger(maxsize) || maxsize < 0) {
    throw new DescriptorError(`metadata.maxsize of a "local" descriptor must be an integer >= 0; received ${describe(maxsize)}`);
  }
  return maxsize;
}

/** Array with a moving head: O(1) amortised shift without Array#shift's copying on big arrays. */
class Fifo<T> {
  #items: (T | undefined)[] = [];
  #head = 0;

  get size(): number {
    return this.#items.length - this.#head;
  }

  push(item: T): void {
    this.#items.push(item);
  }

  /** Caller checks size > 0 first (items may themselves be undefined). */
  shift(): T {
    const item = this.#items[this.#head] as T;
    this.#items[this.#head] = undefined; // drop the reference for the GC
    this.#head++;
    if (this.#head === this.#items.length) {
      this.#items = [];
      this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }
}

export class LocalQueue<T = unknown> implements SyncAndAsyncQueue<T>, LoadReporting, Disposable {
  readonly #maxsize: number;
  readonly #items = new Fifo<T>();
  /** Waiting getAsync calls; non-empty only while #items is empty. */
  readonly #getters = new WaiterList<T>();
  /** Waiting putAsync calls, carrying their item; non-empty only while the queue is full. */
  readonly #putters = new WaiterList<void, T>();
  #closed = false;

  /** Given a QueueDescriptor (normally of type "local"), takes maxsize from its metadata. */
  constructor(options?: LocalQueueOptions | QueueDescriptor) {
    if (options instanceof QueueDescriptor) {
      this.#maxsize = descriptorMaxsize(options);
      return;
    }
    const opts = checkOptions<LocalQueueOptions>(options);
    checkKnownKeys(opts, ['maxsize']);
    this.#maxsize = opts.maxsize === undefined ? 0 : checkInteger(opts.maxsize, 'options.maxsize', 0);
  }

  /** Maximum number of items; 0 means unbounded. */
  get maxsize(): number {
    return this.#maxsize;
  }

  /** True once close() was called. */
  get closed(): boolean {
    return this.#closed;
  }

  qsize(): number {
    return this.#items.size;
  }

  empty(): boolean {
    return this.#items.size === 0;
  }

  full(): boolean {
    return this.#maxsize > 0 && this.#items.size >= this.#maxsize;
  }

  /** Fill level in [0, 1]: qsize / maxsize, 0 when unbounded. */
  bufferLoad(): number {
    return this.#maxsize === 0 ? 0 : this.#items.size / this.#maxsize;
  }

  /**
   * Enqueue without waiting. `block` defaults to true, but a sync put on a full queue can never
   * succeed later in this thread: with no timeout it throws WouldDeadlockError, with a timeout
   * QueueFullError (timedOut=false). Use putAsync to wait.
   */
  put(item: T, block?: boolean, timeoutMs?: number): void {
    const wait = checkBoolean(block, 'block', true);
    const timeout = checkTimeoutMs(timeoutMs);
    this.#assertOpenForPut();
    if (this.#offer(item)) return;
    if (!wait) throw new QueueFullError(`the queue is full (maxsize ${this.#maxsize})`);
    if (timeout === undefined) {
      throw new WouldDeadlockError(
        `put(item, true) on a full LocalQueue (maxsize ${this.#maxsize}) would wait forever: no other code ` +
          'can run in this thread while it waits, so nothing could make space. Use `await queue.putAsync(item)` to wait.',
      );
    }
    throw new QueueFullError(
      `the queue is full (maxsize ${this.#maxsize}) and a synchronous put cannot wait ${timeout} ms: no other code ` +
        'can run in this thread while it waits, so space could not appear. Use `await queue.putAsync(item, { timeoutMs })`.',
      false,
    );
  }

  /**
   * Dequeue without waiting. Returns what is left after close(), then throws QueueClosedError.
   * On an empty open queue: `get(false)` throws QueueEmptyError; `get(true)` throws
   * WouldDeadlockError; `get(true, ms)` throws QueueEmptyError (timedOut=false) at once.
   */
  get(block?: boolean, timeoutMs?: number): T {
    const wait = checkBoolean(block, 'block', true);
    const timeout = checkTimeoutMs(timeoutMs);
    if (this.#items.size > 0) return this.#take();
    if (this.#closed) throw new QueueClosedError('the queue is closed and drained');
    if (!wait) throw new QueueEmptyError('the queue is empty');
    if (timeout === undefined) {
      throw new WouldDeadlockError(
        'get(true) on an empty LocalQueue would wait forever: no other code can run in this thread while it ' +
          'waits, so no item could arrive. Use `await queue.getAsync()` to wait.',
      );
    }
    throw new QueueEmptyError(
      `the queue is empty and a synchronous get cannot wait ${timeout} ms: no other code can run in this thread ` +
        'while it waits, so no item could arrive. Use `await queue.getAsync({ timeoutMs })`.',
      false,
    );
  }

  putNowait(item: T): void {
    this.put(item, false);
  }

  getNowait(): T {
    return this.get(false);
  }

  /** Enqueue, waiting while the queue is full (FIFO among waiting putters). */
  async putAsync(item: T, options?: AsyncWaitOptions): Promise<void> {
    const { timeoutMs, signal } = parseWaitOptions(options);
    if (signal?.aborted) throw signal.reason;
    this.#assertOpenForPut();
    if (this.#offer(item)) return;
    return this.#putters.wait(item, {
      timeoutMs,
      signal,
      onTimeout: () =>
        new QueueFullError(`putAsync timed out after ${timeoutMs} ms: the queue stayed full (maxsize ${this.#maxsize})`, true),
    });
  }

  /** Dequeue, waiting while the queue is empty (FIFO among waiting getters). */
  async getAsync(options?: AsyncWaitOptions): Promise<T> {
    const { timeoutMs, signal } = parseWaitOptions(options);
    if (signal?.aborted) throw signal.reason;
    if (this.#items.size > 0) return this.#take();
    if (this.#closed) throw new QueueClosedError('the queue is closed and drained');
    return this.#getters.wait(undefined, {
      timeoutMs,
      signal,
      onTimeout: () => new QueueEmptyError(`getAsync timed out after ${timeoutMs} ms: the queue stayed empty`, true),
    });
  }

  /** Yields items until the queue is closed and drained. */
  [Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    return drainUntilClosed(() => this.getAsync());
  }

  /** Puts fail from now on; gets drain what is left; every pending async waiter settles now. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#putters.rejectAll(
      () => new QueueClosedError('the queue was closed while this putAsync was waiting; the item was not enqueued'),
    );
    // Getters only wait while nothing is left, so they have nothing to drain.
    this.#getters.rejectAll(() => new QueueClosedError('the queue was closed while this getAsync was waiting'));
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #assertOpenForPut(): void {
    if (this.#closed) throw new QueueClosedError('cannot put: the queue is closed');
  }

  /** Hands the item to the oldest waiting getter, or stores it if there is room. */
  #offer(item: T): boolean {
    const getter = this.#getters.shift();
    if (getter !== undefined) {
      getter.resolve(item);
      return true;
    }
    if (this.full()) return false;
    this.#items.push(item);
    return true;
  }

  /** Removes the oldest item and lets the oldest waiting putter into the freed slot. */
  #take(): T {
    const item = this.#items.shift();
    const putter = this.#putters.shift();
    if (putter !== undefined) {
      this.#items.push(putter.payload);
      putter.resolve();
    }
    return item;
  }
}
