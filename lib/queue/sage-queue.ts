/**
 * SageQueue: a crash-safe multi-producer multi-consumer queue between OS processes, in a named
 * shared-memory segment (/dev/shm/sageq.<name>). Implements QueueLike and AsyncQueueLike.
 *
 * Reads land in a JS-owned slab that native code fills; each message is handed out as its own
 * view of the slab (creating a Buffer per message in native code would cost ~1 us each).
 * The sync side (put, get, putMany, getMany, getRawBatch) is in sage-sync.ts; the async side
 * (getAsync, putAsync, iterate; polling, then a native notifier thread that only reports
 * readiness) in sage-async.ts.
 */
import { codecById } from './codecs';
import type { Codec, CodecName } from './codecs';
import { QueueDescriptor } from './descriptor';
import type { BoundCodec } from './record-codec';
import { InvalidArgumentTypeError, MessageTooLargeError, SageQueueError, QueueReleasedError } from '../errors';
import { native } from '../native';
import type { NativeQueue, NativeStats } from '../native';
import { statusError } from '../native/errors';
import { collectGarbage, inspectAllQueues, inspectQueue, unlinkIfSame, unlinkQueue } from './inspect';
import type { GcOptions, GcResult, QueueInspection } from './inspect';
import { trackLive, untrackLive } from './live-handles';
import type { AsyncWaitOptions, LoadReporting } from './queue-like';
import { releaseResolved } from './registry';
import { TRUST_OPTION_KEYS, checkName } from './sage-options';
import { openSegment } from './sage-open';
import type {
  BatchOptions, IterateOptions, OpenMode, SageAutoOptions, SageExplicitOptions, SageOpenOptions, SageQueueOptions, SageQueueStats,
  TrustOptions,
} from './sage-options';
import { DEAD_LETTERED, LeaseBook } from './sage-leases';
import type { SageMessage } from './sage-leases';
import { LeasedGets } from './sage-leased-gets';
import { SageAsync } from './sage-async';
import type { AsyncHost } from './sage-async';
import { SageSync } from './sage-sync';
import type { RawBatch } from './raw-batch';
import { BATCH_MAX, SlabReader } from './slab-reader';
import { checkBoolean, checkInteger, checkKnownKeys, checkOptions, checkTimeoutMs } from '../validate';

export type {
  BatchOptions, IterateOptions, SageAckMode, SageAutoOptions, SageExplicitOptions, SageOpenOptions, SageQueueOptions, SageQueueStats,
  TrustOptions,
} from './sage-options';

/** A SageQueue in explicit-ack mode: puts take T, gets return SageMessage<T>. */
export type SageAckQueue<T = unknown> = SageQueue<T, SageMessage<T>>;

/**
 * `T` is what you put; `Out` what gets return: `T` in auto-ack mode (the default), SageMessage<T>
 * in explicit-ack mode (`SageQueue.open<T>(name, { ackMode: 'explicit' })` and `create` infer it;
 * with `new`, say it: `new SageQueue<T, SageMessage<T>>(name, { ackMode: 'explicit' })`, or use
 * the SageAckQueue<T> alias).
 */
export class SageQueue<T = unknown, Out = T> implements LoadReporting, Disposable {
  #q: NativeQueue | null;
  readonly #name: string;
  readonly #codec: Codec;
  readonly #capacity: number;
  readonly #maxMessageSize: number;
  readonly #maxsize: number;
  readonly #async: SageAsync<T>;
  readonly #sync: SageSync<T>;
  /** Explicit-ack mode: this handle's leases; null in auto mode. */
  readonly #leases: LeaseBook<T> | null;
  readonly #leased: LeasedGets<T, Out> | null;
  #descriptor: QueueDescriptor | undefined;
  readonly #liveRef: ReturnType<typeof trackLive>;

