/**
 * The `records` codec (the default): MessagePack through msgpackr with record structures shared by
 * every process attached to the queue. An object's keys are written once, in the queue's structure
 * table (see structure-log.ts), and each message carries a one- or two-byte structure id and the
 * values: smaller and several times faster to encode and decode than `v8` for small objects.
 *
 * msgpackr does the in-process side through its shared-structure callbacks:
 * - getStructures: the table as this process knows it, after reading what others appended. A
 *   decoder that meets an id it does not know calls it, so a structure another process just
 *   added is learnt before the message that uses it is decoded (the writer appends to the table
 *   before it puts the message).
 * - saveStructures: appends the structures this process created; false when another process
 *   claimed those ids first, and msgpackr then reloads the table and encodes the message again.
 * Beyond MAX_SHARED_STRUCTURES shapes, msgpackr writes the keys inside each message instead
 * (plain records defined inline): still decodable by everyone, only larger.
 */
import type { Packr } from 'msgpackr';

import { SerializationError, describe } from '../errors';
import { loadMsgpackr } from './codec-extensions';
import { packAt } from './codecs';
import type { Codec } from './codecs';
import { StructureLog, sameKeys } from './structure-log';
import type { Keys } from './structure-log';

/** Most structures a queue's table holds (ids 0..255; the first 32 take one byte per message). */
export const MAX_SHARED_STRUCTURES = 256;

type PackrClass = typeof import('msgpackr').Packr;

/** A records codec bound to one table file. close() releases the file. */
export interface BoundCodec extends Codec {
  close(): void;
}

const closeOnCollect = new FinalizationRegistry<StructureLog>((log) => log.close());

function refuse(item: unknown, why?: unknown): SerializationError {
  const reason = why instanceof Error ? `: ${why.message}` : '';
  return new SerializationError(`the records codec cannot encode ${describe(item)}${reason}; nothing was enqueued`, { cause: why });
}

function refuseFunction(): never {
  throw new TypeError('functions cannot be sent');
}

/** A records codec for the table at `tablePath` (created on first use with `mode`). */
export function openRecordCodec(tablePath: string, mode: number): BoundCodec {
  const log = new StructureLog(tablePath, mode);
  // From loadMsgpackr(): the registered codec extensions (codec-extensions.ts) apply here too.
  const Ctor = loadMsgpackr().Packr;
  // Set when msgpackr asked for the table (it met a structure id it did not know).
  let reloaded = false;
  const packr: Packr = new Ctor({
    moreTypes: true,
    maxSharedStructures: MAX_SHARED_STRUCTURES,
    writeFunction: refuseFunction,
    getStructures(): Keys[] {
      reloaded = true;
      log.refresh();
      // msgpackr annotates the arrays it is given: hand it copies.
      return log.entries.map((k) => k.slice());
    },
    saveStructures(structures: Keys[]): boolean {
      const known = log.refresh();
      const shared = (structures as Keys[] & { sharedLength?: number }).sharedLength ?? structures.length;
      // Our copy must extend the table exactly; anything else means another process got there first.
      if (shared <= known) return false;
      for (let i = 0; i < known; i++) if (!sameKeys(log.entries[i], structures[i] as Keys)) return false;
      return log.append(known, structures.slice(known, shared));
    },
  } as ConstructorParameters<PackrClass>[0]);

  // decodeAt's range, reused: msgpackr reads it at once.
  const range = { start: 0, end: 0 };
  /** One record: `source` whole, or source[range.start, range.end) (no view, no DataView per record). */
  const decodeRange = (source: Buffer, at: typeof range | undefined, len: number): unknown => {
    const start = at === undefined ? 0 : at.start;
    const end = start + len;
    try {
      reloaded = false;
      const value = packr.unpack(source, at) as unknown;
      if (!reloaded) return value;
      // msgpackr decodes the rest of a message in which it had to load the table from a plain
      // Uint8Array copy of it (its saveState), so the Buffers after that point came out as
      // Uint8Arrays. The table is loaded now: decode the message again.
      reloaded = false;
      return packr.unpack(source, at === undefined ? undefined : { start, end }) as unknown;
    } catch (e) {
      const err = new SerializationError(
        `a ${len}-byte record could not be decoded with the records codec ` +
          `(written with another codec, or with a structure this queue's table does not hold); the raw bytes are on error.raw`,
        { cause: e },
      );
      Object.defineProperty(err, 'raw', { value: Buffer.from(source.subarray(start, end)), enumerable: false });
      throw err;
    }
  };

  const codec: BoundCodec = {
    id: 4,
    name: 'records',
    zeroCopy: false,
    encode(item) {
      if (typeof item === 'function' || typeof item === 'symbol') throw refuse(item);
      try {
        return packr.pack(item);
      } catch (e) {
        throw refuse(item, e);
      }
    },
    encodeAt(item, at) {
      if (typeof item === 'function' || typeof item === 'symbol') throw refuse(item);
      try {
        packAt(packr, item, at);
      } catch (e) {
        throw refuse(item, e);
      }
    },
    decode(bytes) {
      return decodeRange(bytes, undefined, bytes.length);
    },
    decodeAt(slab, off, len) {
      // (A zero-length range would read as "to the end" in msgpackr: decode it as a view.)
      if (len === 0) return decodeRange(slab.subarray(off, off), undefined, 0);
      range.start = off;
      range.end = off + len;
      return decodeRange(slab, range, len);
    },
    close() {
      closeOnCollect.unregister(codec);
      log.close();
    },
  };
  closeOnCollect.register(codec, log, codec);
  return codec;
}
