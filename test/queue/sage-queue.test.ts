import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync, statSync, unlinkSync, writeSync } from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { SageQueue } from '../../lib/queue/sage-queue';
import { QueueDescriptor } from '../../lib/queue/descriptor';
import { resolveDescriptor } from '../../lib/queue/registry';
import { native } from '../../lib/native';
import {
  ArgumentRangeError,
  DescriptorError,
  InvalidArgumentTypeError,
  InvalidArgumentValueError,
  MessageTooLargeError,
  QueueClosedError,
  QueueEmptyError,
  QueueFullError,
  QueueReleasedError,
  SerializationError,
  SharedMemoryError,
} from '../../lib/errors';
import { rejected, thrown } from '../support/expect-errors';
import { installBuiltinQueueTypes } from '../../lib/builtins';

installBuiltinQueueTypes();

const created = new Set<string>();
let counter = 0;

/** A unique queue name, destroyed after the test. */
function uniq(): string {
  const name = `ut-${process.pid}-${++counter}`;
  created.add(name);
  return name;
}

function make<T = unknown>(options?: ConstructorParameters<typeof SageQueue>[1]): SageQueue<T> {
  return SageQueue.create<T>(uniq(), { capacity: 1 << 16, ...options });
}

const handles: SageQueue[] = [];
function track<T>(q: SageQueue<T>): SageQueue<T> {
  handles.push(q as SageQueue);
  return q;
}