  /**
   * Opens the queue `name`, creating it if it does not exist (like the SAGE original).
   * Use SageQueue.create (must not exist) or SageQueue.open (must exist) to be explicit.
   * Given a `sage_queue` or `shm` QueueDescriptor, opens the segment it names.
   */
  constructor(descriptor: QueueDescriptor, trust?: TrustOptions);
  constructor(name: string, options?: SageQueueOptions, /** @internal */ mode?: OpenMode);
  constructor(nameOrDescriptor: string | QueueDescriptor, options?: SageQueueOptions, mode: OpenMode = 'openOrCreate') {
    const opened = openSegment(nameOrDescriptor, options, mode, (kind) => this.#async.onNotify(kind));
    this.#name = opened.name;
    this.#q = opened.q;
    this.#codec = opened.codec;
    this.#capacity = opened.info.capacity;
    this.#maxMessageSize = opened.info.maxMessageSize;
    this.#maxsize = opened.info.maxsize;
    const codec = opened.codec;
    const leases = opened.ack === undefined ? null : new LeaseBook<T>(opened.name, () => this.#handle(), codec, {
      maxUnacked: opened.ack.maxUnacked,
      maxDeliveries: opened.info.maxDeliveries,
      deadLetter: opened.ack.deadLetter,
    });
    this.#leases = leases;
    const host: AsyncHost<T> = {
      handle: () => this.#handle(),
      current: () => this.#q,
      encode: (item) => this.#encode(item),
      // Explicit mode: gets hand out SageMessages (or DEAD_LETTERED, which LeasedGets filters
      // out); the sync and async sides only pass decoded values through, whatever their type.
      decode: (raw: Buffer) => this.#out(raw) as T,
      statusError: (status) => this.#statusError(status),
    };
    const reader = new SlabReader(); // one slab for both sides: only the JS thread takes messages
    this.#async = new SageAsync<T>(host, reader, opened.spinUs);
    this.#sync = new SageSync<T>(host, reader, this.#async, codec, opened.info.maxMessageSize);
    this.#leased = leases === null ? null : new LeasedGets<T, Out>(leases, this.#async, (max, options) => this.getMany(max, options));
    this.#liveRef = trackLive(this);
  }

  /** Creates the queue; throws SharedMemoryError ERR_QUEUE_EXISTS if the name is taken. */
  static create<T = unknown>(name: string, options: SageExplicitOptions): SageQueue<T, SageMessage<T>>;
  static create<T = unknown>(name: string, options?: SageAutoOptions): SageQueue<T>;
  static create<T = unknown>(name: string, options?: SageQueueOptions): SageQueue<T> | SageQueue<T, SageMessage<T>> {
    return new SageQueue<T>(name, options, 'create');
  }

  /**
   * Opens an existing queue; throws SharedMemoryError ERR_QUEUE_NOT_FOUND if there is none, and
   * ERR_QUEUE_UNTRUSTED_OWNER / ERR_QUEUE_SHARED_MODE for a segment another user owns or that
   * group/other may write (see the trustedUids and allowSharedMode options).
   */
  static open<T = unknown>(name: string, options: SageOpenOptions & { ackMode: 'explicit' }): SageQueue<T, SageMessage<T>>;
  static open<T = unknown>(name: string, options?: Omit<SageOpenOptions, 'ackMode' | 'maxUnacked' | 'deadLetter'> & { ackMode?: 'auto' }): SageQueue<T>;
  static open<T = unknown>(name: string, options?: SageOpenOptions): SageQueue<T> | SageQueue<T, SageMessage<T>> {
    const opts = checkOptions<SageQueueOptions>(options);
    checkKnownKeys(opts, ['codec', 'spinUs', 'initWaitMs', 'ackMode', 'maxUnacked', 'deadLetter', ...TRUST_OPTION_KEYS]);
    return new SageQueue<T>(name, opts, 'open');
  }

  /**
   * Removes the name from /dev/shm, and the queue's structure table (attached handles keep
   * working: they hold the table open). False if there was no segment of that name.
   */
  static destroy(name: string): boolean {
    return unlinkQueue(checkName(name));
  }

  /** Names of every sage-queue segment on this machine. */
  static list(): string[] {
    return native().list().sort();
  }

  /** The state of queue `name` (alive, dead, idle, initialising, broken) and its stats, without attaching. */
  static inspect(name: string): QueueInspection {
    return inspectQueue(checkName(name));
  }

  /** Every queue on this machine, inspected (see inspect). */
  static inspectAll(): QueueInspection[] {
    return inspectAllQueues();
  }

  /** Removes queues whose attached processes all died (and, with includeIdle, unused ones). */
  static gc(options?: GcOptions): GcResult {
    return collectGarbage(options);
  }

  get name(): string {
    return this.#name;
  }
  get codec(): CodecName {
    return this.#codec.name;
  }
  /** Ring size in bytes. */
  get capacity(): number {
    return this.#capacity;
  }
  get maxMessageSize(): number {
    return this.#maxMessageSize;
  }
  /** Message bound (0 = bounded by bytes only). */
  get maxsize(): number {
    return this.#maxsize;
  }
  get closed(): boolean {
    return this.#q === null ? true : this.#q.isClosed();
  }
  /** True once release()/destroy() detached this handle. */
  get released(): boolean {
    return this.#q === null;
  }

