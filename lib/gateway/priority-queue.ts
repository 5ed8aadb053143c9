/**
 * PriorityMessageQueue: strict priority between levels, FIFO within a level, aging, watermark
 * backpressure and an id de-duplication window, over in-process lanes or cross-process lanes
 * (one SageQueue per level, see shared-lanes.ts).
 *
 * Aging bound (per consumer handle): every time this handle serves messages of a level, each
 * LESS urgent lane that is non-empty is charged that many "skips"; a lane charged `agingAfter`
 * skips (default 32) is served one message next. So under any load of more urgent messages, the
 * message at the head of a non-empty lane is served within `agingAfter + 3` dequeues of that
 * consumer, and the n-th message of a LOW backlog within n × (agingAfter + 3).
 */
import { InvalidArgumentTypeError, QueueClosedError, QueueFullError } from '../errors';
import { checkInteger, checkKnownKeys, checkOptions, checkSignal, checkTimeoutMs } from '../validate';
import type { BackpressureController } from './backpressure';
import { BackpressureError } from './errors';
import { LocalLanes } from './lanes';
import type { PriorityLanes } from './lanes';
import { LEVEL_COUNT, PRIORITY_NAMES, parsePriority } from './priorities';
import type { MessagePriority, PriorityName } from './priorities';
import { parsePolicy } from './priority-options';
import type {
  DequeueBatchOptions, EnqueueEntry, EnqueueOptions, EnqueueOutcome, Policy, PriorityMessageQueueOptions, PriorityQueueStats, SharedPriorityQueueOptions,
} from './priority-options';
import { SharedLanes } from './shared-lanes';
import type { PriorityQueueDescriptor } from './shared-lanes';

export type {
  DequeueBatchOptions, EnqueueEntry, EnqueueOptions, EnqueueOutcome, PriorityMessageQueueOptions, PriorityQueueStats, SharedPriorityQueueOptions,
} from './priority-options';

const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(t);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });

export class PriorityMessageQueue<T = unknown> {
  readonly #lanes: PriorityLanes<T>;
  readonly #p: Policy;
  readonly #skips = new Int32Array(LEVEL_COUNT);
  #enqueued = 0;
  #dequeued = 0;
  #rejected = 0;
  #aged = 0;

  /** An in-process queue. Use `PriorityMessageQueue.create()` / `.attach()` for one shared by processes. */
  constructor(options?: PriorityMessageQueueOptions, /** @internal */ lanes?: PriorityLanes<T>, /** @internal */ policy?: Policy) {
    this.#p = policy ?? parsePolicy(options);
    this.#lanes = lanes ?? new LocalLanes<T>(this.#p.capacity);
  }

  /** Creates cross-process lanes `<name>.p0` ... `<name>.p3` (SageQueues; they must not exist). */
  static create<T = unknown>(name: string, options?: SharedPriorityQueueOptions): PriorityMessageQueue<T> {
    const policy = parsePolicy(options, ['lane']);
    const lanes = SharedLanes.create<T>(name, policy.capacity, options?.lane);
    return new PriorityMessageQueue<T>(undefined, lanes, policy);
  }

  /** Attaches to lanes created by another process (from its `descriptor`). */
  static attach<T = unknown>(descriptor: PriorityQueueDescriptor, options?: Omit<PriorityMessageQueueOptions, 'capacity'> & { spinUs?: number }): PriorityMessageQueue<T> {
    const o = checkOptions<PriorityMessageQueueOptions & { spinUs?: number }>(options);
    const { spinUs, ...rest } = o;
    const lanes = SharedLanes.attach<T>(descriptor, spinUs === undefined ? undefined : checkInteger(spinUs, 'options.spinUs', 0, 1_000_000));
    const policy = parsePolicy({ ...rest, capacity: lanes.descriptor.capacity });
    return new PriorityMessageQueue<T>(undefined, lanes, policy);
  }

  /** The descriptor of shared lanes (send it to another process), or null for an in-process queue. */
  get descriptor(): PriorityQueueDescriptor | null {
    return this.#lanes instanceof SharedLanes ? { ...this.#lanes.descriptor } : null;
  }

