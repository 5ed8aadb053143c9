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
  /** id -> expiry. Insertion order is expiry order (one window for all), so expiry pops from the front. */
  readonly #seen = new Map<string, number>();
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
    const until = this.#seen.get(id);
    if (until !== undefined && until > now) {
      this.#duplicates++;
      return true;
    }
    if (until !== undefined) this.#seen.delete(id);
    this.#seen.set(id, now + this.windowMs);
    if (this.#seen.size > this.maxEntries) {
      const oldest = this.#seen.keys().next().value as string;
      this.#seen.delete(oldest);
      this.#evicted++;
    }
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
    for (const [id, until] of this.#seen) {
      if (until > now) break;
      this.#seen.delete(id);
    }
  }
}
