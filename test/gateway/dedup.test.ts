/**
 * MessageDeduplicator bookkeeping once the window is full: the oldest id is evicted (and only
 * a remembered one is counted), a forgotten id re-added counts as new and is evicted in its new
 * place, and expiry removes ids in insertion order. Its hashed table (open addressing, entries
 * moved back on deletion) and its ring of records are checked against a plain Map model over
 * long random runs, including one where forgotten records fill the ring. (Its cost per id is
 * measured by bench/gateway.mjs, not asserted here.)
 */
import { describe, expect, it } from 'vitest';

import { MessageDeduplicator } from '../../lib/index';

/** The deduplicator's rules over plain JS structures: the model the hashed table must match. */
class ModelDedup {
  readonly #seen = new Map<string, number>();
  readonly #records: Array<{ id: string; seq: number; until: number }> = [];
  #next = 0;
  duplicates = 0;
  evicted = 0;
  constructor(
    readonly maxEntries: number,
    readonly windowMs: number,
    readonly now: () => number,
  ) {}
  isDuplicate(id: string): boolean {
    const now = this.now();
    while (this.#records.length > 0 && (this.#records[0] as { until: number }).until <= now) this.#pop();
    if (this.#seen.has(id)) {
      this.duplicates++;
      return true;
    }
    if (this.#records.length === 2 * this.maxEntries + 1024 && this.#pop()) this.evicted++;
    const seq = this.#next++;
    this.#seen.set(id, seq);
    this.#records.push({ id, seq, until: now + this.windowMs });
    while (this.#seen.size > this.maxEntries) if (this.#pop()) this.evicted++;
    return false;
  }
  forget(id: string): void {
    this.#seen.delete(id);
  }
  get size(): number {
    return this.#seen.size;
  }
  #pop(): boolean {
    const r = this.#records.shift() as { id: string; seq: number };
    if (this.#seen.get(r.id) !== r.seq) return false;
    this.#seen.delete(r.id);
    return true;
  }
}

describe('MessageDeduplicator past maxEntries and the window', () => {
  it('evicts the oldest remembered id, skipping forgotten ones', () => {
    const d = new MessageDeduplicator({ maxEntries: 3, windowMs: 1000, now: () => 0 });
    for (const id of ['a', 'b', 'c']) expect(d.isDuplicate(id)).toBe(false);
    d.forget('a'); // its record stays in the order but no longer counts
    expect(d.isDuplicate('a')).toBe(false); // re-added: now the newest
    expect(d.isDuplicate('d')).toBe(false); // 4 ids: the oldest remembered one (b) goes
    expect(d.stats()).toMatchObject({ tracked: 3, evicted_count: 1 });
    expect(d.isDuplicate('c')).toBe(true);
    expect(d.isDuplicate('a')).toBe(true);
    expect(d.isDuplicate('d')).toBe(true);
    expect(d.isDuplicate('b')).toBe(false); // evicted, so accepted again; c goes now
    expect(d.isDuplicate('c')).toBe(false);
    expect(d.stats()).toMatchObject({ tracked: 3, evicted_count: 3, duplicate_count: 3 });
  });

  it('expires ids in insertion order as the clock passes their window, with many ids', () => {
    let now = 0;
    const d = new MessageDeduplicator({ maxEntries: 50_000, windowMs: 100, now: () => now });
    for (let i = 0; i < 30_000; i++) {
      now = Math.floor(i / 100); // 100 ids per ms
      expect(d.isDuplicate(`m${i}`)).toBe(false);
    }
    // now = 299: ids of ms 0..199 expired, those of 200..299 (10 000) remain
    expect(d.stats().tracked).toBe(10_000);
    expect(d.isDuplicate('m19999')).toBe(false);
    expect(d.isDuplicate('m20000')).toBe(true);
    now = 1000;
    expect(d.stats().tracked).toBe(0);
  });

  it('keeps evicting correctly long past maxEntries (every record popped exactly once)', () => {
    const d = new MessageDeduplicator({ maxEntries: 1000, windowMs: 60_000, now: () => 0 });
    for (let i = 0; i < 20_000; i++) {
      d.isDuplicate(`x${i}`);
      if (i % 7 === 3) d.forget(`x${i}`);
    }
    expect(d.size).toBe(1000);
    expect(d.isDuplicate('x19999')).toBe(true);
    expect(d.isDuplicate('x18000')).toBe(false); // long evicted
  });

  it('matches a plain Map model over 200 000 random adds, forgets and clock steps (small table: long probe runs, deletions that move entries)', () => {
    let now = 0;
    const clock = (): number => now;
    let seed = 12345;
    const rand = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    // (The last: nothing expires and most ids are forgotten, so forgotten records fill the ring.)
    for (const [maxEntries, windowMs, forgetPct] of [[7, 50, 8], [64, 1000, 8], [300, 200, 8], [7, 1e9, 45]] as const) {
      const d = new MessageDeduplicator({ maxEntries, windowMs, now: clock });
      const m = new ModelDedup(maxEntries, windowMs, clock);
      for (let i = 0; i < 50_000; i++) {
        const op = rand(100);
        const id = `s${rand(maxEntries * 3)}:${rand(4)}`;
        if (op < forgetPct) {
          d.forget(id);
          m.forget(id);
        } else if (op < forgetPct + 2) {
          now += rand(windowMs);
        } else {
          expect(d.isDuplicate(id)).toBe(m.isDuplicate(id));
        }
        if (i % 997 === 0) expect(d.size).toBe(m.size);
      }
      expect(d.stats()).toMatchObject({ tracked: m.size, duplicate_count: m.duplicates, evicted_count: m.evicted });
    }
  });

  it('matches the model when forgotten records fill the ring (each id added then forgotten, nothing expiring)', () => {
    const clock = (): number => 0;
    const d = new MessageDeduplicator({ maxEntries: 3, windowMs: 1000, now: clock });
    const m = new ModelDedup(3, 1000, clock);
    for (const id of ['keep-a', 'keep-b']) expect(d.isDuplicate(id)).toBe(m.isDuplicate(id));
    for (let i = 0; i < 5000; i++) {
      expect(d.isDuplicate(`x${i}`)).toBe(m.isDuplicate(`x${i}`));
      d.forget(`x${i}`);
      m.forget(`x${i}`);
      if (i % 500 === 0) for (const id of ['keep-a', 'keep-b']) expect(d.isDuplicate(id)).toBe(m.isDuplicate(id));
    }
    expect(d.stats()).toMatchObject({ tracked: m.size, duplicate_count: m.duplicates, evicted_count: m.evicted });
    expect(m.evicted).toBeGreaterThan(0); // the ring bound was reached
  });

  it('refuses a maxEntries over 2^24, or not an integer, with typed errors', () => {
    expect(() => new MessageDeduplicator({ maxEntries: 2 ** 24 + 1 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => new MessageDeduplicator({ maxEntries: 0 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => new MessageDeduplicator({ maxEntries: 1.5 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => new MessageDeduplicator({ windowMs: 'long' as never })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => new MessageDeduplicator().isDuplicate(7 as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => new MessageDeduplicator().forget(7 as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
  });
});
