/**
 * Stable key hashing and the consistent-hash ring. The hash is MurmurHash3 (x86, 32-bit, seed 0)
 * of the key's UTF-8 bytes: the same key maps to the same target in every process, after every
 * restart, and in any language with a MurmurHash3 implementation (SAGE's salted `hash()` did not).
 */
import { InvalidArgumentTypeError } from '../errors';

/** What a packet can be partitioned by. Numbers and bigints hash by their decimal text. */
export type PartitionKey = string | number | bigint | Uint8Array;

const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;

/** One 32-bit block mixed into the state (MurmurHash3's body step). */
function mixBlock(h: number, k: number): number {
  k = Math.imul(k, C1);
  k = (k << 15) | (k >>> 17);
  h ^= Math.imul(k, C2);
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

/** The tail (up to 3 bytes, in `k`), the length and the finalizer. */
function finish(h: number, k: number, length: number): number {
  if (k !== 0) {
    k = Math.imul(k, C1);
    k = (k << 15) | (k >>> 17);
    h ^= Math.imul(k, C2);
  }
  h ^= length;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** MurmurHash3_x86_32 of bytes. */
function murmurBytes(bytes: Uint8Array, seed: number): number {
  const n = bytes.length;
  const blocks = n & ~3;
  let h = seed | 0;
  for (let i = 0; i < blocks; i += 4) {
    h = mixBlock(h, (bytes[i] as number) | ((bytes[i + 1] as number) << 8) | ((bytes[i + 2] as number) << 16) | ((bytes[i + 3] as number) << 24));
  }
  let k = 0;
  for (let i = n - 1; i >= blocks; i--) k = (k << 8) | (bytes[i] as number);
  return finish(h, k, n);
}

/**
 * MurmurHash3_x86_32 of an ASCII string's bytes (its char codes), without encoding it; -1 when
 * the string has a non-ASCII character (its UTF-8 bytes must be hashed instead).
 */
function murmurAscii(s: string, seed: number): number {
  const n = s.length;
  const blocks = n & ~3;
  let h = seed | 0;
  let seen = 0; // every char code or-ed together: ≥ 0x80 when one is not ASCII
  for (let i = 0; i < blocks; i += 4) {
    const a = s.charCodeAt(i);
    const b = s.charCodeAt(i + 1);
    const c = s.charCodeAt(i + 2);
    const d = s.charCodeAt(i + 3);
    seen |= a | b | c | d;
    h = mixBlock(h, a | (b << 8) | (c << 16) | (d << 24));
  }
  let k = 0;
  for (let i = n - 1; i >= blocks; i--) {
    const c = s.charCodeAt(i);
    seen |= c;
    k = (k << 8) | c;
  }
  return seen > 0x7f ? -1 : finish(h, k, n);
}

/** MurmurHash3_x86_32 of the key's canonical bytes, as an unsigned 32-bit integer. */
export function stableHash(key: PartitionKey, seed = 0): number {
  if (typeof key === 'string') {
    // ASCII keys (the usual ones) are hashed from their char codes: no encoding, no allocation.
    const h = murmurAscii(key, seed);
    return h >= 0 ? h : murmurBytes(Buffer.from(key, 'utf8'), seed);
  }
  if (typeof key === 'number') {
    if (!Number.isFinite(key)) throw new InvalidArgumentTypeError('partitionKey', 'a finite number', key);
    return murmurAscii(String(key), seed);
  }
  if (typeof key === 'bigint') return murmurAscii(key.toString(), seed);
  if (key instanceof Uint8Array) return murmurBytes(key, seed);
  throw new InvalidArgumentTypeError('partitionKey', 'a string, number, bigint or Uint8Array', key);
}

/**
 * A hash ring with virtual nodes. Removing one of N targets moves only that target's keys (to
 * their clockwise successors); adding one moves keys only to the new target. Balance improves
 * with more points per target (about 1.05 max/mean at 1000 points).
 */
export class HashRing<T> {
  readonly #points: Uint32Array;
  readonly #owners: T[];
  /** The hash's top bits pick a bucket; #start[b] is the first point at or after bucket b. */
  readonly #shift: number;
  readonly #start: Uint32Array;

  /** `targets` are identified by `idOf` (the ring positions depend only on the ids). */
  constructor(targets: readonly T[], idOf: (t: T) => string, pointsPerTarget = 256) {
    if (!Array.isArray(targets)) throw new InvalidArgumentTypeError('targets', 'an array', targets);
    if (typeof idOf !== 'function') throw new InvalidArgumentTypeError('idOf', 'a function', idOf);
    if (!Number.isSafeInteger(pointsPerTarget) || pointsPerTarget < 1) throw new InvalidArgumentTypeError('pointsPerTarget', 'an integer >= 1', pointsPerTarget);
    const entries: Array<{ point: number; owner: T; id: string }> = [];
    for (const t of targets) {
      const id = idOf(t);
      for (let i = 0; i < pointsPerTarget; i++) entries.push({ point: stableHash(`${id}#${i}`), owner: t, id });
    }
    // Ties (rare) are broken by id so every process builds the same ring.
    entries.sort((a, b) => a.point - b.point || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    this.#points = Uint32Array.from(entries, (e) => e.point);
    this.#owners = entries.map((e) => e.owner);
    // About two buckets per point (at most 2^16): a lookup scans a bucket or two, no binary search.
    const bits = Math.min(16, Math.max(1, Math.ceil(Math.log2(Math.max(1, entries.length))) + 1));
    this.#shift = 32 - bits;
    const buckets = 1 << bits;
    this.#start = new Uint32Array(buckets + 1);
    let i = 0;
    for (let b = 0; b <= buckets; b++) {
      while (i < entries.length && (this.#points[i] as number) >>> this.#shift < b) i++;
      this.#start[b] = i;
    }
  }

  get size(): number {
    return this.#points.length;
  }

  /**
   * The owner of `hash`: the first point clockwise from it whose owner `accept`s (default: any).
   * Undefined when no owner is accepted.
   */
  lookup(hash: number, accept?: (t: T) => boolean): T | undefined {
    const points = this.#points;
    const n = points.length;
    if (n === 0) return undefined;
    const lo = hash >>> 0 === hash ? this.#firstAtOrAfter(hash) : this.#search(hash);
    for (let k = 0; k < n; k++) {
      const owner = this.#owners[(lo + k) % n] as T;
      if (accept === undefined || accept(owner)) return owner;
    }
    return undefined;
  }

  /**
   * The index of the first point ≥ `hash` (n when none), for a 32-bit unsigned hash: every point
   * of an earlier bucket is smaller, every one of a later bucket larger, so only the hash's own
   * bucket is scanned.
   */
  #firstAtOrAfter(hash: number): number {
    const points = this.#points;
    const bucket = hash >>> this.#shift;
    let lo = this.#start[bucket] as number;
    const hi = this.#start[bucket + 1] as number;
    while (lo < hi && (points[lo] as number) < hash) lo++;
    return lo;
  }

  /** The same by binary search, for any number (one that is not a 32-bit unsigned integer too). */
  #search(hash: number): number {
    const points = this.#points;
    let lo = 0;
    let hi = points.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((points[mid] as number) < hash) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
