/**
 * BatchProcessor and MessageDispatcher. A BatchProcessor collects items and hands them to its
 * `process` function in batches: a batch is cut when it reaches `batchSize` (default 100), when
 * `timeoutMs` (default 10) has passed since its first item, on `flush()` / an urgent item, or on
 * `close()`. At most `maxBatches` (default 10) batches are in flight; a failed batch is retried
 * after `retryDelayMs` (default 100) up to `maxRetries` (default 3) more times, then handed to
 * `onDeadLetter`. `add()` waits while `maxPending` items are buffered (bounded memory).
 * MessageDispatcher keeps one BatchProcessor per destination.
 *
 * With `cutWhenIdle`, batching adapts to load: while no batch is in flight, a batch is cut at the
 * end of the event-loop turn in which its first item came (reason 'idle'), so a lone message does
 * not wait `timeoutMs`; while batches are in flight, items accumulate, and the batch is cut when
 * the last one in flight completes (also 'idle'). `batchSize`, `timeoutMs` and `maxBatches` stay
 * upper bounds: a batch never exceeds batchSize, never waits longer than timeoutMs, and no more
 * than maxBatches are in flight.
 */
import { InvalidArgumentTypeError, QueueClosedError } from '../errors';
import { checkBoolean, checkInteger, checkKnownKeys, checkOptions } from '../validate';

export type FlushReason = 'size' | 'timeout' | 'flush' | 'close' | 'idle';

export interface BatchProcessorOptions<T> {
  process: (batch: T[], info: { reason: FlushReason; attempt: number }) => void | Promise<void>;
  batchSize?: number;
  timeoutMs?: number;
  maxBatches?: number;
  retryDelayMs?: number;
  maxRetries?: number;
  /** Items buffered (not yet in flight) before add() waits. Default batchSize × maxBatches × 4. */
  maxPending?: number;
  /** Receives a batch that failed every attempt. Default: dropped (counted in failed_dispatches). */
  onDeadLetter?: (batch: T[], error: unknown, attempts: number) => void;
  /** Cut a batch as soon as nothing is in flight (see the module comment). Default false. */
  cutWhenIdle?: boolean;
}

/** Batches cut for each reason; `idle` only with `cutWhenIdle`. */
export type FlushCounts = Record<Exclude<FlushReason, 'idle'>, number> & { idle?: number };

export interface DispatchStats {
  total_dispatched: number;
  successful_dispatches: number;
  failed_dispatches: number;
  avg_latency_ms: number;
  success_rate: number;
  messages_dispatched: number;
  messages_dead_lettered: number;
  retries: number;
  in_flight: number;
  pending: number;
  flushes: FlushCounts;
}

/** Dispatch counters (latencyMs: the sum over successful batches). */
interface Counters {
  total: number;
  ok: number;
  failed: number;
  latencyMs: number;
  messages: number;
  dead: number;
  retries: number;
}

/** The design's stats shape, from counters (one processor's, or every destination's summed). */
function dispatchStats(c: Counters, inFlight: number, pending: number, flushes: FlushCounts): DispatchStats {
  return {
    total_dispatched: c.total,
    successful_dispatches: c.ok,
    failed_dispatches: c.failed,
    avg_latency_ms: c.ok === 0 ? 0 : c.latencyMs / c.ok,
    success_rate: c.total === 0 ? 1 : c.ok / c.total,
    messages_dispatched: c.messages,
    messages_dead_lettered: c.dead,
    retries: c.retries,
    in_flight: inFlight,
    pending,
    flushes,
  };
}

const defaults = { batchSize: 100, timeoutMs: 10, maxBatches: 10, retryDelayMs: 100, maxRetries: 3 };

export type ParsedBatchOptions<T> = Required<Omit<BatchProcessorOptions<T>, 'onDeadLetter' | 'process'>> &
  Partial<Pick<BatchProcessorOptions<T>, 'onDeadLetter' | 'process'>>;

export function parseBatchOptions<T>(options: unknown, needProcess: boolean): ParsedBatchOptions<T> {
  const o = checkOptions<BatchProcessorOptions<T>>(options);
  checkKnownKeys(o, ['process', 'batchSize', 'timeoutMs', 'maxBatches', 'retryDelayMs', 'maxRetries', 'maxPending', 'onDeadLetter', 'cutWhenIdle']);
  if (needProcess && typeof o.process !== 'function') throw new InvalidArgumentTypeError('options.process', 'a function (batch) => void | Promise<void>', o.process);
  if (o.onDeadLetter !== undefined && typeof o.onDeadLetter !== 'function') throw new InvalidArgumentTypeError('options.onDeadLetter', 'a function', o.onDeadLetter);
  const batchSize = o.batchSize === undefined ? defaults.batchSize : checkInteger(o.batchSize, 'options.batchSize', 1, 1 << 20);
  const maxBatches = o.maxBatches === undefined ? defaults.maxBatches : checkInteger(o.maxBatches, 'options.maxBatches', 1, 10_000);
  return {
    process: o.process,
    onDeadLetter: o.onDeadLetter,
    batchSize,
    maxBatches,
    timeoutMs: o.timeoutMs === undefined ? defaults.timeoutMs : checkInteger(o.timeoutMs, 'options.timeoutMs', 0, 3_600_000),
    retryDelayMs: o.retryDelayMs === undefined ? defaults.retryDelayMs : checkInteger(o.retryDelayMs, 'options.retryDelayMs', 0, 3_600_000),
    maxRetries: o.maxRetries === undefined ? defaults.maxRetries : checkInteger(o.maxRetries, 'options.maxRetries', 0, 1000),
    maxPending: o.maxPending === undefined ? batchSize * maxBatches * 4 : checkInteger(o.maxPending, 'options.maxPending', batchSize),
    cutWhenIdle: o.cutWhenIdle === undefined ? false : checkBoolean(o.cutWhenIdle, 'options.cutWhenIdle', false),
  };
}

