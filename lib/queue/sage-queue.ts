/**
 * SageQueue: a crash-safe multi-producer multi-consumer queue between OS processes, in a named
 * shared-memory segment (/dev/shm/sageq.<name>). Implements QueueLike and AsyncQueueLike.
 *
 * Reads land in a JS-owned slab that native code fills; each message is handed out as its own
 * view of the slab (creating a Buffer per message in native code would cost ~1 us each).
 * Async waits happen on a native thread that only reports readiness: the JS thread then takes
 * the message itself, so an aborted or timed-out wait can never lose one.
 */
import { WaiterList } from './async-waiters';
import { codecById, codecByName } from './codecs';
import type { Codec, CodecName } from './codecs';
import { QueueDescriptor } from './descriptor';
import {
  InvalidArgumentTypeError,
  InvalidArgumentValueError,
  MessageTooLargeError,
  QueueClosedError,
  QueueEmptyError,
  QueueFullError,
  QueueReleasedError,
  SageQueueError,
  SharedMemoryError,
  describe,
} from '../errors';
import { native, NativeStatus, NotifyKind } from '../native';
import type { NativeQueue, NativeStats } from '../native';
import type { AsyncWaitOptions, LoadReporting, SyncAndAsyncQueue } from './queue-like';
import { forgetResolved } from './registry';
import { checkBoolean, checkInteger, checkKnownKeys, checkOptions, checkSignal, checkTimeoutMs } from '../validate';

/** Options used when the queue is created (ignored when an existing queue is opened). */
export interface SageQueueOptions {
  /** Ring size in bytes, rounded up to a power of two (4 KiB .. 4 GiB). Default 1 MiB. */
  capacity?: number;
  /** Largest encoded message in bytes. Default capacity/4 - 16; at most capacity/2 - 16. */
  maxMessageSize?: number;
  /** Most messages the queue holds (0 = bounded by bytes only). Default 0. */
  maxsize?: number;
  /** File mode of the segment. Default 0o600 (owner only). */
  mode?: number;
  /** Message codec, recorded in the segment. Default 'v8'. When opening, must match if given. */
  codec?: CodecName;
  /** Spin this long (microseconds) before sleeping in a wait. Default 50; 0 = sleep at once. */
  spinUs?: number;
  /** How long to wait for a segment that its creator is still initialising. Default 1000 ms. */
  initWaitMs?: number;
}

/** Options of the batch calls. */
export interface BatchOptions {
  /** Wait while the queue is full/empty (default true). */
  block?: boolean;
  timeoutMs?: number;
}

export interface IterateOptions {
  /** Messages taken from the shared queue per native call (default 1). Larger batches are
   * faster, but a consumer holds (and would lose, if killed) up to this many at once. */
  batchSize?: number;
  signal?: AbortSignal;
}

export interface SageQueueStats extends NativeStats {
  codecName: CodecName | 'unknown';
}

type OpenMode = 'create' | 'open' | 'openOrCreate';

const SLAB_BYTES = 64 * 1024;
const BATCH_MAX = 4096;
const OPTION_KEYS = ['capacity', 'maxMessageSize', 'maxsize', 'mode', 'codec', 'spinUs', 'initWaitMs'] as const;

let statusTable: ReturnType<ReturnType<typeof native>['statuses']> | undefined;

function statusInfo(status: number): { code: string; message: string } {
  statusTable ??= native().statuses();
  return statusTable[status] ?? { code: 'ERR_SYSTEM', message: `unknown native status ${status}` };
}

function checkName(name: unknown): string {
  if (typeof name !== 'string') throw new InvalidArgumentTypeError('name', 'a string', name);
  if (!native().validName(name)) {
    throw new InvalidArgumentValueError(
      `invalid queue name ${describe(name)}: use 1-200 letters, digits, '.', '_' or '-', without '..'`,
      name,
      'ERR_INVALID_QUEUE_NAME',
    );
  }
  return name;
}

