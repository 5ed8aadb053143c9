/**
 * Cross-process priority lanes: one SageQueue per level (`<name>.p0` ... `<name>.p3`) and a
 * doorbell (`<name>.bell`, raw codec, at most one token). Any number of processes put into and
 * take from them. A consumer takes from the most urgent non-empty lane with non-blocking batch
 * calls; when every lane is empty it waits on the doorbell alone: one async wait (one native
 * notifier, one event-loop wake) covers all four lanes.
 *
 * The doorbell protocol: a producer puts into a lane, then rings (a non-blocking put of one
 * token; a full bell already holds a token, so nothing is lost). A consumer drains the bell,
 * then looks at the lanes, and waits on the bell only if they are all empty. A message put after
 * the consumer looked rings after the drain, so the wait ends; a token for a message someone else
 * already took only costs one extra look. A consumer that leaves messages behind after a wake
 * rings again (`nudge`), so another consumer asleep on the same lanes is not stranded.
 */
import { InvalidArgumentTypeError, QueueClosedError, QueueEmptyError } from '../errors';
import { SageQueue } from '../queue/sage-queue';
import type { SageAutoOptions } from '../queue/sage-queue';
import type { PriorityLanes } from './lanes';
import { PRIORITY_LEVELS } from './priorities';
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

/** The doorbell of lanes `name`. */
export function bellName(name: string): string {
  return `${name}.bell`;
}

const TOKEN = new Uint8Array(1);
const NO_WAIT = { block: false } as const;

export class SharedLanes<T> implements PriorityLanes<T> {
  readonly kind = 'shared' as const;
  readonly descriptor: PriorityQueueDescriptor;
  readonly #queues: SageQueue<T>[];
  readonly #bell: SageQueue<Uint8Array>;

  private constructor(descriptor: PriorityQueueDescriptor, queues: SageQueue<T>[], bell: SageQueue<Uint8Array>) {
    this.descriptor = descriptor;
    this.#queues = queues;
    this.#bell = bell;
  }

  /** Creates the four lanes and the doorbell (none may exist yet). */
  static create<T>(name: string, capacity: number, laneOptions: Omit<SageAutoOptions, 'maxsize'> = {}): SharedLanes<T> {
    const made: Array<SageQueue<T> | SageQueue<Uint8Array>> = [];
    try {
      const lanes: SageQueue<T>[] = [];
      for (const level of PRIORITY_LEVELS) {
        const q = SageQueue.create<T>(laneName(name, level), { codec: 'msgpack', capacity: 4 << 20, ...laneOptions, maxsize: capacity });
        made.push(q);
        lanes.push(q);
      }
      // The bell shares the lanes' ownership options, not their sizes or codec.
      const { capacity: _c, maxMessageSize: _m, codec: _k, ...owner } = laneOptions;
      const bell = SageQueue.create<Uint8Array>(bellName(name), { ...owner, codec: 'raw', capacity: 4096, maxsize: 1 });
      made.push(bell);
      return new SharedLanes({ kind: 'sage-priority-lanes', name, capacity }, lanes, bell);
    } catch (e) {
      for (const q of made) q.destroy();
      throw e;
    }
  }

  /** Attaches to lanes another process created. */
  static attach<T>(descriptor: PriorityQueueDescriptor, spinUs?: number): SharedLanes<T> {
    const d = checkPriorityQueueDescriptor(descriptor);
    const opened: Array<SageQueue<T> | SageQueue<Uint8Array>> = [];
    const options = spinUs === undefined ? {} : { spinUs };
    try {
      const lanes: SageQueue<T>[] = [];
      for (const level of PRIORITY_LEVELS) {
        const q = SageQueue.open<T>(laneName(d.name, level), options);
        opened.push(q);
        lanes.push(q);
      }
      const bell = SageQueue.open<Uint8Array>(bellName(d.name), options);
      opened.push(bell);
      return new SharedLanes({ ...d }, lanes, bell);
    } catch (e) {
      for (const q of opened) q.release();
      throw e;
    }
  }

  /** The SageQueue of one level (for stats and tools). */
  lane(level: MessagePriority): SageQueue<T> {
    return this.#queues[level] as SageQueue<T>;
  }

