/**
 * Stream entries of a RedisQueue as the queue sees them: the raw entry read from Redis, the
 * one-letter field that records each entry's codec, decoding, and dead-letter entries.
 */
import { statelessCodecByName } from '../queue/codecs';
import type { StatelessCodecName } from '../queue/codecs';
import { SerializationError } from '../errors';

/** An entry read (or reclaimed) from the stream, not yet handed out. */
export interface RawEntry {
  id: string;
  deliveries: number;
  /** The field name: the codec the entry was written with (see FIELD_OF_CODEC). */
  field: string;
  value: Buffer;
  /** Date.now() when it was read. */
  readAt: number;
  /** Auto mode: already acknowledged for this consumer (hand out, never drop). */
  acked?: boolean;
}

/** Each entry is one field whose name says which codec wrote its value. */
export const FIELD_OF_CODEC: Readonly<Record<StatelessCodecName, string>> = { raw: 'r', json: 'j', v8: 'v', msgpack: 'm' };
const CODEC_OF_FIELD: Readonly<Record<string, StatelessCodecName>> = { r: 'raw', j: 'json', v: 'v8', m: 'msgpack' };

/** Decodes an entry with the codec its field names; SerializationError when it cannot. */
export function decodeEntry(entry: Pick<RawEntry, 'id' | 'field' | 'value'>): unknown {
  const name = CODEC_OF_FIELD[entry.field];
  if (name === undefined) {
    throw new SerializationError(`stream entry ${entry.id} has field ${JSON.stringify(entry.field)}, not one written by a RedisQueue (r, j, v or m)`);
  }
  return statelessCodecByName(name).decode(entry.value);
}

/** An entry of the dead-letter stream. */
export interface DeadLetterEntry {
  /** Id in the dead-letter stream. */
  id: string;
  /** Id the entry had in the queue's stream. */
  originalId: string;
  deliveries: number;
  reason: string;
  /** ms since the epoch, Redis server time. */
  at: number;
  /** Decoded value (undefined, with `error`, when it cannot be decoded). */
  value: unknown;
  error?: SerializationError;
}

/**
 * One XRANGE row of the dead-letter stream: the entry's own field and value first, then the
 * x-id, x-deliveries, x-reason, x-group and x-at fields the scripts add.
 */
export function deadLetterFromRow([id, fields]: [Buffer, Buffer[]]): DeadLetterEntry {
  const f = new Map<string, Buffer>();
  for (let i = 0; i + 1 < fields.length; i += 2) f.set((fields[i] as Buffer).toString(), fields[i + 1] as Buffer);
  const field = (fields[0] as Buffer | undefined)?.toString() ?? '';
  const entry: DeadLetterEntry = {
    id: id.toString(),
    originalId: f.get('x-id')?.toString() ?? '',
    deliveries: Number(f.get('x-deliveries')?.toString() ?? 0),
    reason: f.get('x-reason')?.toString() ?? '',
    at: Number(f.get('x-at')?.toString() ?? 0),
    value: undefined,
  };
  try {
    entry.value = decodeEntry({ id: entry.originalId, field, value: fields[1] as Buffer });
  } catch (e) {
    entry.error = e as SerializationError;
  }
  return entry;
}