  get kind(): 'local' | 'shared' {
    return this.#lanes.kind;
  }

  get capacity(): number {
    return this.#p.capacity;
  }

  get closed(): boolean {
    return this.#lanes.closed;
  }

  /** Messages waiting, all levels (shared lanes: as every process sees it). */
  get size(): number {
    let n = 0;
    for (let l = 0; l < LEVEL_COUNT; l++) n += this.#lanes.depth(l as MessagePriority);
    return n;
  }

  depth(priority: MessagePriority): number {
    return this.#lanes.depth(parsePriority(priority));
  }

  get usageRatio(): number {
    return this.size / this.#p.capacity;
  }

  /** Whether NORMAL and LOW enqueues are being throttled (re-reads the usage). */
  get isThrottling(): boolean {
    return this.#p.backpressure?.update(this.usageRatio) ?? false;
  }

  // ----------------------------------------------------------------------------------------
  // Producing

  /**
   * Enqueues one message. Resolves 'enqueued', or 'duplicate' when its `id` was seen within the
   * dedup window (dropped, counted). While throttling, a NORMAL or LOW message waits for usage to
   * fall below the low watermark (mode 'wait'; BackpressureError after `timeoutMs`) or is
   * refused at once with BackpressureError (mode 'reject'). CRITICAL and HIGH are never throttled;
   * a full lane makes them wait for room (up to `timeoutMs`).
   */
  async enqueue(message: T, priority: MessagePriority, options?: EnqueueOptions): Promise<'enqueued' | 'duplicate'> {
    const level = parsePriority(priority);
    const o = checkOptions<EnqueueOptions>(options);
    checkKnownKeys(o, ['id', 'timeoutMs', 'signal']);
    const timeoutMs = checkTimeoutMs(o.timeoutMs, 'options.timeoutMs');
    const signal = checkSignal(o.signal, 'options.signal');
    const id = this.#checkId(o.id);
    if (this.#lanes.closed) throw new QueueClosedError();
    if (id !== undefined && this.#p.dedup?.isDuplicate(id)) return 'duplicate';
    try {
      if (level >= 2 && this.#throttled()) await this.#waitForRelease(timeoutMs ?? this.#p.waitTimeoutMs, signal);
      if (this.#lanes.put(level, [message]) === 0) await this.#putWaiting(level, message, timeoutMs, signal);
    } catch (e) {
      if (id !== undefined) this.#p.dedup?.forget(id); // not enqueued: a retry must not be a "duplicate"
      throw e;
    }
    this.#enqueued++;
    return 'enqueued';
  }

  /**
   * Enqueues without waiting: 'enqueued' or 'duplicate'. Throws BackpressureError for a throttled
   * NORMAL/LOW message (either mode) and QueueFullError when its lane is full.
   */
  tryEnqueue(message: T, priority: MessagePriority, id?: string): 'enqueued' | 'duplicate' {
    const level = parsePriority(priority);
    const key = this.#checkId(id);
    if (key !== undefined && this.#p.dedup?.isDuplicate(key)) return 'duplicate';
    if (level >= 2 && this.#p.backpressure !== null && this.#throttled()) {
      this.#rejected++;
      if (key !== undefined) this.#p.dedup?.forget(key);
      throw new BackpressureError(this.#p.backpressure.usageRatio, false);
    }
    if (this.#lanes.put(level, [message]) === 0) {
      if (key !== undefined) this.#p.dedup?.forget(key);
      throw new QueueFullError(`the ${PRIORITY_NAMES[level]} lane is full (${this.#p.capacity} messages)`);
    }
    this.#enqueued++;
    return 'enqueued';
  }

  /**
   * Enqueues a batch with one lane write per level (one native call per level for shared lanes),
   * in the given order within each level. Returns each entry's outcome: 'throttled' entries
   * (NORMAL/LOW while throttling, in 'reject' mode or after waiting `timeoutMs`) were not
   * enqueued. CRITICAL and HIGH entries are written before any throttled wait.
   */
  async enqueueMany(entries: readonly EnqueueEntry<T>[], options?: Omit<EnqueueOptions, 'id'>): Promise<EnqueueOutcome[]> {
    if (!Array.isArray(entries)) throw new InvalidArgumentTypeError('entries', 'an array of { message, priority, id? }', entries);
    const o = checkOptions<EnqueueOptions>(options);
    checkKnownKeys(o, ['timeoutMs', 'signal']);
    const timeoutMs = checkTimeoutMs(o.timeoutMs, 'options.timeoutMs');
    const signal = checkSignal(o.signal, 'options.signal');
    if (this.#lanes.closed) throw new QueueClosedError();
    const outcomes = new Array<EnqueueOutcome>(entries.length);
    // Entry indexes per level, in order (validated first: a bad entry enqueues nothing).
    const byLevel: number[][] = [[], [], [], []];
    for (let index = 0; index < entries.length; index++) {
      const entry = entries[index] as EnqueueEntry<T>;
      if (entry === null || typeof entry !== 'object') throw new InvalidArgumentTypeError(`entries[${index}]`, 'an object { message, priority, id? }', entry);
      const p = entry.priority;
      const level = p === 0 || p === 1 || p === 2 || p === 3 ? p : parsePriority(p, `entries[${index}].priority`);
      if (entry.id !== undefined) this.#checkId(entry.id);
      (byLevel[level] as number[]).push(index);
    }
    const dedup = this.#p.dedup;
    for (let level = 0; level < LEVEL_COUNT; level++) {
      let items = byLevel[level] as number[];
      if (items.length === 0) continue;
      if (dedup !== null) {
        const fresh: number[] = [];
        for (const index of items) {
          const id = (entries[index] as EnqueueEntry<T>).id;
          if (id !== undefined && dedup.isDuplicate(id)) outcomes[index] = 'duplicate';
          else fresh.push(index);
        }
        items = fresh;
      }
      while (items.length > 0) {
        let take = items.length;
        if (level >= 2 && this.#p.backpressure !== null) {
          if (this.#throttled()) {
            let released = false;
            if (this.#p.mode === 'wait') {
              try {
                await this.#waitForRelease(timeoutMs ?? this.#p.waitTimeoutMs, signal);
                released = true;
              } catch (e) {
                if (!(e instanceof BackpressureError)) throw e;
              }
            } else {
              this.#rejected += items.length;
            }
            if (!released) {
              for (const index of items) {
                outcomes[index] = 'throttled';
                const id = (entries[index] as EnqueueEntry<T>).id;
                if (id !== undefined) dedup?.forget(id);
              }
              break;
            }
          }
          // Only as many as keep usage below the high watermark; the rest are checked again.
          take = Math.max(1, Math.min(items.length, Math.ceil(this.#p.backpressure.highWatermark * this.#p.capacity - this.size)));
        }
        const chunk = take === items.length ? items : items.slice(0, take);
        items = take === items.length ? [] : items.slice(take);
        const messages = new Array<T>(chunk.length);
        for (let i = 0; i < chunk.length; i++) messages[i] = (entries[chunk[i] as number] as EnqueueEntry<T>).message;
        const put = this.#lanes.put(level as MessagePriority, messages);
        for (let i = put; i < messages.length; i++) await this.#putWaiting(level as MessagePriority, messages[i] as T, timeoutMs, signal);
        for (const index of chunk) outcomes[index] = 'enqueued';
        this.#enqueued += chunk.length;
      }
    }
    return outcomes;
  }

  // ----------------------------------------------------------------------------------------
  // Consuming

  /**
   * Takes up to `batchSize` messages without waiting: the most urgent first, FIFO within a level,
   * with aging (see the module comment).
   */
  takeBatch(batchSize = 100): T[] {
    const max = checkInteger(batchSize, 'batchSize', 1, 1 << 20);
    const out: T[] = [];
    this.#takeInto(out, max);
    return out;
  }

  /**
   * Up to `batchSize` messages. If any lane has messages, returns at once with what is there;
   * otherwise waits up to `timeoutMs` for the first (on every lane at once) and then takes what
   * else is there. Resolves [] on timeout; rejects with QueueClosedError once closed and drained.
   */
  async dequeueBatch(options?: DequeueBatchOptions): Promise<T[]> {
    const o = checkOptions<DequeueBatchOptions>(options);
    checkKnownKeys(o, ['batchSize', 'timeoutMs', 'signal']);
    const signal = checkSignal(o.signal, 'options.signal'); // before anything is taken
    const first = this.#firstTake(o);
    if (first.done) return first.out;
    return this.#takeAfterWait(first.max, await this.#lanes.waitAny(first.timeoutMs, signal));
  }

  /**
   * dequeueBatch blocking this thread instead of awaiting: for a process whose main loop only
   * serves these lanes (a service worker), one wait on the doorbell wakes this thread directly,
   * without the notifier thread and event-loop wake an async wait costs. Signals JS listens for
   * interrupt the wait (InterruptedError); run the event loop between calls (e.g. one
   * `setImmediate` turn) so that IPC, timers and the signal handlers run. Returns
   * [] on timeout; throws QueueClosedError once closed and drained. On an in-process queue it never
   * waits (nothing could fill it meanwhile): WouldDeadlockError when asked to wait forever on empty
   * lanes.
   */
  dequeueBatchSync(options?: Omit<DequeueBatchOptions, 'signal'>): T[] {
    const o = checkOptions<DequeueBatchOptions>(options);
    checkKnownKeys(o, ['batchSize', 'timeoutMs']);
    const first = this.#firstTake(o);
    if (first.done) return first.out;
    return this.#takeAfterWait(first.max, this.#lanes.waitAnySync(first.timeoutMs));
  }

  /**
   * A dequeue's checked batch size and timeout, and what is there now: `done` when that is the
   * answer (some messages, or none and no waiting); otherwise the caller waits, then
   * #takeAfterWait.
   */
  #firstTake(o: Partial<DequeueBatchOptions>): { done: true; out: T[] } | { done: false; max: number; timeoutMs: number | undefined } {
    const max = o.batchSize === undefined ? 100 : checkInteger(o.batchSize, 'options.batchSize', 1, 1 << 20);
    const timeoutMs = checkTimeoutMs(o.timeoutMs, 'options.timeoutMs');
    const out: T[] = [];
    this.#takeInto(out, max);
    if (out.length > 0) return { done: true, out };
    if (timeoutMs === 0) {
      if (this.#lanes.closed) throw new QueueClosedError();
      return { done: true, out };
    }
    return { done: false, max, timeoutMs };
  }

  /** After a wait on every lane: what is there (none when the wait timed out). */
  #takeAfterWait(max: number, woke: boolean): T[] {
    const out: T[] = [];
    if (!woke) return out;
    this.#takeInto(out, max);
    if (this.#lanes.nudge !== undefined && out.length === max && this.size > 0) this.#lanes.nudge();
    return out;
  }

  /** Batches until the queue is closed and drained (or the signal aborts). */
  async *batches(options?: Omit<DequeueBatchOptions, 'timeoutMs'>): AsyncGenerator<T[], void, undefined> {
    const o = checkOptions<DequeueBatchOptions>(options);
    checkKnownKeys(o, ['batchSize', 'signal']);
    for (;;) {
      let batch: T[];
      try {
        batch = await this.dequeueBatch({ batchSize: o.batchSize, signal: o.signal });
      } catch (e) {
        if (e instanceof QueueClosedError) return;
        throw e;
      }
      if (batch.length > 0) yield batch;
    }
  }

  // ----------------------------------------------------------------------------------------
  // Lifetime and stats

  /** Closes the queue for every process: enqueues fail; consumers drain, then end. */
  close(): void {
    this.#lanes.close();
  }

  /** Detaches this handle (shared lanes live on for other processes). */
  release(): void {
    this.#lanes.release();
  }

  /** Removes the lanes (shared: unlinks their segments; attached handles keep working). */
  destroy(): void {
    this.#lanes.destroy();
  }

  stats(): PriorityQueueStats {
    const levels = {} as Record<PriorityName, number>;
    let size = 0;
    for (let l = 0; l < LEVEL_COUNT; l++) {
      const d = this.#lanes.depth(l as MessagePriority);
      levels[PRIORITY_NAMES[l] as PriorityName] = d;
      size += d;
    }
    const usage = size / this.#p.capacity;
    const throttling = this.#p.backpressure?.update(usage) ?? false;
    return {
      size,
      enqueue_count: this.#enqueued,
      dequeue_count: this.#dequeued,
      duplicate_count: this.#p.dedup?.duplicateCount ?? 0,
      rejected_count: this.#rejected,
      aged_count: this.#aged,
      levels,
      usage_ratio: usage,
      is_throttling: throttling,
      capacity: this.#p.capacity,
      kind: this.#lanes.kind,
    };
  }

  // ----------------------------------------------------------------------------------------

  #checkId(id: unknown): string | undefined {
    if (id === undefined) return undefined;
    if (typeof id !== 'string' || id.length === 0) throw new InvalidArgumentTypeError('id', 'a non-empty string', id);
    return id;
  }

  #throttled(): boolean {
    return this.#p.backpressure?.update(this.usageRatio) ?? false;
  }

  async #waitForRelease(timeoutMs: number | undefined, signal: AbortSignal | undefined): Promise<void> {
    const bp = this.#p.backpressure as BackpressureController;
    if (this.#p.mode === 'reject') {
      this.#rejected++;
      throw new BackpressureError(bp.usageRatio, false);
    }
    const deadline = timeoutMs === undefined ? Infinity : Date.now() + timeoutMs;
    while (this.#throttled()) {
      if (Date.now() >= deadline) {
        this.#rejected++;
        throw new BackpressureError(bp.usageRatio, true);
      }
      if (this.#lanes.closed) throw new QueueClosedError();
      await sleep(Math.min(this.#p.pollMs, Math.max(1, deadline - Date.now())), signal);
    }
  }

  async #putWaiting(level: MessagePriority, message: T, timeoutMs: number | undefined, signal: AbortSignal | undefined): Promise<void> {
    if (timeoutMs === undefined) return this.#lanes.putWait(level, message, signal);
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(new QueueFullError(`the ${PRIORITY_NAMES[level]} lane stayed full for ${timeoutMs} ms`, true)), timeoutMs);
    const onAbort = (): void => ac.abort(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await this.#lanes.putWait(level, message, ac.signal);
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Strict priority with aging; see the module comment for the bound. */
  #takeInto(out: T[], max: number): void {
    const lanes = this.#lanes;
    const skips = this.#skips;
    const k = this.#p.agingAfter;
    while (out.length < max) {
      let level = -1;
      let n = 1;
      let aged = false;
      for (let l = 1; l < LEVEL_COUNT; l++) {
        if ((skips[l] as number) >= k) {
          level = l;
          aged = true;
          break;
        }
      }
      if (level < 0) {
        for (let l = 0; l < LEVEL_COUNT; l++) {
          if (lanes.depth(l as MessagePriority) > 0) {
            level = l;
            break;
          }
        }
        if (level < 0) return;
        n = max - out.length;
        // Stop where a less urgent waiting lane would pass its aging bound.
        for (let l = level + 1; l < LEVEL_COUNT; l++) if (lanes.depth(l as MessagePriority) > 0) n = Math.min(n, k - (skips[l] as number));
      }
      const got = lanes.take(level as MessagePriority, n);
      skips[level] = 0;
      if (got.length === 0) {
        if (!aged) return; // raced with another consumer: nothing left
        continue;
      }
      if (aged) {
        // Served ahead of more urgent messages only if some were waiting.
        for (let l = 0; l < level; l++) {
          if (lanes.depth(l as MessagePriority) > 0) {
            this.#aged += got.length;
            break;
          }
        }
      }
      for (const m of got) out.push(m);
      this.#dequeued += got.length;
      for (let l = level + 1; l < LEVEL_COUNT; l++) {
        if (lanes.depth(l as MessagePriority) > 0) skips[l] = (skips[l] as number) + got.length;
        else skips[l] = 0;
      }
    }
  }
}
