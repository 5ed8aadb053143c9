// What "user code" does with each message, the same for every transport: it receives the message
// as its own value (a Buffer view, or a decoded object), reads the sequence number the producer
// stamped in it, and reads its last byte. Out-of-order or missing messages are counted, so a
// transport that loses or reorders messages is reported, not silently fast.
//
// Counters live in module scope so the hot functions stay small, monomorphic and allocation-free.

let expected = 0;
let outOfOrder = 0;
let consumed = 0;
let checksum = 0;

/** A message as bytes (Buffer / Uint8Array): sequence number little-endian in bytes 0..3. */
export function consumeBytes(m) {
  const seq = (m[0] | (m[1] << 8) | (m[2] << 16) | (m[3] << 24)) >>> 0;
  if (seq !== expected) outOfOrder++;
  expected = (seq + 1) >>> 0;
  checksum = (checksum + m[m.length - 1]) | 0;
  consumed++;
}

/** A message read in place: `len` bytes at `off` in `buf` (no view is made). */
export function consumeAt(buf, off, len) {
  const seq = (buf[off] | (buf[off + 1] << 8) | (buf[off + 2] << 16) | (buf[off + 3] << 24)) >>> 0;
  if (seq !== expected) outOfOrder++;
  expected = (seq + 1) >>> 0;
  checksum = (checksum + buf[off + len - 1]) | 0;
  consumed++;
}

/** A Buffer that went through JSON: { type: 'Buffer', data: number[] }. */
export function consumeJsonBuffer(m) {
  const d = m.data;
  const seq = (d[0] | (d[1] << 8) | (d[2] << 16) | (d[3] << 24)) >>> 0;
  if (seq !== expected) outOfOrder++;
  expected = (seq + 1) >>> 0;
  checksum = (checksum + d[d.length - 1]) | 0;
  consumed++;
}

/** A decoded small object (see makeObject). */
export function consumeObject(o) {
  const seq = o.seq;
  if (seq !== expected) outOfOrder++;
  expected = (seq + 1) >>> 0;
  checksum = (checksum + o.qty + o.tags.length) | 0;
  consumed++;
}

export function consumerFor(payload, jsonBuffers = false) {
  if (payload === 'obj') return consumeObject;
  return jsonBuffers ? consumeJsonBuffer : consumeBytes;
}

export function tally() {
  return { consumed, outOfOrder, checksum };
}

/** The "small object" payload: about 70 bytes once v8-serialised, ~80 as JSON. */
export function makeObject(seq) {
  return { seq, kind: 'tick', price: 101.25, qty: 7, tags: ['a', 'b'], ok: true };
}

/** A Buffer payload of `size` bytes and a Uint32Array over its first 4 bytes (the sequence). */
export function makeBytes(size) {
  const ab = new ArrayBuffer(size);
  const buf = Buffer.from(ab);
  buf.fill(0xa5);
  return { buf, seq: new Uint32Array(ab, 0, 1) };
}

/**
 * The measurement window of a stream consumer: starts `warmMs` after the first check (so JIT
 * warm-up and start-up skew are excluded), ends at finish().
 */
export function makeWindow(warmMs) {
  let first = 0;
  let markT = 0;
  let markN = 0;
  return {
    /** Call every batch (or every few hundred messages) with the running message count. */
    check(total) {
      if (markT !== 0) return;
      const now = performance.now();
      if (first === 0) first = now;
      else if (now - first >= warmMs) {
        markT = now;
        markN = total;
      }
    },
    finish(total) {
      const end = performance.now();
      if (markT === 0) {
        // Too few messages to reach the end of the warm-up: measure all of them.
        markT = first !== 0 ? first : end;
        markN = 0;
      }
      const windowMs = end - markT;
      const counted = total - markN;
      return { counted, windowMs, msgsPerSec: windowMs > 0 ? (counted * 1000) / windowMs : 0, received: total };
    },
  };
}

/** Round-trip samples (µs) -> summary. */
export function latencySummary(samples, n) {
  const s = Float64Array.from(samples.subarray(0, n)).sort();
  const pct = (p) => (n === 0 ? 0 : s[Math.min(n - 1, Math.round(p * (n - 1)))]);
  let sum = 0;
  for (let i = 0; i < n; i++) sum += s[i];
  return { samples: n, p50Us: pct(0.5), p99Us: pct(0.99), minUs: n ? s[0] : 0, meanUs: n ? sum / n : 0 };
}