afterEach(() => {
  for (const q of handles.splice(0)) q.release();
  for (const name of created) {
    // Unlink the file itself, not through SageQueue.destroy: some tests make files the queue code
    // refuses, and cleanup must not depend on the addon loading.
    const path = `/dev/shm/sageq.${name}`;
    if (existsSync(path)) unlinkSync(path);
    // And the structure table a records queue keeps beside it (sageq.<name>@<nonce>.structs).
    for (const f of readdirSync('/dev/shm')) if (f.startsWith(`sageq.${name}@`)) unlinkSync(`/dev/shm/${f}`);
  }
  created.clear();
});

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('SageQueue QueueLike', () => {
  it('delivers in FIFO order and counts qsize/empty from shared memory', () => {
    const q = track(make<number>());
    expect(q.empty()).toBe(true);
    for (let i = 0; i < 100; i++) q.put(i);
    expect(q.qsize()).toBe(100);
    expect(q.empty()).toBe(false);
    for (let i = 0; i < 100; i++) expect(q.get()).toBe(i);
    expect(q.empty()).toBe(true);
  });

  it('is full at maxsize, and putNowait then throws QueueFullError without waiting', () => {
    const q = track(make<number>({ maxsize: 3 }));
    q.put(1);
    q.put(2);
    q.putNowait(3);
    expect(q.full()).toBe(true);
    const e = thrown(() => q.putNowait(4), QueueFullError, 'ERR_QUEUE_FULL');
    expect(e.timedOut).toBe(false);
    expect(q.qsize()).toBe(3);
    expect(q.getNowait()).toBe(1);
    expect(q.full()).toBe(false);
  });

  it('is full when the bytes run out, even without maxsize', () => {
    const q = track(make<Buffer>({ capacity: 4096, codec: 'raw' }));
    let n = 0;
    while (!q.full()) {
      q.putNowait(Buffer.alloc(100, n++));
      if (n > 1000) break;
    }
    expect(n).toBeGreaterThan(10);
    thrown(() => q.putNowait(Buffer.alloc(100)), QueueFullError, 'ERR_QUEUE_FULL');
  });

  it('getNowait on an empty queue throws QueueEmptyError at once', () => {
    const q = track(make());
    const e = thrown(() => q.getNowait(), QueueEmptyError, 'ERR_QUEUE_EMPTY');
    expect(e.timedOut).toBe(false);
  });

  it('a blocking get with a timeout waits at least that long (not forever), then throws QueueEmptyError (timedOut)', () => {
    const q = track(make());
    const t0 = performance.now();
    const e = thrown(() => q.get(true, 150), QueueEmptyError, 'ERR_QUEUE_EMPTY');
    const waited = performance.now() - t0;
    expect(e.timedOut).toBe(true);
    expect(waited).toBeGreaterThanOrEqual(145);
    expect(waited).toBeLessThan(150 + 2000);
  });

  it('a blocking put with a timeout on a full queue waits at least that long (not forever), then throws QueueFullError', () => {
    const q = track(make<number>({ maxsize: 1 }));
    q.put(1);
    const t0 = performance.now();
    const e = thrown(() => q.put(2, true, 100), QueueFullError, 'ERR_QUEUE_FULL');
    const waited = performance.now() - t0;
    expect(e.timedOut).toBe(true);
    expect(waited).toBeGreaterThanOrEqual(95);
    expect(waited).toBeLessThan(100 + 2000);
  });

  it('rejects bad arguments with typed errors and stable codes', () => {
    const q = track(make());
    thrown(() => q.get(true, -1), ArgumentRangeError, 'ERR_OUT_OF_RANGE');
    thrown(() => q.get(true, Number.NaN), ArgumentRangeError, 'ERR_OUT_OF_RANGE');
    thrown(() => q.get(true, Number.POSITIVE_INFINITY), ArgumentRangeError, 'ERR_OUT_OF_RANGE');
    thrown(() => q.put(1, true, -5), ArgumentRangeError, 'ERR_OUT_OF_RANGE');
    thrown(() => q.get('yes' as unknown as boolean), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => q.get(true, '10' as unknown as number), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => q.getMany(0), ArgumentRangeError, 'ERR_OUT_OF_RANGE');
    thrown(() => q.putMany('abc' as unknown as unknown[]), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => q.getMany(1, { timeout: 5 } as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    expect(q.qsize()).toBe(0);
  });

  it('refuses invalid names, options and codecs before touching /dev/shm', () => {
    const before = SageQueue.list().length;
    for (const bad of ['', '..', '../x', 'a/b', 'x'.repeat(10_000), 'a\0b', '.', 'a..b', 'sp ace']) {
      thrown(() => new SageQueue(bad), InvalidArgumentValueError, 'ERR_INVALID_QUEUE_NAME');
    }
    thrown(() => new SageQueue(42 as unknown as string), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => SageQueue.create(uniq(), { capacity: -1 }), ArgumentRangeError, 'ERR_OUT_OF_RANGE');
    thrown(() => SageQueue.create(uniq(), { capacity: Number.NaN }), ArgumentRangeError, 'ERR_OUT_OF_RANGE');
    thrown(() => SageQueue.create(uniq(), { maxsize: 1.5 }), ArgumentRangeError, 'ERR_OUT_OF_RANGE');
    thrown(() => SageQueue.create(uniq(), { mode: 0o044 }), InvalidArgumentValueError, 'ERR_OUT_OF_RANGE');
    thrown(() => SageQueue.create(uniq(), { codec: 'yaml' as never }), InvalidArgumentValueError, 'ERR_UNKNOWN_CODEC');
    thrown(() => SageQueue.create(uniq(), { capacity: 4096, maxMessageSize: 4096 }), InvalidArgumentValueError, 'ERR_INVALID_ARG_VALUE');
    thrown(() => SageQueue.create(uniq(), { capcity: 4096 } as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    expect(SageQueue.list().length).toBe(before);
  });

  it('rejects a message over maxMessageSize before writing anything', () => {
    const q = track(make<Buffer>({ capacity: 4096, codec: 'raw' }));
    q.put(Buffer.from('first'));
    const e = thrown(() => q.put(Buffer.alloc(q.maxMessageSize + 1)), MessageTooLargeError, 'ERR_MESSAGE_TOO_LARGE');
    expect(e.size).toBe(q.maxMessageSize + 1);
    expect(e.limit).toBe(q.maxMessageSize);
    q.put(Buffer.alloc(q.maxMessageSize, 7));
    expect(q.qsize()).toBe(2);
    expect(q.get().toString()).toBe('first');
    expect(q.get().equals(Buffer.alloc(q.maxMessageSize, 7))).toBe(true);
  });

  it('throws SerializationError for an item the codec cannot encode, and enqueues nothing', () => {
    const v8q = track(make());
    thrown(() => v8q.put(() => 1), SerializationError, 'ERR_SERIALIZATION');
    thrown(() => v8q.putMany([1, Symbol('x'), 3]), SerializationError, 'ERR_SERIALIZATION');
    expect(v8q.qsize()).toBe(0);
    const jq = track(make({ codec: 'json' }));
    thrown(() => jq.put(10n), SerializationError, 'ERR_SERIALIZATION');
    thrown(() => jq.put(undefined), SerializationError, 'ERR_SERIALIZATION');
    const rq = track(make({ codec: 'raw' }));
    thrown(() => rq.put({ a: 1 }), SerializationError, 'ERR_SERIALIZATION');
    expect(jq.qsize() + rq.qsize()).toBe(0);
  });

  it('reports a record it cannot decode with its raw bytes, and keeps going', () => {
    const q = track(make({ codec: 'json' }));
    const raw = new (native().NativeQueue)(q.name, 'open', {}, () => undefined);
    expect(raw.tryPut(Buffer.from('{not json'))).toBe(0);
    raw.release();
    q.put({ ok: true });
    const e = thrown(() => q.get(), SerializationError, 'ERR_SERIALIZATION');
    expect((e as SerializationError & { raw: Buffer }).raw.toString()).toBe('{not json');
    expect(q.get()).toEqual({ ok: true });
  });
});

describe('SageQueue codecs', () => {
  it('raw takes Buffer, Uint8Array and string, and gives Buffers', () => {
    const q = track(make<Buffer | Uint8Array | string>({ codec: 'raw' }));
    q.put(Buffer.from('a'));
    q.put(new Uint8Array([98]));
    q.put('c');
    q.put('');
    const out = [q.get(), q.get(), q.get(), q.get()];
    for (const b of out) expect(Buffer.isBuffer(b)).toBe(true);
    expect(out.map(String)).toEqual(['a', 'b', 'c', '']);
  });

  it('records (the default) keeps Date, Map, Set, 64-bit BigInt, typed arrays and undefined', () => {
    const q = track(make());
    expect(q.codec).toBe('records');
    const value = { d: new Date(123), m: new Map([[1, 'x']]), s: new Set([1, 2]), b: 2n ** 60n, f: new Float64Array([1.5, 2.5]), u: undefined };
    q.put(value);
    expect(q.get()).toEqual(value);
  });

  it('v8 (the old default) keeps Date, Map, Set, BigInt and typed arrays', () => {
    const q = track(make({ codec: 'v8' }));
    expect(q.codec).toBe('v8');
    const value = { d: new Date(123), m: new Map([[1, 'x']]), s: new Set([1, 2]), b: 2n ** 70n, f: new Float64Array([1.5, 2.5]) };
    q.put(value);
    expect(q.get()).toEqual(value);
  });

  it('json and msgpack round-trip plain data', () => {
    for (const codec of ['json', 'msgpack'] as const) {
      const q = track(make({ codec }));
      const value = { a: [1, 'two', null, true], n: { x: 1.25 } };
      q.put(value);
      expect(q.get()).toEqual(value);
      expect(q.stats().codecName).toBe(codec);
    }
  });

  it('an opener uses the codec recorded in the segment, and a mismatch is refused', () => {
    const q = track(make({ codec: 'json' }));
    const other = track(SageQueue.open(q.name));
    expect(other.codec).toBe('json');
    thrown(() => SageQueue.open(q.name, { codec: 'v8' }), InvalidArgumentValueError, 'ERR_CODEC_MISMATCH');
  });
});

describe('SageQueue batches', () => {
  it('putMany/getMany move many messages per call, in order', () => {
    const q = track(make<number>());
    expect(q.putMany(Array.from({ length: 1000 }, (_, i) => i))).toBe(1000);
    const out: number[] = [];
    while (out.length < 1000) out.push(...q.getMany(300));
    expect(out).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    expect(q.getMany(10, { block: false })).toEqual([]);
  });

  // Encoding runs user code (toJSON, getters), which may call putMany on the same handle; the
  // two calls used to share the staging buffer and lengths, which corrupted the outer batch.
  it('putMany is re-entrant: an item whose toJSON calls putMany on the same handle corrupts neither batch', () => {
    const q = track(make<unknown>({ codec: 'json' }));
    const sneaky = {
      toJSON(): unknown {
        q.putMany(['inner-1', { inner: 2, pad: 'x'.repeat(300) }]);
        return { outer: 1 };
      },
    };
    expect(q.putMany(['first', sneaky, 'last'])).toBe(3);
    expect(q.getMany(10, { block: false })).toEqual(['inner-1', { inner: 2, pad: 'x'.repeat(300) }, 'first', { outer: 1 }, 'last']);
  });

  it('getRawBatch hands out records through one reused buffer with offsets and lengths, in order', () => {
    const q = track(make<Buffer>({ codec: 'raw', capacity: 1 << 20, maxMessageSize: 400_000 }));
    const sent = Array.from({ length: 100 }, (_, i) => Buffer.alloc(1 + ((i * 37) % 200), i));
    q.putMany(sent);
    const first = q.getRawBatch(64);
    expect(first.count).toBe(64);
    const { buffer, offsets, lengths } = first;
    for (let i = 0; i < 64; i++) {
      expect(buffer.subarray(offsets[i], (offsets[i] as number) + (lengths[i] as number)).equals(sent[i] as Buffer)).toBe(true);
    }
    const second = q.getRawBatch(64);
    expect(second.count).toBe(36);
    // The same objects again: nothing is allocated per call or per message.
    expect(second).toBe(first);
    expect(second.buffer).toBe(buffer);
    expect(second.offsets).toBe(offsets);
    expect(second.lengths).toBe(lengths);
    expect(second.buffer.subarray(second.offsets[35], (second.offsets[35] as number) + (second.lengths[35] as number)).equals(sent[99] as Buffer)).toBe(true);
    // Empty: count 0 without blocking; a timed wait throws as getMany does.
    expect(q.getRawBatch(8, { block: false }).count).toBe(0);
    thrown(() => q.getRawBatch(8, { timeoutMs: 20 }), QueueEmptyError, 'ERR_QUEUE_EMPTY');
    // A record larger than the buffer grows it.
    const big = Buffer.alloc(300_000, 7);
    q.put(big);
    const b = q.getRawBatch(4);
    expect(b.count).toBe(1);
    expect(b.buffer.subarray(0, b.lengths[0]).equals(big)).toBe(true);
    q.close();
    thrown(() => q.getRawBatch(4), QueueClosedError, 'ERR_QUEUE_CLOSED');
    thrown(() => q.getRawBatch(0), ArgumentRangeError, 'ERR_OUT_OF_RANGE');
  });

  it('a non-blocking putMany puts what fits and says how many', () => {
    const q = track(make<number>({ maxsize: 5 }));
    expect(q.putMany([1, 2, 3, 4, 5, 6, 7], { block: false })).toBe(5);
    expect(q.getMany(10)).toEqual([1, 2, 3, 4, 5]);
  });

  it('a blocking putMany that times out reports how many went in', () => {
    const q = track(make<number>({ maxsize: 2 }));
    const e = thrown(() => q.putMany([1, 2, 3], { timeoutMs: 30 }), QueueFullError, 'ERR_QUEUE_FULL');
    expect((e as QueueFullError & { written: number }).written).toBe(2);
  });

  it('getMany with a timeout waits, then throws QueueEmptyError', () => {
    const q = track(make());
    const t0 = performance.now();
    thrown(() => q.getMany(5, { timeoutMs: 60 }), QueueEmptyError, 'ERR_QUEUE_EMPTY');
    expect(performance.now() - t0).toBeGreaterThanOrEqual(55);
  });

  it('every record size from 0 to the maximum survives the wrap-around, byte for byte (property)', () => {
    const q = track(make<Buffer>({ capacity: 4096, codec: 'raw' }));
    const max = q.maxMessageSize;
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max }), { minLength: 1, maxLength: 40 }), fc.integer({ min: 1, max: 8 }), (sizes, batch) => {
        const sent = sizes.map((n, i) => Buffer.alloc(n, (i * 37 + n) & 0xff));
        const got: Buffer[] = [];
        let i = 0;
        while (i < sent.length) {
          // Put as many as fit, then drain: keeps the ring cycling through every offset.
          for (let n = 1; i < sent.length && n > 0; ) {
            n = q.putMany(sent.slice(i, i + batch), { block: false });
            i += n;
          }
          got.push(...q.getMany(64, { block: false }));
        }
        got.push(...q.getMany(64, { block: false }));
        expect(got.length).toBe(sent.length);
        got.forEach((b, k) => expect(b.equals(sent[k] as Buffer)).toBe(true));
      }),
      { numRuns: 200 },
    );
  });
});