interface Batch<T> {
  items: T[];
  reason: FlushReason;
  attempt: number;
  cutAt: number;
}

export class BatchProcessor<T> {
  readonly #o: ParsedBatchOptions<T>;
  readonly #process: BatchProcessorOptions<T>['process'];
  #buffer: T[] = [];
  #timer: NodeJS.Timeout | undefined;
  #idleCut: NodeJS.Immediate | undefined;
  readonly #ready: Batch<T>[] = [];
  #readyItems = 0;
  #inFlight = 0;
  #closed = false;
  #roomWaiters: Array<() => void> = [];
  #idleWaiters: Array<() => void> = [];
  readonly #s: Counters = { total: 0, ok: 0, failed: 0, latencyMs: 0, messages: 0, dead: 0, retries: 0 };
  readonly #flushes: FlushCounts = { size: 0, timeout: 0, flush: 0, close: 0 };

  constructor(options: BatchProcessorOptions<T>) {
    this.#o = parseBatchOptions<T>(options, true);
    this.#process = this.#o.process as BatchProcessorOptions<T>['process'];
    if (this.#o.cutWhenIdle) this.#flushes.idle = 0;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Items buffered or cut but not yet handed to `process`. */
  get pending(): number {
    return this.#buffer.length + this.#readyItems;
  }

  /**
   * Adds an item (an `urgent` one cuts the batch at once). Resolves when it is buffered: at once,
   * unless `maxPending` items are waiting already. Rejects with QueueClosedError after close().
   */
  async add(item: T, urgent = false): Promise<void> {
    while (this.pending >= this.#o.maxPending && !this.#closed) await new Promise<void>((r) => this.#roomWaiters.push(r));
    this.addNow(item, urgent);
  }

  /** Adds without waiting for room (the caller bounds what it adds); throws QueueClosedError after close(). */
  addNow(item: T, urgent = false): void {
    if (this.#closed) throw new QueueClosedError('the batch processor is closed');
    this.#buffer.push(item);
    if (this.#buffer.length >= this.#o.batchSize) this.#cut('size');
    else if (urgent) this.#cut('flush');
    else {
      if (this.#timer === undefined) {
        this.#timer = setTimeout(() => {
          this.#timer = undefined;
          this.#cut('timeout');
        }, this.#o.timeoutMs);
      }
      // Nothing in flight: cut once this turn's items are in (they arrive in one poll phase).
      if (this.#o.cutWhenIdle && this.#idleCut === undefined && this.#inFlight === 0) {
        this.#idleCut = setImmediate(() => {
          this.#idleCut = undefined;
          if (this.#inFlight === 0 && this.#buffer.length > 0) this.#cut('idle');
        });
      }
    }
  }

  /** Cuts the current batch now. */
  flush(): void {
    if (this.#buffer.length > 0) this.#cut('flush');
  }

  /** Flushes what is buffered, waits for every batch (and its retries) to finish, refuses more. */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      if (this.#buffer.length > 0) this.#cut('close');
      for (const w of this.#roomWaiters.splice(0)) w();
    }
    while (this.#inFlight > 0 || this.#ready.length > 0) await new Promise<void>((r) => this.#idleWaiters.push(r));
  }

  stats(): DispatchStats {
    return dispatchStats(this.#s, this.#inFlight, this.pending, { ...this.#flushes });
  }

  #cut(reason: FlushReason): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    if (this.#idleCut !== undefined) {
      clearImmediate(this.#idleCut);
      this.#idleCut = undefined;
    }
    const items = this.#buffer;
    this.#buffer = [];
    this.#flushes[reason] = (this.#flushes[reason] ?? 0) + 1;
    this.#ready.push({ items, reason, attempt: 1, cutAt: performance.now() });
    this.#readyItems += items.length;
    this.#pump();
  }

  #pump(): void {
    while (this.#inFlight < this.#o.maxBatches && this.#ready.length > 0) {
      const batch = this.#ready.shift() as Batch<T>;
      this.#readyItems -= batch.items.length;
      this.#inFlight++;
      void this.#run(batch);
    }
    if (this.pending < this.#o.maxPending) for (const w of this.#roomWaiters.splice(0)) w();
  }

  async #run(batch: Batch<T>): Promise<void> {
    let error: unknown;
    for (;;) {
      try {
        await this.#process(batch.items, { reason: batch.reason, attempt: batch.attempt });
        this.#s.total++;
        this.#s.ok++;
        this.#s.messages += batch.items.length;
        this.#s.latencyMs += performance.now() - batch.cutAt;
        break;
      } catch (e) {
        error = e;
        this.#s.total++;
        this.#s.failed++;
        if (batch.attempt > this.#o.maxRetries) {
          this.#s.dead += batch.items.length;
          try {
            this.#o.onDeadLetter?.(batch.items, error, batch.attempt);
          } catch {
            // a throwing dead-letter handler must not wedge the processor
          }
          break;
        }
        batch.attempt++;
        this.#s.retries++;
        await new Promise((r) => setTimeout(r, this.#o.retryDelayMs));
      }
    }
    this.#inFlight--;
    // The last batch in flight is done: what gathered meanwhile goes now (cutWhenIdle).
    if (this.#o.cutWhenIdle && this.#inFlight === 0 && this.#ready.length === 0 && this.#buffer.length > 0) this.#cut('idle');
    this.#pump();
    if (this.#inFlight === 0 && this.#ready.length === 0) for (const w of this.#idleWaiters.splice(0)) w();
  }
}

export interface MessageDispatcherOptions<T> extends Omit<BatchProcessorOptions<T>, 'process' | 'onDeadLetter'> {
  process: (destination: string, batch: T[], info: { reason: FlushReason; attempt: number }) => void | Promise<void>;
  onDeadLetter?: (destination: string, batch: T[], error: unknown, attempts: number) => void;
}

/** One BatchProcessor per destination (e.g. per service instance), created on first use. */
export class MessageDispatcher<T> {
  readonly #o: MessageDispatcherOptions<T>;
  readonly #processors = new Map<string, BatchProcessor<T>>();
  #closed = false;

  constructor(options: MessageDispatcherOptions<T>) {
    const o = checkOptions<MessageDispatcherOptions<T>>(options);
    if (typeof o.process !== 'function') throw new InvalidArgumentTypeError('options.process', 'a function (destination, batch) => void | Promise<void>', o.process);
    const { process: _p, onDeadLetter: _d, ...rest } = o;
    parseBatchOptions<T>(rest, false); // validates the shared options once, up front
    this.#o = o as MessageDispatcherOptions<T>;
  }

  /** Adds an item for `destination` (waits while that destination's buffer is full). */
  dispatch(destination: string, item: T, urgent = false): Promise<void> {
    return this.#processor(destination).add(item, urgent);
  }

  /** Flushes every destination's current batch. */
  flush(): void {
    for (const p of this.#processors.values()) p.flush();
  }

  /** Flushes and waits for everything in flight; refuses more. */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.#processors.values()].map((p) => p.close()));
  }

  /** Totals over every destination, plus each destination's own. */
  stats(): DispatchStats & { destinations: Record<string, DispatchStats> } {
    const destinations: Record<string, DispatchStats> = {};
    const t: Counters = { total: 0, ok: 0, failed: 0, latencyMs: 0, messages: 0, dead: 0, retries: 0 };
    let inFlight = 0;
    let pending = 0;
    const flushes: FlushCounts = { size: 0, timeout: 0, flush: 0, close: 0 };
    for (const [d, p] of this.#processors) {
      const s = p.stats();
      destinations[d] = s;
      t.total += s.total_dispatched;
      t.ok += s.successful_dispatches;
      t.failed += s.failed_dispatches;
      t.latencyMs += s.avg_latency_ms * s.successful_dispatches;
      t.messages += s.messages_dispatched;
      t.dead += s.messages_dead_lettered;
      t.retries += s.retries;
      inFlight += s.in_flight;
      pending += s.pending;
      for (const k of Object.keys(s.flushes) as FlushReason[]) flushes[k] = (flushes[k] ?? 0) + (s.flushes[k] ?? 0);
    }
    return { ...dispatchStats(t, inFlight, pending, flushes), destinations };
  }


  #processor(destination: string): BatchProcessor<T> {
    let p = this.#processors.get(destination);
    if (p === undefined) {
      if (this.#closed) throw new QueueClosedError('the dispatcher is closed');
      if (typeof destination !== 'string') throw new InvalidArgumentTypeError('destination', 'a string', destination);
      const { process, onDeadLetter, ...rest } = this.#o;
      p = new BatchProcessor<T>({
        ...rest,
        process: (batch, info) => process(destination, batch, info),
        onDeadLetter: onDeadLetter === undefined ? undefined : (batch, error, attempts) => onDeadLetter(destination, batch, error, attempts),
      });
      this.#processors.set(destination, p);
    }
    return p;
  }
}
