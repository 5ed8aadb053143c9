/**
 * The compact wire form of a Packet: the binary header of its envelope. Packet registers a codec
 * extension (type PACKET_EXTENSION_TYPE) with the queue layer, so the `records` and `msgpack`
 * codecs write a packet as msgpackr's one-byte extension tag followed by the two-element array
 * `[header, payload]`: the header is a MessagePack bin laid out below, the payload is encoded by
 * the queue's own codec (with the queue's shared structure table, for `records`).
 *
 *   0  u8      version (1)
 *   1  u8      flags: 1 = a traceId follows the key, 2 = a trace follows (the other bits are 0)
 *   2  u8      strategy: 0 = none, else 1 + its index in STRATEGIES
 *   3  u8      key kind: 0 = none, 1 = string, 2 = number, 3 = bigint, 4 = bytes
 *   4  f64le   createdAt (ms since the epoch)
 *  12  varuint inputIndex
 *      key     number: f64le; string: varuint length + UTF-8; bigint: varuint length + its decimal
 *              text; bytes: varuint length + the bytes; none: nothing
 *      traceId varuint length + UTF-8                                          (flag 1 only)
 *      trace   varuint hop count, then per hop: varuint length + UTF-8 router, (flag 2 only)
 *              varuint length + UTF-8 target, f64le at
 *
 * A varuint is LEB128: 7 bits a byte, least significant first, at most 8 bytes. The header ends
 * where its last field ends: anything else is malformed. decodeHeader checks every length against
 * the bytes there are before it reads (it never trusts one) and throws a SerializationError
 * (ERR_SERIALIZATION) for anything malformed; the codec reports it with the record's raw bytes.
 */
import { SerializationError } from '../errors';
import type { PartitionKey } from './hashing';
import { STRATEGIES } from './strategy-names';
import type { StrategyName } from './strategy-names';

/** One delivery of the packet: which router sent it to which target, and when (ms epoch). */
export interface Hop {
  readonly router: string;
  readonly target: string;
  readonly at: number;
}

/** The MessagePack extension type of a packet (0x50, 'P'; see codec-extensions.ts). */
export const PACKET_EXTENSION_TYPE = 0x50;
const VERSION = 1;
const HAS_TRACE_ID = 1;
const HAS_TRACE = 2;
const KEY_NONE = 0;
const KEY_STRING = 1;
const KEY_NUMBER = 2;
const KEY_BIGINT = 3;
const KEY_BYTES = 4;
const FIXED = 12;
const MAX_VARUINT = 10; // bytes a varuint may take when written (8 when read back: 53 bits)

/** A packet's fields as the header carries them (the payload travels beside it). */
export interface HeaderFields {
  inputIndex: number;
  partitionKey: PartitionKey | null;
  partitionStrategy: StrategyName | null;
  createdAt: number;
  traceId: string | undefined;
  trace: readonly Hop[];
}

// Headers are written into one scratch buffer, grown when a header needs more. The codec's write
// returns a view of it, and msgpackr copies those bytes into the message as soon as it packs the
// [header, payload] array, before it packs the payload (where another packet may be nested) or
// anything else: the next header never overwrites bytes still to be copied.
let scratch = Buffer.allocUnsafeSlow(4096);

function strBound(s: string): number {
  return MAX_VARUINT + 3 * s.length;
}

function writeVaruint(buf: Buffer, at: number, value: number): number {
  let v = value;
  while (v >= 0x80) {
    buf[at++] = (v % 0x80) | 0x80;
    v = Math.floor(v / 0x80);
  }
  buf[at++] = v;
  return at;
}

/** Writes length + UTF-8 of `s` at `at`; returns the end. */
function writeString(buf: Buffer, at: number, s: string): number {
  if (s.length < 0x80 / 3) {
    // At most 127 bytes: the length is one byte, written once the bytes are.
    const n = buf.write(s, at + 1, 'utf8');
    buf[at] = n;
    return at + 1 + n;
  }
  const bytes = Buffer.byteLength(s, 'utf8');
  const start = writeVaruint(buf, at, bytes);
  return start + buf.write(s, start, 'utf8');
}

/**
 * The header of a packet with these fields. The bytes are a view of a shared scratch buffer,
 * valid until the next call: copy them if they must outlive it (the codec extension need not).
 */
