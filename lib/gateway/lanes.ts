/**
 * Priority lanes: one FIFO per level, the storage under PriorityMessageQueue. `LocalLanes` keeps
 * them in this process; `SharedLanes` (shared-lanes.ts) keeps each in a SageQueue so that
 * producers and consumers can be different processes. The queue's policy (strict priority,
 * aging, backpressure, dedup) is written once, over this interface.
 */
import { QueueClosedError, QueueFullError, WouldDeadlockError } from '../errors';
import { LEVEL_COUNT } from './priorities';
import type { MessagePriority } from './priorities';

export interface PriorityLanes<T> {
  readonly kind: 'local' | 'shared';
  /** Messages waiting in a level (for shared lanes: in every process, plus any this handle holds). */
  depth(level: MessagePriority): number;
  /** Takes up to `max` messages of one level without waiting (oldest first). */
  take(level: MessagePriority, max: number): T[];
  /** Puts what fits without waiting; returns how many went in (in order). */
  put(level: MessagePriority, items: readonly T[]): number;
  /** Puts one message, waiting (without blocking the event loop) while its lane is full. */
  putWait(level: MessagePriority, item: T, signal?: AbortSignal): Promise<void>;
  /**
   * Resolves once some lane has a message for this handle (true), or false after `timeoutMs`.
   * Rejects with QueueClosedError once the lanes are closed and drained, or with the signal's reason.
   */
  waitAny(timeoutMs: number | undefined, signal: AbortSignal | undefined): Promise<boolean>;
  /**
   * waitAny blocking this thread (shared lanes: one native wait on the doorbell, interrupted by the
   * signals JS listens for). Local lanes cannot be filled while this thread waits: they answer at
   * once (WouldDeadlockError when asked to wait forever on empty lanes).
   */
  waitAnySync(timeoutMs: number | undefined): boolean;
  /** After a wake that left messages behind: lets another waiting consumer see them (shared lanes). */
  nudge?(): void;
  close(): void;
  readonly closed: boolean;
  /** Detaches this handle (shared lanes live on for other processes). */
  release(): void;
  /** Releases and removes the lanes (shared: unlinks the segments). */
  destroy(): void;
}

/** An array-backed FIFO with O(1) amortised push and shift. */
export class Fifo<T> {
  #items: T[] = [];
  #head = 0;

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(item: T): void {
    this.#items.push(item);
  }

  /** Removes and returns up to `max` items, oldest first. */
  shiftMany(max: number): T[] {
    const end = Math.min(this.#items.length, this.#head + max);
    const out = this.#items.slice(this.#head, end);
    this.#head = end;
    this.#compact();
    return out;
  }

  shiftInto(out: T[], max: number): number {
    const end = Math.min(this.#items.length, this.#head + max);
    for (let i = this.#head; i < end; i++) out.push(this.#items[i] as T);
    const n = end - this.#head;
    this.#head = end;
    this.#compact();
    return n;
  }

  #compact(): void {
    if (this.#head === this.#items.length) {
      this.#items = [];
      this.#head = 0;
    } else if (this.#head > 4096 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
  }
}

/** In-process lanes: each level holds at most `capacity` messages. */
export class LocalLanes<T> implements PriorityLanes<T> {
  readonly kind = 'local' as const;
  readonly #lanes: Fifo<T>[] = Array.from({ length: LEVEL_COUNT }, () => new Fifo<T>());
  readonly #capacity: number;
  #closed = false;
  #readers = new Set<() => void>();
  #writers = new Set<() => void>();

  constructor(capacity: number) {
    this.#capacity = capacity;
  }

  get closed(): boolean {
    return this.#closed;
  }

  depth(level: MessagePriority): number {
    return (this.#lanes[level] as Fifo<T>).length;
  }

  take(level: MessagePriority, max: number): T[] {
    const out = (this.#lanes[level] as Fifo<T>).shiftMany(max);
    if (out.length > 0 && this.#writers.size > 0) this.#wake(this.#writers);
    return out;
  }

  put(level: MessagePriority, items: readonly T[]): number {
    if (this.#closed) throw new QueueClosedError();
    const lane = this.#lanes[level] as Fifo<T>;
    const n = Math.min(items.length, this.#capacity - lane.length);
    for (let i = 0; i < n; i++) lane.push(items[i] as T);
    if (n > 0 && this.#readers.size > 0) this.#wake(this.#readers);
    return n;
  }

  async putWait(level: MessagePriority, item: T, signal?: AbortSignal): Promise<void> {
    while (this.put(level, [item]) === 0) {
      await this.#park(this.#writers, undefined, signal);
    }
  }

  async waitAny(timeoutMs: number | undefined, signal: AbortSignal | undefined): Promise<boolean> {
    for (;;) {
      if (this.#lanes.some((l) => l.length > 0)) return true;
      if (this.#closed) throw new QueueClosedError();
      if (!(await this.#park(this.#readers, timeoutMs, signal))) return false;
    }
  }

  waitAnySync(timeoutMs: number | undefined): boolean {
    if (this.#lanes.some((l) => l.length > 0)) return true;
    if (this.#closed) throw new QueueClosedError();
    if (timeoutMs === undefined) {
      throw new WouldDeadlockError('dequeueBatchSync() without a timeout on an empty in-process priority queue would wait forever: nothing else can run in this thread while it waits');
    }
    return false;
  }

  close(): void {
    this.#closed = true;
    this.#wake(this.#readers);
    this.#wake(this.#writers);
  }

  release(): void {
    this.close();
  }

  destroy(): void {
    this.close();
    for (let i = 0; i < LEVEL_COUNT; i++) this.#lanes[i] = new Fifo<T>();
  }

  /** Waits for a wake-up (true), the timeout (false), or the signal (rejects). */
  #park(set: Set<() => void>, timeoutMs: number | undefined, signal: AbortSignal | undefined): Promise<boolean> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<boolean>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const done = (): void => {
        set.delete(wake);
        if (timer !== undefined) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      const wake = (): void => {
        done();
        resolve(true);
      };
      const onAbort = (): void => {
        done();
        reject(signal?.reason);
      };
      set.add(wake);
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          done();
          resolve(false);
        }, timeoutMs);
      }
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  #wake(set: Set<() => void>): void {
    for (const w of [...set]) w();
  }
}

/** Thrown by a non-waiting put when a lane is full. */
export function laneFull(level: MessagePriority): QueueFullError {
  return new QueueFullError(`priority lane ${level} is full`);
}
