/**
 * Cross-process priority lanes: one SageQueue per level (`<name>.p0` ... `<name>.p3`). Any number
 * of processes put into and take from them. A consumer takes from the most urgent non-empty lane
 * with non-blocking batch calls; when every lane is empty it waits on all of them at once (one
 * getAsync per lane with a shared AbortSignal). SageQueue's async get never loses a message (the
 * JS thread takes it itself), so aborting the losing waits is safe; if two lanes deliver before
 * the abort lands, the extra messages are kept in this handle's stash (per level, served first,
 * so FIFO within a level holds for this consumer) and never dropped.
 */
import { InvalidArgumentTypeError, QueueClosedError } from '../errors';
import { SageQueue } from '../queue/sage-queue';
import type { SageQueueOptions } from '../queue/sage-queue';
import { Fifo } from './lanes';
import type { PriorityLanes } from './lanes';
import { LEVEL_COUNT, PRIORITY_LEVELS } from './priorities';
import type { MessagePriority } from './priorities';

/** What another process needs to attach to the same lanes (plain JSON). */
export interface PriorityQueueDescriptor {
  kind: 'sage-priority-lanes';
  /** The lanes are the SageQueues `<name>.p0` ... `<name>.p3`. */
  name: string;
  /** Messages per lane (also the denominator of the usage ratio). */
  capacity: number;
}

export function laneName(name: string, level: MessagePriority): string {
  return `${name}.p${level}`;
}

export function checkPriorityQueueDescriptor(value: unknown): PriorityQueueDescriptor {
  const d = value as PriorityQueueDescriptor;
  if (d === null || typeof d !== 'object' || d.kind !== 'sage-priority-lanes' || typeof d.name !== 'string' || !Number.isSafeInteger(d.capacity)) {
    throw new InvalidArgumentTypeError('descriptor', "a priority queue descriptor ({ kind: 'sage-priority-lanes', name, capacity })", value);
  }
  return d;
}

const TIMED_OUT = Symbol('timed out');

export class SharedLanes<T> implements PriorityLanes<T> {
  readonly kind = 'shared' as const;
  readonly descriptor: PriorityQueueDescriptor;
  readonly #queues: SageQueue<T>[];
  readonly #stash: Fifo<T>[] = Array.from({ length: LEVEL_COUNT }, () => new Fifo<T>());
  #stashed = 0;

  private constructor(descriptor: PriorityQueueDescriptor, queues: SageQueue<T>[]) {
    this.descriptor = descriptor;
    this.#queues = queues;
  }

  /** Creates the four lanes (each must not exist yet). */
  static create<T>(name: string, capacity: number, laneOptions: Omit<SageQueueOptions, 'maxsize'> = {}): SharedLanes<T> {
    const made: SageQueue<T>[] = [];
    try {
      for (const level of PRIORITY_LEVELS) {
        made.push(SageQueue.create<T>(laneName(name, level), { codec: 'msgpack', capacity: 4 << 20, ...laneOptions, maxsize: capacity }));
      }
    } catch (e) {
      for (const q of made) q.destroy();
      throw e;
    }
    return new SharedLanes({ kind: 'sage-priority-lanes', name, capacity }, made);
  }

  /** Attaches to lanes another process created. */
  static attach<T>(descriptor: PriorityQueueDescriptor, spinUs?: number): SharedLanes<T> {
    const d = checkPriorityQueueDescriptor(descriptor);
    const opened: SageQueue<T>[] = [];
    try {
      for (const level of PRIORITY_LEVELS) opened.push(SageQueue.open<T>(laneName(d.name, level), spinUs === undefined ? {} : { spinUs }));
    } catch (e) {
      for (const q of opened) q.release();
      throw e;
    }
    return new SharedLanes({ ...d }, opened);
  }

  /** The SageQueue of one level (for stats and tools). */
  lane(level: MessagePriority): SageQueue<T> {
    return this.#queues[level] as SageQueue<T>;
  }

  get closed(): boolean {
    return (this.#queues[0] as SageQueue<T>).closed;
  }

  depth(level: MessagePriority): number {
    return (this.#stash[level] as Fifo<T>).length + (this.#queues[level] as SageQueue<T>).qsize();
  }

  take(level: MessagePriority, max: number): T[] {
    const out: T[] = [];
    if (this.#stashed > 0) this.#stashed -= (this.#stash[level] as Fifo<T>).shiftInto(out, max);
    if (out.length < max) {
      const q = this.#queues[level] as SageQueue<T>;
      let got: T[];
      try {
        got = q.getMany(Math.min(max - out.length, 4096), { block: false });
      } catch (e) {
        if (e instanceof QueueClosedError) return out; // closed and drained
        throw e;
      }
      if (out.length === 0) return got;
      for (const item of got) out.push(item);
    }
    return out;
  }

  put(level: MessagePriority, items: readonly T[]): number {
    return (this.#queues[level] as SageQueue<T>).putMany(items, { block: false });
  }

  putWait(level: MessagePriority, item: T, signal?: AbortSignal): Promise<void> {
    return (this.#queues[level] as SageQueue<T>).putAsync(item, { signal });
  }

  async waitAny(timeoutMs: number | undefined, signal: AbortSignal | undefined): Promise<boolean> {
    if (this.#stashed > 0) return true;
    if (signal?.aborted) throw signal.reason;
    const losers = new AbortController();
    const onAbort = (): void => losers.abort(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    const timer = timeoutMs === undefined ? undefined : setTimeout(() => losers.abort(TIMED_OUT), timeoutMs);
    const waits = this.#queues.map((q, level) =>
      q.getAsync({ signal: losers.signal }).then((item) => {
        // Whoever delivers first ends the other waits; a second delivery that beat the abort is
        // kept here, never dropped.
        (this.#stash[level] as Fifo<T>).push(item);
        this.#stashed++;
        losers.abort(TIMED_OUT);
      }),
    );
    const settled = await Promise.allSettled(waits);
    if (timer !== undefined) clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
    if (this.#stashed > 0) return true;
    const failure = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected' && s.reason !== TIMED_OUT && s.reason !== signal?.reason);
    if (failure !== undefined) throw failure.reason; // closed and drained, released, corrupt...
    if (signal?.aborted) throw signal.reason;
    return false;
  }

  close(): void {
    for (const q of this.#queues) if (!q.released) q.close();
  }

  release(): void {
    for (const q of this.#queues) if (!q.released) q.release();
  }

  destroy(): void {
    for (const q of this.#queues) q.destroy();
  }
}
