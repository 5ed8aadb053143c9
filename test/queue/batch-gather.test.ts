/**
 * putMany's gather path (batch-writer.ts): with `records` and `msgpack`, each message is encoded
 * where msgpackr's output buffer has room (REUSE_BUFFER_MODE: no Buffer per message) and the ring
 * copies it from there, one native call per run of messages in the same buffer. These tests push
 * it across msgpackr's buffer changes (a full buffer, a message larger than it, shared structures
 * saved mid-batch), its error paths (nothing of a failed batch written), re-entrancy, blocking
 * writes that span runs, a consumer in another process, and the native gather form's own checks.
 */
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import * as msgpackr from 'msgpackr';

import { MessageTooLargeError, QueueFullError, SerializationError } from '../../lib/errors';
import { native } from '../../lib/native';
import { REUSE_BUFFER_MODE, codecByName, packAt } from '../../lib/queue/codecs';
import type { EncodedAt } from '../../lib/queue/codecs';
import { SageQueue } from '../../lib/queue/sage-queue';
import { queueName, track, useCleanup } from '../helpers/harness';
import { thrown } from '../support/expect-errors';

useCleanup();

function make<T>(codec: 'records' | 'msgpack', options: { capacity?: number; maxMessageSize?: number; maxsize?: number } = {}): SageQueue<T> {
  return track(SageQueue.create<T>(queueName('gather'), { capacity: 1 << 20, codec, ...options }));
}

/** Items of many sizes and shapes: small records, strings past msgpackr's 8 KiB buffer, new keys. */
function mixed(n: number, seed: number): unknown[] {
  return Array.from({ length: n }, (_, i) => {
    const k = (i * 7919 + seed) % 101;
    if (k === 0) return { big: 'b'.repeat(9000 + i), i }; // larger than msgpackr's own buffer
    if (k < 5) return { [`shape${(i + seed) % 40}`]: i, i, s: 'x'.repeat(k * 700) }; // new structures
    if (k < 10) return [i, `s${i}`, { nested: { i } }];
    if (k < 12) return Buffer.alloc(k * 3, i & 0xff);
    return { i, t: i * 1.5, p: 'y'.repeat(k) };
  });
}

describe('codecs: encodeAt', () => {
  it("REUSE_BUFFER_MODE is msgpackr's own flag", () => {
    expect(REUSE_BUFFER_MODE).toBe(msgpackr.REUSE_BUFFER_MODE);
  });

  it('packAt gives the bytes pack() would, for records written one after another and across buffers', () => {
    const packr = new msgpackr.Packr({ useRecords: false, moreTypes: true });
    const at: EncodedAt = { buffer: new Uint8Array(0), start: 0, length: 0 };
    const seen: Array<{ buffer: Uint8Array; start: number; length: number; value: unknown }> = [];
    for (const value of mixed(500, 3)) {
      packAt(packr, value, at);
      seen.push({ ...at, value });
    }
    // Records handed out earlier are never written over by later ones.
    for (const { buffer, start, length, value } of seen) {
      expect(packr.unpack(buffer.subarray(start, start + length))).toEqual(value);
      expect(Buffer.from(buffer.subarray(start, start + length)).equals(new msgpackr.Packr({ useRecords: false, moreTypes: true }).pack(value))).toBe(true);
    }
    expect(new Set(seen.map((s) => s.buffer)).size).toBeGreaterThan(1); // it did cross buffers
  });

  it('msgpack encodeAt refuses what encode refuses, with the same error', () => {
    const codec = codecByName('msgpack');
    const at: EncodedAt = { buffer: new Uint8Array(0), start: 0, length: 0 };
    const e1 = thrown(() => codec.encode(() => 1), SerializationError, 'ERR_SERIALIZATION');
    const e2 = thrown(() => codec.encodeAt?.(() => 1, at), SerializationError, 'ERR_SERIALIZATION');
    expect(e2.message).toBe(e1.message);
  });
});