  get closed(): boolean {
    return (this.#queues[0] as SageQueue<T>).closed;
  }

  depth(level: MessagePriority): number {
    return (this.#queues[level] as SageQueue<T>).qsize();
  }

  take(level: MessagePriority, max: number): T[] {
    try {
      return (this.#queues[level] as SageQueue<T>).getMany(Math.min(max, 4096), NO_WAIT);
    } catch (e) {
      if (e instanceof QueueClosedError) return []; // closed and drained
      throw e;
    }
  }

  put(level: MessagePriority, items: readonly T[]): number {
    const n = (this.#queues[level] as SageQueue<T>).putMany(items, NO_WAIT);
    if (n > 0) this.#ring();
    return n;
  }

  async putWait(level: MessagePriority, item: T, signal?: AbortSignal): Promise<void> {
    await (this.#queues[level] as SageQueue<T>).putAsync(item, { signal });
    this.#ring();
  }

  nudge(): void {
    this.#ring();
  }

  async waitAny(timeoutMs: number | undefined, signal: AbortSignal | undefined): Promise<boolean> {
    const deadline = timeoutMs === undefined ? undefined : performance.now() + timeoutMs;
    for (;;) {
      if (signal?.aborted) throw signal.reason;
      const look = this.#look(deadline);
      if (look.ready !== undefined) return look.ready;
      try {
        await this.#bell.getAsync({ timeoutMs: look.waitMs, signal });
      } catch (e) {
        if (this.#bellFailed(e)) return this.#anyWaiting(); // timed out
      }
    }
  }

  waitAnySync(timeoutMs: number | undefined): boolean {
    const deadline = timeoutMs === undefined ? undefined : performance.now() + timeoutMs;
    for (;;) {
      const look = this.#look(deadline);
      if (look.ready !== undefined) return look.ready;
      try {
        this.#bell.getMany(1, { timeoutMs: look.waitMs }); // blocks this thread; signals interrupt it
      } catch (e) {
        if (this.#bellFailed(e)) return this.#anyWaiting(); // timed out
      }
    }
  }

  close(): void {
    for (const q of this.#queues) if (!q.released) q.close();
    if (!this.#bell.released) this.#bell.close();
  }

  release(): void {
    for (const q of this.#queues) if (!q.released) q.release();
    if (!this.#bell.released) this.#bell.release();
  }

  destroy(): void {
    for (const q of this.#queues) q.destroy();
    this.#bell.destroy();
  }

  /**
   * One look before a wait: drains the bell (a put after this rings again), then `ready` is true
   * when a lane has messages, false once `deadline` has passed; otherwise wait on the bell for
   * `waitMs` (undefined: no deadline). Throws QueueClosedError once closed and drained.
   */
  #look(deadline: number | undefined): { ready: boolean; waitMs?: undefined } | { ready?: undefined; waitMs: number | undefined } {
    this.#drainBell();
    if (this.#anyWaiting()) return { ready: true };
    if (this.closed || this.#bell.closed) throw new QueueClosedError();
    const waitMs = deadline === undefined ? undefined : Math.max(0, Math.ceil(deadline - performance.now()));
    return waitMs === 0 ? { ready: false } : { waitMs };
  }

  /** A wait on the bell ended with `e`: true if it timed out; closed: look again; else rethrows. */
  #bellFailed(e: unknown): boolean {
    if (e instanceof QueueEmptyError) return true;
    if (!(e instanceof QueueClosedError)) throw e; // released, corrupt, aborted, interrupted...
    return false;
  }

  #anyWaiting(): boolean {
    for (const q of this.#queues) if (q.qsize() > 0) return true;
    return false;
  }

  #ring(): void {
    try {
      this.#bell.putMany([TOKEN], NO_WAIT); // 0 when a token is there already: enough
    } catch (e) {
      if (!(e instanceof QueueClosedError)) throw e; // closed: the consumers wake anyway
    }
  }

  #drainBell(): void {
    try {
      this.#bell.getMany(16, NO_WAIT);
    } catch (e) {
      if (!(e instanceof QueueClosedError)) throw e;
    }
  }
}