/** Turns an error thrown by the native constructor/unlink into a typed error. */
function nativeError(e: unknown, name: string): Error {
  if (e instanceof Error && typeof (e as { code?: unknown }).code === 'string') {
    const code = (e as unknown as { code: string }).code;
    if (code === 'ERR_INVALID_QUEUE_NAME') return new InvalidArgumentValueError(e.message, name, code);
    if (code === 'ERR_INVALID_ARG_VALUE') {
      return new InvalidArgumentValueError(`invalid queue options for ${name}: ${e.message}`, name, code);
    }
    const errno = (e as { errno?: number }).errno;
    return new SharedMemoryError(code, e.message, name, errno);
  }
  return e instanceof Error ? e : new Error(String(e));
}

/**
 * Handles still attached in this thread. `process.exit()` does not run the addon's environment
 * cleanup hook on the main thread, so without this an exiting process would look dead (not
 * released) to the others. Weak: a dropped queue is still collected (its finalizer releases it).
 */
const live = new Set<WeakRef<SageQueue<unknown>>>();
const forgetOnCollect = new FinalizationRegistry<WeakRef<SageQueue<unknown>>>((ref) => live.delete(ref));
let exitHookInstalled = false;

function trackLive(q: SageQueue<unknown>): WeakRef<SageQueue<unknown>> {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const ref of live) ref.deref()?.release();
    });
  }
  const ref = new WeakRef(q);
  live.add(ref);
  forgetOnCollect.register(q, ref, ref);
  return ref;
}

export class SageQueue<T = unknown> implements SyncAndAsyncQueue<T>, LoadReporting, Disposable {
  #q: NativeQueue | null;
  readonly #name: string;
  readonly #codec: Codec;
  readonly #capacity: number;
  readonly #maxMessageSize: number;
  readonly #maxsize: number;
  #slab: Buffer = Buffer.allocUnsafeSlow(SLAB_BYTES);
  #slabOff = 0;
  #lastStatus = 0;
  readonly #lengths = new Uint32Array(BATCH_MAX);
  #staging: Buffer = Buffer.allocUnsafeSlow(SLAB_BYTES);
  readonly #getters = new WaiterList<T>();
  readonly #putters = new WaiterList<void, Uint8Array>();
  #readArmed = false;
  #writeArmed = false;
  #descriptor: QueueDescriptor | undefined;
  #liveRef: WeakRef<SageQueue<unknown>> | undefined;