export function encodeHeader(
  inputIndex: number, key: PartitionKey | null, strategy: StrategyName | null, createdAt: number, traceId: string | undefined, trace: readonly Hop[],
): Buffer {
  let bound = FIXED + 2 * MAX_VARUINT + 8;
  let keyText: string | undefined;
  if (typeof key === 'string') bound += strBound(key);
  else if (typeof key === 'bigint') bound += strBound((keyText = key.toString()));
  else if (key instanceof Uint8Array) bound += MAX_VARUINT + key.length;
  if (traceId !== undefined) bound += strBound(traceId);
  for (const h of trace) bound += strBound(h.router) + strBound(h.target) + 8;
  if (bound > scratch.length) scratch = Buffer.allocUnsafeSlow(Math.max(bound, scratch.length * 2));
  const buf = scratch;

  buf[0] = VERSION;
  buf[1] = (traceId === undefined ? 0 : HAS_TRACE_ID) | (trace.length === 0 ? 0 : HAS_TRACE);
  buf[2] = strategy === null ? 0 : STRATEGIES.indexOf(strategy) + 1;
  buf.writeDoubleLE(createdAt, 4);
  let at = inputIndex < 0x80 ? ((buf[FIXED] = inputIndex), FIXED + 1) : writeVaruint(buf, FIXED, inputIndex);
  if (key === null) {
    buf[3] = KEY_NONE;
  } else if (typeof key === 'string') {
    buf[3] = KEY_STRING;
    at = writeString(buf, at, key);
  } else if (typeof key === 'number') {
    buf[3] = KEY_NUMBER;
    at = buf.writeDoubleLE(key, at);
  } else if (keyText !== undefined) {
    buf[3] = KEY_BIGINT;
    at = writeString(buf, at, keyText);
  } else {
    const bytes = key as Uint8Array;
    buf[3] = KEY_BYTES;
    at = writeVaruint(buf, at, bytes.length);
    buf.set(bytes, at);
    at += bytes.length;
  }
  if (traceId !== undefined) at = writeString(buf, at, traceId);
  if (trace.length !== 0) {
    at = writeVaruint(buf, at, trace.length);
    for (const h of trace) {
      at = writeString(buf, at, h.router);
      at = writeString(buf, at, h.target);
      at = buf.writeDoubleLE(h.at, at);
    }
  }
  return buf.subarray(0, at);
}

function malformed(why: string): SerializationError {
  return new SerializationError(`malformed packet envelope: ${why}`);
}

/** Reads a header, checking every length against the bytes that are there. */
class Reader {
  at = 0;
  constructor(readonly buf: Buffer) {}

  need(n: number, what: string): void {
    if (n > this.buf.length - this.at) throw malformed(`${what} needs ${n} bytes, ${this.buf.length - this.at} are left`);
  }

  varuint(what: string): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 8; i++) {
      this.need(1, what);
      const b = this.buf[this.at++] as number;
      value += (b & 0x7f) * scale;
      if (b < 0x80) {
        if (value > Number.MAX_SAFE_INTEGER) break;
        return value;
      }
      scale *= 0x80;
    }
    throw malformed(`${what} is not a varuint of at most 53 bits`);
  }

  f64(what: string): number {
    this.need(8, what);
    const v = this.buf.readDoubleLE(this.at);
    this.at += 8;
    if (!Number.isFinite(v)) throw malformed(`${what} is not finite`);
    return v;
  }

  /** A length-prefixed run of bytes: [start, end). */
  span(what: string): number {
    const n = this.varuint(`${what} length`);
    this.need(n, what);
    this.at += n;
    return n;
  }

  string(what: string): string {
    const n = this.span(what);
    return this.buf.toString('utf8', this.at - n, this.at);
  }
}

/** The fields of a header. Throws a SerializationError when the bytes are not a valid header. */
export function decodeHeader(bytes: Uint8Array): HeaderFields {
  const buf = bytes instanceof Buffer ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const r = new Reader(buf);
  r.need(FIXED + 1, 'the fixed header');
  if (buf[0] !== VERSION) throw malformed(`version ${buf[0]} (this build reads version ${VERSION})`);
  const flags = buf[1] as number;
  if ((flags & ~(HAS_TRACE_ID | HAS_TRACE)) !== 0) throw malformed(`unknown flags 0x${flags.toString(16)}`);
  const strategyId = buf[2] as number;
  if (strategyId > STRATEGIES.length) throw malformed(`strategy id ${strategyId}`);
  const keyKind = buf[3] as number;
  r.at = 4;
  const createdAt = r.f64('createdAt');
  const inputIndex = r.varuint('inputIndex');
  let partitionKey: PartitionKey | null;
  switch (keyKind) {
    case KEY_NONE:
      partitionKey = null;
      break;
    case KEY_STRING:
      partitionKey = r.string('the key');
      break;
    case KEY_NUMBER:
      partitionKey = r.f64('the key');
      break;
    case KEY_BIGINT: {
      const text = r.string('the key');
      if (!/^-?[0-9]+$/.test(text)) throw malformed('the bigint key is not a decimal integer');
      partitionKey = BigInt(text);
      break;
    }
    case KEY_BYTES: {
      const n = r.span('the key');
      partitionKey = new Uint8Array(buf.subarray(r.at - n, r.at)); // a copy: the record's bytes are not ours
      break;
    }
    default:
      throw malformed(`key kind ${keyKind}`);
  }
  const traceId = (flags & HAS_TRACE_ID) === 0 ? undefined : r.string('the traceId');
  if (traceId === '') throw malformed('an empty traceId');
  let trace: Hop[] = [];
  if ((flags & HAS_TRACE) !== 0) {
    const count = r.varuint('the hop count');
    r.need(count * 10, `${count} hops`); // each takes 10 bytes at least
    trace = new Array<Hop>(count);
    for (let i = 0; i < count; i++) {
      const router = r.string(`hop ${i}'s router`);
      const target = r.string(`hop ${i}'s target`);
      trace[i] = Object.freeze({ router, target, at: r.f64(`hop ${i}'s time`) });
    }
  }
  if (r.at !== buf.length) throw malformed(`${buf.length - r.at} bytes after the header's last field`);
  return { inputIndex, partitionKey, partitionStrategy: strategyId === 0 ? null : (STRATEGIES[strategyId - 1] as StrategyName), createdAt, traceId, trace };
}