describe('SageQueue async', () => {
  it('getAsync waits for a later put and resolves with it', async () => {
    const q = track(make<string>());
    const p = q.getAsync();
    await tick();
    q.put('later');
    await expect(p).resolves.toBe('later');
  });

  it('getAsync/putAsync time out once their timeout has passed, not before, and a timed-out put enqueues nothing', async () => {
    const q = track(make<number>({ maxsize: 1 }));
    let t0 = performance.now();
    const e1 = await rejected(q.getAsync({ timeoutMs: 120 }), QueueEmptyError, 'ERR_QUEUE_EMPTY');
    expect(e1.timedOut).toBe(true);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(115);
    expect(performance.now() - t0).toBeLessThan(120 + 2000);
    q.put(1);
    t0 = performance.now();
    const e2 = await rejected(q.putAsync(2, { timeoutMs: 120 }), QueueFullError, 'ERR_QUEUE_FULL');
    expect(e2.timedOut).toBe(true);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(115);
    expect(performance.now() - t0).toBeLessThan(120 + 2000);
    expect(q.qsize()).toBe(1);
  });

  it('putAsync waits while full and completes when a get frees space, in order', async () => {
    const q = track(make<number>({ maxsize: 2 }));
    await q.putAsync(1);
    await q.putAsync(2);
    const order: number[] = [];
    const p3 = q.putAsync(3).then(() => order.push(3));
    const p4 = q.putAsync(4).then(() => order.push(4));
    await tick();
    expect(order).toEqual([]);
    expect(q.get()).toBe(1);
    expect(q.get()).toBe(2);
    await Promise.all([p3, p4]);
    expect(order).toEqual([3, 4]);
    expect([q.get(), q.get()]).toEqual([3, 4]);
  });

  it('an aborted wait rejects with the signal reason and leaves no waiter behind', async () => {
    const q = track(make<string>());
    const ac = new AbortController();
    const p = q.getAsync({ signal: ac.signal });
    ac.abort(new Error('stop'));
    await expect(p).rejects.toThrow('stop');
    q.put('x');
    await expect(q.getAsync({ timeoutMs: 1000 })).resolves.toBe('x');
    const already = AbortSignal.abort(new Error('already'));
    q.put('y');
    await expect(q.getAsync({ signal: already })).rejects.toThrow('already');
    expect(q.qsize()).toBe(1);
  });

  it('close() settles every pending waiter: getters after draining, putters at once', async () => {
    const q = track(make<number>({ maxsize: 1 }));
    const getter = q.getAsync();
    await tick();
    q.put(1);
    await expect(getter).resolves.toBe(1);
    q.put(2);
    const putter = q.putAsync(3);
    await tick();
    q.close();
    await rejected(putter, QueueClosedError, 'ERR_QUEUE_CLOSED');
    thrown(() => q.put(4), QueueClosedError, 'ERR_QUEUE_CLOSED');
    await rejected(q.putAsync(4), QueueClosedError, 'ERR_QUEUE_CLOSED');
    expect(q.get()).toBe(2);
    thrown(() => q.get(), QueueClosedError, 'ERR_QUEUE_CLOSED');
    await rejected(q.getAsync(), QueueClosedError, 'ERR_QUEUE_CLOSED');
    q.close(); // idempotent
    expect(q.closed).toBe(true);
  });

  it('a getter waiting when another handle closes the queue settles promptly', async () => {
    const q = track(make());
    const other = track(SageQueue.open(q.name));
    const p = q.getAsync();
    await tick();
    const t0 = performance.now();
    other.close();
    await rejected(p, QueueClosedError, 'ERR_QUEUE_CLOSED');
    expect(performance.now() - t0).toBeLessThan(100);
  });

  it('for await yields until the queue is closed and drained; iterate() can batch', async () => {
    const q = track(make<number>());
    q.putMany([1, 2, 3]);
    setTimeout(() => {
      q.put(4);
      q.close();
    }, 20);
    const seen: number[] = [];
    for await (const m of q) seen.push(m);
    expect(seen).toEqual([1, 2, 3, 4]);
    const q2 = track(make<number>());
    q2.putMany([5, 6, 7]);
    q2.close();
    const batched: number[] = [];
    for await (const m of q2.iterate({ batchSize: 2 })) batched.push(m);
    expect(batched).toEqual([5, 6, 7]);
  });
});