  /**
   * Opens the queue `name`, creating it if it does not exist (like the SAGE original).
   * Use SageQueue.create (must not exist) or SageQueue.open (must exist) to be explicit.
   */
  constructor(name: string, options?: SageQueueOptions, /** @internal */ mode: OpenMode = 'openOrCreate') {
    this.#name = checkName(name);
    const opts = checkOptions<SageQueueOptions>(options);
    checkKnownKeys(opts, OPTION_KEYS);
    const create: Record<string, number> = {};
    if (opts.capacity !== undefined) create.capacity = checkInteger(opts.capacity, 'options.capacity', 4096, 2 ** 32);
    if (opts.maxMessageSize !== undefined) create.maxMessageSize = checkInteger(opts.maxMessageSize, 'options.maxMessageSize', 1, 2 ** 31);
    if (opts.maxsize !== undefined) create.maxsize = checkInteger(opts.maxsize, 'options.maxsize', 0, 2 ** 48);
    if (opts.mode !== undefined) {
      create.mode = checkInteger(opts.mode, 'options.mode', 0, 0o777);
      if ((create.mode & 0o600) !== 0o600) {
        throw new InvalidArgumentValueError('options.mode must give the owner read and write (0o600)', opts.mode, 'ERR_OUT_OF_RANGE');
      }
    }
    const wanted = opts.codec === undefined ? undefined : codecByName(opts.codec);
    create.codec = (wanted ?? codecByName('v8')).id;
    const spinUs = opts.spinUs === undefined ? 50 : checkInteger(opts.spinUs, 'options.spinUs', 0, 1_000_000);
    const initWaitMs = opts.initWaitMs === undefined ? 1000 : checkInteger(opts.initWaitMs, 'options.initWaitMs', 0, 600_000);

    const addon = native();
    let q: NativeQueue;
    try {
      q = new addon.NativeQueue(this.#name, mode, create, (kind) => this.#onNotify(kind), initWaitMs);
    } catch (e) {
      throw nativeError(e, this.#name);
    }
    const info = q.info();
    const codec = info === null ? undefined : codecById(info.codec);
    if (info === null || codec === undefined || (wanted !== undefined && wanted.id !== codec.id)) {
      q.release();
      throw new InvalidArgumentValueError(
        codec === undefined
          ? `queue ${this.#name} uses codec id ${info?.codec}, which this version of sage-queue does not know`
          : `queue ${this.#name} uses the ${codec.name} codec, not ${wanted?.name}; open it without a codec option or with codec '${codec.name}'`,
        opts.codec,
        'ERR_CODEC_MISMATCH',
      );
    }
    q.setSpinUs(spinUs);
    this.#q = q;
    this.#codec = codec;
    this.#capacity = info.capacity;
    this.#maxMessageSize = info.maxMessageSize;
    this.#maxsize = info.maxsize;
    this.#liveRef = trackLive(this as SageQueue<unknown>);
  }

  /** Creates the queue; throws SharedMemoryError ERR_QUEUE_EXISTS if the name is taken. */
  static create<T = unknown>(name: string, options?: SageQueueOptions): SageQueue<T> {
    return new SageQueue<T>(name, options, 'create');
  }

  /** Opens an existing queue; throws SharedMemoryError ERR_QUEUE_NOT_FOUND if there is none. */
  static open<T = unknown>(name: string, options?: Pick<SageQueueOptions, 'codec' | 'spinUs' | 'initWaitMs'>): SageQueue<T> {
    const opts = checkOptions<SageQueueOptions>(options);
    checkKnownKeys(opts, ['codec', 'spinUs', 'initWaitMs']);
    return new SageQueue<T>(name, opts, 'open');
  }

  /** Removes the name from /dev/shm (attached handles keep working). False if it did not exist. */
  static destroy(name: string): boolean {
    checkName(name);
    try {
      native().unlink(name);
      return true;
    } catch (e) {
      const err = nativeError(e, name);
      if ((err as SageQueueError).code === 'ERR_QUEUE_NOT_FOUND') return false;
      throw err;
    }
  }

  /** Names of every sage-queue segment on this machine. */
  static list(): string[] {
    return native().list().sort();
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
    });
    return this.#descriptor;
  }

  // ------------------------------------------------------------------------------------------
  // QueueLike

