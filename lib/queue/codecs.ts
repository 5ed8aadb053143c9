/**
 * Message codecs. The codec is recorded in the segment when a queue is created, so every process
 * attached to it encodes and decodes alike.
 *
 * - `raw`: Buffer / Uint8Array / string in, Buffer out. No encoding cost.
 * - `json`: JSON text (UTF-8). Plain data only.
 * - `v8`: the structured-clone format of `node:v8` — Date, Map, Set, BigInt, RegExp,
 *   typed arrays, cycles. Functions and symbols cannot be sent. The default before `records`.
 *   A top-level instance of a class with a codec extension goes as its plain() form.
 * - `msgpack`: MessagePack through msgpackr (compact, other languages can read it). Instances of
 *   classes with a codec extension (codec-extensions.ts; e.g. Packet) go in their own form.
 * - `records` (default): MessagePack records whose structures are shared by every process attached
 *   to the queue (record-codec.ts). Needs a per-queue table, so only SageQueue offers it: the
 *   entry here names it; SageQueue binds it to the queue's table (`shared: true`).
 */
import * as v8 from 'node:v8';
import type { Packr } from 'msgpackr';

import { InvalidArgumentValueError, SerializationError, describe } from '../errors';
import { loadMsgpackr, plainForm } from './codec-extensions';

export type CodecName = 'raw' | 'json' | 'v8' | 'msgpack' | 'records';
/** Codecs that need no per-queue state (what queues other than SageQueue offer). */
export type StatelessCodecName = Exclude<CodecName, 'records'>;

export interface Codec {
  /** Stored in the segment. */
  readonly id: number;
  readonly name: CodecName;
  /** True when decode returns the record bytes themselves (views must not be reused). */
  readonly zeroCopy: boolean;
  /** True when the codec must be bound to a queue's shared structure table before use. */
  readonly shared?: boolean;
  encode(item: unknown): Uint8Array;
  /**
   * encode() without a Buffer per record (the batch path): sets `at` to where the record lies, in
   * a buffer the codec keeps writing forward (never over a record it handed out), so the
   * records of a batch can be written to the ring from there without being copied together.
   */
  encodeAt?(item: unknown, at: EncodedAt): void;
  decode(bytes: Buffer): unknown;
  /** decode(slab.subarray(off, off + len)) without the view (the batch path). */
  decodeAt?(slab: Buffer, off: number, len: number): unknown;
}

/** Where encodeAt put a record: bytes [start, start + length) of `buffer`. */
export interface EncodedAt {
  buffer: Uint8Array;
  start: number;
  length: number;
}

/**
 * packr.pack(item) in REUSE_BUFFER_MODE: msgpackr then returns its own output buffer with the
 * record's bounds in `start`/`end` instead of a new Buffer view; when it saved shared structures
 * during that pack it returns a view of its own (without those own properties).
 */
export function packAt(packr: Packr, item: unknown, at: EncodedAt): void {
  const out = packr.pack(item, REUSE_BUFFER_MODE) as Uint8Array & { start?: unknown; end?: unknown };
  at.buffer = out;
  if (typeof out.start === 'number') {
    at.start = out.start as number;
    at.length = (out.end as number) - (out.start as number);
  } else {
    at.start = 0;
    at.length = out.length;
  }
}

/** msgpackr's encodeOptions flag (its REUSE_BUFFER_MODE export; a test checks they agree), kept
 * here so that msgpackr is still loaded only on first use. */
export const REUSE_BUFFER_MODE = 512;

function encodeFailed(codec: string, item: unknown, cause?: unknown): SerializationError {
  const why = cause instanceof Error ? `: ${cause.message}` : '';
  return new SerializationError(`the ${codec} codec cannot encode ${describe(item)}${why}; nothing was enqueued`, { cause });
}

function decodeFailed(codec: string, bytes: Buffer, cause: unknown): SerializationError {
  const err = new SerializationError(
    `a ${bytes.length}-byte record could not be decoded with the ${codec} codec ` +
      `(was it written with another codec?); the raw bytes are on error.raw`,
    { cause },
  );
  Object.defineProperty(err, 'raw', { value: Buffer.from(bytes), enumerable: false });
  return err;
}

const raw: Codec = {
  id: 0,
  name: 'raw',
  zeroCopy: true,
  encode(item) {
    if (item instanceof Uint8Array) return item;
    if (typeof item === 'string') return Buffer.from(item, 'utf8');
    throw encodeFailed('raw', item, new TypeError('the raw codec takes a Buffer, a Uint8Array or a string'));
  },
  decode(bytes) {
    return bytes;
  },
};