describe.each(['records', 'msgpack'] as const)('putMany through the gather path (%s)', (codec) => {
  it('3000 mixed items in one call (buffer changes, oversize records, new structures mid-batch) come back equal and in order', () => {
    const q = make<unknown>(codec, { capacity: 8 << 20 });
    const items = mixed(3000, 11);
    expect(q.putMany(items)).toBe(3000);
    const other = track(SageQueue.open<unknown>(q.name)); // another handle decodes them too
    const out: unknown[] = [];
    while (out.length < 3000) out.push(...other.getMany(4096, { block: false }));
    expect(out).toEqual(items);
  });

  it('an item too large in the second batch: the first batch is in, nothing of the second, error.written says so', () => {
    const q = make<unknown>(codec, { capacity: 8 << 20, maxMessageSize: 4096 });
    const items: unknown[] = Array.from({ length: 4096 + 10 }, (_, i) => ({ i }));
    items[4096 + 5] = { huge: 'h'.repeat(5000) };
    const e = thrown(() => q.putMany(items), MessageTooLargeError, 'ERR_MESSAGE_TOO_LARGE');
    expect((e as unknown as { written: number }).written).toBe(4096);
    expect(q.qsize()).toBe(4096);
    expect(q.getMany(4096, { block: false })).toEqual(items.slice(0, 4096));
  });

  it('an item the codec cannot encode fails its batch with nothing of it written', () => {
    const q = make<unknown>(codec);
    const e = thrown(() => q.putMany([{ a: 1 }, { f: Symbol('no') }, { a: 3 }]), SerializationError, 'ERR_SERIALIZATION');
    expect((e as unknown as { written: number }).written).toBe(0);
    expect(q.qsize()).toBe(0);
    expect(q.putMany([{ a: 4 }])).toBe(1); // and the handle still works
    expect(q.getMany(10, { block: false })).toEqual([{ a: 4 }]);
  });

  it('re-entrant: an item whose toJSON calls putMany on the same handle corrupts neither batch', () => {
    const q = make<unknown>(codec);
    class Sneaky {
      toJSON(): unknown {
        q.putMany(['inner-1', { inner: 2, pad: 'x'.repeat(300) }]);
        return { outer: 1 };
      }
    }
    // (msgpackr calls toJSON on class instances it has no extension for.)
    expect(q.putMany(['first', new Sneaky(), 'last'])).toBe(3);
    expect(q.getMany(10, { block: false })).toEqual(['inner-1', { inner: 2, pad: 'x'.repeat(300) }, 'first', { outer: 1 }, 'last']);
  });

  it('not blocking: puts the prefix that fits (across runs), in order, and returns how many', () => {
    const q = make<unknown>(codec, { capacity: 1 << 16 });
    const items = mixed(2000, 5).filter((x) => !(x && typeof x === 'object' && 'big' in x));
    const n = q.putMany(items, { block: false });
    expect(n).toBeGreaterThan(0);
    expect(n).toBeLessThan(items.length);
    const out: unknown[] = [];
    for (;;) {
      const got = q.getMany(4096, { block: false });
      if (got.length === 0) break;
      out.push(...got);
    }
    expect(out).toEqual(items.slice(0, n));
  });

  it('blocking with a timeout on a full queue: QueueFullError with written = what went in, the queue holds exactly that prefix', () => {
    const q = make<unknown>(codec, { capacity: 1 << 16, maxsize: 50 });
    const items = Array.from({ length: 120 }, (_, i) => ({ i, pad: 'z'.repeat(i % 13) }));
    const e = thrown(() => q.putMany(items, { timeoutMs: 50 }), QueueFullError, 'ERR_QUEUE_FULL');
    expect((e as unknown as { written: number }).written).toBe(50);
    expect(q.getMany(4096, { block: false })).toEqual(items.slice(0, 50));
  });

  it('blocking into a small queue while a consumer process drains it: 20 000 mixed items arrive once each, in order', async () => {
    const q = make<unknown>(codec, { capacity: 1 << 16 });
    const dist = path.resolve(__dirname, '../../dist/index.js');
    const code = `
      const { SageQueue } = require(${JSON.stringify(dist)});
      const q = SageQueue.open(process.env.Q);
      let n = 0, bad = -1;
      (async () => {
        for await (const x of q) {
          if (bad < 0 && (x === null || typeof x !== 'object' || x.n !== n)) bad = n;
          n++;
        }
        console.log(JSON.stringify({ n, bad }));
        q.release();
      })();`;
    const child = spawn(process.execPath, ['-e', code], { env: { ...process.env, Q: q.name }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    try {
      const items = Array.from({ length: 20_000 }, (_, n) => ((n * 31) % 97 === 0 ? { n, big: 'q'.repeat(9000) } : { n, s: 's'.repeat(n % 50) }));
      for (let i = 0; i < items.length; i += 2500) expect(q.putMany(items.slice(i, i + 2500), { timeoutMs: 30_000 })).toBe(2500);
      q.close();
      expect(await exited, err).toBe(0);
      expect(JSON.parse(out.trim())).toEqual({ n: 20_000, bad: -1 });
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }, 60_000);
});

describe('the native gather form (tryPutBatch with starts)', () => {
  it('writes record i from data[starts[first + i]], and refuses a record outside data or a range past the arrays, writing nothing', () => {
    const q = make<Buffer>('msgpack');
    const addon = native();
    const nq = new addon.NativeQueue(q.name, 'open', {}, () => {}, 1000);
    try {
      const data = Buffer.from('..abc...de.f');
      const starts = new Uint32Array([2, 8, 11, 0]);
      const lengths = new Uint32Array([3, 2, 1, 0]);
      expect(nq.tryPutBatch(data, lengths, 2, starts, 1)).toBe(2); // "de", "f"
      expect(nq.tryPutBatch(data, lengths, 1, starts, 0)).toBe(1); // "abc"
      expect(() => nq.tryPutBatch(data, new Uint32Array([3, 5, 0, 0]), 2, new Uint32Array([2, 8, 0, 0]), 0)).toThrow(RangeError);
      expect(() => nq.tryPutBatch(data, lengths, 3, starts, 2)).toThrow(RangeError);
      expect(() => nq.tryPutBatch(data, lengths, 1, new Uint32Array([0, 0]), 0)).toThrow(RangeError); // starts shorter than lengths
      expect(() => nq.tryPutBatch(data, lengths, 1, starts, -1)).toThrow(RangeError);
      expect(() => nq.tryPutBatch(data, lengths, 1, new Uint8Array(4) as unknown as Uint32Array, 0)).toThrow(TypeError);
      expect(q.qsize()).toBe(3);
      const raw = q.getRawBatch(10, { block: false });
      const got = Array.from({ length: raw.count }, (_, i) => raw.buffer.subarray(raw.offsets[i], (raw.offsets[i] as number) + (raw.lengths[i] as number)).toString());
      expect(got).toEqual(['de', 'f', 'abc']);
    } finally {
      nq.release();
    }
  });
});
