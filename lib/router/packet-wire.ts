/**
 * The compact wire form of a Packet. Packet registers a codec extension (codec-extensions.ts) of
 * type PACKET_EXTENSION_TYPE, so the `records` and `msgpack` codecs write a packet as msgpackr's
 * one-byte extension tag (`d4 50 00`) followed by the envelope below, a MessagePack array encoded
 * by the queue's own Packr (the payload with the queue's shared structure table, for `records`):
 *
 *   [head, createdAt, partitionKey, inputIndex?, traceId?, trace?, payload]
 *
 *   head          one byte (a fixint < 0x40): flags << 3 | strategy id. Flags: 1 = traceId
 *                 present, 2 = trace present, 4 = hop times are relative to createdAt.
 *                 Strategy id: 0 = none, else 1 + its index in STRATEGIES
 *   createdAt     number (ms since the epoch; a float64, or an integer when it fits 32 bits)
 *   partitionKey  nil, string, number, bigint (int64, or msgpackr's BigInt extension) or bytes
 *   inputIndex    unsigned integer, only when it is not 0 (the array is one longer than the
 *                 flags alone say)
 *   traceId       string, only when flag 1 is set (see Packet#traceId for when that is)
 *   trace         only when flag 2 is set: one flat array [router, target, at, router, ...];
 *                 with flag 4, each `at` is its hop's time minus createdAt (written when
 *                 createdAt and every hop time are integers: a few ms take one byte, where an
 *                 epoch time takes nine)
 *   payload       the packet's payload, any value the codec encodes
 *
 * The extension type is the format: a layout that older readers would misread takes another type.
 * No field names travel and nothing absent takes a byte: an untraced packet for input 0 costs 14
 * bytes (tag 3, array 1, head 1, createdAt 9) plus its key and payload. Every field is MessagePack
 * that msgpackr writes natively; msgpackr checks the lengths while it decodes (a truncated record
 * is its error), and readEnvelope checks the shape and every field's type and range: a malformed
 * envelope is a SerializationError (ERR_SERIALIZATION), which the codec reports with the record's
 * raw bytes.
 */
import { SerializationError, describe } from '../errors';
import type { PartitionKey } from './hashing';
import { STRATEGIES } from './strategy-names';
import type { StrategyName } from './strategy-names';

/** One delivery of the packet: which router sent it to which target, and when (ms epoch). */
export interface Hop {
  readonly router: string;
  readonly target: string;
  readonly at: number;
}

/** The MessagePack extension type of a packet envelope (0x50, 'P'). */
export const PACKET_EXTENSION_TYPE = 0x50;
const HAS_TRACE_ID = 1;
const HAS_TRACE = 2;
const RELATIVE_HOP_TIMES = 4;

/** A packet's fields as the envelope carries them. */
export interface EnvelopeFields {
  payload: unknown;
  inputIndex: number;
  partitionKey: PartitionKey | null;
  partitionStrategy: StrategyName | null;
  createdAt: number;
  traceId: string | undefined;
  trace: readonly Hop[];
}

/** The envelope array of a packet with these fields (what the codec extension's write returns). */
export function writeEnvelope(
  payload: unknown, inputIndex: number, key: PartitionKey | null, strategy: StrategyName | null, createdAt: number,
  traceId: string | undefined, trace: readonly Hop[],
): unknown[] {
  const strategyId = strategy === null ? 0 : STRATEGIES.indexOf(strategy) + 1;
  let flags = (traceId === undefined ? 0 : HAS_TRACE_ID) | (trace.length === 0 ? 0 : HAS_TRACE);
  let flat: Array<string | number> | undefined;
  if (trace.length !== 0) {
    flat = new Array<string | number>(trace.length * 3);
    // Integers below 2^53 subtract and add back exactly.
    let relative = Number.isSafeInteger(createdAt);
    for (let i = 0; i < trace.length; i++) {
      const h = trace[i] as Hop;
      flat[3 * i] = h.router;
      flat[3 * i + 1] = h.target;
      flat[3 * i + 2] = h.at;
      relative &&= Number.isSafeInteger(h.at) && Number.isSafeInteger(h.at - createdAt);
    }
    if (relative) {
      flags |= RELATIVE_HOP_TIMES;
      for (let i = 2; i < flat.length; i += 3) flat[i] = (flat[i] as number) - createdAt;
    }
  }
  const out: unknown[] = [(flags << 3) | strategyId, createdAt, key];
  if (inputIndex !== 0) out.push(inputIndex);
  if (traceId !== undefined) out.push(traceId);
  if (flat !== undefined) out.push(flat);
  out.push(payload);
  return out;
}

