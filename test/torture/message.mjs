// The torture test's message format, shared by producers, consumers and the controller:
//
//   0  u32  magic 0x54525452 ("TRTR")
//   4  u32  producer id
//   8  u32  sequence number (per producer, from 0)
//  12  u32  payload length L
//  16  L    payload: a deterministic function of (producer, seq)
//  16+L u32 CRC-32 of bytes [0, 16+L)
//
// A consumer checks all of it, so a torn, mixed-up or overwritten record cannot pass for a good one.
import * as zlib from 'node:zlib';

export const MAGIC = 0x54525452;
export const HEADER = 16;
export const TRAILER = 4;
/** Producer id of the controller's own messages (used to force reclamation at the end). */
export const CONTROLLER_ID = 0xffffffff;

let table;
function crc32Js(buf) {
  if (table === undefined) {
    table = new Int32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c;
    }
  }
  let c = -1;
  for (let i = 0; i < buf.length; i++) c = table[(c ^ buf[i]) & 0xff] ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

/** CRC-32 (zlib.crc32 where Node has it, 20.15+; the same polynomial in JS otherwise). */
export const crc32 = typeof zlib.crc32 === 'function' ? (buf) => zlib.crc32(buf) >>> 0 : crc32Js;

/** A 32-bit mix of (producer, seq): the payload seed and the size choice. */
export function mix(producer, seq) {
  let h = Math.imul(producer ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(seq + 0x7f4a7c15, 0xc2b2ae35);
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  return h >>> 0;
}

/** Payload length of (producer, seq): mostly 0..1500 bytes, every 64th up to 12 KiB. */
export function payloadLength(producer, seq) {
  const h = mix(producer, seq);
  return (h & 63) === 0 ? 1500 + (h % 11000) : h % 1500;
}

function fillPayload(buf, at, len, producer, seq) {
  let x = mix(producer, seq) | 1;
  for (let i = 0; i < len; i++) {
    // xorshift32: cheap, and every byte depends on the seed
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    buf[at + i] = x & 0xff;
  }
}

export function makeMessage(producer, seq, len = payloadLength(producer, seq)) {
  const buf = Buffer.allocUnsafe(HEADER + len + TRAILER);
  buf.writeUInt32LE(MAGIC, 0);
  buf.writeUInt32LE(producer >>> 0, 4);
  buf.writeUInt32LE(seq >>> 0, 8);
  buf.writeUInt32LE(len, 12);
  fillPayload(buf, HEADER, len, producer, seq);
  buf.writeUInt32LE(crc32(buf.subarray(0, HEADER + len)), HEADER + len);
  return buf;
}

/** Producer and seq from the header, without checking anything (-1 when too short). */
export function peekId(buf) {
  if (buf.length < HEADER) return { producer: -1, seq: -1 };
  return { producer: buf.readUInt32LE(4), seq: buf.readUInt32LE(8) };
}

/** null when the message is intact, else a short reason. */
export function verify(buf) {
  if (buf.length < HEADER + TRAILER) return `short(${buf.length})`;
  if (buf.readUInt32LE(0) !== MAGIC) return 'magic';
  const len = buf.readUInt32LE(12);
  if (HEADER + len + TRAILER !== buf.length) return `length(${len}/${buf.length})`;
  if (crc32(buf.subarray(0, HEADER + len)) !== buf.readUInt32LE(HEADER + len)) return 'crc';
  const producer = buf.readUInt32LE(4);
  const seq = buf.readUInt32LE(8);
  if (producer !== CONTROLLER_ID && len !== payloadLength(producer, seq)) return 'size';
  const expect = Buffer.allocUnsafe(len);
  fillPayload(expect, 0, len, producer, seq);
  if (!expect.equals(buf.subarray(HEADER, HEADER + len))) return 'payload';
  return null;
}

/** Microseconds on CLOCK_MONOTONIC: the same clock in every process on the machine. */
export function nowUs() {
  return Number(process.hrtime.bigint() / 1000n);
}
