/**
 * The async side of a SageQueue handle: getAsync, putAsync, iterate, and the readiness reports
 * of the native notifier thread.
 *
 * getAsync/putAsync that can complete at once do so on the JS thread, without any thread
 * hand-off (a put on a non-full queue returns an already resolved promise). A getAsync that finds
 * the queue empty first has the event loop poll the queue for up to the queue's `spinUs`: a
 * native idle handle checks the ring once per loop iteration without entering JS (read_poller.h),
 * so timers, I/O and other callbacks keep running between checks, and the loop is not asleep in
 * epoll when the message lands: the callback that learns of it takes it (waking a sleeping loop
 * through the notifier costs ~30 us on a VM). While each message taken is followed at once by the
 * next getAsync (a request/response loop), the idle callback polls on in the same loop iteration
 * for a bounded turn (at most ~20 us, then the loop's timers and I/O run): going round the loop
 * costs an epoll_wait syscall and every other phase, about as long as a reply takes to come.
 * After `spinUs` without a message it parks: the native notifier thread sleeps on the futex at
 * once (the spin budget is spent) and wakes the loop once when the queue becomes readable; that
 * callback takes the messages for every waiting getter before it returns. The price: a process whose getAsync waits keeps its core busy for up
 * to `spinUs` after each message (as a blocking get does); `spinUs: 0` never polls.
 *
 * Only the JS thread ever takes messages, and only for a waiter that is still waiting, so a wait
 * that times out or is aborted as a message arrives can never lose it.
 */
import { QueueClosedError, QueueEmptyError, QueueFullError } from '../errors';
import { NativeStatus, NotifyKind } from '../native';
import type { NativeQueue } from '../native';
import { checkInteger, checkKnownKeys, checkOptions, checkSignal } from '../validate';
import { WaiterList } from './async-waiters';
import { NotifyArming } from './notify-arming';
import type { AsyncWaitOptions } from './queue-like';
import type { IterateOptions } from './sage-options';
import { parseWaitOptions } from './skeleton';
import { BATCH_MAX, NO_WAIT } from './slab-reader';
import type { SlabReader } from './slab-reader';
import { TakenStash } from './taken-stash';

/** Messages `for await` / iterate() take per native call unless told otherwise. */
export const DEFAULT_ITERATE_BATCH = 64;

/** What the async side needs from its SageQueue. */
export interface AsyncHost<T> {
  /** The attached handle; throws QueueReleasedError once released. */
  handle(): NativeQueue;
  /** The attached handle, or null once released. */
  current(): NativeQueue | null;
  /** Encodes and size-checks an item (throws on failure). */
  encode(item: T): Uint8Array;
  decode(raw: Buffer): T;
  /** The typed error for a native status. */
  statusError(status: number): Error;
}

/** Shared by every putAsync that completes at once: nothing to allocate. */
const RESOLVED: Promise<void> = Promise.resolve();
/** The wait options of a getAsync without timeout or signal (nothing to allocate per call). */
const UNBOUNDED = { onTimeout: (): never => { throw new Error('unreachable: no timeout'); } };

export class SageAsync<T> {
  /** Messages this handle took but has not handed out: every consumer takes these first. */
  readonly stash = new TakenStash();
  readonly #host: AsyncHost<T>;
  readonly #reader: SlabReader;
  readonly #getters = new WaiterList<T>(() => this.#abandoned(NotifyKind.Readable));
  readonly #putters = new WaiterList<void, Uint8Array>(() => this.#abandoned(NotifyKind.Writable));
  readonly #arming = new NotifyArming();
  #spinMs: number;
  /** While polling: when the budget ends (performance.now() ms). */
  #pollUntil = 0;
  #polling = false;

  constructor(host: AsyncHost<T>, reader: SlabReader, spinUs: number) {
    this.#host = host;
    this.#reader = reader;
    this.#spinMs = spinUs / 1000;
  }

  /** The queue's spin budget (µs): how long an empty getAsync polls before it parks. */
  set spinUs(us: number) {
    this.#spinMs = us / 1000;
  }

