import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import {
  ArgumentRangeError,
  DescriptorError,
  InvalidArgumentTypeError,
  InvalidArgumentValueError,
  QueueClosedError,
  QueueEmptyError,
  QueueFullError,
  QueueReleasedError,
  SerializationError,
} from '../../lib/errors';
import { QueueDescriptor } from '../../lib/queue/descriptor';
import { forgetResolved, resolveDescriptor } from '../../lib/queue/registry';
import { RedisBackendError } from '../../lib/redis/connection';
import { createRedisQueueDescriptor } from '../../lib/redis/descriptor';
import type { RedisMessage } from '../../lib/redis/queue-messages';
import type { RedisQueueOptions } from '../../lib/redis/queue-options';
import { QUEUE_SCRIPTS } from '../../lib/redis/queue-scripts';
import { RedisQueue } from '../../lib/redis/redis-queue';
import { rejected } from '../support/expect-errors';
import { RedisServer } from '../support/redis-server';
import { installBuiltinQueueTypes } from '../../lib/builtins';

installBuiltinQueueTypes();

let server: RedisServer;
const open: Array<RedisQueue<unknown, unknown>> = [];
const children: ChildProcess[] = [];
let counter = 0;

beforeAll(async () => {
  server = await RedisServer.start({ appendonly: true, appendfsync: 'always' });
});

afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await Promise.all(open.splice(0).map((q) => q.release().catch(() => undefined)));
});

afterAll(async () => {
  await server?.stop();
});

function stream(): string {
  return `{t${process.pid}-${++counter}}`;
}

function make<T = unknown>(options: Partial<RedisQueueOptions> = {}): RedisQueue<T, T> {
  const q = new RedisQueue<T, T>({ url: server.url, stream: options.stream ?? stream(), commandTimeoutMs: 3000, ...options });
  open.push(q as RedisQueue<unknown, unknown>);
  return q;
}

function makeExplicit<T = unknown>(options: Partial<RedisQueueOptions> = {}): RedisQueue<T, RedisMessage<T>> {
  const q = RedisQueue.open<T>({ url: server.url, stream: options.stream ?? stream(), commandTimeoutMs: 3000, ...options, ackMode: 'explicit' });
  open.push(q as RedisQueue<unknown, unknown>);
  return q;
}

interface ChildMessage {
  type: string;
  value?: unknown;
  id?: string;
  deliveries?: number;
  message?: string;
}