  /** A `sage_queue` descriptor: resolving it in another process attaches to this queue. */
  get descriptor(): QueueDescriptor {
    this.#descriptor ??= QueueDescriptor.createSageQueue({
      queueId: this.#name,
      maxsize: this.#maxsize,
      capacity: this.#capacity,
      maxMessageSize: this.#maxMessageSize,
      codec: this.#codec.name,
      ...(this.#leases === null ? {} : { ackMode: 'explicit' as const }),
    });
    return this.#descriptor;
  }

  // ------------------------------------------------------------------------------------------
  // QueueLike

  put(item: T, block = true, timeoutMs?: number): void {
    this.#sync.put(item, checkBoolean(block, 'block', true), checkTimeoutMs(timeoutMs));
  }

  /**
   * Takes one message (waiting for one when `block`, up to timeoutMs). Explicit-ack mode: a
   * SageMessage to settle; throws MaxUnackedError when this handle holds maxUnacked already.
   */
  get(block = true, timeoutMs?: number): Out {
    const wait = checkBoolean(block, 'block', true);
    const timeout = checkTimeoutMs(timeoutMs);
    if (this.#leased === null) return this.#sync.getOne(wait, timeout) as unknown as Out;
    return this.#leased.get(() => this.#sync.getOne(wait, timeout));
  }

  /** A record as handed out: decoded (auto mode), or its SageMessage (explicit mode). */
  #out(raw: Buffer): T | typeof DEAD_LETTERED {
    return this.#leases === null ? (this.#codec.decode(raw) as T) : (this.#leases.wrap(raw) as unknown as T | typeof DEAD_LETTERED);
  }

  putNowait(item: T): void {
    this.put(item, false);
  }

  getNowait(): Out {
    return this.get(false);
  }

  empty(): boolean {
    return this.#handle().qsize() === 0;
  }

  /** True when a put would wait: maxsize reached, or not even an empty message fits. */
  full(): boolean {
    const q = this.#handle();
    if (this.#maxsize > 0 && q.qsize() >= this.#maxsize) return true;
    return this.#capacity - q.usedBytes() < 32;
  }

  /** Messages in the queue, as seen by every process. */
  qsize(): number {
    return this.#handle().qsize();
  }

  /** Closes the queue for every process: their waiters wake, puts fail, gets drain then fail. */
  close(): void {
    if (this.#q === null) return; // a released handle has nothing left to close
    this.#q.close();
    this.#async.closed();
  }

  // ------------------------------------------------------------------------------------------
  // Batches

  /**
   * Puts many items with one native call per batch of up to 4096. Each batch is encoded (and
   * size-checked) before any of it is written, so an item that cannot be encoded or is too large
   * fails the call with nothing of its batch enqueued; the error's `written` says how many items
   * (of earlier batches) went in. Returns how many were put: all of them when blocking; possibly
   * fewer with `block: false`. Re-entrant: an item whose encoding calls putMany on this handle
   * (a getter, toJSON) has its own batch written first, and neither batch is corrupted.
   */
  putMany(items: readonly T[], options?: BatchOptions): number {
    return this.#sync.putMany(items, options);
  }

  /**
   * Takes up to `max` messages with one native call. Without `block`, returns what is there
   * (possibly none). With `block` (default), waits for at least one (up to timeoutMs).
   * Throws QueueClosedError once the queue is closed and drained.
   */
  getMany(max: number, options?: BatchOptions): Out[] {
    const leases = this.#leases;
    if (leases === null) return this.#sync.getMany<Out>(max, options, this.#codec);
    const take = (limit: number): unknown[] => this.#sync.getMany<unknown>(limit, options, leases);
    return (this.#leased as LeasedGets<T, Out>).getMany(checkInteger(max, 'max', 1, BATCH_MAX), take);
  }

  /**
   * Like getMany, without allocating per message: the records land back to back in one buffer
   * this handle reuses, described by offsets and lengths (see RawBatch), valid until the next
   * getRawBatch call. The bytes are the codec's (decode them yourself unless the codec is raw).
   * Returns a batch with count 0 when not blocking and empty; throws as getMany otherwise.
   */
  getRawBatch(max: number, options?: BatchOptions): RawBatch {
    const ackHint = 'use getMany (a SageMessage per message) and ackMany';
    if (this.#leases !== null) throw new SageQueueError('ERR_QUEUE_ACK_MODE', `queue ${this.#name} is in explicit-ack mode: ${ackHint}`);
    return this.#sync.getRawBatch(max, options);
  }

  // ------------------------------------------------------------------------------------------
  // AsyncQueueLike

  /** Completes at once (an already resolved promise) when the item fits; else waits, off the loop. */
  putAsync(item: T, options?: AsyncWaitOptions): Promise<void> {
    return this.#async.putAsync(item, options);
  }

  /**
   * Resolves at once when a message is there; else polls for spinUs, then parks (sage-async.ts).
   * Explicit-ack mode: a SageMessage; at maxUnacked it waits for this handle to settle one.
   */
  getAsync(options?: AsyncWaitOptions): Promise<Out> {
    if (this.#leased !== null) return this.#leased.getAsync(options);
    return this.#async.getAsync(options) as unknown as Promise<Out>;
  }

  /** Yields messages until the queue is closed and drained (batches of 64: see iterate). */
  [Symbol.asyncIterator](): AsyncIterator<Out> {
    return this.iterate();
  }

  /**
   * Like `for await (const m of q)`, with a batch size (default 64; 1 takes each message only
   * when it is yielded) and an abort signal. Messages of a batch not yet yielded when the loop is
   * left stay with this handle and are the next get's; a process killed meanwhile loses them.
   */
  iterate(options?: IterateOptions): AsyncGenerator<Out, void, undefined> {
    if (this.#leased !== null) return this.#leased.iterate(options);
    return this.#async.iterate(options) as unknown as AsyncGenerator<Out, void, undefined>;
  }

  // ------------------------------------------------------------------------------------------
  // Explicit acks

  /** 'explicit' when gets return SageMessages to settle; 'auto' otherwise (recorded in the segment). */
  get ackMode(): 'auto' | 'explicit' {
    return this.#leases === null ? 'auto' : 'explicit';
  }

  /** Explicit mode: messages this handle handed out and has not settled (0 in auto mode). */
  get unacked(): number {
    return this.#leases?.held ?? 0;
  }

  /** Explicit mode: acks many with one native call; returns how many (the rest had lost their lease). */
  ackMany(messages: readonly SageMessage<T>[]): number {
    if (!Array.isArray(messages)) throw new InvalidArgumentTypeError('messages', 'an array of SageMessage', messages);
    if (this.#leases === null) throw new SageQueueError('ERR_QUEUE_ACK_MODE', `queue ${this.#name} is in auto-ack mode: its gets need no ack`);
    this.#handle();
    return this.#leases.ackMany(messages);
  }

  // ------------------------------------------------------------------------------------------
  // Load, stats, lifetime

  /** Fill level in [0, 1] from the segment: depth/maxsize, or bytes used/capacity. */
  bufferLoad(): number {
    const q = this.#handle();
    const load = this.#maxsize > 0 ? q.qsize() / this.#maxsize : q.usedBytes() / this.#capacity;
    return Math.min(1, Math.max(0, load));
  }

  /** Statistics kept in shared memory: the same from every attached process. */
  stats(): SageQueueStats {
    const s = this.#handle().stats() as NativeStats;
    return { ...s, codecName: codecById(s.codec)?.name ?? 'unknown' };
  }

  /** Spin this long (microseconds) before sleeping in a wait; 0 sleeps at once. */
  setSpinUs(us: number): void {
    const spin = checkInteger(us, 'us', 0, 1_000_000);
    this.#handle().setSpinUs(spin);
    this.#async.spinUs = spin;
  }

  /**
   * Detaches this handle (the queue stays for the others). Pending async calls reject with
   * QueueReleasedError. Idempotent. Also runs on garbage collection and at thread/process exit.
   */
  release(): void {
    const q = this.#q;
    if (q === null) return;
    this.#q = null;
    q.release();
    (this.#codec as Partial<BoundCodec>).close?.();
    untrackLive(this.#liveRef);
    this.#async.released(() => new QueueReleasedError());
    releaseResolved(this);
  }

  /**
   * Removes the queue's name (handles attached elsewhere keep working) and releases this handle.
   * The name is removed only if it still refers to the segment this handle opened: if the queue
   * was removed and another one created under the name since, that one is left alone and
   * SharedMemoryError ERR_QUEUE_REPLACED is thrown (this handle is released all the same). A name
   * already gone is not an error. `SageQueue.destroy(name)` removes whatever the name refers to.
   */
  destroy(): void {
    const q = this.#q;
    if (q === null) {
      SageQueue.destroy(this.#name); // released already: nothing to compare with, as before
      return;
    }
    try {
      unlinkIfSame(q, this.#name);
    } finally {
      this.release();
    }
  }

  [Symbol.dispose](): void {
    this.release();
  }

  toString(): string {
    return `SageQueue(${this.#name})`;
  }

  // ------------------------------------------------------------------------------------------
  // Internals

  #handle(): NativeQueue {
    if (this.#q === null) throw new QueueReleasedError(`queue ${this.#name} was released; open it again to use it`);
    return this.#q;
  }

  #encode(item: T): Uint8Array {
    const bytes = this.#codec.encode(item);
    if (bytes.length > this.#maxMessageSize) throw new MessageTooLargeError(bytes.length, this.#maxMessageSize);
    return bytes;
  }

  #statusError(status: number): Error {
    return statusError(status, this.#name, this.#q === null || this.#q.isReleased());
  }
}