  putAsync(item: T, options?: AsyncWaitOptions): Promise<void> {
    let bytes: Uint8Array;
    let timeoutMs: number | undefined;
    let signal: AbortSignal | undefined;
    try {
      ({ timeoutMs, signal } = parseWaitOptions(options));
      const q = this.#host.handle();
      if (signal?.aborted) throw signal.reason; // an aborted signal wins, like Node's own APIs
      bytes = this.#host.encode(item);
      if (this.#putters.size === 0) {
        const rc = q.tryPut(bytes);
        if (rc === 0) return RESOLVED;
        if (rc !== -NativeStatus.Full) throw this.#host.statusError(-rc);
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
    this.#arming.armWrite(this.#host.current(), this.#putters.peek()?.length ?? bytes.length);
    return p;
  }

  getAsync(options?: AsyncWaitOptions): Promise<T> {
    let timeoutMs: number | undefined;
    let signal: AbortSignal | undefined;
    let q: NativeQueue;
    try {
      if (options !== undefined) ({ timeoutMs, signal } = parseWaitOptions(options));
      q = this.#host.handle();
      if (signal?.aborted) throw signal.reason;
      if (this.#getters.size === 0) {
        const raw = this.stash.shift() ?? this.#reader.takeRaw(q);
        if (raw !== null) return Promise.resolve(this.#host.decode(raw));
        if (this.#reader.lastStatus !== NativeStatus.Empty) throw this.#host.statusError(this.#reader.lastStatus);
      }
      if (timeoutMs === 0) throw new QueueEmptyError('getAsync timed out after 0 ms: the queue is empty', true);
    } catch (e) {
      return Promise.reject(e);
    }
    const p = this.#getters.wait(
      undefined,
      timeoutMs === undefined && signal === undefined
        ? UNBOUNDED
        : { timeoutMs, signal, onTimeout: () => new QueueEmptyError(`getAsync timed out after ${timeoutMs} ms: the queue is still empty`, true) },
    );
    // Older waiters go first; a stash filled while they waited is theirs (and then this one's).
    if (this.stash.size > 0 && this.#serve(q) < 0) return p;
    if (this.#getters.size > 0) this.#awaitData();
    return p;
  }

  /**
   * Yields messages until the queue is closed and drained. With batchSize > 1 (default 64), what
   * is in the queue is taken with one native call, up to a batch, and yielded one by one: a
   * consumer that leaves the loop early leaves the rest to this handle's next consumer, but a
   * process killed meanwhile loses them. batchSize 1 takes each message only when it is yielded.
   */
  async *iterate(options?: IterateOptions): AsyncGenerator<T, void, undefined> {
    const opts = checkOptions<IterateOptions>(options);
    checkKnownKeys(opts, ['batchSize', 'signal']);
    const batch = opts.batchSize === undefined ? DEFAULT_ITERATE_BATCH : checkInteger(opts.batchSize, 'options.batchSize', 1, BATCH_MAX);
    const signal = checkSignal(opts.signal, 'options.signal');
    for (;;) {
      if (signal?.aborted) throw signal.reason;
      const raw = this.stash.shift();
      if (raw !== undefined) {
        yield this.#host.decode(raw);
        continue;
      }
      const q = this.#host.current();
      if (batch > 1 && q !== null && this.#getters.size === 0) {
        const n = this.#reader.takeBatch(q, batch, NO_WAIT);
        if (n > 0) {
          this.#reader.viewBatch(n, this.stash);
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

  /** Up to `max` stashed messages, decoded (getMany takes these before the queue's). */
  takeStashed(max: number): T[] {
    const out: T[] = [];
    for (let raw = this.stash.shift(); raw !== undefined; raw = out.length < max ? this.stash.shift() : undefined) {
      try {
        out.push(this.#host.decode(raw));
      } catch (e) {
        // As SlabReader.decodeBatch: the messages before it are handed out; it throws next time.
        if (out.length === 0) throw e;
        this.stash.unshift(raw);
        return out;
      }
      if (out.length >= max) break;
    }
    return out;
  }

  /** Called on the JS thread when the native notifier saw the queue become readable/writable. */
  onNotify(kind: NotifyKind): void {
    const q = this.#host.current();
    if (q === null) return;
    if (kind === NotifyKind.Polled || kind === NotifyKind.PollExpired) {
      this.#polling = false;
      this.#polled(q, kind === NotifyKind.Polled);
      return;
    }
    this.#arming.fired(q, kind);
    if (kind === NotifyKind.Readable) {
      // Take for every waiter now, in this turn; whoever is left polls, then parks again.
      if (this.#serve(q) >= 0 && this.#getters.size > 0) this.#awaitData();
    } else {
      this.#drainPutters(q);
    }
  }

  /** The queue was closed (by this handle): putters fail at once, getters get what is left first. */
  closed(): void {
    const q = this.#host.current();
    this.#putters.rejectAll(() => new QueueClosedError());
    this.#arming.disarm(q, NotifyKind.Writable);
    if (q !== null && this.#serve(q) >= 0 && this.#getters.size > 0) this.#awaitData();
  }

  /** The handle was released: every pending call rejects with `makeError()`; stashed messages go. */
  released(makeError: () => Error): void {
    this.#arming.reset();
    this.#polling = false; // the poller went with the native handle
    this.stash.clear();
    this.#getters.rejectAll(makeError);
    this.#putters.rejectAll(makeError);
  }

  /** Gets are waiting and the queue was empty: poll from the event loop, then park. */
  #awaitData(): void {
    if (this.#polling || this.#arming.reading) return;
    const q = this.#host.current();
    if (q === null) return;
    if (this.#spinMs > 0) {
      this.#pollUntil = performance.now() + this.#spinMs;
      if (q.pollReadable(this.#spinMs * 1000)) {
        this.#polling = true;
        return;
      }
      this.#arming.armRead(q); // no loop poller: the notifier thread spins instead
      return;
    }
    this.#arming.armRead(q, false);
  }

  /** The loop poller reported: a message (or close) is there, or the budget ran out. */
  #polled(q: NativeQueue, ready: boolean): void {
    if (this.#getters.size === 0) return;
    const served = ready ? this.#serve(q) : 0;
    if (served < 0 || this.#getters.size === 0) return;
    const now = performance.now();
    // A message taken is a readiness change: a fresh budget. None (another consumer was faster,
    // or the next record is not readable yet) keeps the old deadline, so polling stays bounded.
    if (served > 0) this.#pollUntil = now + this.#spinMs;
    const left = this.#pollUntil - now;
    if (left > 0 && q.pollReadable(left * 1000)) {
      this.#polling = true;
      return;
    }
    this.#arming.armRead(q, false); // spun already: the notifier thread sleeps at once
  }

  /**
   * Takes a message for each waiting getter, oldest first, until none waits or the queue is
   * empty. Returns how many were served, or -1 after rejecting them all (closed and drained, or
   * an error status). A record that cannot be decoded rejects its waiter: reported, never dropped.
   */
  #serve(q: NativeQueue): number {
    let served = 0;
    while (this.#getters.size > 0) {
      const raw = this.stash.shift() ?? this.#reader.takeRaw(q);
      if (raw === null) {
        const status = this.#reader.lastStatus;
        if (status === NativeStatus.Empty) return served;
        this.#getters.rejectAll(() => this.#host.statusError(status));
        this.#arming.disarm(q, NotifyKind.Readable);
        return -1;
      }
      const waiter = this.#getters.shift();
      if (waiter === undefined) return served;
      try {
        waiter.resolve(this.#host.decode(raw));
      } catch (e) {
        waiter.reject(e);
      }
      served++;
    }
    return served;
  }

  #drainPutters(q: NativeQueue): void {
    for (let bytes = this.#putters.peek(); bytes !== undefined; bytes = this.#putters.peek()) {
      const rc = q.tryPut(bytes);
      if (rc === 0) {
        this.#putters.shift()?.resolve();
      } else if (rc === -NativeStatus.Full) {
        this.#arming.armWrite(q, bytes.length);
        return;
      } else {
        this.#putters.rejectAll(() => this.#host.statusError(-rc));
        this.#arming.disarm(q, NotifyKind.Writable);
        return;
      }
    }
  }

  /** A waiter of `kind` left unserved (timeout, abort): with nobody left, stop the report. */
  #abandoned(kind: NotifyKind): void {
    const left = kind === NotifyKind.Readable ? this.#getters.size : this.#putters.size;
    if (left !== 0) return;
    const q = this.#host.current();
    if (kind === NotifyKind.Readable && this.#polling) {
      this.#polling = false;
      q?.stopPoll();
    }
    this.#arming.disarm(q, kind);
  }
}
