/**
 * RedisWorkerPool: a primary restarted with the same pool name. The first primary runs in a child
 * process (test/fixtures/redis-pool-restart-primary.cjs) with two worker processes
 * (test/fixtures/redis-pool-worker.cjs) forked from its descriptor; it routes jobs, reads a few
 * answers and is SIGKILLed while jobs are still unanswered. A new RedisWorkerPool with the same
 * name and Redis, opened here, must continue from the state in Redis — including the answers the
 * dead primary had read ahead from the reply queue (auto ack) and not handed out: pending for its
 * consumer, claimed by the new primary when it opens (RedisWorkerPool's constructor).
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { Packet } from '../../lib/router/packet';
import { RedisWorkerPool } from '../../lib/redis/redis-pool';
import type { RedisPoolExitInfo } from '../../lib/redis/pool-members';
import { until } from '../helpers/harness';
import { RedisServer, killAtExit } from '../support/redis-server';

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

interface ChildMessage {
  type: string;
  json?: string;
  answer?: Answer;
  consumer?: string;
  job?: number;
  partition?: number;
  owned?: boolean;
  message?: string;
}

interface Child {
  proc: ChildProcess;
  messages: ChildMessage[];
  exited: Promise<void>;
}

function spawn(fixture: string, env: Record<string, string>): Child {
  const proc = fork(join(__dirname, '..', 'fixtures', fixture), [], { env: { ...process.env, ...env }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.push(proc);
  killAtExit(proc);
  const messages: ChildMessage[] = [];
  proc.on('message', (m: ChildMessage) => messages.push(m));
  const exited = new Promise<void>((resolve) => proc.on('exit', () => resolve()));
  return { proc, messages, exited };
}

function failed(all: Child[]): string | undefined {
  for (const c of all) {
    const e = c.messages.find((m) => m.type === 'error');
    if (e !== undefined) return e.message;
  }
  return undefined;
}

/** until(), but a child's error report fails at once. */
async function waitFor(what: string, cond: () => boolean, watch: Child[], timeoutMs = 20_000): Promise<void> {
  await until(() => {
    const err = failed(watch);
    if (err !== undefined) throw new Error(`a child process failed: ${err}`);
    return cond();
  }, what, timeoutMs, 20);
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

/** Reads answers from the pool's reply queue until `done` says so; a child's error report fails at once. */
async function collect(pool: RedisWorkerPool<{ job: number }, Answer>, done: (got: Answer[]) => boolean, watch: Child[], timeoutMs: number, what: (got: Answer[]) => string): Promise<Answer[]> {
  const got: Answer[] = [];
  const replies = pool.replies as NonNullable<typeof pool.replies>;
  const deadline = Date.now() + timeoutMs;
  while (!done(got)) {
    const err = failed(watch);
    if (err !== undefined) throw new Error(`a child process failed: ${err}`);
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${what(got)}`);
    try {
      got.push(...(await replies.getManyAsync(256, { timeoutMs: 200 })));
    } catch (e) {
      if ((e as { code?: string }).code !== 'ERR_QUEUE_EMPTY') throw e;
    }
  }
  return got;
}

/** Entries of the pool's reply stream pending for some reader (XPENDING summary). */
async function replyPending(name: string): Promise<number> {
  const redis = new Redis(server.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    const summary = (await redis.xpending(`{${name}:replies}`, 'sage')) as [number, ...unknown[]];
    return summary[0];
  } finally {
    redis.disconnect();
  }
}

const JOBS = 200;
const READ_BY_FIRST = 20;

describe('RedisWorkerPool primary restarted with the same name', () => {
  it('after the first primary is SIGKILLed holding read-ahead replies, a new one with the same name: it reports the live workers as worker-ready, they keep serving (no worker lost or left), every job routed before the crash and not read by the dead primary has its answer read by the new one within 20 s (the read-ahead claimed at start, not after the reply queue\'s claimIdleMs of 30 s), new jobs route and are answered by the same workers, per-key order of first answers', async () => {
    const name = `rr${process.pid}-${++counter}`;
    const first = spawn('redis-pool-restart-primary.cjs', { SAGEQ_URL: server.url, SAGEQ_POOL_NAME: name, SAGEQ_JOBS: String(JOBS), SAGEQ_READ: String(READ_BY_FIRST), SAGEQ_WORKERS: '2', SAGEQ_READ_DELAY_MS: '500' });
    await waitFor('the first primary\'s descriptor', () => first.messages.some((m) => m.type === 'descriptor'), [first]);
    const descriptor = first.messages.find((m) => m.type === 'descriptor')?.json as string;
    // Jobs take 20 ms each, so most are still unanswered when the primary dies.
    const workers = [0, 1].map(() => spawn('redis-pool-worker.cjs', { SAGE_REDIS_POOL: descriptor, SAGEQ_JOB_MS: '20' }));
    const all = [first, ...workers];
    await waitFor('the first primary to read its answers', () => first.messages.some((m) => m.type === 'holding'), all);
    first.proc.kill('SIGKILL');
    await first.exited;
    // It died with answers read ahead (auto ack) and not handed out: pending for its consumer.
    const pendingAtKill = await replyPending(name);
    expect(pendingAtKill).toBeGreaterThan(0);
    const answeredAtKill = workers.reduce((n, w) => n + w.messages.filter((m) => m.type === 'answered').length, 0);
    expect(answeredAtKill).toBeLessThan(JOBS); // some routed jobs were not answered yet
    const readByFirst = first.messages.filter((m) => m.type === 'reply').map((m) => m.answer as Answer);
    expect(readByFirst).toHaveLength(READ_BY_FIRST);
    const consumers = new Set(workers.map((w) => w.messages.find((m) => m.type === 'ready')?.consumer as string));
    expect(consumers.size).toBe(2);

    const pool = new RedisWorkerPool<{ job: number }, Answer>({ url: server.url, name, partitions: 6, replies: true, leaseMs: 1500, claimIdleMs: 60_000, watchMs: 50 });
    pools.push(pool as RedisWorkerPool);
    const exits: RedisPoolExitInfo[] = [];
    pool.on('worker-exit', (info) => exits.push(info));
    const readyEvents: string[] = [];
    pool.on('worker-ready', (info) => readyEvents.push(info.consumer));
    await pool.ready({ workers: 2, timeoutMs: 20_000 });
    expect(new Set(pool.stats().workers.map((w) => w.consumer))).toEqual(consumers);
    expect(new Set(readyEvents)).toEqual(consumers); // the new primary reports the workers it found as joined

    // Every job routed before the crash and not read by the first primary: its answer is on the reply queue.
    const readFirst = new Set(readByFirst.map((a) => a.job));
    const unread = (got: Answer[]): number[] => {
      const have = new Set([...readFirst, ...got.map((a) => a.job)]);
      return Array.from({ length: JOBS }, (_, j) => j).filter((j) => !have.has(j));
    };
    const before = await collect(pool, (got) => unread(got).length === 0, workers, 20_000, (got) => `jobs routed before the crash still unanswered: ${unread(got).join(',')}`);
    expect(before.every((a) => consumers.has(a.worker))).toBe(true);
    // (Within 20 s: the reply queue's claimIdleMs is 30 s, so XAUTOCLAIM did not bring the dead primary's read-ahead back.)
    expect(await replyPending(name)).toBe(0);

    // New jobs route and are answered, by the workers that stayed alive, in per-key order.
    const report = await pool.routeMany(Array.from({ length: 60 }, (_, i) => new Packet({ job: JOBS + i }, { partitionKey: `k${(JOBS + i) % 10}` })));
    expect(report.ok).toBe(true);
    const after = await collect(pool, (got) => new Set(got.filter((a) => a.job >= JOBS).map((a) => a.job)).size === 60, workers, 20_000, (got) => `${got.length} answers to the new jobs`);
    expect(after.filter((a) => a.job >= JOBS).every((a) => consumers.has(a.worker))).toBe(true);
    for (const [key, jobs] of firstAnswerOrder([...readByFirst, ...before, ...after])) expect(jobs, `order of key ${key}`).toEqual([...jobs].sort((a, b) => a - b));
    expect(exits).toEqual([]); // no worker was lost or left
    expect(workers.every((w) => w.proc.exitCode === null && w.proc.signalCode === null)).toBe(true);
  }, 60_000);
});