describe('SageQueue segments', () => {
  it('creates the segment in /dev/shm with mode 0600 by default, or the mode asked for', () => {
    const q = track(make());
    expect(statSync(`/dev/shm/sageq.${q.name}`).mode & 0o777).toBe(0o600);
    const q2 = track(make({ mode: 0o640 }));
    expect(statSync(`/dev/shm/sageq.${q2.name}`).mode & 0o777).toBe(0o640);
    expect(SageQueue.list()).toContain(q.name);
  });

  it('create on an existing name and open of a missing one fail with clear codes', () => {
    const q = track(make());
    thrown(() => SageQueue.create(q.name), SharedMemoryError, 'ERR_QUEUE_EXISTS');
    thrown(() => SageQueue.open(uniq()), SharedMemoryError, 'ERR_QUEUE_NOT_FOUND');
    const opened = track(new SageQueue(q.name)); // open-or-create attaches to the existing one
    q.put('shared');
    expect(opened.get()).toBe('shared');
  });

  it('destroy unlinks the name; attached handles keep working; the name can be reused', () => {
    const q = track(make<string>());
    const name = q.name;
    const other = track(SageQueue.open(name));
    expect(SageQueue.destroy(name)).toBe(true);
    expect(SageQueue.destroy(name)).toBe(false);
    q.put('still here');
    expect(other.get()).toBe('still here');
    const fresh = track(SageQueue.create<string>(name, { capacity: 8192 }));
    expect(fresh.qsize()).toBe(0);
    expect(fresh.capacity).toBe(8192);
  });

  it('refuses a segment that is not ours, one of another layout, and one never initialised', () => {
    const foreign = uniq();
    const fd = openSync(`/dev/shm/sageq.${foreign}`, 'w', 0o600);
    writeSync(fd, Buffer.alloc(65536, 0x41));
    closeSync(fd);
    thrown(() => SageQueue.open(foreign), SharedMemoryError, 'ERR_NOT_A_SAGE_QUEUE');

    // Same magic, another layout version: copy a real segment and bump its version field.
    const real = track(make());
    const mismatched = uniq();
    const bytes = Buffer.from(require('node:fs').readFileSync(`/dev/shm/sageq.${real.name}`) as Buffer);
    bytes.writeUInt32LE(bytes.readUInt32LE(8) + 1, 8); // layout_version follows the 8-byte magic
    require('node:fs').writeFileSync(`/dev/shm/sageq.${mismatched}`, bytes, { mode: 0o600 });
    thrown(() => SageQueue.open(mismatched), SharedMemoryError, 'ERR_LAYOUT_MISMATCH');

    // Zero-filled: as left by a creator that died before storing "initialised".
    const dead = uniq();
    require('node:fs').writeFileSync(`/dev/shm/sageq.${dead}`, Buffer.alloc(bytes.length), { mode: 0o600 });
    const t0 = performance.now();
    thrown(() => SageQueue.open(dead, { initWaitMs: 200 }), SharedMemoryError, 'ERR_QUEUE_NOT_INITIALISED');
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  it('every call after release() throws QueueReleasedError; release is idempotent', async () => {
    const q = make();
    q.release();
    q.release();
    expect(q.released).toBe(true);
    thrown(() => q.put(1), QueueReleasedError, 'ERR_QUEUE_RELEASED');
    thrown(() => q.get(), QueueReleasedError, 'ERR_QUEUE_RELEASED');
    thrown(() => q.qsize(), QueueReleasedError, 'ERR_QUEUE_RELEASED');
    thrown(() => q.stats(), QueueReleasedError, 'ERR_QUEUE_RELEASED');
    await rejected(q.getAsync(), QueueReleasedError, 'ERR_QUEUE_RELEASED');
  });

  it('release() rejects this handle\'s pending waits; the queue lives on for others', async () => {
    const q = make();
    const other = track(SageQueue.open(q.name));
    const p = q.getAsync();
    await tick();
    q.release();
    await rejected(p, QueueReleasedError, 'ERR_QUEUE_RELEASED');
    other.put('ok');
    expect(other.get()).toBe('ok');
  });

  it('stats come from the segment: counts, waiters, processes, bufferLoad', () => {
    const q = track(make<number>({ maxsize: 10 }));
    const other = track(SageQueue.open<number>(q.name));
    q.putMany([1, 2, 3, 4]);
    other.get();
    const s = other.stats();
    expect(s.enqueued).toBe(4);
    expect(s.dequeued).toBe(1);
    expect(s.depth).toBe(3);
    expect(s.processes).toHaveLength(2);
    expect(s.processes.every((p) => p.pid === process.pid && p.alive)).toBe(true);
    expect(s.processes.find((p) => p.roles.includes('creator'))?.roles).toContain('producer');
    expect(q.bufferLoad()).toBeCloseTo(0.3);
  });
});

describe('SageQueue inspection and gc (library API)', () => {
  const dist = path.resolve(__dirname, '..', '..', 'dist', 'index.js');

  it('inspect tells alive, idle and dead queues apart without attaching; gc removes only the dead (and idle with includeIdle)', () => {
    const alive = track(make());
    const idle = uniq();
    SageQueue.create(idle).release();
    const dead = uniq();
    // A child attaches and is SIGKILLed: its slot stays, owned by a dead process.
    const r = spawnSync(process.execPath, ['-e', `const { SageQueue } = require(${JSON.stringify(dist)}); SageQueue.create(${JSON.stringify(dead)}); process.kill(process.pid, 'SIGKILL');`]);
    expect(r.signal).toBe('SIGKILL');

    expect(SageQueue.inspect(alive.name)).toMatchObject({ liveness: 'alive', alive: 1, dead: 0, error: null });
    expect(SageQueue.inspect(idle)).toMatchObject({ liveness: 'idle', alive: 0, dead: 0 });
    expect(SageQueue.inspect(dead)).toMatchObject({ liveness: 'dead', alive: 0, dead: 1 });
    expect(SageQueue.inspect(alive.name).stats?.processes.length).toBe(1); // inspecting did not attach
    expect(SageQueue.inspect(uniq())).toMatchObject({ liveness: 'broken', error: { code: 'ERR_QUEUE_NOT_FOUND' } });
    expect(SageQueue.inspectAll().map((v) => v.name)).toEqual(expect.arrayContaining([alive.name, idle, dead]));

    const mine = [alive.name, idle, dead];
    const dry = SageQueue.gc({ includeIdle: true, dryRun: true, only: mine });
    expect(dry.candidates.map((v) => v.name).sort()).toEqual([idle, dead].sort());
    expect(dry.removed).toEqual([]);
    expect(SageQueue.list()).toEqual(expect.arrayContaining(mine));

    expect(SageQueue.gc({ only: mine }).removed).toEqual([dead]);
    expect(SageQueue.gc({ only: mine, includeIdle: true }).removed).toEqual([idle]);
    expect(SageQueue.list()).toContain(alive.name);
    expect(SageQueue.list()).not.toContain(dead);
    expect(SageQueue.list()).not.toContain(idle);
  });

  it('gc and inspect validate their arguments', () => {
    thrown(() => SageQueue.gc({ only: 'x' as never }), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => SageQueue.gc({ includeIdle: 1 as never }), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => SageQueue.gc({ bogus: true } as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => SageQueue.inspect('bad/name'), InvalidArgumentValueError, 'ERR_INVALID_QUEUE_NAME');
  });
});

describe('SageQueue descriptors', () => {
  it('a sage_queue descriptor resolves to the same segment, and to one instance per id', () => {
    const q = track(make<string>({ codec: 'json' }));
    const wire = JSON.parse(JSON.stringify(q.descriptor));
    expect(wire.queue_type).toBe('sage_queue');
    expect(wire.metadata.codec).toBe('json');
    const a = resolveDescriptor<string>(QueueDescriptor.fromDict(wire)) as SageQueue<string>;
    track(a);
    expect(resolveDescriptor(JSON.stringify(wire))).toBe(a);
    q.put('via descriptor');
    expect(a.get()).toBe('via descriptor');
    a.release();
    const b = track(resolveDescriptor(wire) as SageQueue<string>);
    expect(b).not.toBe(a); // a released handle leaves the cache
  });

  it('an shm descriptor resolves to a SageQueue on the named segment', async () => {
    const name = uniq();
    track(SageQueue.create(name, { maxsize: 5 }));
    const desc = QueueDescriptor.createShmQueue({ shmName: name, maxsize: 5 });
    const q = track(resolveDescriptor<number>(desc) as SageQueue<number>);
    expect(q).toBeInstanceOf(SageQueue);
    expect(q.name).toBe(name);
    expect(q.maxsize).toBe(5);
    await q.putAsync(7);
    await expect(q.getAsync()).resolves.toBe(7);
  });

  // Released handles used to evict the cache entry of their segment name, not of the queue id
  // they were resolved under: every later resolve returned the released handle.
  it('an shm descriptor resolves to a fresh, working handle after the resolved one is released', async () => {
    const name = uniq();
    track(SageQueue.create(name));
    const desc = QueueDescriptor.createShmQueue({ shmName: name, queueId: `${name}-id` });
    const first = track(resolveDescriptor<number>(desc) as SageQueue<number>);
    first.release();
    const second = track(resolveDescriptor<number>(desc) as SageQueue<number>);
    expect(second).not.toBe(first);
    expect(second.released).toBe(false);
    await second.putAsync(1);
    await expect(second.getAsync()).resolves.toBe(1);
  });

  it('a namespaced sage_queue descriptor resolves to a fresh, working handle after the resolved one is released', async () => {
    const id = uniq();
    const desc = QueueDescriptor.createSageQueue({ queueId: id, namespace: 'ns', create: true });
    created.add(`ns.${id}`);
    const first = track(resolveDescriptor<number>(desc) as SageQueue<number>);
    expect(first.name).toBe(`ns.${id}`);
    first.release();
    const second = track(resolveDescriptor<number>(desc) as SageQueue<number>);
    expect(second).not.toBe(first);
    await second.putAsync(2);
    await expect(second.getAsync()).resolves.toBe(2);
  });

  it('resolving a sage_queue or shm descriptor whose segment does not exist throws ERR_QUEUE_NOT_FOUND and creates nothing, unless the descriptor says create: true', () => {
    const id = uniq();
    thrown(() => resolveDescriptor(QueueDescriptor.createSageQueue({ queueId: id })), SharedMemoryError, 'ERR_QUEUE_NOT_FOUND');
    thrown(() => resolveDescriptor(QueueDescriptor.createShmQueue({ shmName: id })), SharedMemoryError, 'ERR_QUEUE_NOT_FOUND');
    expect(SageQueue.list()).not.toContain(id);
    const q = track(resolveDescriptor<number>(QueueDescriptor.createSageQueue({ queueId: id, create: true, maxsize: 7 })) as SageQueue<number>);
    expect(SageQueue.list()).toContain(id);
    expect(q.maxsize).toBe(7);
  });

  it('new SageQueue(descriptor) opens the segment a sage_queue or shm descriptor names', () => {
    const q = track(make<string>({ codec: 'json' }));
    const viaSage = track(new SageQueue<string>(q.descriptor));
    const viaShm = track(new SageQueue<string>(QueueDescriptor.createShmQueue({ shmName: q.name })));
    q.put('both see it');
    expect(viaSage.get()).toBe('both see it');
    q.put('and again');
    expect(viaShm.get()).toBe('and again');
    thrown(() => new SageQueue(QueueDescriptor.createLocalQueue()), DescriptorError, 'ERR_INVALID_DESCRIPTOR');
  });
});
