/**
 * Message codecs. The codec is recorded in the segment when a queue is created, so every process
 * attached to it encodes and decodes alike.
 *
 * - `raw`: Buffer / Uint8Array / string in, Buffer out. No encoding cost.
 * - `json`: JSON text (UTF-8). Plain data only.
 * - `v8` (default): the structured-clone format of `node:v8` — Date, Map, Set, BigInt, RegExp,
 *   typed arrays, cycles. Functions and symbols cannot be sent.
 * - `msgpack`: MessagePack through msgpackr (compact, other languages can read it).
 */
import * as v8 from 'node:v8';
import type { Packr } from 'msgpackr';

import { InvalidArgumentValueError, SerializationError, describe } from '../errors';

export type CodecName = 'raw' | 'json' | 'v8' | 'msgpack';

export interface Codec {
  /** Stored in the segment. */
  readonly id: number;
  readonly name: CodecName;
  /** True when decode returns the record bytes themselves (views must not be reused). */
  readonly zeroCopy: boolean;
  encode(item: unknown): Uint8Array;
  decode(bytes: Buffer): unknown;
}

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
      return v8.serialize(item);
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
// that never uses this codec should not load.
let packrInstance: Packr | undefined;
function packr(): Packr {
  if (packrInstance === undefined) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { Packr: PackrClass } = require('msgpackr') as typeof import('msgpackr');
    packrInstance = new PackrClass({ useRecords: false, moreTypes: true });
  }
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
  decode(bytes) {
    try {
      return packr().unpack(bytes) as unknown;
    } catch (e) {
      throw decodeFailed('msgpack', bytes, e);
    }
  },
};

const byName: Record<CodecName, Codec> = { raw, json, v8: structured, msgpack };
const byId: readonly Codec[] = [raw, json, structured, msgpack];

export const CODEC_NAMES: readonly CodecName[] = ['raw', 'json', 'v8', 'msgpack'];

export function codecByName(name: unknown): Codec {
  if (typeof name === 'string' && Object.prototype.hasOwnProperty.call(byName, name)) return byName[name as CodecName];
  throw new InvalidArgumentValueError(
    `codec must be one of ${CODEC_NAMES.join(', ')}; received ${describe(name)}`,
    name,
    'ERR_UNKNOWN_CODEC',
  );
}

/** The codec recorded in a segment; undefined if the id is not one this build knows. */
export function codecById(id: number): Codec | undefined {
  return byId[id];
}
