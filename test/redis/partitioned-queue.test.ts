/**
 * PartitionedRedisQueue against real redis-servers started here: argument errors, per-key order,
 * consumer processes sharing partitions (leases never overlap, rebalance on join), a consumer
 * SIGKILLed mid-stream in explicit-ack mode (its partitions and unacked entries taken over), and
 * the partitions' spread over the 3 masters of a real Redis Cluster.
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { DescriptorError, InvalidArgumentTypeError, InvalidArgumentValueError } from '../../lib/errors';
import { QueueDescriptor } from '../../lib/queue/descriptor';
import { resolveDescriptor } from '../../lib/queue/registry';
import { installBuiltinQueueTypes } from '../../lib/builtins';
import { createPartitionedRedisQueueDescriptor } from '../../lib/redis/partition-options';
import type { PartitionedRedisQueueOptions } from '../../lib/redis/partition-options';
import { PartitionedRedisQueue } from '../../lib/redis/partitioned-queue';
import { rejected, thrown } from '../support/expect-errors';
import { RedisCluster } from '../support/redis-cluster';
import { RedisServer } from '../support/redis-server';

installBuiltinQueueTypes();

let server: RedisServer;
const open: Array<{ release(): Promise<void> }> = [];
const children: ChildProcess[] = [];
let counter = 0;

beforeAll(async () => {
  server = await RedisServer.start();
});

afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await Promise.all(open.splice(0).map((q) => q.release().catch(() => undefined)));
});

afterAll(async () => {
  await server?.stop();
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function name(): string {
  return `pq${process.pid}-${++counter}`;
}

function make<T>(options: Partial<PartitionedRedisQueueOptions<T>> & { ackMode?: 'auto' }): PartitionedRedisQueue<T, T> {
  const q = new PartitionedRedisQueue<T>({ url: server.url, name: options.name ?? name(), partitions: 4, leaseMs: 1500, ...options });
  open.push(q);
  return q;
}

interface ChildMessage {
  type: string;
  value?: number;
  values?: number[];
  partition?: number;
  owned?: boolean;
  at?: number;
  deliveries?: number;
  message?: string;
}

/** Forks test/fixtures/redis-partition-consumer.cjs and collects its messages. */
function consumerProcess(descriptor: QueueDescriptor, ackDelayMs = 0): { proc: ChildProcess; messages: ChildMessage[]; exited: Promise<void> } {
  const proc = fork(join(__dirname, '..', 'fixtures', 'redis-partition-consumer.cjs'), [], {
    env: { ...process.env, SAGEQ_DESCRIPTOR: JSON.stringify(descriptor), SAGEQ_ACK_DELAY_MS: String(ackDelayMs) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  children.push(proc);
  const messages: ChildMessage[] = [];
  proc.on('message', (m: ChildMessage) => {
    if (m.type === 'error') throw new Error(`consumer process failed: ${m.message}`);
    messages.push(m);
  });
  const exited = new Promise<void>((resolve) => proc.on('exit', () => resolve()));
  return { proc, messages, exited };
}

async function until(what: string, cond: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** The partitions a consumer reads now, from its lease events. */
function ownedBy(messages: ChildMessage[]): Set<number> {
  const owned = new Set<number>();
  for (const m of messages) {
    if (m.type !== 'lease') continue;
    if (m.owned) owned.add(m.partition as number);
    else owned.delete(m.partition as number);
  }
  return owned;
}

/** Intervals [from, to) during which each process read each partition (to = Infinity while it still does). */
function intervals(procs: Array<{ messages: ChildMessage[] }>, diedAt: Map<number, number> = new Map()): Map<number, Array<{ who: number; from: number; to: number }>> {
  const out = new Map<number, Array<{ who: number; from: number; to: number }>>();
  procs.forEach((p, who) => {
    const start = new Map<number, number>();
    for (const m of p.messages) {
      if (m.type !== 'lease') continue;
      const part = m.partition as number;
      if (m.owned) start.set(part, m.at as number);
      else {
        out.set(part, [...(out.get(part) ?? []), { who, from: start.get(part) as number, to: m.at as number }]);
        start.delete(part);
      }
    }
    for (const [part, from] of start) out.set(part, [...(out.get(part) ?? []), { who, from, to: diedAt.get(who) ?? Infinity }]);
  });
  return out;
}

function overlaps(map: Map<number, Array<{ who: number; from: number; to: number }>>): string[] {
  const bad: string[] = [];
  for (const [part, list] of map) {
    const sorted = [...list].sort((a, b) => a.from - b.from);
    for (let i = 1; i < sorted.length; i++) {
      const a = sorted[i - 1] as { who: number; to: number };
      const b = sorted[i] as { who: number; from: number };
      if (b.from < a.to) bad.push(`partition ${part}: process ${a.who} until ${a.to}, process ${b.who} from ${b.from}`);
    }
  }
  return bad;
}

describe('PartitionedRedisQueue arguments', () => {
  it('bad options, keys and descriptors are typed errors with stable codes; another partition count is ERR_PARTITIONS_MISMATCH', async () => {
    const url = server.url;
    thrown(() => new PartitionedRedisQueue({ url, name: 'a{b}', partitions: 2 }), InvalidArgumentValueError, 'ERR_INVALID_ARG_VALUE');
    thrown(() => new PartitionedRedisQueue({ url, partitions: 2 } as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => new PartitionedRedisQueue({ url, name: 'a' } as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => new PartitionedRedisQueue({ url, name: 'a', partitions: 0 }), Error, 'ERR_OUT_OF_RANGE');
    thrown(() => new PartitionedRedisQueue({ url, name: 'a', partitions: 1025 }), Error, 'ERR_OUT_OF_RANGE');
    thrown(() => new PartitionedRedisQueue({ url, name: 'a', partitions: 2, keyOf: 3 } as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => new PartitionedRedisQueue({ url, name: 'a', partitions: 2, leaseMs: 10 }), Error, 'ERR_OUT_OF_RANGE');
    thrown(() => new PartitionedRedisQueue({ url, name: 'a', partitions: 2, nope: 1 } as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => new PartitionedRedisQueue({ url, name: 'a', partitions: 2, waitReplicas: { replicas: 0, timeoutMs: 5 } }), Error, 'ERR_OUT_OF_RANGE');
    const q = make<number>({});
    await rejected(q.putAsync(1, { key: {} as never }), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    await rejected(q.putAsync(1, { key: Number.NaN }), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    await rejected(q.putAsync(1, { other: 1 } as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    await rejected(q.getManyAsync(0), Error, 'ERR_OUT_OF_RANGE');
    await rejected(q.ackMany([{ id: '1-0' } as never]), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    const bad = new QueueDescriptor({ queueId: 'bad-pq', queueType: 'redis_partitioned', metadata: { url, name: 'x', partitions: 'four' } });
    thrown(() => resolveDescriptor(bad), DescriptorError, 'ERR_INVALID_DESCRIPTOR');

    const four = make<number>({ partitions: 4 });
    await four.putAsync(1, { key: 'k' });
    expect(await four.getAsync({ timeoutMs: 3000 })).toBe(1);
    const eight = make<number>({ name: four.name, partitions: 8 });
    await rejected(eight.getAsync({ timeoutMs: 3000 }), InvalidArgumentValueError, 'ERR_PARTITIONS_MISMATCH');
  });

  it('the partition put option puts into that partition whatever the key; with a key, or out of range, it is refused and nothing is put', async () => {
    const q = make<{ k?: string; i: number }>({ partitions: 4, keyOf: (x) => x.k });
    await rejected(q.putAsync({ i: 0 }, { partition: 4 }), Error, 'ERR_OUT_OF_RANGE');
    await rejected(q.putAsync({ i: 0 }, { partition: 1.5 }), Error, 'ERR_OUT_OF_RANGE');
    await rejected(q.putManyAsync([{ i: 0 }], { partition: 1, key: 'a' }), InvalidArgumentValueError, 'ERR_INVALID_ARG_VALUE');
    expect((await q.stats()).length).toBe(0);
    const other = (q.partitionOf('a') + 1) % 4;
    expect(await q.putManyAsync([{ k: 'a', i: 1 }, { k: 'a', i: 2 }], { partition: other })).toBe(2);
    await q.putAsync({ k: 'a', i: 3 }, { partition: other });
    // keyOf returning undefined: rotation (no error)
    await q.putAsync({ i: 4 });
    const stats = await q.stats();
    expect(stats.partitions[other]?.length).toBeGreaterThanOrEqual(3);
    expect(stats.partitions[q.partitionOf('a')]?.length ?? 0).toBeLessThanOrEqual(1);
    expect(stats.length).toBe(4);
  });
});

describe('PartitionedRedisQueue on one redis-server', () => {
  it('a key always goes to one partition (the ring is the same in every handle), and per-key order holds across 200 keys read by two consumers', async () => {
    const n = name();
    const keyOf = (x: { k: string; i: number }): string => x.k;
    const producer = make<{ k: string; i: number }>({ name: n, partitions: 8, keyOf });
    const a = make<{ k: string; i: number }>({ name: n, partitions: 8 });
    const b = make<{ k: string; i: number }>({ name: n, partitions: 8 });
    expect(a.partitionOf('user-7')).toBe(producer.partitionOf('user-7'));
    const spread = new Set(Array.from({ length: 200 }, (_, k) => producer.partitionOf(`user-${k}`)));
    expect(spread.size).toBe(8);
    // Both consumers join and settle on 4 partitions each before anything is put.
    void a.getAsync({ timeoutMs: 50 }).catch(() => undefined);
    void b.getAsync({ timeoutMs: 50 }).catch(() => undefined);
    await until('the leases to settle', () => a.consumerStats().owned.length === 4 && b.consumerStats().owned.length === 4);
    expect([...a.consumerStats().owned, ...b.consumerStats().owned].sort((x, y) => x - y)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    const items: Array<{ k: string; i: number }> = [];
    for (let i = 0; i < 20; i++) for (let k = 0; k < 200; k++) items.push({ k: `user-${k}`, i });
    expect(await producer.putManyAsync(items.slice(0, 2000))).toBe(2000);
    for (const x of items.slice(2000)) void producer.putAsync(x);
    const got = new Map<string, { who: string; seq: number[] }>();
    const take = async (q: typeof a, who: string): Promise<void> => {
      for (;;) {
        let batch: Array<{ k: string; i: number }>;
        try {
          batch = await q.getManyAsync(100, { timeoutMs: 700 });
        } catch (e) {
          if ((e as { code?: string }).code === 'ERR_QUEUE_EMPTY') return;
          throw e;
        }
        for (const x of batch) {
          const g = got.get(x.k) ?? { who, seq: [] };
          expect(g.who).toBe(who); // one key, one partition, one reader
          g.seq.push(x.i);
          got.set(x.k, g);
        }
      }
    };
    await Promise.all([take(a, 'a'), take(b, 'b')]);
    expect(got.size).toBe(200);
    for (const [, g] of got) expect(g.seq).toEqual(Array.from({ length: 20 }, (_, i) => i));
    const stats = await producer.stats();
    expect(stats.partitions).toHaveLength(8);
    expect(stats.length).toBe(0);
  });

  it('consumer processes share the partitions with no partition read by two at once; a joining process gets its fair share; close() drains them all', async () => {
    const n = name();
    const q = make<number>({ name: n, partitions: 6, leaseMs: 2000 });
    const desc = createPartitionedRedisQueueDescriptor({ url: server.url, name: n, partitions: 6, leaseMs: 2000 });
    expect(desc.queueType).toBe('redis_partitioned');
    const p1 = consumerProcess(desc);
    await until('the first process to take every partition', () => ownedBy(p1.messages).size === 6);
    await q.putManyAsync(Array.from({ length: 300 }, (_, i) => i), {});
    const p2 = consumerProcess(desc);
    await until('two processes with 3 partitions each', () => ownedBy(p1.messages).size === 3 && ownedBy(p2.messages).size === 3);
    const p3 = consumerProcess(desc);
    await until('three processes with 2 partitions each', () => [p1, p2, p3].every((p) => ownedBy(p.messages).size === 2));
    let next = 300;
    for (let r = 0; r < 5; r++) {
      await q.putManyAsync(Array.from({ length: 100 }, () => next++));
      await sleep(50);
    }
    await q.close();
    await Promise.race([Promise.all([p1.exited, p2.exited, p3.exited]), sleep(15_000)]);
    const received = [p1, p2, p3].flatMap((p) => p.messages.filter((m) => m.type === 'got').map((m) => m.value as number));
    expect(received.sort((x, y) => x - y)).toEqual(Array.from({ length: next }, (_, i) => i));
    expect(overlaps(intervals([p1, p2, p3]))).toEqual([]);
    for (const p of [p1, p2, p3]) expect(p.messages.some((m) => m.type === 'done')).toBe(true);
  });

  it('explicit ack: a consumer process SIGKILLed mid-stream has its partitions and unacked entries taken over; 0 lost, duplicates only among its unacked entries', async () => {
    const n = name();
    const opts = { name: n, partitions: 4, leaseMs: 1500, claimIdleMs: 600 };
    const q = make<number>(opts);
    const desc = createPartitionedRedisQueueDescriptor({ url: server.url, ackMode: 'explicit', ...opts });
    const victim = consumerProcess(desc, 40);
    await until('the victim to take every partition', () => ownedBy(victim.messages).size === 4);
    const survivor = consumerProcess(desc, 5);
    await until('two processes with 2 partitions each', () => ownedBy(victim.messages).size === 2 && ownedBy(survivor.messages).size === 2);
    const victimParts = [...ownedBy(victim.messages)];
    const total = 1200;
    const producing = (async () => {
      for (let i = 0; i < total; i += 50) {
        await q.putManyAsync(Array.from({ length: 50 }, (_, j) => i + j), {});
        await sleep(15);
      }
    })();
    await until('the victim to be mid-stream', () => victim.messages.filter((m) => m.type === 'got').length >= 100);
    victim.proc.kill('SIGKILL');
    const diedAt = Date.now();
    await victim.exited;
    await producing;
    await until('the survivor to take the dead process\'s partitions', () => victimParts.every((p) => ownedBy(survivor.messages).has(p)), 10_000);
    const gotBy = (p: { messages: ChildMessage[] }): number[] => p.messages.filter((m) => m.type === 'got').map((m) => m.value as number);
    await until('every entry to be received', () => new Set([...gotBy(victim), ...gotBy(survivor)]).size === total, 15_000);
    await q.close();
    await Promise.race([survivor.exited, sleep(10_000)]);

    const ackedByVictim = new Set(victim.messages.filter((m) => m.type === 'acked').flatMap((m) => m.values as number[]));
    const unackedAtDeath = new Set(gotBy(victim).filter((v) => !ackedByVictim.has(v)));
    const counts = new Map<number, number>();
    for (const v of [...gotBy(victim), ...gotBy(survivor)]) counts.set(v, (counts.get(v) ?? 0) + 1);
    expect([...counts.keys()].sort((x, y) => x - y)).toEqual(Array.from({ length: total }, (_, i) => i)); // 0 lost
    const duplicates = [...counts].filter(([, c]) => c > 1).map(([v]) => v);
    expect(duplicates.filter((v) => !unackedAtDeath.has(v))).toEqual([]);
    expect(unackedAtDeath.size).toBeGreaterThan(0); // it died holding entries, so the takeover was exercised
    const redelivered = survivor.messages.filter((m) => m.type === 'got' && unackedAtDeath.has(m.value as number));
    expect(redelivered.length).toBe(unackedAtDeath.size);
    expect(redelivered.every((m) => (m.deliveries as number) >= 2)).toBe(true);
    expect(overlaps(intervals([victim, survivor], new Map([[0, diedAt]])))).toEqual([]);
    console.log(`partitioned kill: ${total} entries, ${unackedAtDeath.size} unacked at death, all redelivered; ${duplicates.length} duplicates`);
  });
});

describe('PartitionedRedisQueue on a Redis Cluster (3 masters + 3 replicas)', () => {
  let cluster: RedisCluster;
  beforeAll(async () => {
    cluster = await RedisCluster.start({ masters: 3, nodeTimeoutMs: 1000 });
  }, 60_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  it('the partitions spread over the 3 masters (CLUSTER KEYSLOT) and each master holds its partitions\' entries', async () => {
    const q = new PartitionedRedisQueue<number>({ url: cluster.url, name: 'spread', partitions: 12, leaseMs: 1500 });
    open.push(q);
    const masterOf = new Map<number, number>();
    for (let p = 0; p < 12; p++) masterOf.set(p, (await cluster.ownerOf(await cluster.slotOf(q.streamOf(p)))).master.port);
    expect(new Set(masterOf.values()).size).toBe(3);
    const n = 1200;
    expect(await q.putManyAsync(Array.from({ length: n }, (_, i) => i), {})).toBe(n);
    // Rotation (no key): 100 entries per partition, each on the master its slot says.
    for (let p = 0; p < 12; p++) {
      const node = cluster.node(masterOf.get(p) as number);
      expect(Number(await node.command('XLEN', q.streamOf(p)))).toBe(n / 12);
    }
    const got: number[] = [];
    while (got.length < n) got.push(...(await q.getManyAsync(500, { timeoutMs: 5000 })));
    expect(got.sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i));
  });
});
