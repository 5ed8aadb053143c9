/**
 * RedisWorkerPool against a real redis-server started here, with worker processes forked by the
 * test from the pool's descriptor (test/fixtures/redis-pool-worker.cjs), as workers on other hosts
 * would join: arguments, keyed round trips with per-key order, membership events, a worker leaving,
 * a worker SIGKILLed mid-job (its jobs accounted for exactly as docs/redis.md says), a worker
 * joining later, and close().
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { DescriptorError, InvalidArgumentTypeError, QueueReleasedError, SageQueueError } from '../../lib/errors';
import { RedisBackendError } from '../../lib/redis/connection';
import { Packet } from '../../lib/router/packet';
import { RedisWorkerPool } from '../../lib/redis/redis-pool';
import type { RedisPoolExitInfo, RedisPoolWorkerInfo } from '../../lib/redis/pool-members';
import type { RedisWorkerPoolOptions } from '../../lib/redis/pool-options';
import { joinRedisPool } from '../../lib/redis/pool-worker';
import { Registry } from 'prom-client';
import { collectRedisPoolMetrics } from '../../lib/redis/pool-metrics';
import { rejected, thrown } from '../support/expect-errors';
import { parseProm, series } from '../support/prom-text';
import { sleep, until } from '../helpers/harness';
import { RedisServer } from '../support/redis-server';

let server: RedisServer;
const pools: RedisWorkerPool[] = [];
const children: ChildProcess[] = [];
let counter = 0;

beforeAll(async () => {
  server = await RedisServer.start();
});

afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await Promise.all(pools.splice(0).map((p) => p.close({ timeoutMs: 0 }).catch(() => undefined)));
});

afterAll(async () => {
  await server?.stop();
});

interface Answer {
  job: number;
  key: string;
  worker: string;
}

interface WorkerMessage {
  type: string;
  consumer?: string;
  job?: number;
  partition?: number;
  owned?: boolean;
  message?: string;
}

function makePool(options: RedisWorkerPoolOptions = {}): RedisWorkerPool<{ job: number }, Answer> {
  const pool = new RedisWorkerPool<{ job: number }, Answer>({
    url: server.url, name: `rp${process.pid}-${++counter}`, partitions: 6, replies: true, leaseMs: 1500, claimIdleMs: 60_000, watchMs: 50, ...options,
  });
  pools.push(pool as RedisWorkerPool);
  return pool;
}

/** Forks a worker that joins `pool` from its descriptor, as a process on another host would. */
function worker(pool: RedisWorkerPool<{ job: number }, Answer>, env: Record<string, string> = {}): { proc: ChildProcess; messages: WorkerMessage[]; exited: Promise<void> } {
  const proc = fork(join(__dirname, '..', 'fixtures', 'redis-pool-worker.cjs'), [], {
    env: { ...process.env, SAGE_REDIS_POOL: JSON.stringify(pool.descriptor), ...env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  children.push(proc);
  const messages: WorkerMessage[] = [];
  proc.on('message', (m: WorkerMessage) => messages.push(m));
  const exited = new Promise<void>((resolve) => proc.on('exit', () => resolve()));
  return { proc, messages, exited };
}

/** Reads answers from the pool's reply queue until `done` says so. */
async function collect(pool: RedisWorkerPool<{ job: number }, Answer>, done: (all: Answer[]) => boolean, timeoutMs = 30_000): Promise<Answer[]> {
  const all: Answer[] = [];
  const deadline = Date.now() + timeoutMs;
  while (!done(all)) {
    if (Date.now() > deadline) throw new Error(`timed out with ${all.length} answers`);
    try {
      all.push(...(await (pool.replies as NonNullable<typeof pool.replies>).getManyAsync(256, { timeoutMs: 200 })));
    } catch (e) {
      if ((e as { code?: string }).code !== 'ERR_QUEUE_EMPTY') throw e;
    }
  }
  return all;
}

function keyed(from: number, to: number, keys: number): Array<Packet<{ job: number }>> {
  return Array.from({ length: to - from }, (_, i) => new Packet({ job: from + i }, { partitionKey: `k${(from + i) % keys}` }));
}

/** Per key, the jobs in the order their first answer arrived. */
function firstAnswerOrder(answers: Answer[]): Map<string, number[]> {
  const seen = new Set<number>();
  const byKey = new Map<string, number[]>();
  for (const a of answers) {
    if (seen.has(a.job)) continue;
    seen.add(a.job);
    byKey.set(a.key, [...(byKey.get(a.key) ?? []), a.job]);
  }
  return byKey;
}

function expectAscending(byKey: Map<string, number[]>): void {
  for (const [key, jobs] of byKey) expect(jobs, `order of key ${key}`).toEqual([...jobs].sort((a, b) => a - b));
}

describe('RedisWorkerPool arguments', () => {
  it('bad options, descriptors and calls are typed errors with stable codes', async () => {
    thrown(() => new RedisWorkerPool({ url: server.url, name: 'a{b}' }), Error, 'ERR_INVALID_ARG_VALUE');
    thrown(() => new RedisWorkerPool({ url: server.url, partitions: 0 }), Error, 'ERR_OUT_OF_RANGE');
    thrown(() => new RedisWorkerPool({ url: server.url, replies: 'yes' as never }), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => new RedisWorkerPool({ url: server.url, replies: { maxsize: -1 } }), Error, 'ERR_OUT_OF_RANGE');
    thrown(() => new RedisWorkerPool({ url: server.url, nope: 1 } as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => new RedisWorkerPool({ url: server.url, router: { strategy: 'hash' } }), Error, 'ERR_INVALID_ARG_VALUE');
    thrown(() => new RedisWorkerPool({ url: server.url, router: { maxRetries: -1 } }), Error, 'ERR_OUT_OF_RANGE');
    thrown(() => joinRedisPool('not json'), DescriptorError, 'ERR_INVALID_DESCRIPTOR');
    thrown(() => joinRedisPool({ type: 'other' } as never), DescriptorError, 'ERR_INVALID_DESCRIPTOR');
    thrown(() => joinRedisPool(42 as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    const pool = makePool();
    thrown(() => joinRedisPool(pool.descriptor, { bad: 1 } as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => joinRedisPool({ ...pool.descriptor, inbound: { ...pool.descriptor.inbound, queue_type: 'redis' } }), DescriptorError, 'ERR_INVALID_DESCRIPTOR');
    await rejected(pool.routeMany('x' as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    await rejected(pool.routeMany([{ job: 1 }] as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    await rejected(pool.ready({ workers: 0 }), Error, 'ERR_OUT_OF_RANGE');
    await rejected(pool.ready({ timeoutMs: 200 }), SageQueueError, 'ERR_POOL_NOT_READY');
    // Nothing was put by the failed calls.
    expect((await pool.queueStats()).length).toBe(0);
    await pool.close();
    await rejected(pool.route({ job: 1 }, 'k'), SageQueueError, 'ERR_POOL_CLOSED');
    await rejected(pool.ready(), SageQueueError, 'ERR_POOL_CLOSED');
    await pool.close(); // idempotent
  });

  it('with Redis gone: membership reads report error events; close() rejects ERR_REDIS_UNAVAILABLE, lets go of its connections and stays closed', async () => {
    const doomed = await RedisServer.start();
    const pool = new RedisWorkerPool({ url: doomed.url, name: `gone${process.pid}`, partitions: 2, unavailableTimeoutMs: 500, commandTimeoutMs: 500, watchMs: 50 });
    pools.push(pool);
    const errors: Error[] = [];
    pool.on('error', (e) => errors.push(e));
    expect((await pool.route({ job: 1 }, 'k')).ok).toBe(true);
    await doomed.stop();
    await until(() => errors.length > 0, 'the membership read failing, reported as error', 10_000, 20);
    expect(errors[0]).toBeInstanceOf(RedisBackendError);
    const started = Date.now();
    await rejected(pool.close({ timeoutMs: 200 }), RedisBackendError, 'ERR_REDIS_UNAVAILABLE');
    expect(Date.now() - started).toBeLessThan(10_000);
    await rejected(pool.route({ job: 2 }, 'k'), SageQueueError, 'ERR_POOL_CLOSED');
    await rejected(pool.close(), RedisBackendError, 'ERR_REDIS_UNAVAILABLE'); // the same outcome, not a second attempt
    await rejected(pool.queue.putAsync(new Packet({ job: 3 })), QueueReleasedError, 'ERR_QUEUE_RELEASED'); // its handles were released
  });

  it('the descriptor carries no password and names the inbound and reply queues', () => {
    const pool = makePool({ url: `redis://:s3cret@127.0.0.1:${new URL(server.url).port}` });
    const text = JSON.stringify(pool.descriptor);
    expect(text).not.toContain('s3cret');
    expect(pool.descriptor.inbound.queue_type).toBe('redis_partitioned');
    expect(pool.descriptor.replies?.queue_type).toBe('redis');
  });
});

describe('RedisWorkerPool with worker processes', () => {
  it('routes keyed jobs to workers that joined by descriptor: each answered once, per-key order kept across route() and routeMany(), events and stats', async () => {
    const pool = makePool();
    const ready: RedisPoolWorkerInfo[] = [];
    pool.on('worker-ready', (i) => ready.push(i));
    const a = worker(pool, { SAGEQ_MODE: 'batches' });
    const b = worker(pool);
    await pool.ready({ workers: 2, timeoutMs: 20_000 });
    expect(ready.map((r) => r.pid).sort()).toEqual([a.proc.pid, b.proc.pid].sort());
    const stats = pool.stats();
    expect(stats.workers).toHaveLength(2);
    expect(stats.unowned).toBe(0);
    expect(stats.workers.map((w) => w.partitions.length).sort()).toEqual([3, 3]);

    const report = await pool.routeMany(keyed(0, 600, 24));
    expect(report).toMatchObject({ packets: 600, delivered: 600, deadLettered: 0, failed: 0, ok: true });
    // route() and routeMany() calls of the same keys, not awaited one by one: per-key order holds across them.
    const mixed: Array<Promise<{ ok: boolean }>> = [];
    for (let i = 600; i < 650; i++) mixed.push(pool.route({ job: i }, `k${i % 24}`));
    mixed.push(pool.routeMany(keyed(650, 700, 24)));
    for (let i = 700; i < 750; i++) mixed.push(pool.route({ job: i }, `k${i % 24}`));
    expect((await Promise.all(mixed)).every((r) => r.ok)).toBe(true);
    const answers = await collect(pool, (all) => all.length >= 750);
    expect(answers).toHaveLength(750);
    expect(new Set(answers.map((x) => x.job)).size).toBe(750);
    expectAscending(firstAnswerOrder(answers));
    // Both workers answered (each holds partitions), and each key was answered by one worker.
    expect(new Set(answers.map((x) => x.worker)).size).toBe(2);
    const keyWorker = new Map<string, Set<string>>();
    for (const x of answers) keyWorker.set(x.key, (keyWorker.get(x.key) ?? new Set()).add(x.worker));
    for (const [key, set] of keyWorker) expect(set.size, `workers of ${key}`).toBe(1);
    expect(pool.stats()).toMatchObject({ routed: 100, batched: 650, joined: 2 });
    expect((await pool.queueStats()).length).toBe(0);
  });

  it.each([
    ['packets', 1],
    ['batches', 32],
  ] as const)('a worker SIGKILLed mid-job (%s): its jobs go to another worker before newer ones of their keys; only answered-but-unacked jobs repeat', async (mode, inHand) => {
    const pool = makePool();
    const exits: RedisPoolExitInfo[] = [];
    pool.on('worker-exit', (i) => exits.push(i));
    const victim = worker(pool, { SAGEQ_JOB_MS: '4', SAGEQ_MODE: mode });
    const other = worker(pool, { SAGEQ_JOB_MS: '4', SAGEQ_MODE: mode });
    await pool.ready({ workers: 2, timeoutMs: 20_000 });
    const victimConsumer = victim.messages.find((m) => m.type === 'ready')?.consumer as string;
    expect((await pool.routeMany(keyed(0, 600, 30))).ok).toBe(true);
    // Kill it while it is busy with its share (it has answered some, holds one, has more read ahead).
    await until(() => victim.messages.filter((m) => m.type === 'answered').length >= 20, 'the victim answering', 20_000, 20);
    victim.proc.kill('SIGKILL');
    await victim.exited;
    const answeredByVictim = new Set(victim.messages.filter((m) => m.type === 'answered').map((m) => m.job as number));
    const answers = await collect(pool, (all) => new Set(all.map((x) => x.job)).size >= 600, 40_000);
    // Every job answered; a job answered twice is one the victim answered and had not acked (a job
    // is acked when the loop asks for the next one, a batch when it asks for the next batch: at
    // most the job or the batch in hand, of up to 32).
    const count = new Map<number, number>();
    for (const x of answers) count.set(x.job, (count.get(x.job) ?? 0) + 1);
    expect(count.size).toBe(600);
    const repeated = [...count].filter(([, n]) => n > 1).map(([job]) => job);
    expect(repeated.length).toBeLessThanOrEqual(inHand);
    expect([...count.values()].every((n) => n <= 2)).toBe(true);
    // (From the answers themselves: the victim's IPC report of an answer can be cut by the kill.)
    for (const job of repeated) {
      const by = answers.filter((x) => x.job === job).map((x) => x.worker);
      expect(by.filter((w) => w === victimConsumer), `answers of job ${job}`).toHaveLength(1);
    }
    for (const job of answeredByVictim) expect(answers.some((x) => x.job === job && x.worker === victimConsumer)).toBe(true);
    expectAscending(firstAnswerOrder(answers));
    await until(() => exits.length > 0, 'the lost worker reported', 20_000, 20);
    expect(exits[0]).toMatchObject({ consumer: victimConsumer, reason: 'lost', pid: victim.proc.pid });
    await until(() => pool.stats().workers.length === 1 && pool.stats().unowned === 0, 'the survivor holding every partition', 20_000, 20);
    expect((await pool.queueStats()).length).toBe(0);
    expect(other.proc.exitCode).toBeNull();
  }, 60_000);

  it('a worker leaving (release) is reported as left; a worker joining later takes its share; close() drains and deletes the streams', async () => {
    const pool = makePool({ partitions: 4 });
    const exits: RedisPoolExitInfo[] = [];
    pool.on('worker-exit', (i) => exits.push(i));
    const leaver = worker(pool, { SAGEQ_RELEASE_AFTER: '50', SAGEQ_JOB_MS: '2' });
    await pool.ready({ workers: 1, timeoutMs: 20_000 });
    expect((await pool.routeMany(keyed(0, 300, 12))).ok).toBe(true);
    await until(() => leaver.messages.some((m) => m.type === 'done'), 'the leaver done', 20_000, 20);
    await until(() => exits.length === 1, 'the leaver reported', 20_000, 20);
    expect(exits[0]?.reason).toBe('left');
    const late = worker(pool, { SAGEQ_MODE: 'batches' });
    await pool.ready({ workers: 1, timeoutMs: 20_000 });
    const answers = await collect(pool, (all) => new Set(all.map((x) => x.job)).size >= 300);
    expect(new Set(answers.map((x) => x.job)).size).toBe(300);
    expect(answers.filter((x) => x.worker === leaver.messages[0]?.consumer)).toHaveLength(50);
    expectAscending(firstAnswerOrder(answers));
    const partitionsStreams = Array.from({ length: 4 }, (_, i) => pool.queue.streamOf(i));
    await pool.close({ timeoutMs: 10_000 });
    await late.exited; // its loop ended once the pool closed and drained
    expect(late.messages.some((m) => m.type === 'done')).toBe(true);
    const redis = new Redis(server.url);
    try {
      expect(await redis.exists(...partitionsStreams, `{${pool.name}:replies}`)).toBe(0);
    } finally {
      redis.disconnect();
    }
  });
});

describe('RedisWorkerPool metrics', () => {
  it('collectRedisPoolMetrics: live workers, unowned partitions, joins, exits by reason and routed packets by path, read at scrape time', async () => {
    const pool = makePool({ partitions: 4 });
    const registry = new Registry();
    thrown(() => collectRedisPoolMetrics(registry, [{}] as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    const collector = collectRedisPoolMetrics(registry, [pool as RedisWorkerPool]);
    try {
      thrown(() => collectRedisPoolMetrics(registry, []), SageQueueError, 'ERR_METRICS_REGISTERED');
      const scrape = async (): Promise<Map<string, number>> => parseProm(await registry.metrics());
      const p = { pool: pool.name };
      let m = await scrape();
      expect(m.get(series('sage_queue_redis_pool_workers', p))).toBe(0);
      expect(m.get(series('sage_queue_redis_pool_unowned_partitions', p))).toBe(4);
      const w = worker(pool, { SAGEQ_RELEASE_AFTER: '12' });
      await pool.ready({ workers: 1, timeoutMs: 20_000 });
      expect((await pool.routeMany(keyed(0, 10, 5))).ok).toBe(true);
      expect((await pool.route({ job: 10 }, 'k0')).ok).toBe(true);
      expect((await pool.route({ job: 11 }, 'k1')).ok).toBe(true);
      expect((await pool.route({ job: 12 }, 'k2')).ok).toBe(true); // the worker leaves when it gets this one (given back)
      m = await scrape();
      expect(m.get(series('sage_queue_redis_pool_workers', p))).toBe(1);
      expect(m.get(series('sage_queue_redis_pool_unowned_partitions', p))).toBe(0);
      expect(m.get(series('sage_queue_redis_pool_worker_joins_total', p))).toBe(1);
      expect(m.get(series('sage_queue_redis_pool_routed_total', { ...p, path: 'batch' }))).toBe(10);
      expect(m.get(series('sage_queue_redis_pool_routed_total', { ...p, path: 'route' }))).toBe(3);
      await collect(pool, (all) => all.length >= 12);
      await w.exited;
      await until(() => pool.stats().left === 1, 'the exit seen', 20_000, 20);
      m = await scrape();
      expect(m.get(series('sage_queue_redis_pool_worker_exits_total', { ...p, reason: 'left' }))).toBe(1);
      expect(m.get(series('sage_queue_redis_pool_worker_exits_total', { ...p, reason: 'lost' }))).toBe(0);
      expect(m.get(series('sage_queue_redis_pool_workers', p))).toBe(0);
      collector.remove([pool as RedisWorkerPool]);
      expect((await scrape()).get(series('sage_queue_redis_pool_workers', p))).toBeUndefined();
    } finally {
      collector.close();
    }
    expect(registry.getSingleMetric('sage_queue_redis_pool_workers')).toBeUndefined();
  });
});