function malformed(why: string): SerializationError {
  return new SerializationError(`malformed packet envelope: ${why}`);
}

function readKey(key: unknown): PartitionKey | null {
  if (key === null || typeof key === 'string' || typeof key === 'bigint') return key;
  if (typeof key === 'number') {
    if (Number.isFinite(key)) return key;
  } else if (key instanceof Uint8Array) {
    return new Uint8Array(key); // a copy: a bin decodes to a view of the record's bytes
  }
  throw malformed(`the partition key is ${describe(key)}`);
}

function readTrace(flat: unknown, base: number): Hop[] {
  if (!Array.isArray(flat) || flat.length === 0 || flat.length % 3 !== 0) throw malformed(`the trace is ${describe(flat)}, not [router, target, at, ...]`);
  const trace = new Array<Hop>(flat.length / 3);
  for (let i = 0; i < trace.length; i++) {
    const router: unknown = flat[3 * i];
    const target: unknown = flat[3 * i + 1];
    const at: unknown = flat[3 * i + 2];
    if (typeof router !== 'string' || typeof target !== 'string' || typeof at !== 'number' || !Number.isFinite(at)) {
      throw malformed(`hop ${i} is not (router: string, target: string, at: finite number)`);
    }
    trace[i] = Object.freeze({ router, target, at: at + base });
  }
  return trace;
}

/** The fields of an envelope, checked. Throws a SerializationError when it is malformed. */
export function readEnvelope(data: unknown): EnvelopeFields {
  if (!Array.isArray(data) || data.length < 4) throw malformed(`${describe(data)} where [head, createdAt, key, ..., payload] belongs`);
  const head: unknown = data[0];
  if (typeof head !== 'number' || !Number.isInteger(head) || head < 0 || head >= 0x40) throw malformed(`head ${describe(head)} (0..0x3f)`);
  const strategyId = head & 7;
  if (strategyId > STRATEGIES.length) throw malformed(`strategy id ${strategyId}`);
  const flags = head >> 3;
  if ((flags & RELATIVE_HOP_TIMES) !== 0 && (flags & HAS_TRACE) === 0) throw malformed('relative hop times without a trace');
  const base = 4 + (flags & HAS_TRACE_ID) + ((flags & HAS_TRACE) >> 1);
  if (data.length !== base && data.length !== base + 1) throw malformed(`${data.length} fields where head 0x${head.toString(16)} says ${base} or ${base + 1}`);
  const createdAt: unknown = data[1];
  if (typeof createdAt !== 'number' || !Number.isFinite(createdAt)) throw malformed(`createdAt ${describe(createdAt)}`);
  let at = 3;
  const inputIndex: unknown = data.length === base ? 0 : data[at++];
  if (typeof inputIndex !== 'number' || !Number.isSafeInteger(inputIndex) || inputIndex < 0) throw malformed(`inputIndex ${describe(inputIndex)}`);
  let traceId: string | undefined;
  if ((flags & HAS_TRACE_ID) !== 0) {
    const id: unknown = data[at++];
    if (typeof id !== 'string' || id.length === 0) throw malformed(`traceId ${describe(id)}`);
    traceId = id;
  }
  return {
    partitionKey: readKey(data[2]),
    inputIndex,
    createdAt,
    partitionStrategy: strategyId === 0 ? null : (STRATEGIES[strategyId - 1] as StrategyName),
    traceId,
    trace: (flags & HAS_TRACE) === 0 ? [] : readTrace(data[at++], (flags & RELATIVE_HOP_TIMES) === 0 ? 0 : createdAt),
    payload: data[at] as unknown,
  };
}