  put(item: T, block = true, timeoutMs?: number): void {
    const wait = checkBoolean(block, 'block', true);
    const timeout = checkTimeoutMs(timeoutMs);
    const q = this.#handle();
    const bytes = this.#encode(item);
    const rc = q.tryPut(bytes);
    if (rc === 0) return;
    if (rc === -NativeStatus.Full && wait && timeout !== 0) {
      this.#lengths[0] = bytes.length;
      const n = q.putBlocking(bytes, this.#lengths, 1, timeout ?? -1);
      if (n === 1) return;
      if (n === -NativeStatus.Full) throw new QueueFullError(`put timed out after ${timeout} ms: the queue is still full`, true);
      throw this.#statusError(-n);
    }
    throw this.#statusError(-rc);
  }

  get(block = true, timeoutMs?: number): T {
    const wait = checkBoolean(block, 'block', true);
    const timeout = checkTimeoutMs(timeoutMs);
    let raw = this.#takeRaw();
    if (raw === null && this.#lastStatus === NativeStatus.Empty && wait && timeout !== 0) {
      raw = this.#takeBlocking(timeout ?? -1);
      if (raw === null && this.#lastStatus === NativeStatus.Empty) {
        throw new QueueEmptyError(`get timed out after ${timeout} ms: the queue is still empty`, true);
      }
    }
    if (raw === null) throw this.#statusError(this.#lastStatus);
    return this.#codec.decode(raw) as T;
  }

  putNowait(item: T): void {
    this.put(item, false);
  }

  getNowait(): T {
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
    this.#putters.rejectAll(() => new QueueClosedError());
    this.#drainGetters();
  }

  // ------------------------------------------------------------------------------------------
  // Batches

  /**
   * Puts many items with one native call per batch of up to 4096. Each batch is encoded (and
   * size-checked) before any of it is written, so an item that cannot be encoded or is too large
   * fails the call with nothing of its batch enqueued; the error's `written` says how many items
   * (of earlier batches) went in. Returns how many were put: all of them when blocking; possibly
   * fewer with `block: false`.
   */
  putMany(items: readonly T[], options?: BatchOptions): number {
    if (!Array.isArray(items)) throw new InvalidArgumentTypeError('items', 'an array', items);
    const opts = checkOptions<BatchOptions>(options);
    checkKnownKeys(opts, ['block', 'timeoutMs']);
    const wait = checkBoolean(opts.block, 'options.block', true);
    const timeout = checkTimeoutMs(opts.timeoutMs, 'options.timeoutMs');
    const q = this.#handle();
    let done = 0;
    while (done < items.length) {
      // Pack up to BATCH_MAX encoded items back to back into the staging buffer.
      const count = Math.min(items.length - done, BATCH_MAX);
      const encoded = new Array<Uint8Array>(count);
      let total = 0;
      try {
        for (let i = 0; i < count; i++) {
          const bytes = this.#encode(items[done + i] as T);
          encoded[i] = bytes;
          this.#lengths[i] = bytes.length;
          total += bytes.length;
        }
      } catch (e) {
        // Earlier batches are in the queue already: say how many, so nobody sends them twice.
        throw Object.assign(e as Error, { written: done });
      }
      if (this.#staging.length < total) this.#staging = Buffer.allocUnsafeSlow(Math.max(total, this.#staging.length * 2));
      let at = 0;
      for (let i = 0; i < count; i++) {
        this.#staging.set(encoded[i] as Uint8Array, at);
        at += (encoded[i] as Uint8Array).length;
      }
      let sent = 0;
      let offset = 0;
      while (sent < count) {
        const data = offset === 0 ? this.#staging : this.#staging.subarray(offset);
        const lens = sent === 0 ? this.#lengths : this.#lengths.subarray(sent);
        let n = q.tryPutBatch(data, lens, count - sent);
        if (n === 0 && wait && timeout !== 0) {
          n = q.putBlocking(data, lens, count - sent, timeout ?? -1);
          if (n === -NativeStatus.Full) {
            throw Object.assign(new QueueFullError(`putMany timed out after ${timeout} ms with ${done + sent} of ${items.length} put`, true), {
              written: done + sent,
            });
          }
        }
        if (n < 0) throw Object.assign(this.#statusError(-n), { written: done + sent });
        if (n === 0) return done + sent; // full, not blocking
        for (let i = 0; i < n; i++) offset += this.#lengths[sent + i] as number;
        sent += n;
      }
      done += count;
    }
    return done;
  }

  /**
   * Takes up to `max` messages with one native call. Without `block`, returns what is there
   * (possibly none). With `block` (default), waits for at least one (up to timeoutMs).
   * Throws QueueClosedError once the queue is closed and drained.
   */
  getMany(max: number, options?: BatchOptions): T[] {
    const limit = checkInteger(max, 'max', 1, BATCH_MAX);
    const opts = checkOptions<BatchOptions>(options);
    checkKnownKeys(opts, ['block', 'timeoutMs']);
    const wait = checkBoolean(opts.block, 'options.block', true);
    const timeout = checkTimeoutMs(opts.timeoutMs, 'options.timeoutMs');
    let n = this.#takeBatch(limit, -2);
    if (n === 0 && this.#lastStatus === NativeStatus.Empty && wait && timeout !== 0) n = this.#takeBatch(limit, timeout ?? -1);
    if (n > 0) return this.#decodeBatch(n);
    if (this.#lastStatus === NativeStatus.Empty) {
      if (wait && timeout !== 0) throw new QueueEmptyError(`getMany timed out after ${timeout} ms: the queue is still empty`, true);
      return [];
    }
    throw this.#statusError(this.#lastStatus);
  }

  // ------------------------------------------------------------------------------------------
  // AsyncQueueLike

  putAsync(item: T, options?: AsyncWaitOptions): Promise<void> {
    let bytes: Uint8Array;
    let timeoutMs: number | undefined;
    let signal: AbortSignal | undefined;
    try {
      ({ timeoutMs, signal } = this.#asyncOptions(options));
      const q = this.#handle();
      if (signal?.aborted) throw signal.reason; // an aborted signal wins, like Node's own APIs
      bytes = this.#encode(item);
      if (this.#putters.size === 0) {
        const rc = q.tryPut(bytes);
        if (rc === 0) return Promise.resolve();
        if (rc !== -NativeStatus.Full) throw this.#statusError(-rc);
      }
      if (timeoutMs === 0) throw new QueueFullError('putAsync timed out after 0 ms: the queue is full', true);
    } catch (e) {
      return Promise.reject(e);
    }
    const p = this.#putters.wait(bytes, {
      timeoutMs,
      signal,
      onTimeout: () => new QueueFullError(`putAsync timed out after ${timeoutMs} ms: the queue is still full`, true),
    });
    this.#armWrite(bytes.length);
    p.catch(() => {
      if (this.#putters.size === 0) this.#disarm(NotifyKind.Writable);
    });
    return p;
  }

  getAsync(options?: AsyncWaitOptions): Promise<T> {
    let timeoutMs: number | undefined;
    let signal: AbortSignal | undefined;
    try {
      ({ timeoutMs, signal } = this.#asyncOptions(options));
      this.#handle();
      if (signal?.aborted) throw signal.reason;
      if (this.#getters.size === 0) {
        const raw = this.#takeRaw();
        if (raw !== null) return Promise.resolve(this.#codec.decode(raw) as T);
        if (this.#lastStatus !== NativeStatus.Empty) throw this.#statusError(this.#lastStatus);
      }
      if (timeoutMs === 0) throw new QueueEmptyError('getAsync timed out after 0 ms: the queue is empty', true);
    } catch (e) {
      return Promise.reject(e);
    }
    const p = this.#getters.wait(undefined, {
      timeoutMs,
      signal,
      onTimeout: () => new QueueEmptyError(`getAsync timed out after ${timeoutMs} ms: the queue is still empty`, true),
    });
    this.#armRead();
    p.catch(() => {
      if (this.#getters.size === 0) this.#disarm(NotifyKind.Readable);
    });
    return p;
  }

  /** Yields messages until the queue is closed and drained. */
  [Symbol.asyncIterator](): AsyncIterator<T> {
    return this.iterate();
  }

  /** Like `for await (const m of q)`, with a batch size and an abort signal. */
  async *iterate(options?: IterateOptions): AsyncGenerator<T, void, undefined> {
    const opts = checkOptions<IterateOptions>(options);
    checkKnownKeys(opts, ['batchSize', 'signal']);
    const batch = opts.batchSize === undefined ? 1 : checkInteger(opts.batchSize, 'options.batchSize', 1, BATCH_MAX);
    const signal = checkSignal(opts.signal, 'options.signal');
    for (;;) {
      if (batch > 1 && this.#q !== null) {
        const n = this.#takeBatch(batch, -2);
        if (n > 0) {
          yield* this.#decodeBatch(n);
          continue;
        }
      }
      let item: T;
      try {
        item = await this.getAsync({ signal });
      } catch (e) {
        if (e instanceof QueueClosedError) return;
        throw e;
      }
      yield item;
    }
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
    this.#handle().setSpinUs(checkInteger(us, 'us', 0, 1_000_000));
  }

  /**
   * Detaches this handle (the queue stays for the others). Pending async calls reject with
   * QueueReleasedError. Idempotent. Also runs on garbage collection and at thread/process exit.
   */
  release(): void {
    const q = this.#q;
    if (q === null) return;
    this.#q = null;
    this.#readArmed = this.#writeArmed = false;
    q.release();
    if (this.#liveRef !== undefined) {
      live.delete(this.#liveRef);
      forgetOnCollect.unregister(this.#liveRef);
    }
    this.#getters.rejectAll(() => new QueueReleasedError());
    this.#putters.rejectAll(() => new QueueReleasedError());
    forgetResolved(this.#name, this);
  }

  /** Removes the queue's name (handles attached elsewhere keep working) and releases this handle. */
  destroy(): void {
    SageQueue.destroy(this.#name);
    this.release();
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

  #asyncOptions(options: AsyncWaitOptions | undefined): { timeoutMs: number | undefined; signal: AbortSignal | undefined } {
    const opts = checkOptions<AsyncWaitOptions>(options);
    checkKnownKeys(opts, ['timeoutMs', 'signal']);
    return { timeoutMs: checkTimeoutMs(opts.timeoutMs, 'options.timeoutMs'), signal: checkSignal(opts.signal, 'options.signal') };
  }

  #encode(item: T): Uint8Array {
    const bytes = this.#codec.encode(item);
    if (bytes.length > this.#maxMessageSize) throw new MessageTooLargeError(bytes.length, this.#maxMessageSize);
    return bytes;
  }

  #statusError(status: number): Error {
    switch (status) {
      case NativeStatus.Empty:
        return new QueueEmptyError();
      case NativeStatus.Full:
        return new QueueFullError();
      case NativeStatus.Closed:
        return new QueueClosedError(`queue ${this.#name} is closed`);
      case NativeStatus.InvalidArgument:
        return this.#q === null || this.#q.isReleased() ? new QueueReleasedError() : new SageQueueError('ERR_INVALID_ARG_VALUE', 'invalid argument');
      default: {
        const info = statusInfo(status);
        return new SharedMemoryError(info.code, `${info.message} (queue ${this.#name})`, this.#name);
      }
    }
  }

  #newSlab(bytes: number): void {
    this.#slab = Buffer.allocUnsafeSlow(Math.max(SLAB_BYTES, bytes));
    this.#slabOff = 0;
  }

  /** One message as a view of the slab, or null with #lastStatus set. Never waits. */
  #takeRaw(): Buffer | null {
    const q = this.#handle();
    for (;;) {
      if (this.#slab.length - this.#slabOff < 64) this.#newSlab(SLAB_BYTES);
      const off = this.#slabOff;
      const n = q.tryGet(this.#slab, off);
      if (n >= 0) {
        // Views handed out stay valid: the slab is never written again below this offset.
        // 8-byte alignment keeps typed arrays decoded in place aligned.
        this.#slabOff = (off + n + 7) & ~7;
        return this.#slab.subarray(off, off + n);
      }
      if (n === -NativeStatus.BufferTooSmall) {
        this.#newSlab(q.needed());
        continue;
      }
      this.#lastStatus = -n;
      return null;
    }
  }

  /** Waits (blocking this thread: sync API) for one message. */
  #takeBlocking(timeoutMs: number): Buffer | null {
    const n = this.#takeBatch(1, timeoutMs);
    if (n === 0) return null;
    const off = this.#slabOff;
    const len = this.#lengths[0] as number;
    this.#slabOff = (off + len + 7) & ~7;
    return this.#slab.subarray(off, off + len);
  }

  /**
   * Takes up to `max` messages into the slab at #slabOff (not yet advanced); returns the count
   * (0 with #lastStatus set). timeoutMs: -2 = do not wait, -1 = forever.
   */
  #takeBatch(max: number, timeoutMs: number): number {
    const q = this.#handle();
    for (;;) {
      if (this.#slab.length - this.#slabOff < 4096) this.#newSlab(SLAB_BYTES);
      const n =
        timeoutMs === -2
          ? q.tryGetBatch(this.#slab, this.#slabOff, this.#lengths, max)
          : q.getBlocking(this.#slab, this.#slabOff, this.#lengths, max, timeoutMs);
      if (n > 0) return n;
      if (n === -NativeStatus.BufferTooSmall) {
        this.#newSlab(q.needed());
        continue;
      }
      this.#lastStatus = n === 0 ? NativeStatus.Empty : -n;
      return 0;
    }
  }

  /** Decodes `n` messages laid back to back at #slabOff, and advances past them. */
  #decodeBatch(n: number): T[] {
    const out = new Array<T>(n);
    let off = this.#slabOff;
    const slab = this.#slab;
    for (let i = 0; i < n; i++) {
      const len = this.#lengths[i] as number;
      out[i] = this.#codec.decode(slab.subarray(off, off + len)) as T;
      off += len;
    }
    this.#slabOff = (off + 7) & ~7;
    return out;
  }

  #armRead(): void {
    if (this.#readArmed || this.#q === null) return;
    this.#readArmed = true;
    this.#q.armReadable();
  }

  #armWrite(bytes: number): void {
    if (this.#q === null) return;
    this.#writeArmed = true;
    this.#q.armWritable(bytes);
  }

  #disarm(kind: NotifyKind): void {
    if (this.#q === null) return;
    if (kind === NotifyKind.Readable) {
      if (!this.#readArmed) return;
      this.#readArmed = false;
    } else {
      if (!this.#writeArmed) return;
      this.#writeArmed = false;
    }
    this.#q.disarm(kind, true);
  }

  /** Called on the JS thread when the native notifier saw the queue become readable/writable. */
  #onNotify(kind: NotifyKind): void {
    const q = this.#q;
    if (q === null) return;
    if (kind === NotifyKind.Readable) {
      this.#readArmed = false;
      q.disarm(NotifyKind.Readable, false);
      this.#drainGetters();
    } else {
      this.#writeArmed = false;
      q.disarm(NotifyKind.Writable, false);
      this.#drainPutters();
    }
  }

  #drainGetters(): void {
    while (this.#getters.size > 0 && this.#q !== null) {
      const raw = this.#takeRaw();
      if (raw === null) {
        if (this.#lastStatus === NativeStatus.Empty) {
          this.#armRead();
        } else {
          const status = this.#lastStatus;
          this.#getters.rejectAll(() => this.#statusError(status));
        }
        return;
      }
      const waiter = this.#getters.shift();
      if (waiter === undefined) return;
      try {
        waiter.resolve(this.#codec.decode(raw) as T);
      } catch (e) {
        waiter.reject(e); // a record that cannot be decoded is reported, never dropped silently
      }
    }
  }

  #drainPutters(): void {
    for (let bytes = this.#putters.peek(); bytes !== undefined && this.#q !== null; bytes = this.#putters.peek()) {
      const rc = this.#q.tryPut(bytes);
      if (rc === 0) {
        this.#putters.shift()?.resolve();
      } else if (rc === -NativeStatus.Full) {
        this.#armWrite(bytes.length);
        return;
      } else {
        this.#putters.rejectAll(() => this.#statusError(-rc));
        return;
      }
    }
  }
}
