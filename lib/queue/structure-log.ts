/**
 * The shared structure table of a `records` queue: an append-only log file beside the segment,
 * `/dev/shm/sageq.<name>@<nonce>.structs` (the nonce is the segment's, so a table never outlives
 * or crosses the incarnation of the queue it belongs to; '@' is not a queue-name character, so
 * listing segments never shows it).
 *
 * Each record is one `write()` under O_APPEND, laid out as
 *
 *   0  magic  F5 'S' 'Q' 01      (0xF5 never occurs in UTF-8, so it never occurs in a payload;
 *                                  the last byte is the format version)
 *   4  u32le  index               the structure id this record claims (= entries known to its writer)
 *   8  u32le  payload length      at most MAX_PAYLOAD
 *  12  u32le  CRC-32 of bytes 4..12 and the payload
 *  16  payload: the structure's keys as a JSON array of strings
 *
 * A record counts only if it is whole, its checksum holds and the index it claims is the number of
 * records counted before it. So every process reading the same bytes builds the same table, two
 * writers racing for one id cannot both win (the loser sees its record ignored and retries), and a
 * writer killed mid-append leaves at most a torn record, which never counts: a reader stops at it
 * while it is the tail, and skips it (resynchronising on the next magic) once a later writer has
 * appended after it. Nothing is ever rewritten or truncated, so nothing counted can be lost.
 */
import * as fs from 'node:fs';

const SHM_DIR = '/dev/shm';
const MAGIC = [0xf5, 0x53, 0x51, 0x01] as const;
const HEADER = 16;
/** Largest payload of one record (a structure's keys as JSON). */
export const MAX_PAYLOAD = 64 * 1024;

export type Keys = readonly string[];

/** The table's file name for queue `name` whose segment has `nonce`. */
export function structureTablePath(name: string, nonce: string): string {
  return `${SHM_DIR}/sageq.${name}@${nonce}.structs`;
}

/** Every table file of queue `name` (any incarnation), as full paths. */
export function structureTablesOf(name: string): string[] {
  const prefix = `sageq.${name}@`;
  return listTables()
    .filter((t) => t.file.startsWith(prefix) && t.name === name)
    .map((t) => `${SHM_DIR}/${t.file}`);
}

/** Every table file in /dev/shm: its file name, the queue name and the nonce it belongs to. */
export function listTables(): Array<{ file: string; name: string; nonce: string }> {
  let files: string[];
  try {
    files = fs.readdirSync(SHM_DIR);
  } catch {
    return [];
  }
  const out: Array<{ file: string; name: string; nonce: string }> = [];
  for (const file of files) {
    const m = /^sageq\.([A-Za-z0-9._-]+)@([0-9]+)\.structs$/.exec(file);
    if (m !== null) out.push({ file, name: m[1] as string, nonce: m[2] as string });
  }
  return out;
}

/** Removes the table of one incarnation of queue `name` (its segment's `nonce`), if there is one. */
export function removeStructureTable(name: string, nonce: string): void {
  try {
    fs.unlinkSync(structureTablePath(name, nonce));
  } catch {
    // never written, or gone already
  }
}

/** Removes the table files of queue `name`; returns how many it removed. */
export function removeStructureTables(name: string): number {
  let n = 0;
  for (const p of structureTablesOf(name)) {
    try {
      fs.unlinkSync(p);
      n++;
    } catch {
      // already gone
    }
  }
  return n;
}

let crcTable: Uint32Array | undefined;
function crc32(bytes: Uint8Array, start: number, end: number, seed = 0): number {
  if (crcTable === undefined) {
    crcTable = new Uint32Array(256);
    for (let i = 0; i < 256; i++) {
      let c = i;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[i] = c >>> 0;
    }
  }
  let c = ~seed;
  for (let i = start; i < end; i++) c = (crcTable[(c ^ (bytes[i] as number)) & 0xff] as number) ^ (c >>> 8);
  return ~c >>> 0;
}

/** The bytes of one record claiming `index`. */
export function encodeRecord(index: number, keys: Keys): Buffer {
  const payload = Buffer.from(JSON.stringify(keys), 'utf8');
  if (payload.length > MAX_PAYLOAD) throw new RangeError(`a structure of ${keys.length} keys is too large to share (${payload.length} bytes)`);
  const rec = Buffer.allocUnsafe(HEADER + payload.length);
  MAGIC.forEach((b, i) => (rec[i] = b));
  rec.writeUInt32LE(index, 4);
  rec.writeUInt32LE(payload.length, 8);
  payload.copy(rec, HEADER);
  rec.writeUInt32LE(crc32(payload, 0, payload.length, crc32(rec, 4, 12)), 12);
  return rec;
}

function parseKeys(bytes: Buffer): Keys | null {
  try {
    const v = JSON.parse(bytes.toString('utf8')) as unknown;
    return Array.isArray(v) && v.every((k) => typeof k === 'string') ? (v as string[]) : null;
  } catch {
    return null;
  }
}

/**
 * One process's view of a table file, read incrementally. `entries` only grows; `pending` is
 * where the next read resumes: just after the last record that counted.
 */