/** Forks test/fixtures/redis-consumer.cjs and collects its messages. */
function child(descriptor: QueueDescriptor, action: string, count = 0): { proc: ChildProcess; messages: ChildMessage[]; next(type: string, timeoutMs?: number): Promise<ChildMessage>; exited: Promise<number | null> } {
  const proc = fork(join(__dirname, '..', 'fixtures', 'redis-consumer.cjs'), [], {
    env: { ...process.env, SAGEQ_DESCRIPTOR: JSON.stringify(descriptor), SAGEQ_ACTION: action, SAGEQ_COUNT: String(count) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  children.push(proc);
  const messages: ChildMessage[] = [];
  const waiters: Array<() => void> = [];
  proc.on('message', (m: ChildMessage) => {
    messages.push(m);
    for (const w of waiters.splice(0)) w();
  });
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  let seen = 0;
  const next = async (type: string, timeoutMs = 15_000): Promise<ChildMessage> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      while (seen < messages.length) {
        const m = messages[seen++] as ChildMessage;
        if (m.type === 'error') throw new Error(`child failed: ${m.message}`);
        if (m.type === type) return m;
      }
      if (Date.now() > deadline) throw new Error(`no ${type} from the child within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
  };
  return { proc, messages, next, exited };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('RedisQueue basics', () => {
  it('delivers in FIFO order with every codec, and counts qsize/empty in Redis', async () => {
    for (const codec of ['v8', 'json', 'msgpack', 'raw'] as const) {
      const q = make<unknown>({ codec });
      expect(await q.empty()).toBe(true);
      const items = codec === 'raw' ? [Buffer.from('a'), Buffer.from('bc')] : codec === 'v8' ? [1, 'two', { three: new Map([[3, 3]]) }] : [1, 'two', { three: [3] }];
      for (const item of items) await q.putAsync(item);
      expect(await q.qsize()).toBe(items.length);
      expect(await q.empty()).toBe(false);
      const got: unknown[] = [];
      for (let i = 0; i < items.length; i++) got.push(await q.getAsync({ timeoutMs: 2000 }));
      expect(got).toEqual(items);
      expect(await q.qsize()).toBe(0);
      expect((await q.stats()).length).toBe(0); // auto-ack deletes acknowledged entries
    }
  });

  it('putManyAsync/getManyAsync move batches in order', async () => {
    const q = make<number>();
    const items = Array.from({ length: 1500 }, (_, i) => i);
    expect(await q.putManyAsync(items)).toBe(1500);
    const got: number[] = [];
    while (got.length < items.length) got.push(...(await q.getManyAsync(400, { timeoutMs: 2000 })));
    expect(got).toEqual(items);
    await rejected(q.getManyAsync(10, { timeoutMs: 50 }), QueueEmptyError, 'ERR_QUEUE_EMPTY');
  });

  it('getAsync waits for a later put, and times out with QueueEmptyError(timedOut)', async () => {
    const q = make<string>({ blockSliceMs: 200 });
    const started = Date.now();
    const e = await rejected(q.getAsync({ timeoutMs: 150 }), QueueEmptyError, 'ERR_QUEUE_EMPTY');
    expect(e.timedOut).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
    const waiting = q.getAsync({ timeoutMs: 3000 });
    await sleep(50);
    await q.putAsync('late');
    expect(await waiting).toBe('late');
    const now = await rejected(q.getAsync({ timeoutMs: 0 }), QueueEmptyError, 'ERR_QUEUE_EMPTY');
    expect(now.timedOut).toBe(true);
  });

  it('an aborted getAsync rejects with the signal reason and takes nothing', async () => {
    const q = make<string>({ blockSliceMs: 100 });
    const ac = new AbortController();
    const p = q.getAsync({ signal: ac.signal });
    ac.abort(new Error('stop'));
    await expect(p).rejects.toThrow('stop');
    await q.putAsync('kept');
    expect(await q.getAsync({ timeoutMs: 2000 })).toBe('kept');
  });

  it('maxsize makes putAsync wait for room, or fail with QueueFullError(timedOut) and written', async () => {
    const q = make<number>({ maxsize: 3 });
    await q.putManyAsync([1, 2, 3]);
    const full = await rejected(q.putAsync(4, { timeoutMs: 100 }), QueueFullError, 'ERR_QUEUE_FULL');
    expect(full.timedOut).toBe(true);
    const zero = await rejected(q.putAsync(4, { timeoutMs: 0 }), QueueFullError, 'ERR_QUEUE_FULL');
    expect(zero.timedOut).toBe(true);
    const many = await rejected(q.putManyAsync([4, 5], { timeoutMs: 50 }), QueueFullError, 'ERR_QUEUE_FULL');
    expect((many as unknown as { written: number }).written).toBe(0);
    // A waiting put goes in as soon as a get makes room, and order is kept.
    const waiting = q.putManyAsync([4, 5, 6], { timeoutMs: 5000 });
    const got: number[] = [];
    for (let i = 0; i < 6; i++) got.push(await q.getAsync({ timeoutMs: 5000 }));
    expect(await waiting).toBe(3);
    expect(got).toEqual([1, 2, 3, 4, 5, 6]);
    expect((await q.stats()).length).toBe(0);
  });

  it('close(): puts reject QueueClosedError, gets drain what is left then reject, waiters settle promptly, idempotent', async () => {
    const q = make<number>({ blockSliceMs: 5000 });
    const other = make<number>({ stream: q.stream, blockSliceMs: 5000 });
    await q.putManyAsync([1, 2]);
    const reader = make<number>({ stream: `${q.stream}-empty`, blockSliceMs: 5000 });
    const pendingGet = reader.getAsync(); // a getter blocked in XREADGROUP on another stream
    const closeStarted = Date.now();
    await reader.close();
    await rejected(pendingGet, QueueClosedError, 'ERR_QUEUE_CLOSED');
    expect(Date.now() - closeStarted).toBeLessThan(1000); // woken, not left to its 5 s BLOCK
    await q.close();
    await q.close(); // idempotent
    await rejected(q.putAsync(3), QueueClosedError, 'ERR_QUEUE_CLOSED');
    // Visible to another handle (another process would see the same marker).
    await rejected(other.putAsync(3), QueueClosedError, 'ERR_QUEUE_CLOSED');
    expect(await other.getAsync()).toBe(1);
    expect(await q.getAsync()).toBe(2);
    await rejected(q.getAsync(), QueueClosedError, 'ERR_QUEUE_CLOSED');
    await rejected(other.getAsync({ timeoutMs: 0 }), QueueClosedError, 'ERR_QUEUE_CLOSED');
    expect((await other.stats()).closed).toBe(true);
  });

  it('close() elsewhere wakes a getter blocked in another handle', async () => {
    const a = make<number>({ blockSliceMs: 10_000 });
    const b = make<number>({ stream: a.stream, blockSliceMs: 10_000 });
    const waiting = b.getAsync();
    await sleep(100);
    const started = Date.now();
    await a.close();
    await rejected(waiting, QueueClosedError, 'ERR_QUEUE_CLOSED');
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('the async iterator ends when the queue is closed and drained', async () => {
    const q = make<number>();
    await q.putManyAsync([1, 2, 3]);
    const seen: number[] = [];
    const loop = (async () => {
      for await (const v of q) seen.push(v);
    })();
    await sleep(100);
    await q.close();
    await loop;
    expect(seen).toEqual([1, 2, 3]);
  });

  it('release() rejects pending calls with QueueReleasedError and leaves the queue usable by others', async () => {
    const q = make<number>({ blockSliceMs: 5000 });
    const p = rejected(q.getAsync(), QueueReleasedError, 'ERR_QUEUE_RELEASED');
    await sleep(50);
    await q.release();
    await p;
    await rejected(q.putAsync(1), QueueReleasedError, 'ERR_QUEUE_RELEASED');
    const again = make<number>({ stream: q.stream });
    await again.putAsync(7);
    expect(await again.getAsync({ timeoutMs: 1000 })).toBe(7);
  });
});

describe('RedisQueue across processes', () => {
  it('round trip: a forked child resolves the descriptor and consumes what this process puts', async () => {
    const desc = createRedisQueueDescriptor({ url: server.url, stream: stream(), codec: 'json' });
    const c = child(desc, 'consume', 100);
    await c.next('ready');
    const q = resolveDescriptor<unknown>(desc) as RedisQueue<unknown, unknown>;
    open.push(q);
    for (let i = 0; i < 100; i++) await q.putAsync({ i });
    await c.next('done');
    expect(c.messages.filter((m) => m.type === 'item').map((m) => m.value)).toEqual(Array.from({ length: 100 }, (_, i) => ({ i })));
    expect(await c.exited).toBe(0);
  });

  it('consumer group sharing: two consumers split the entries, each exactly once', async () => {
    const desc = createRedisQueueDescriptor({ url: server.url, stream: stream(), codec: 'json' });
    const c = child(desc, 'drain');
    await c.next('ready');
    const q = make<number>({ stream: (desc.metadata as { stream: string }).stream, codec: 'json' });
    const mine: number[] = [];
    const local = (async () => {
      for await (const v of q) {
        mine.push(v);
        await sleep(1); // both consumers get a share
      }
    })();
    const total = 400;
    for (let i = 0; i < total; i += 20) await q.putManyAsync(Array.from({ length: 20 }, (_, k) => i + k));
    for (let t = 0; t < 200; t++) {
      if (mine.length + c.messages.filter((m) => m.type === 'item').length >= total) break;
      await sleep(25);
    }
    await q.close();
    await local;
    await c.next('done');
    const theirs = c.messages.filter((m) => m.type === 'item').map((m) => m.value as number);
    expect(mine.length).toBeGreaterThan(0);
    expect(theirs.length).toBeGreaterThan(0);
    expect([...mine, ...theirs].sort((a, b) => a - b)).toEqual(Array.from({ length: total }, (_, i) => i));
  });

  it('explicit ack: the entry a SIGKILLed consumer held is reclaimed by another after claimIdleMs', async () => {
    const s = stream();
    const desc = createRedisQueueDescriptor({ url: server.url, stream: s, ackMode: 'explicit', claimIdleMs: 300, codec: 'json' });
    const producer = makeExplicit<string>({ stream: s, claimIdleMs: 300, codec: 'json' });
    await producer.putManyAsync(['job-1', 'job-2']);
    const c = child(desc, 'hold');
    const held = await c.next('held');
    expect(held.value).toBe('job-1');
    expect(held.deliveries).toBe(1);
    c.proc.kill('SIGKILL');
    await c.exited;
    const first = await producer.getAsync({ timeoutMs: 3000 }); // job-2 is free at once
    expect(first.value).toBe('job-2');
    expect(await first.ack()).toBe(true);
    const reclaimed = await producer.getAsync({ timeoutMs: 3000 });
    expect(reclaimed.value).toBe('job-1');
    expect(reclaimed.id).toBe(held.id);
    expect(reclaimed.deliveries).toBe(2);
    expect(await reclaimed.ack()).toBe(true);
    expect(await reclaimed.ack()).toBe(false); // settled already
    const st = await producer.stats();
    expect(st).toMatchObject({ length: 0, pending: 0, waiting: 0 });
  });
});

describe('RedisQueue explicit ack and dead letters', () => {
  it('nack gives the entry back at once; after maxDeliveries it goes to the dead-letter stream', async () => {
    const q = makeExplicit<{ job: number }>({ claimIdleMs: 200, maxDeliveries: 2, blockSliceMs: 100 });
    await q.putAsync({ job: 1 });
    const m1 = await q.getAsync({ timeoutMs: 2000 });
    expect(m1.deliveries).toBe(1);
    expect(await m1.nack()).toBe(true);
    const m2 = await q.getAsync({ timeoutMs: 2000 });
    expect(m2.id).toBe(m1.id);
    expect(m2.deliveries).toBe(2);
    expect(await m2.nack()).toBe(true);
    // The third delivery would exceed maxDeliveries: the entry is dead-lettered instead.
    await rejected(q.getAsync({ timeoutMs: 600 }), QueueEmptyError, 'ERR_QUEUE_EMPTY');
    const dead = await q.deadLetters();
    expect(dead).toHaveLength(1);
    expect(dead[0]).toMatchObject({ originalId: m1.id, deliveries: 3, value: { job: 1 } });
    expect(dead[0]?.reason).toMatch(/maxDeliveries 2/);
    expect(await q.stats()).toMatchObject({ length: 0, pending: 0, deadLetters: 1 });
  });

  it('deadLetter(reason) moves an entry at once; ackMany settles a batch', async () => {
    const q = makeExplicit<number>();
    await q.putManyAsync([1, 2, 3]);
    const [a, b, c] = await q.getManyAsync(3, { timeoutMs: 2000 });
    expect(await a!.deadLetter('bad input')).toBe(true);
    expect(await q.ackMany([b!, c!])).toEqual([true, true]);
    const dead = await q.deadLetters();
    expect(dead.map((d) => [d.value, d.reason])).toEqual([[1, 'bad input']]);
  });

  it('auto ack: an ack that timed out (it may have been applied) is repeated with the same sequence number, so the entry is not lost', async () => {
    const q = make<string>({ codec: 'json', commandTimeoutMs: 300, blockSliceMs: 5000 });
    const first = rejected(q.getAsync({ timeoutMs: 5000 }), RedisBackendError, 'ERR_REDIS_TIMEOUT');
    await sleep(150); // blocked in XREADGROUP
    const c = server.client();
    try {
      // The blocked read is served by the XADD; the pause then holds the consumer's ack past its timeout.
      await c.pipeline().xadd(q.stream, '*', 'j', '"precious"').client('PAUSE', 700, 'WRITE').exec();
      expect((await first).maybeApplied).toBe(true);
      await sleep(800); // the ack went through when the pause ended
      expect(await c.xlen(q.stream)).toBe(0);
    } finally {
      c.disconnect();
    }
    expect(await q.getAsync({ timeoutMs: 2000 })).toBe('precious');
  });

  it('auto ack: entries a read-ahead delivered but whose reply timed out are read again from the consumer\'s pending list, not left for claimIdleMs', async () => {
    const q = make<number>({ codec: 'json', commandTimeoutMs: 300, blockSliceMs: 5000 });
    const first = rejected(q.getManyAsync(10, { timeoutMs: 5000 }), RedisBackendError, 'ERR_REDIS_TIMEOUT');
    await sleep(150); // blocked in XREADGROUP COUNT 10
    const c = server.client();
    try {
      // The blocked read gets 10 of the 20 (a full count): the consumer then acks them and reads
      // the next 10 ahead, both held by the pause past their timeout, both applied after it.
      await c
        .pipeline()
        .eval("for i = 0, 19 do redis.call('XADD', KEYS[1], '*', 'j', tostring(i)) end", 1, q.stream)
        .client('PAUSE', 700, 'WRITE')
        .exec();
      expect((await first).maybeApplied).toBe(true);
      await sleep(800);
    } finally {
      c.disconnect();
    }
    const got: number[] = [];
    const t0 = Date.now();
    while (got.length < 20) got.push(...(await q.getManyAsync(20, { timeoutMs: 2000 })));
    expect(Date.now() - t0).toBeLessThan(3000); // claimIdleMs is 30 s
    expect(got.sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect((await q.stats()).length).toBe(0);
  });

  it('explicit ack: ack() repeated after a timed-out ack() answers what the first one did', async () => {
    const q = makeExplicit<string>({ codec: 'json', commandTimeoutMs: 300 });
    await q.putAsync('job');
    const m = await q.getAsync({ timeoutMs: 2000 });
    const c = server.client();
    try {
      await c.client('PAUSE', 700, 'WRITE');
      const e = await rejected(m.ack(), RedisBackendError, 'ERR_REDIS_TIMEOUT');
      expect(e.maybeApplied).toBe(true);
      await sleep(800);
      expect(await m.ack()).toBe(true); // the first ack went through: same answer, not "not pending"
      expect(await m.ack()).toBe(false); // a new call: nothing pending any more
    } finally {
      c.disconnect();
    }
  });

  it('an entry that cannot be decoded is dead-lettered and reported as SerializationError', async () => {
    const q = make<unknown>();
    const raw = server.client();
    try {
      await raw.xadd(q.stream, '*', 'j', '{not json');
      await raw.xadd(q.stream, '*', 'j', '"fine"');
    } finally {
      raw.disconnect();
    }
    await rejected(q.getAsync({ timeoutMs: 2000 }), SerializationError, 'ERR_SERIALIZATION');
    expect(await q.getAsync({ timeoutMs: 2000 })).toBe('fine');
    expect((await q.deadLetters())[0]?.reason).toMatch(/cannot decode/);
  });
});

describe('RedisQueue scripts', () => {
  it('a resent put or settle (same sequence number, as ioredis resends after a reconnect) is applied once and answers as the first time', async () => {
    const c = server.client();
    try {
      const s = stream();
      const [put, , , settle] = QUEUE_SCRIPTS as [typeof QUEUE_SCRIPTS[0], unknown, unknown, typeof QUEUE_SCRIPTS[0]];
      const keys = [s, `${s}:closed`, `${s}:s:test`];
      const putArgs = ['7', 4096, 60_000, 0, '0', 'j', '1', '2'];
      expect(await c.eval(put.lua, 3, ...keys, ...putArgs)).toBe(2);
      expect(await c.eval(put.lua, 3, ...keys, ...putArgs)).toBe(2); // the resend
      expect(await c.xlen(s)).toBe(2);
      await c.xgroup('CREATE', s, 'g', '0');
      const read = (await c.xreadgroup('GROUP', 'g', 'me', 'COUNT', 2, 'STREAMS', s, '>')) as Array<[string, Array<[string, string[]]>]>;
      const ids = read[0]![1].map(([id]) => id);
      const settleArgs = ['8', 4096, 60_000, 'ack', 'g', 'me', 1000, 100, '', 0, ...ids, '0-1'];
      expect(await c.eval(settle.lua, 3, s, `${s}:s:test`, `${s}:dead`, ...settleArgs)).toBe('110');
      expect(await c.eval(settle.lua, 3, s, `${s}:s:test`, `${s}:dead`, ...settleArgs)).toBe('110'); // not '000'
      expect(await c.xlen(s)).toBe(0);
      // A new sequence number is a new call: nothing is pending any more.
      expect(await c.eval(settle.lua, 3, s, `${s}:s:test`, `${s}:dead`, '9', ...settleArgs.slice(1))).toBe('000');
      // Closed: -1, and nothing appended.
      await c.set(`${s}:closed`, '1');
      expect(await c.eval(put.lua, 3, ...keys, '10', ...putArgs.slice(1))).toBe(-1);
      expect(await c.xlen(s)).toBe(0);
    } finally {
      c.disconnect();
    }
  });
});

describe('RedisQueue settle script: deleting acked entries', () => {
  it('trims the acked entries older than everything pending in the group, deletes the others one by one, and never an entry another consumer holds', async () => {
    const c = server.client();
    try {
      const s = stream();
      const settle = QUEUE_SCRIPTS.find((x) => x.name === 'sageqSettle')!;
      for (let i = 1; i <= 5; i++) await c.xadd(s, '*', 'j', String(i));
      await c.xgroup('CREATE', s, 'g', '0');
      const read = async (consumer: string, count: number) =>
        ((await c.xreadgroup('GROUP', 'g', consumer, 'COUNT', count, 'STREAMS', s, '>')) as Array<[string, Array<[string, string[]]>]>)[0]![1].map(([id]) => id);
      const [e1, e2] = await read('a', 2);
      const [e3] = await read('b', 1);
      const [e4, e5] = await read('a', 2);
      let seq = 0;
      const ack = (consumer: string, ids: string[]) => c.eval(settle.lua, 3, s, `${s}:s`, `${s}:dead`, String(++seq), 4096, 60_000, 'ack', 'g', consumer, 1000, 100, '', 0, ids.join(','));
      const left = async () => ((await c.xrange(s, '-', '+')) as Array<[string, string[]]>).map(([id]) => id);
      expect(await ack('a', [e1!, e2!])).toBe('11');
      expect(await left()).toEqual([e3, e4, e5]);
      // e3 (b's, pending) is older than a's e4 and e5: they go, it stays.
      expect(await ack('a', [e5!, e4!])).toBe('11');
      expect(await left()).toEqual([e3]);
      expect(await c.xlen(s)).toBe(1);
      // Not a's: left alone.
      expect(await ack('a', [e3!, '0-1'])).toBe('00');
      expect(await left()).toEqual([e3]);
      expect(await ack('b', [e3!, '0-1'])).toBe('10');
      expect(await c.xlen(s)).toBe(0);
    } finally {
      c.disconnect();
    }
  });
});

describe('RedisQueue across a Redis crash (SIGKILL, restart with --appendonly yes --appendfsync always)', () => {
  /**
   * A producer puts 0..total-1 in batches while a consumer takes them; Redis is SIGKILLed and
   * restarted twice mid-stream. Returns what each side saw.
   */
  async function crashRun(ackMode: 'auto' | 'explicit') {
    const s = stream();
    const common = { stream: s, codec: 'json' as const, unavailableTimeoutMs: 20_000, commandTimeoutMs: 8000 };
    const producer = make<number>(common);
    const consumer = new RedisQueue<number, unknown>({ url: server.url, ...common, ackMode, claimIdleMs: 400, blockSliceMs: 200 });
    open.push(consumer);
    const confirmed = new Set<number>();
    const attempted = new Set<number>();
    const received: number[] = [];
    const unconfirmedAcks = new Set<number>();
    const progressAtCrash: number[] = [];
    const total = 3000;
    let stop = false;
    const produce = (async () => {
      for (let i = 0; i < total; i += 10) {
        const batch = Array.from({ length: 10 }, (_, k) => i + k);
        for (const v of batch) attempted.add(v);
        try {
          await producer.putManyAsync(batch);
          for (const v of batch) confirmed.add(v);
        } catch (e) {
          if (!(e instanceof RedisBackendError)) throw e;
        }
        await sleep(2); // spread the stream over the crashes
      }
    })();
    const consume = (async () => {
      while (!stop) {
        let batch: unknown[];
        try {
          batch = await consumer.getManyAsync(50, { timeoutMs: 500 });
        } catch (e) {
          if (e instanceof QueueEmptyError || e instanceof RedisBackendError) continue;
          throw e;
        }
        if (ackMode === 'auto') {
          received.push(...(batch as number[]));
          continue;
        }
        const msgs = batch as Array<RedisMessage<number>>;
        for (const m of msgs) received.push(m.value);
        try {
          const acked = await consumer.ackMany(msgs);
          acked.forEach((ok, i) => {
            if (!ok) unconfirmedAcks.add((msgs[i] as RedisMessage<number>).value);
          });
        } catch (e) {
          if (!(e instanceof RedisBackendError)) throw e;
          for (const m of msgs) unconfirmedAcks.add(m.value);
        }
      }
    })();
    for (const at of [total / 3, (2 * total) / 3]) {
      while (confirmed.size < at) await sleep(5); // crash at a chosen point of the stream
      progressAtCrash.push(confirmed.size);
      await server.kill9();
      await sleep(200);
      await server.restart();
    }
    await produce;
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline && !([...confirmed].every((v) => received.includes(v)) && (await consumer.stats()).length === 0)) await sleep(100);
    stop = true;
    await consume;
    const counts = new Map<number, number>();
    for (const v of received) counts.set(v, (counts.get(v) ?? 0) + 1);
    const dupes = [...counts].filter(([, n]) => n > 1).map(([v]) => v);
    // eslint-disable-next-line no-console
    console.log(
      `crash test (${ackMode}): confirmed at the crashes ${progressAtCrash.join(', ')}; attempted ${attempted.size}, ` +
        `confirmed ${confirmed.size}, received ${received.length} (${counts.size} distinct), duplicates ${dupes.length}`,
    );
    return { total, confirmed, attempted, counts, dupes, unconfirmedAcks, progressAtCrash };
  }

  it('explicit ack: every put Redis acknowledged is received; a duplicate only where an ack was not confirmed', async () => {
    const r = await crashRun('explicit');
    // The crashes really were mid-stream.
    for (const p of r.progressAtCrash) {
      expect(p).toBeGreaterThan(0);
      expect(p).toBeLessThan(r.total);
    }
    expect([...r.confirmed].filter((v) => !r.counts.has(v))).toEqual([]); // nothing acknowledged is lost
    expect([...r.counts.keys()].filter((v) => !r.attempted.has(v))).toEqual([]); // nothing invented
    expect(r.dupes.filter((v) => !r.unconfirmedAcks.has(v))).toEqual([]); // the documented at-least-once case only
    expect(r.confirmed.size).toBeGreaterThan(r.total / 2);
  }, 40_000);

  it('auto ack (no consumer crash): every acknowledged put is received exactly once', async () => {
    const r = await crashRun('auto');
    for (const p of r.progressAtCrash) {
      expect(p).toBeGreaterThan(0);
      expect(p).toBeLessThan(r.total);
    }
    expect([...r.confirmed].filter((v) => !r.counts.has(v))).toEqual([]);
    expect([...r.counts.keys()].filter((v) => !r.attempted.has(v))).toEqual([]);
    expect(r.dupes).toEqual([]);
  }, 40_000);
});

describe('RedisQueue descriptors', () => {
  it('createRedisQueueDescriptor strips the password from the URL; toJSON never carries it', () => {
    const d = createRedisQueueDescriptor({ url: 'redis://app:s3cret@127.0.0.1:6390/0', stream: 'jobs', queueId: 'rq-1', maxsize: 10, codec: 'json' });
    const json = JSON.stringify(d);
    expect(json).not.toContain('s3cret');
    expect(d.metadata).toMatchObject({ url: 'redis://app@127.0.0.1:6390/0', stream: 'jobs', group: 'sage', maxsize: 10, codec: 'json', ack_mode: 'auto' });
    expect(d.queueType).toBe('redis');
    const q2 = createRedisQueueDescriptor({ url: 'redis://127.0.0.1:6390?password=hidden', stream: 'jobs' });
    expect(JSON.stringify(q2)).not.toContain('hidden');
  });

  it('resolveDescriptor: the same id gives the same instance; the password comes from SAGE_REDIS_PASSWORD', async () => {
    const admin = server.client();
    const user = `u${process.pid}`;
    try {
      await admin.call('ACL', 'SETUSER', user, 'on', '>pw-from-env', '~*', '&*', '+@all');
      const desc = createRedisQueueDescriptor({ url: server.url.replace('redis://', `redis://${user}:wrong@`), stream: stream(), queueId: `rq-${process.pid}` });
      const wire = JSON.parse(JSON.stringify(desc)) as Record<string, unknown>;
      process.env.SAGE_REDIS_PASSWORD = 'pw-from-env';
      const a = resolveDescriptor<number>(wire as never) as unknown as RedisQueue<number, number>;
      const b = resolveDescriptor<number>(JSON.stringify(desc)) as unknown as RedisQueue<number, number>;
      expect(a).toBe(b);
      open.push(a as RedisQueue<unknown, unknown>);
      await a.putAsync(5);
      expect(await a.getAsync({ timeoutMs: 1000 })).toBe(5);
      await a.release();
      forgetResolved(desc.queueId);
    } finally {
      delete process.env.SAGE_REDIS_PASSWORD;
      await admin.call('ACL', 'DELUSER', user).catch(() => undefined);
      admin.disconnect();
    }
  });

  it('a malformed "redis" descriptor is a DescriptorError', () => {
    const d = new QueueDescriptor({ queueId: 'bad-redis', queueType: 'redis', metadata: { url: 'redis://127.0.0.1:1', stream: 's', maxsize: -1 } });
    expect(() => resolveDescriptor(d)).toThrow(DescriptorError);
    const noStream = new QueueDescriptor({ queueId: 'bad-redis-2', queueType: 'redis', metadata: { url: 'redis://127.0.0.1:1' } });
    expect(() => resolveDescriptor(noStream)).toThrow(DescriptorError);
  });
});

