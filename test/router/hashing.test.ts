/**
 * The hashing under the keyed strategies, against independent references: stableHash against the
 * murmurhash package over random ASCII, non-ASCII and byte keys with random seeds (its own
 * MurmurHash3 reads an ASCII key's char codes without encoding it); HashRing.lookup (a bucket
 * index over the sorted points) against a linear scan of the same points, for hashes at, between
 * and around the points, the extremes, and numbers that are not 32-bit unsigned integers.
 */
import murmurhash from 'murmurhash';
import { describe, expect, it } from 'vitest';

import { HashRing, stableHash } from '../../lib/index';
import { seeded } from '../support/seeded';

describe('stableHash', () => {
  it('equals the murmurhash package over 20k random keys (ASCII, non-ASCII, bytes; lengths 0–40; random seeds)', () => {
    const random = seeded(11);
    const int = (k: number): number => Math.floor(random() * k);
    for (let i = 0; i < 20_000; i++) {
      const length = int(41);
      const wide = i % 3 === 0;
      let key = '';
      for (let j = 0; j < length; j++) key += String.fromCharCode(wide ? 1 + int(0xd7ff) : int(128));
      const seed = i % 4 === 0 ? int(2 ** 32) : 0;
      expect(stableHash(key, seed)).toBe(murmurhash.v3(Buffer.from(key, 'utf8'), seed));
      const bytes = Uint8Array.from({ length }, () => int(256));
      expect(stableHash(bytes, seed)).toBe(murmurhash.v3(bytes as unknown as string, seed));
    }
  });

  it('published MurmurHash3_x86_32 vectors', () => {
    expect(stableHash('')).toBe(0);
    expect(stableHash('', 1)).toBe(0x514e28b7);
    expect(stableHash('hello')).toBe(613153351);
    expect(stableHash('The quick brown fox jumps over the lazy dog')).toBe(0x2e4ff723);
  });
});

/** The points a ring of `ids` has, sorted as HashRing sorts them (ties by id). */
function referencePoints(ids: readonly string[], perTarget: number): Array<{ point: number; id: string }> {
  const all = ids.flatMap((id) => Array.from({ length: perTarget }, (_, i) => ({ point: stableHash(`${id}#${i}`), id })));
  return all.sort((a, b) => a.point - b.point || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/** The owner of the first point ≥ hash, wrapping; the first accepted one from there. */
function referenceLookup(points: ReadonlyArray<{ point: number; id: string }>, hash: number, accept: (id: string) => boolean = () => true): string | undefined {
  let start = points.findIndex((p) => p.point >= hash);
  if (start < 0) start = 0;
  for (let k = 0; k < points.length; k++) {
    const id = (points[(start + k) % points.length] as { id: string }).id;
    if (accept(id)) return id;
  }
  return undefined;
}

describe('HashRing.lookup', () => {
  for (const [targets, perTarget] of [[1, 1], [3, 5], [8, 256], [50, 300]] as const) {
    it(`${targets} targets × ${perTarget} points: the same owner as a linear scan, at, between and around every kind of hash`, () => {
      const ids = Array.from({ length: targets }, (_, i) => `target-${i}`);
      const ring = new HashRing(ids, (id) => id, perTarget);
      const points = referencePoints(ids, perTarget);
      const random = seeded(targets * 1000 + perTarget);
      const hashes = [0, 1, 2 ** 31, 2 ** 32 - 1, -1, -0.5, 0.5, 2 ** 32, 2 ** 32 + 5, 1e12, Number.NaN];
      for (const p of points.slice(0, 200)) hashes.push(p.point, p.point - 1, p.point + 1);
      for (let i = 0; i < 2000; i++) hashes.push(Math.floor(random() * 2 ** 32));
      for (const hash of hashes) expect([hash, ring.lookup(hash)]).toEqual([hash, referenceLookup(points, hash)]);
      const odd = (id: string): boolean => Number(id.slice('target-'.length)) % 2 === 1;
      for (const hash of hashes.slice(0, 300)) expect([hash, ring.lookup(hash, odd)]).toEqual([hash, referenceLookup(points, hash, odd)]);
    });
  }

  it('an empty ring has no owner', () => {
    expect(new HashRing<string>([], (id) => id).lookup(123)).toBeUndefined();
  });
});
