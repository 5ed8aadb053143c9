/**
 * The async gets of an explicit-ack SageQueue: getAsync and iterate on top of the queue's async
 * side (sage-async.ts), keeping this handle under `maxUnacked` and never handing out a message
 * that went to the dead-letter queue.
 */
import { MaxUnackedError, QueueClosedError, QueueEmptyError } from '../errors';
import { checkInteger, checkKnownKeys, checkOptions, checkSignal } from '../validate';
import type { AsyncWaitOptions } from './queue-like';
import type { SageAsync } from './sage-async';
import { DEAD_LETTERED, giveBack } from './sage-leases';
import type { LeaseBook, SageMessage } from './sage-leases';
import type { BatchOptions, IterateOptions } from './sage-options';
import { parseWaitOptions } from './skeleton';
import { BATCH_MAX } from './slab-reader';

/** While at maxUnacked, how often a waiting get recounts (leases may expire and be taken back). */
const ROOM_POLL_MS = 50;
/** Messages iterate() takes per native call unless told otherwise (as in auto mode). */
const DEFAULT_BATCH = 64;

export class LeasedGets<T, Out> {
  readonly #book: LeaseBook<T>;
  readonly #async: SageAsync<T>;
  readonly #getMany: (max: number, options: BatchOptions) => Out[];

  constructor(book: LeaseBook<T>, async: SageAsync<T>, getMany: (max: number, options: BatchOptions) => Out[]) {
    this.#book = book;
    this.#async = async;
    this.#getMany = getMany;
  }

  /** A sync get: `take` takes one (waiting as the caller said); MaxUnackedError at the limit. */
  get(take: () => unknown): Out {
    for (;;) {
      if (this.#book.room() === 0) throw new MaxUnackedError(this.#book.maxUnacked);
      const m = take();
      if (m !== DEAD_LETTERED) return m as Out;
    }
  }

  /** getMany: `take(limit)` takes up to limit (within maxUnacked); dead-lettered ones are left out. */
  getMany(max: number, take: (limit: number) => unknown[]): Out[] {
    for (;;) {
      const room = this.#book.room();
      if (room === 0) throw new MaxUnackedError(this.#book.maxUnacked);
      const got = take(Math.min(max, room));
      const out = (this.#book.deadLettering ? got.filter((m) => m !== DEAD_LETTERED) : got) as Out[]; // no copy without a DLQ
      if (out.length > 0 || got.length === 0) return out;
    }
  }

  async getAsync(options?: AsyncWaitOptions): Promise<Out> {
    const { timeoutMs, signal } = parseWaitOptions(options);
    const deadline = timeoutMs === undefined ? Infinity : performance.now() + timeoutMs;
    for (;;) {
      while (this.#book.room() === 0) {
        if (signal?.aborted) throw signal.reason;
        const left = deadline - performance.now();
        if (left <= 0) throw new QueueEmptyError(`getAsync timed out after ${timeoutMs} ms: this handle holds maxUnacked (${this.#book.maxUnacked}) unacked messages`, true);
        await this.#book.waitForRoom(Math.min(ROOM_POLL_MS, left));
      }
      const left = deadline - performance.now();
      if (left <= 0 && timeoutMs !== 0) throw new QueueEmptyError(`getAsync timed out after ${timeoutMs} ms: the queue is still empty`, true);
      const wait: AsyncWaitOptions = { signal, timeoutMs: timeoutMs === undefined ? undefined : Math.max(0, Math.ceil(left)) };
      const m = (await this.#async.getAsync(wait)) as unknown;
      if (m !== DEAD_LETTERED) return m as Out;
    }
  }

  /**
   * Yields messages until the queue is closed and drained, taking up to `batchSize` (default 64,
   * within maxUnacked) per native call. Messages of a batch not yet yielded when the loop is left
   * are nacked: delivered again at once, to this or another consumer.
   */
  async *iterate(options?: IterateOptions): AsyncGenerator<Out, void, undefined> {
    const opts = checkOptions<IterateOptions>(options);
    checkKnownKeys(opts, ['batchSize', 'signal']);
    const batch = opts.batchSize === undefined ? DEFAULT_BATCH : checkInteger(opts.batchSize, 'options.batchSize', 1, BATCH_MAX);
    const signal = checkSignal(opts.signal, 'options.signal');
    for (;;) {
      if (signal?.aborted) throw signal.reason;
      const room = this.#book.room();
      let items: Out[] = [];
      try {
        if (batch > 1 && room > 0) items = this.#getMany(Math.min(batch, room), { block: false });
      } catch (e) {
        if (e instanceof QueueClosedError) return; // closed and drained
        throw e;
      }
      if (items.length > 0) {
        let i = 0;
        try {
          for (; i < items.length; i++) yield items[i] as Out;
        } finally {
          // Left early (break, return, throw): give back what was taken but never yielded.
          giveBack(items.slice(i + 1) as unknown as Array<SageMessage<unknown>>);
        }
        continue;
      }
      let m: Out;
      try {
        m = await this.getAsync({ signal });
      } catch (e) {
        if (e instanceof QueueClosedError) return;
        throw e;
      }
      yield m;
    }
  }
}