describe('RedisQueue argument checks', () => {
  it('bad arguments fail with typed errors and stable codes', async () => {
    const q = make<number>();
    await rejected(q.getAsync({ timeoutMs: -1 }), ArgumentRangeError, 'ERR_OUT_OF_RANGE');
    await rejected(q.putAsync(1, { timeoutMs: Number.NaN }), ArgumentRangeError, 'ERR_OUT_OF_RANGE');
    await rejected(q.getAsync({ timeout: 5 } as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    await rejected(q.getManyAsync(0), ArgumentRangeError, 'ERR_OUT_OF_RANGE');
    await rejected(q.putManyAsync('x' as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    await rejected(q.putAsync((() => 1) as never), SerializationError, 'ERR_SERIALIZATION');
    expect(() => new RedisQueue({ url: 'http://x', stream: 's' })).toThrow(InvalidArgumentValueError);
    expect(() => new RedisQueue({ url: server.url, stream: '' })).toThrow(InvalidArgumentValueError);
    expect(() => new RedisQueue({ url: server.url } as never)).toThrow(InvalidArgumentTypeError);
    expect(() => new RedisQueue({ url: server.url, stream: 's', codec: 'yaml' as never })).toThrow(expect.objectContaining({ code: 'ERR_UNKNOWN_CODEC' }));
    expect(() => new RedisQueue({ url: server.url, stream: 's', ackMode: 'sometimes' as never })).toThrow(InvalidArgumentValueError);
    expect(() => new RedisQueue({ url: server.url, stream: 's', maxsize: -1 })).toThrow(ArgumentRangeError);
    expect(() => new RedisQueue({ url: server.url, stream: '{a}s', deadLetterStream: '{b}dead' })).toThrow(expect.objectContaining({ code: 'ERR_CROSSSLOT' }));
    expect(() => createRedisQueueDescriptor({ url: server.url, stream: 's', bogus: 1 } as never)).toThrow(InvalidArgumentTypeError);
  });

  it('an unreachable Redis fails calls with ERR_REDIS_UNAVAILABLE within unavailableTimeoutMs', async () => {
    const q = make<number>({ url: 'redis://127.0.0.1:1', unavailableTimeoutMs: 200 });
    const started = Date.now();
    const e = await rejected(q.putAsync(1), RedisBackendError, 'ERR_REDIS_UNAVAILABLE');
    expect(e.maybeApplied).toBe(false);
    expect(Date.now() - started).toBeLessThan(2000);
  });
});