export class StructureLog {
  readonly entries: Keys[] = [];
  #fd: number | null = null;
  #pending = 0;
  /** Bytes read past `pending` that did not (yet) parse to a counted record. */
  #tail: Buffer = Buffer.alloc(0);

  constructor(
    readonly path: string,
    readonly mode: number,
  ) {}

  /** Reads what was appended since the last call; returns how many entries are known now. */
  refresh(): number {
    const fd = this.#open(false);
    if (fd === null) return this.entries.length;
    const size = fs.fstatSync(fd).size;
    const have = this.#pending + this.#tail.length;
    if (size > have) {
      const more = Buffer.allocUnsafe(size - have);
      let got = 0;
      while (got < more.length) {
        const n = fs.readSync(fd, more, got, more.length - got, have + got);
        if (n === 0) break;
        got += n;
      }
      this.#tail = this.#tail.length === 0 ? more.subarray(0, got) : Buffer.concat([this.#tail, more.subarray(0, got)]);
    }
    this.#parse();
    return this.entries.length;
  }

  /**
   * Appends records claiming indices `from`, `from+1`, … for `keys`, in one write(), then reads the
   * log back. True when every one of them counted at the index it claimed.
   */
  append(from: number, keys: readonly Keys[]): boolean {
    const fd = this.#open(true) as number;
    const bytes = Buffer.concat(keys.map((k, i) => encodeRecord(from + i, k)));
    const hook = process.env.SAGE_TEST_TORN_APPEND;
    if (hook !== undefined && hook !== '' && bytes.length > 1) {
      // Test mode only: write half the batch, announce it, and wait to be killed there.
      fs.writeSync(fd, bytes, 0, bytes.length >> 1);
      fs.writeFileSync(hook, String(process.pid));
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 60_000);
    }
    let done = 0;
    while (done < bytes.length) done += fs.writeSync(fd, bytes, done, bytes.length - done);
    this.refresh();
    return keys.every((k, i) => sameKeys(this.entries[from + i], k));
  }

  close(): void {
    if (this.#fd !== null) fs.closeSync(this.#fd);
    this.#fd = null;
  }

  #open(create: boolean): number | null {
    if (this.#fd !== null) return this.#fd;
    const flags = fs.constants.O_RDWR | fs.constants.O_APPEND;
    try {
      this.#fd = fs.openSync(this.path, flags);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || !create) {
        if (!create) return null;
        throw e;
      }
      this.#fd = fs.openSync(this.path, flags | fs.constants.O_CREAT, this.mode);
      try {
        fs.fchmodSync(this.#fd, this.mode); // the segment's mode, whatever the umask
      } catch {
        // created by another user: its owner set the mode
      }
    }
    return this.#fd;
  }

  #parse(): void {
    const buf = this.#tail;
    let at = 0;
    let counted = 0; // bytes of buf consumed by counted (or ignored but whole) records
    while (at + HEADER <= buf.length) {
      if (buf[at] !== MAGIC[0] || buf[at + 1] !== MAGIC[1] || buf[at + 2] !== MAGIC[2] || buf[at + 3] !== MAGIC[3]) {
        at++;
        continue;
      }
      const len = buf.readUInt32LE(at + 8);
      const whole = len <= MAX_PAYLOAD && at + HEADER + len <= buf.length;
      if (!whole) {
        if (len <= MAX_PAYLOAD) {
          // Possibly a record still being written (the tail), possibly a torn one: decide later,
          // unless a whole record follows it (then it was torn: skip past its magic).
          if (!this.#wholeRecordAfter(buf, at + 1)) break;
        }
        at++;
        continue;
      }
      const crc = crc32(buf, at + HEADER, at + HEADER + len, crc32(buf, at + 4, at + 12));
      const keys = crc === buf.readUInt32LE(at + 12) ? parseKeys(buf.subarray(at + HEADER, at + HEADER + len)) : null;
      if (keys === null) {
        at++;
        continue;
      }
      // A whole, intact record: it counts if it claims the next index; otherwise it lost a race.
      if (buf.readUInt32LE(at + 4) === this.entries.length) this.entries.push(keys);
      at += HEADER + len;
      counted = at;
    }
    // Resume after the last whole record; the undecided bytes are read again next time.
    this.#pending += counted;
    this.#tail = buf.subarray(counted);
  }

  /** True when an intact record starts somewhere at or after `from`. */
  #wholeRecordAfter(buf: Buffer, from: number): boolean {
    for (let at = buf.indexOf(MAGIC[0], from); at >= 0 && at + HEADER <= buf.length; at = buf.indexOf(MAGIC[0], at + 1)) {
      if (buf[at + 1] !== MAGIC[1] || buf[at + 2] !== MAGIC[2] || buf[at + 3] !== MAGIC[3]) continue;
      const len = buf.readUInt32LE(at + 8);
      if (len > MAX_PAYLOAD || at + HEADER + len > buf.length) continue;
      if (crc32(buf, at + HEADER, at + HEADER + len, crc32(buf, at + 4, at + 12)) === buf.readUInt32LE(at + 12)) return true;
    }
    return false;
  }
}

export function sameKeys(a: Keys | undefined, b: Keys): boolean {
  if (a === undefined || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
