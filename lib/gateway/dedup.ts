/**
 * MessageDeduplicator: remembers message ids for a window (TTL). An id seen again within the
 * window is a duplicate (counted); after the window it is accepted again. Memory is bounded:
 * at most `maxEntries` ids are remembered; past that the oldest are forgotten early (counted
 * as `evicted_count`: such an id would be accepted again before its window ends).
 */
import { InvalidArgumentTypeError } from '../errors';
import { checkInteger, checkKnownKeys, checkOptions } from '../validate';

export interface DeduplicatorOptions {
  /** How long an id is remembered, in ms. Default 60 000. */
  windowMs?: number;
  /** Most ids remembered at once. Default 100 000. */
  maxEntries?: number;
  /** Milliseconds clock (tests inject one). Default Date.now. */
  now?: () => number;
}

export interface DeduplicatorStats {
  tracked: number;
  duplicate_count: number;
  evicted_count: number;
  window_ms: number;
}

export class MessageDeduplicator {
  readonly windowMs: number;
  readonly maxEntries: number;
  readonly #now: () => number;
  /** id -> the sequence number of its record below. */
  readonly #seen = new Map<string, number>();
  /**
   * One record per id remembered, in insertion order, with its expiry (one window for all, so
   * this is expiry order too): expiry and eviction pop from the front here. (A Map is not walked
   * from its front for that: V8 leaves deleted entries in place until it rehashes, so each walk
   * would step over every id deleted since, O(maxEntries) per message once the window is full.)
   * The record at #head has sequence number #headSeq. A record whose id was forgotten or
   * re-added since (another sequence number) is dropped without effect when popped.
   */
  #ids: string[] = [];
  #until: number[] = [];
  #head = 0;
  #headSeq = 0;
  #duplicates = 0;
  #evicted = 0;

  constructor(options?: DeduplicatorOptions) {
    const o = checkOptions<DeduplicatorOptions>(options);
    checkKnownKeys(o, ['windowMs', 'maxEntries', 'now']);
    this.windowMs = o.windowMs === undefined ? 60_000 : checkInteger(o.windowMs, 'options.windowMs', 1);
    this.maxEntries = o.maxEntries === undefined ? 100_000 : checkInteger(o.maxEntries, 'options.maxEntries', 1);
    if (o.now !== undefined && typeof o.now !== 'function') throw new InvalidArgumentTypeError('options.now', 'a function', o.now);
    this.#now = o.now ?? Date.now;
  }

  /**
   * True if `id` was seen within the window (a duplicate: counted, and its window is not
   * extended); otherwise remembers it and returns false.
   */
  isDuplicate(id: string): boolean {
    if (typeof id !== 'string') throw new InvalidArgumentTypeError('id', 'a string', id);
    const now = this.#now();
    this.#expire(now);
    const seq = this.#seen.get(id);
    if (seq !== undefined) {
      // Not expired (#expire just ran), so still within the window: its window is not extended.
      this.#duplicates++;
      return true;
    }
    this.#seen.set(id, this.#headSeq + this.#ids.length - this.#head);
    this.#ids.push(id);
    this.#until.push(now + this.windowMs);
    while (this.#seen.size > this.maxEntries) if (this.#popOldest()) this.#evicted++;
    // Forgotten ids leave records behind: bound them too (popping one of those costs nothing).
    while (this.#ids.length - this.#head > 2 * this.maxEntries + 1024) if (this.#popOldest()) this.#evicted++;
    return false;
  }

  /** Forgets an id (e.g. when its message could not be enqueued after all). */
  forget(id: string): void {
    this.#seen.delete(id);
  }

  get size(): number {
    return this.#seen.size;
  }

  get duplicateCount(): number {
    return this.#duplicates;
  }

  stats(): DeduplicatorStats {
    this.#expire(this.#now());
    return { tracked: this.#seen.size, duplicate_count: this.#duplicates, evicted_count: this.#evicted, window_ms: this.windowMs };
  }

  #expire(now: number): void {
    while (this.#head < this.#until.length && (this.#until[this.#head] as number) <= now) this.#popOldest();
  }

  /** Drops the oldest record; true if its id was still remembered by it (then forgotten now). */
  #popOldest(): boolean {
    const id = this.#ids[this.#head] as string;
    const seq = this.#headSeq;
    this.#head++;
    this.#headSeq++;
    if (this.#head === this.#ids.length) {
      this.#ids = [];
      this.#until = [];
      this.#head = 0;
    } else if (this.#head > 4096 && this.#head * 2 > this.#ids.length) {
      this.#ids = this.#ids.slice(this.#head);
      this.#until = this.#until.slice(this.#head);
      this.#head = 0;
    }
    if (this.#seen.get(id) !== seq) return false;
    this.#seen.delete(id);
    return true;
  }
}
