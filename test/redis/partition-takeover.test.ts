/**
 * PartitionedRedisQueue, explicit ack (and one auto-ack SIGKILL case): what happens to the messages a consumer handed out and did
 * not settle when its partitions change hands — against a real redis-server, with the old holder
 * a real child process (test/fixtures/redis-partition-holder.cjs).
 *
 * - SIGKILL: the next holder claims the dead consumer's pending entries on taking the partition
 *   (sageqTakeover) and hands them out first (deliveries 2), long before claimIdleMs (60 s here,
 *   so XAUTOCLAIM cannot be what recovers them); per-key order of first handling holds.
 * - Over maxDeliveries, a taken-over entry goes to the dead-letter stream instead.
 * - Rebalance: a consumer above its share gives a partition back only once every message it
 *   handed out from it is settled.
 * - release(): the released consumer's unsettled messages are taken over at once.
 * - Auto ack, SIGKILL: the entries the dead consumer had read and not handed out (pending for it)
 *   are taken over and delivered first; those it handed out (acked) are not delivered again.
 * - parseLeaseReply's shape checks.
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { installBuiltinQueueTypes } from '../../lib/builtins';
import { RedisBackendError } from '../../lib/redis/connection';
import { createPartitionedRedisQueueDescriptor } from '../../lib/redis/partition-options';
import type { PartitionedRedisQueueOptions } from '../../lib/redis/partition-options';
import { parseLeaseReply } from '../../lib/redis/partition-leases';
import type { PartitionedRedisMessage } from '../../lib/redis/partition-handout';
import { PartitionedRedisQueue } from '../../lib/redis/partitioned-queue';
import { compareStreamIds } from '../../lib/redis/queue-scripts';
import { RedisServer } from '../support/redis-server';

installBuiltinQueueTypes();

interface Item {
  k: string;
  i: number;
}

type Explicit = PartitionedRedisQueue<Item, PartitionedRedisMessage<Item>>;

let server: RedisServer;
let redis: Redis;
const open: Array<{ release(): Promise<void> }> = [];
const children: ChildProcess[] = [];
const loops: Array<{ stop(): void; done: Promise<void> }> = [];
let counter = 0;

beforeAll(async () => {
  server = await RedisServer.start();
  redis = new Redis(server.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
});

afterEach(async () => {
  for (const l of loops.splice(0)) l.stop();
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await Promise.all(open.splice(0).map((q) => q.release().catch(() => undefined)));
});

afterAll(async () => {
  redis?.disconnect();
  await server?.stop();
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const keyOf = (x: Item): string => x.k;
const tag = (x: Item): string => `${x.k}:${x.i}`;

function name(): string {
  return `pt${process.pid}-${++counter}`;
}

const LEASE_MS = 1500;
const CLAIM_IDLE_MS = 60_000;

function base(n: string, extra: Partial<PartitionedRedisQueueOptions<Item>> = {}): PartitionedRedisQueueOptions<Item> {
  return { url: server.url, name: n, partitions: 2, leaseMs: LEASE_MS, claimIdleMs: CLAIM_IDLE_MS, keyOf, ...extra };
}

function producer(n: string): PartitionedRedisQueue<Item, Item> {
  const q = new PartitionedRedisQueue<Item>({ ...base(n), ackMode: 'auto' });
  open.push(q);
  return q;
}

function explicit(n: string, extra: Partial<PartitionedRedisQueueOptions<Item>> = {}): Explicit {
  const q = new PartitionedRedisQueue<Item>({ ...base(n, extra), ackMode: 'explicit' });
  open.push(q);
  return q;
}

interface ChildMessage {
  type: string;
  value?: Item;
  values?: Item[];
  id?: string;
  partition?: number;
  owned?: boolean;
  reason?: string;
  deliveries?: number;
  at?: number;
  stats?: { takenOver: number; takeoverDeadLettered: number };
  message?: string;
}

/** Forks the holder fixture: it takes messages until it holds `hold` unacked, then waits for commands. */
function holder(n: string, hold: number, extra: { maxDeliveries?: number; ackMode?: 'auto' | 'explicit' } = {}, getMax = 5): { proc: ChildProcess; messages: ChildMessage[]; exited: Promise<void> } {
  const desc = createPartitionedRedisQueueDescriptor({ url: server.url, name: n, partitions: 2, leaseMs: LEASE_MS, claimIdleMs: CLAIM_IDLE_MS, ackMode: 'explicit', ...extra });
  const proc = fork(join(__dirname, '..', 'fixtures', 'redis-partition-holder.cjs'), [], {
    env: { ...process.env, SAGEQ_DESCRIPTOR: JSON.stringify(desc), SAGEQ_HOLD: String(hold), SAGEQ_GET_MAX: String(getMax) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  children.push(proc);
  const messages: ChildMessage[] = [];
  proc.on('message', (m: ChildMessage) => {
    messages.push(m);
  });
  const exited = new Promise<void>((resolve) => proc.on('exit', () => resolve()));
  return { proc, messages, exited };
}

function childError(messages: ChildMessage[]): string | undefined {
  return messages.find((m) => m.type === 'error')?.message;
}

async function until(what: string, cond: () => boolean, timeoutMs = 20_000, watch: ChildMessage[][] = []): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    for (const w of watch) {
      const err = childError(w);
      if (err !== undefined) throw new Error(`a consumer process failed: ${err}`);
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function ownedBy(messages: ChildMessage[]): Set<number> {
  const owned = new Set<number>();
  for (const m of messages) {
    if (m.type !== 'lease') continue;
    if (m.owned) owned.add(m.partition as number);
    else owned.delete(m.partition as number);
  }
  return owned;
}

interface Got {
  item: Item;
  id: string;
  partition: number;
  deliveries: number;
  at: number;
}

interface Log {
  got: Got[];
  acked: Item[];
  leases: Array<{ partition: number; owned: boolean; reason: string; at: number }>;
}

/** An in-process consumer: takes messages, acks each batch at once, logs everything. */
function consume(q: Explicit): Log {
  const log: Log = { got: [], acked: [], leases: [] };
  q.onPartitions((c) => log.leases.push({ ...c, at: Date.now() }));
  let stopped = false;
  const done = (async () => {
    while (!stopped) {
      let msgs: Array<PartitionedRedisMessage<Item>>;
      try {
        msgs = await q.getManyAsync(10, { timeoutMs: 300 });
      } catch (e) {
        const code = (e as { code?: string }).code;
        if (code === 'ERR_QUEUE_EMPTY') continue;
        if (code === 'ERR_QUEUE_RELEASED' || code === 'ERR_QUEUE_CLOSED') return;
        throw e;
      }
      const at = Date.now();
      for (const m of msgs) log.got.push({ item: m.value, id: m.id, partition: m.partition, deliveries: m.deliveries, at });
      const flags = await q.ackMany(msgs);
      msgs.forEach((m, i) => {
        if (flags[i] === true) log.acked.push(m.value);
      });
    }
  })();
  done.catch(() => undefined);
  loops.push({ stop: () => (stopped = true), done });
  return log;
}

/** `keys` keys × `per` items each, in order, keyed by k. */
function items(keys: number, from: number, to: number): Item[] {
  const out: Item[] = [];
  for (let i = from; i < to; i++) for (let k = 0; k < keys; k++) out.push({ k: `key-${k}`, i });
  return out;
}

/** Each partition's entries, in the order `got` lists them, must have increasing stream ids. */
function outOfStreamOrder(got: Got[]): string[] {
  const bad: string[] = [];
  const last = new Map<number, string>();
  for (const g of got) {
    const prev = last.get(g.partition);
    if (prev !== undefined && compareStreamIds(prev, g.id) >= 0) bad.push(`partition ${g.partition}: ${g.id} after ${prev}`);
    last.set(g.partition, g.id);
  }
  return bad;
}

describe('PartitionedRedisQueue takeover of departed consumers\' entries (explicit ack)', () => {
  it('SIGKILL: the next holder gets the dead consumer\'s unacked entries at once (claimIdleMs 60 s), with deliveries 2, before any newer entry of their partition; per-key order of first handling holds; each entry acked once', async () => {
    const n = name();
    const p = producer(n);
    expect(new Set(Array.from({ length: 10 }, (_, k) => p.partitionOf(`key-${k}`))).size).toBe(2);
    const a = holder(n, 30);
    await until('A to take both partitions', () => ownedBy(a.messages).size === 2, 20_000, [a.messages]);
    await p.putManyAsync(items(10, 0, 6));
    await until('A to hold 30 unacked messages', () => a.messages.some((m) => m.type === 'holding'), 20_000, [a.messages]);
    a.proc.kill('SIGKILL');
    await a.exited;
    await p.putManyAsync(items(10, 6, 10)); // newer entries of the same partitions
    const gotByA = a.messages.filter((m) => m.type === 'got');
    expect(gotByA.length).toBeGreaterThanOrEqual(30);
    expect(new Set(gotByA.map((m) => m.partition)).size).toBe(2); // A held entries of both partitions

    const b = explicit(n);
    const log = consume(b);
    await until('B to ack all 100 entries', () => new Set(log.acked.map(tag)).size === 100);
    // Not XAUTOCLAIM (claimIdleMs is 60 s): the takeover on acquire.
    expect(b.consumerStats().takenOver).toBeGreaterThanOrEqual(gotByA.length);
    expect(b.consumerStats().takeoverDeadLettered).toBe(0);

    const aTags = new Set(gotByA.map((m) => tag(m.value as Item)));
    const redelivered = log.got.filter((g) => aTags.has(tag(g.item)));
    expect(redelivered).toHaveLength(aTags.size); // each of A's unacked entries once
    expect(redelivered.every((g) => g.deliveries === 2)).toBe(true);
    // Within each partition B went in stream order: every entry A left behind before any newer one.
    expect(outOfStreamOrder(log.got)).toEqual([]);
    for (const part of [0, 1]) {
      const seq = log.got.filter((g) => g.partition === part);
      const firstNew = seq.findIndex((g) => g.deliveries === 1);
      const lastOld = seq.map((g) => g.deliveries > 1).lastIndexOf(true);
      expect(firstNew === -1 || lastOld < firstNew).toBe(true);
    }
    // Per-key order of first handling (A's, then B's).
    const firstSeen = new Map<string, number[]>();
    const seen = new Set<string>();
    for (const it of [...gotByA.map((m) => m.value as Item), ...log.got.map((g) => g.item)]) {
      if (seen.has(tag(it))) continue;
      seen.add(tag(it));
      firstSeen.set(it.k, [...(firstSeen.get(it.k) ?? []), it.i]);
    }
    expect(firstSeen.size).toBe(10);
    for (const [, seq] of firstSeen) expect(seq).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    // Every value acked exactly once (A acked none).
    expect(log.acked).toHaveLength(100);
    expect((await p.stats()).pending).toBe(0);
  });

  it('over maxDeliveries, an entry taken over goes to the dead-letter stream with the reason instead', async () => {
    const n = name();
    const p = producer(n);
    const a = holder(n, 8, { maxDeliveries: 1 });
    await until('A to take both partitions', () => ownedBy(a.messages).size === 2, 20_000, [a.messages]);
    await p.putManyAsync(items(4, 0, 2));
    await until('A to hold all 8', () => a.messages.some((m) => m.type === 'holding'), 20_000, [a.messages]);
    a.proc.kill('SIGKILL');
    await a.exited;
    const aIds = a.messages.filter((m) => m.type === 'got').map((m) => ({ id: m.id as string, partition: m.partition as number, item: m.value as Item }));
    expect(aIds).toHaveLength(8);

    const b = explicit(n, { maxDeliveries: 1 });
    const log = consume(b);
    await until('B to dead-letter all 8 on takeover', () => b.consumerStats().takeoverDeadLettered === 8);
    await sleep(300);
    expect(log.got).toEqual([]);
    const dead: Array<{ id: string; fields: Record<string, string> }> = [];
    for (const part of [0, 1]) {
      const rows = (await redis.xrange(`${b.streamOf(part)}:dead`, '-', '+')) as Array<[string, string[]]>;
      for (const [id, f] of rows) {
        const fields: Record<string, string> = {};
        for (let i = 0; i < f.length; i += 2) fields[f[i] as string] = f[i + 1] as string;
        dead.push({ id, fields });
      }
      expect(await redis.xlen(b.streamOf(part))).toBe(0); // XACK + XDEL
    }
    expect(dead.map((d) => d.fields['x-id']).sort()).toEqual(aIds.map((x) => x.id).sort());
    for (const d of dead) {
      expect(d.fields['x-reason']).toBe('delivered 2 times (maxDeliveries 1)');
      expect(d.fields['x-deliveries']).toBe('2');
      expect(d.fields['x-group']).toBe(b.group);
    }
    expect((await p.stats()).deadLetters).toBe(8);
  });

  it('rebalance: a consumer above its share gives a partition back only after the messages it handed out from it are acked', async () => {
    const n = name();
    const p = producer(n);
    const a = holder(n, 12);
    await until('A to take both partitions', () => ownedBy(a.messages).size === 2, 20_000, [a.messages]);
    await p.putManyAsync(items(10, 0, 3));
    await until('A to hold 12', () => a.messages.some((m) => m.type === 'holding'), 20_000, [a.messages]);
    const b = explicit(n);
    const log = consume(b);
    await until('A to start giving a partition back', () => a.messages.some((m) => m.type === 'lease' && m.reason === 'released'), 20_000, [a.messages]);
    const dropped = a.messages.find((m) => m.type === 'lease' && m.reason === 'released')?.partition as number;
    const heldFromDropped = a.messages.filter((m) => m.type === 'got' && m.partition === dropped).length;
    expect(heldFromDropped).toBeGreaterThan(0);
    // Several lease periods: B must not get the partition while A's messages from it are unacked.
    await sleep(3 * LEASE_MS);
    expect(log.leases.filter((l) => l.partition === dropped && l.owned)).toEqual([]);
    expect(log.got.filter((g) => g.partition === dropped)).toEqual([]);
    a.proc.send({ cmd: 'ack' });
    await until('A to ack', () => a.messages.some((m) => m.type === 'acked'), 20_000, [a.messages]);
    const ackingAt = a.messages.find((m) => m.type === 'acking')?.at as number;
    await until('B to take the partition', () => log.leases.some((l) => l.partition === dropped && l.owned));
    const taken = log.leases.find((l) => l.partition === dropped && l.owned) as { at: number };
    expect(taken.at).toBeGreaterThanOrEqual(ackingAt);
    const ackedByA = new Set((a.messages.find((m) => m.type === 'acked')?.values ?? []).map(tag));
    expect(ackedByA.size).toBe(12);
    // B reads the rest of the dropped partition (entries A never got), each once, none of A's again.
    const expectedRest = items(10, 0, 3).filter((x) => p.partitionOf(x.k) === dropped && !ackedByA.has(tag(x))).map(tag);
    await until('B to read the rest of the dropped partition', () => expectedRest.every((t) => log.acked.some((x) => tag(x) === t)));
    const fromDropped = log.got.filter((g) => g.partition === dropped);
    expect(fromDropped.length).toBeGreaterThan(0);
    expect(fromDropped.every((g) => g.at >= ackingAt && !ackedByA.has(tag(g.item)))).toBe(true);
    expect(b.consumerStats().takenOver).toBe(0); // A was live and had settled everything
  });

  it('release(): the released consumer\'s handed-out, unsettled messages are taken over at once by the next holder (claimIdleMs 60 s), even while it was giving a partition back', async () => {
    const n = name();
    const p = producer(n);
    const a = holder(n, 10);
    await until('A to take both partitions', () => ownedBy(a.messages).size === 2, 20_000, [a.messages]);
    await p.putManyAsync(items(10, 0, 2));
    await until('A to hold 10', () => a.messages.some((m) => m.type === 'holding'), 20_000, [a.messages]);
    const b = explicit(n);
    const log = consume(b);
    // A waits (for acks that will not come) before giving one partition back; release() cuts that short.
    await until('A to start giving a partition back', () => a.messages.some((m) => m.type === 'lease' && m.reason === 'released'), 20_000, [a.messages]);
    a.proc.send({ cmd: 'release' });
    await until('A to be released', () => a.messages.some((m) => m.type === 'released'), 20_000, [a.messages]);
    await until('B to ack all 20', () => new Set(log.acked.map(tag)).size === 20);
    const aTags = new Set(a.messages.filter((m) => m.type === 'got').map((m) => tag(m.value as Item)));
    expect(aTags.size).toBe(10);
    const again = log.got.filter((g) => aTags.has(tag(g.item)));
    expect(again).toHaveLength(10);
    expect(again.every((g) => g.deliveries === 2)).toBe(true);
    expect(outOfStreamOrder(log.got)).toEqual([]);
    expect(b.consumerStats().takenOver).toBeGreaterThanOrEqual(10);
    expect(log.acked).toHaveLength(20);
  });
});

describe('PartitionedRedisQueue takeover in auto ack mode', () => {
  it('SIGKILL: entries the dead consumer read and had not handed out (still pending for it) are claimed by the next holder at once (claimIdleMs 60 s) and delivered before newer entries, each partition in stream order; those it handed out are not delivered again; nothing else is lost', async () => {
    const n = name();
    const p = producer(n);
    expect(new Set(Array.from({ length: 10 }, (_, k) => p.partitionOf(`key-${k}`))).size).toBe(2);
    await p.putManyAsync(items(10, 0, 10)); // a backlog in both partitions before A reads
    // Gets of 1: each round reads an entry from both partitions and hands out one, so A keeps read
    // entries in its buffer (acked only when handed out: pending for A in Redis).
    const a = holder(n, 12, { ackMode: 'auto' }, 1);
    await until('A to hold 12', () => a.messages.some((m) => m.type === 'holding'), 20_000, [a.messages]);
    const pendingForA = async (): Promise<number> => {
      let total = 0;
      for (const part of [0, 1]) total += ((await redis.xpending(p.streamOf(part), p.group)) as [number, ...unknown[]])[0];
      return total;
    };
    const pendingAtKill = await pendingForA();
    expect(pendingAtKill).toBeGreaterThan(0); // the path under test: read, not handed out, when A dies
    a.proc.kill('SIGKILL');
    await a.exited;
    await p.putManyAsync(items(10, 10, 12)); // newer entries of the same partitions
    const gotByA = a.messages.filter((m) => m.type === 'got').map((m) => m.value as Item);
    expect(gotByA).toHaveLength(12);

    const b = new PartitionedRedisQueue<Item>({ ...base(n), ackMode: 'auto' });
    open.push(b);
    const gotByB: Item[] = [];
    const deadline = Date.now() + 20_000;
    while (gotByA.length + gotByB.length < 120) {
      if (Date.now() > deadline) throw new Error(`timed out: A got ${gotByA.length}, B got ${gotByB.length} of 120`);
      try {
        gotByB.push(...(await b.getManyAsync(10, { timeoutMs: 300 })));
      } catch (e) {
        if ((e as { code?: string }).code !== 'ERR_QUEUE_EMPTY') throw e;
      }
    }
    // Not XAUTOCLAIM (claimIdleMs is 60 s): the takeover on acquire claimed what A had pending.
    expect(b.consumerStats().takenOver).toBe(pendingAtKill);
    // At most once: nothing A handed out comes again, nothing twice; and every entry put is handed out.
    const aTags = new Set(gotByA.map(tag));
    expect(gotByB.filter((x) => aTags.has(tag(x)))).toEqual([]);
    expect(new Set(gotByB.map(tag)).size).toBe(gotByB.length);
    expect(new Set([...gotByA, ...gotByB].map(tag))).toEqual(new Set(items(10, 0, 12).map(tag)));
    // Each partition in stream (put) order at B: A's pending entries, the oldest left, come first.
    const putOrder = new Map(items(10, 0, 12).map((x, i) => [tag(x), i]));
    for (const part of [0, 1]) {
      const seq = gotByB.filter((x) => p.partitionOf(x.k) === part).map((x) => putOrder.get(tag(x)) as number);
      expect(seq).toEqual([...seq].sort((x, y) => x - y));
    }
    // Per-key order of first handling: A's, then B's.
    for (let k = 0; k < 10; k++) {
      const seq = [...gotByA, ...gotByB].filter((x) => x.k === `key-${k}`).map((x) => x.i);
      expect(seq, `key-${k}`).toEqual(Array.from({ length: 12 }, (_, i) => i));
    }
    expect(await pendingForA()).toBe(0);
  });
});

describe('parseLeaseReply', () => {
  it('accepts { share, members, owned count, owned..., live... } and rejects every other shape with ERR_REDIS_REPLY', () => {
    expect(parseLeaseReply([2, 2, 2, 0, 3, 'a', 'b'], 4)).toEqual({ share: 2, members: 2, owned: [0, 3], live: ['a', 'b'] });
    expect(parseLeaseReply([1, 1, 0, 'me'], 4)).toEqual({ share: 1, members: 1, owned: [], live: ['me'] });
    const bad: unknown[] = [
      null,
      'x',
      [],
      [1, 1],
      [1, 1, 0], // a member count with no names
      [1, 0, 0], // no member at all (the caller is one)
      [1.5, 1, 0, 'a'],
      [-1, 1, 0, 'a'],
      [1, 1, 1, 'a'], // owned count past the end
      [1, 1, 0, 'a', 'b'], // more names than members
      [1, 2, 1, 0, 'a'], // fewer names than members
      [1, 1, 1, 4, 'a'], // partition out of range
      [1, 1, 1, '0', 'a'], // partition not a number
      [1, 1, 0, 7], // name not a string
      [1, 1, 0, ''],
      ['1', 1, 0, 'a'],
    ];
    for (const reply of bad) {
      let err: unknown;
      try {
        parseLeaseReply(reply, 4);
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(reply)).toBeInstanceOf(RedisBackendError);
      expect((err as RedisBackendError).code).toBe('ERR_REDIS_REPLY');
    }
  });
});
