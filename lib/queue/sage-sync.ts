/**
 * The synchronous side of a SageQueue handle: put, get, putMany, getMany and getRawBatch, each
 * done in one native call when it can, and waiting in native code (on the JS thread, up to the
 * caller's timeout) when it must. Messages this handle took earlier and has not handed out (its
 * TakenStash, kept by the async side: sage-async.ts) are served first.
 */
import { InvalidArgumentTypeError, QueueEmptyError, QueueFullError } from '../errors';
import { NativeStatus } from '../native';
import type { NativeQueue } from '../native';
import { checkBoolean, checkInteger, checkKnownKeys, checkOptions, checkTimeoutMs } from '../validate';
import { BatchWriter } from './batch-writer';
import type { StagedResult } from './batch-writer';
import type { Codec } from './codecs';
import { RawBatchReader } from './raw-batch';
import type { AsyncHost, SageAsync } from './sage-async';
import type { BatchOptions } from './sage-options';
import { BATCH_MAX, NO_WAIT } from './slab-reader';
import type { SlabReader } from './slab-reader';

/** What the sync side needs from its SageQueue (the async side's host; decode makes what a get hands out). */
export type SyncHost<T> = Pick<AsyncHost<T>, 'handle' | 'encode' | 'decode' | 'statusError'>;

export class SageSync<T> {
  readonly #host: SyncHost<T>;
  readonly #reader: SlabReader;
  readonly #async: SageAsync<T>;
  readonly #codec: Codec;
  readonly #maxMessageSize: number;
  readonly #writer = new BatchWriter();
  #rawBatch: RawBatchReader | undefined;

  constructor(host: SyncHost<T>, reader: SlabReader, async: SageAsync<T>, codec: Codec, maxMessageSize: number) {
    this.#host = host;
    this.#reader = reader;
    this.#async = async;
    this.#codec = codec;
    this.#maxMessageSize = maxMessageSize;
  }

  /** put with its arguments checked: `timeout` undefined waits without limit. */
  put(item: T, wait: boolean, timeout: number | undefined): void {
    const q = this.#host.handle();
    const bytes = this.#host.encode(item);
    const rc = q.tryPut(bytes);
    if (rc === 0) return;
    if (rc === -NativeStatus.Full && wait && timeout !== 0) {
      const n = this.#writer.putOneBlocking(q, bytes, timeout ?? -1);
      if (n === 1) return;
      if (n === -NativeStatus.Full) throw new QueueFullError(`put timed out after ${timeout} ms: the queue is still full`, true);
      throw this.#host.statusError(-n);
    }
    throw this.#host.statusError(-rc);
  }

  /** get with its arguments checked: one message, decoded by the host. */
  getOne(wait: boolean, timeout: number | undefined): T {
    const q = this.#host.handle();
    const reader = this.#reader;
    const local = this.#async.stash.shift(); // taken earlier by this handle: first in line
    if (local !== undefined) return this.#host.decode(local);
    let raw = reader.takeRaw(q);
    if (raw === null && reader.lastStatus === NativeStatus.Empty && wait && timeout !== 0) {
      raw = reader.takeBlocking(q, timeout ?? -1);
      if (raw === null && reader.lastStatus === NativeStatus.Empty) {
        throw new QueueEmptyError(`get timed out after ${timeout} ms: the queue is still empty`, true);
      }
    }
    if (raw === null) throw this.#host.statusError(reader.lastStatus);
    return this.#host.decode(raw);
  }

  /** SageQueue.putMany (documented there). */
  putMany(items: readonly T[], options?: BatchOptions): number {
    if (!Array.isArray(items)) throw new InvalidArgumentTypeError('items', 'an array', items);
    const opts = checkOptions<BatchOptions>(options);
    checkKnownKeys(opts, ['block', 'timeoutMs']);
    const wait = checkBoolean(opts.block, 'options.block', true);
    const timeout = checkTimeoutMs(opts.timeoutMs, 'options.timeoutMs');
    const q = this.#host.handle();
    let done = 0;
    while (done < items.length) {
      const count = Math.min(items.length - done, BATCH_MAX);
      let result: StagedResult;
      try {
        result = this.#writer.encodeAndPut(q, this.#codec, this.#maxMessageSize, items, done, count, wait, timeout);
      } catch (e) {
        // Earlier batches are in the queue already: say how many, so nobody sends them twice.
        throw Object.assign(e as Error, { written: done });
      }
      const { sent, status } = result;
      if (status === NativeStatus.Full) {
        throw Object.assign(new QueueFullError(`putMany timed out after ${timeout} ms with ${done + sent} of ${items.length} put`, true), {
          written: done + sent,
        });
      }
      if (status !== 0) throw Object.assign(this.#host.statusError(status), { written: done + sent });
      if (sent < count) return done + sent; // full, not blocking
      done += count;
    }
    return done;
  }

  /**
   * Up to `max` messages (SageQueue.getMany): stashed ones decoded by the host, else the queue's
   * decoded by `decoder` (the codec in auto mode, the LeaseBook in explicit mode).
   */
  getMany<R>(max: number, options: BatchOptions | undefined, decoder: Pick<Codec, 'decode' | 'decodeAt'>): R[] {
    const n = this.#batchGet(max, options, 'getMany', this.#reader);
    if (n < 0) return this.#async.takeStashed(-n) as unknown as R[];
    return n > 0 ? this.#reader.decodeBatch<R>(n, decoder, this.#async.stash) : [];
  }

  /** SageQueue.getRawBatch (documented there), once the caller has checked the ack mode. */
  getRawBatch(max: number, options: BatchOptions | undefined): RawBatchReader {
    const batch = (this.#rawBatch ??= new RawBatchReader());
    const n = this.#batchGet(max, options, 'getRawBatch', batch);
    if (n < 0) batch.copyFrom(this.#async.stash, -n);
    return batch;
  }

  /**
   * The batch gets' pattern: take what is there; wait if allowed; 0 when not waiting and empty.
   * -limit when this handle holds messages it took earlier (see TakenStash): the caller serves those.
   */
  #batchGet(max: number, options: BatchOptions | undefined, what: string, into: SlabReader | RawBatchReader): number {
    const limit = checkInteger(max, 'max', 1, BATCH_MAX);
    const opts = checkOptions<BatchOptions>(options);
    checkKnownKeys(opts, ['block', 'timeoutMs']);
    const wait = checkBoolean(opts.block, 'options.block', true);
    const timeout = checkTimeoutMs(opts.timeoutMs, 'options.timeoutMs');
    const q = this.#host.handle();
    if (this.#async.stash.size > 0) return -limit;
    let n = into.takeBatch(q, limit, NO_WAIT);
    if (n === 0 && into.lastStatus === NativeStatus.Empty && wait && timeout !== 0) n = into.takeBatch(q, limit, timeout ?? -1);
    if (n > 0) return n;
    if (into.lastStatus !== NativeStatus.Empty) throw this.#host.statusError(into.lastStatus);
    if (wait && timeout !== 0) throw new QueueEmptyError(`${what} timed out after ${timeout} ms: the queue is still empty`, true);
    return 0;
  }
}
