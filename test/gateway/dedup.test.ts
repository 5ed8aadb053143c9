/**
 * MessageDeduplicator bookkeeping once the window is full: the oldest id is evicted (and only
 * a remembered one is counted), a forgotten id re-added counts as new and is evicted in its new
 * place, and expiry removes ids in insertion order. (Its cost per id staying flat at that point
 * is measured by bench/gateway.mjs, not asserted here.)
 */
import { describe, expect, it } from 'vitest';

import { MessageDeduplicator } from '../../lib/index';

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
});