const json: Codec = {
  id: 1,
  name: 'json',
  zeroCopy: false,
  encode(item) {
    let text: string | undefined;
    try {
      text = JSON.stringify(item);
    } catch (e) {
      throw encodeFailed('json', item, e);
    }
    if (text === undefined) throw encodeFailed('json', item);
    return Buffer.from(text, 'utf8');
  },
  decode(bytes) {
    try {
      return JSON.parse(bytes.toString('utf8')) as unknown;
    } catch (e) {
      throw decodeFailed('json', bytes, e);
    }
  },
};

const structured: Codec = {
  id: 2,
  name: 'v8',
  zeroCopy: false,
  encode(item) {
    try {
      return v8.serialize(plainForm(item));
    } catch (e) {
      throw encodeFailed('v8', item, e);
    }
  },
  decode(bytes) {
    try {
      return v8.deserialize(bytes) as unknown;
    } catch (e) {
      throw decodeFailed('v8', bytes, e);
    }
  },
};

// Loaded on first use: msgpackr brings its own native addon (msgpackr-extract), which a process
// that never uses this codec should not load. Made from loadMsgpackr() so that the registered
// codec extensions (codec-extensions.ts) apply.
let packrInstance: Packr | undefined;
function packr(): Packr {
  packrInstance ??= new (loadMsgpackr().Packr)({ useRecords: false, moreTypes: true });
  return packrInstance;
}

const msgpack: Codec = {
  id: 3,
  name: 'msgpack',
  zeroCopy: false,
  encode(item) {
    if (typeof item === 'function' || typeof item === 'symbol' || item === undefined) throw encodeFailed('msgpack', item);
    try {
      return packr().pack(item);
    } catch (e) {
      throw encodeFailed('msgpack', item, e);
    }
  },
  encodeAt(item, at) {
    if (typeof item === 'function' || typeof item === 'symbol' || item === undefined) throw encodeFailed('msgpack', item);
    try {
      packAt(packr(), item, at);
    } catch (e) {
      throw encodeFailed('msgpack', item, e);
    }
  },
  decode(bytes) {
    try {
      return packr().unpack(bytes) as unknown;
    } catch (e) {
      throw decodeFailed('msgpack', bytes, e);
    }
  },
  decodeAt(slab, off, len) {
    // (A zero-length range would read as "to the end" in msgpackr.)
    if (len === 0) return this.decode(slab.subarray(off, off));
    try {
      return packr().unpack(slab, { start: off, end: off + len }) as unknown;
    } catch (e) {
      throw decodeFailed('msgpack', slab.subarray(off, off + len), e);
    }
  },
};

// Unbound: SageQueue replaces it with openRecordCodec(table) once it knows the queue's table.
const records: Codec = {
  id: 4,
  name: 'records',
  zeroCopy: false,
  shared: true,
  encode(item) {
    throw encodeFailed('records', item, new TypeError('the records codec needs a queue (its structure table): use it through a SageQueue'));
  },
  decode(bytes) {
    throw decodeFailed('records', bytes, new TypeError('the records codec needs a queue (its structure table)'));
  },
};

const byName: Record<CodecName, Codec> = { raw, json, v8: structured, msgpack, records };
const byId: readonly Codec[] = [raw, json, structured, msgpack, records];

export const CODEC_NAMES: readonly CodecName[] = ['raw', 'json', 'v8', 'msgpack', 'records'];
/** The codec of a new SageQueue when none is asked for. */
export const DEFAULT_CODEC: CodecName = 'records';

export function codecByName(name: unknown): Codec {
  if (typeof name === 'string' && Object.prototype.hasOwnProperty.call(byName, name)) return byName[name as CodecName];
  throw new InvalidArgumentValueError(
    `codec must be one of ${CODEC_NAMES.join(', ')}; received ${describe(name)}`,
    name,
    'ERR_UNKNOWN_CODEC',
  );
}

/** A codec that needs no queue (RedisQueue, tests): refuses 'records' with ERR_UNKNOWN_CODEC. */
export function statelessCodecByName(name: unknown): Codec & { name: StatelessCodecName } {
  if (name === 'records') {
    throw new InvalidArgumentValueError(
      "codec 'records' shares its structure table through /dev/shm beside a SageQueue; use raw, json, v8 or msgpack here",
      name,
      'ERR_UNKNOWN_CODEC',
    );
  }
  return codecByName(name) as Codec & { name: StatelessCodecName };
}

/** The codec recorded in a segment; undefined if the id is not one this build knows. */
export function codecById(id: number): Codec | undefined {
  return byId[id];
}
