/**
 * RedisQueue, StatefulRouteStore, StatefulRouter and RedisWorkerPool on a real Redis Cluster (3
 * masters + 3 replicas on loopback, cluster-node-timeout 1000 ms) through the `redis+cluster://`
 * URL: round trips, a live slot migration (ASK, TRYAGAIN, MOVED) under traffic, a pool's workers
 * (processes) answering keyed jobs over partitions on several masters, and masters
 * SIGKILLed mid-stream with and without `waitReplicas` (WAIT). One cluster for the file,
 * stopped (and its directory removed) in afterAll; a watchdog stops it if this process dies.
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { InvalidArgumentValueError } from '../../lib/errors';
import { LocalQueue } from '../../lib/queue/local-queue';
import { Packet } from '../../lib/router/packet';
import { RedisBackendError } from '../../lib/redis/connection';
import { createRedisQueueDescriptor } from '../../lib/redis/descriptor';
import { RedisQueue } from '../../lib/redis/redis-queue';
import { RedisWorkerPool } from '../../lib/redis/redis-pool';
import { StatefulRouteStore } from '../../lib/redis/route-store';
import { StatefulRouter } from '../../lib/redis/stateful-router';
import { rejected, thrown } from '../support/expect-errors';
import { RedisCluster } from '../support/redis-cluster';
import type { ClusterNodeProcess } from '../support/redis-cluster';

let cluster: RedisCluster;
const opened: Array<{ release(): Promise<void> } | { close(): Promise<void> }> = [];

function track<T extends { release(): Promise<void> } | { close(): Promise<void> }>(x: T): T {
  opened.push(x);
  return x;
}

beforeAll(async () => {
  cluster = await RedisCluster.start({ masters: 3, nodeTimeoutMs: 1000 });
});

afterAll(async () => {
  for (const x of opened) await ('release' in x ? x.release() : x.close()).catch(() => undefined);
  await cluster?.stop();
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A stream tag whose slot's master has a running replica and is none of `avoid`. */
async function tagOnHealthyMaster(prefix: string, avoid: number[] = []): Promise<{ stream: string; slot: number; master: ClusterNodeProcess; replica: ClusterNodeProcess }> {
  for (let i = 0; i < 200; i++) {
    const stream = `{${prefix}${i}}`;
    const slot = await cluster.slotOf(stream);
    const { master, replica } = await cluster.ownerOf(slot);
    if (replica !== undefined && replica.running && !avoid.includes(master.port)) return { stream, slot, master, replica };
  }
  throw new Error('no healthy master found');
}

describe('the redis+cluster:// URL', () => {
  it('is validated with typed errors, needs a {hash tag} in the stream, and descriptors carry it without the password', () => {
    const bad = ['redis+cluster://', 'redis+cluster://h:99999', 'redis+cluster://h:1/3', 'redis+cluster://h:1?db=2', 'redis+cluster://h:1,,h:2'];
    for (const url of bad) thrown(() => new RedisQueue({ url, stream: '{a}' }), InvalidArgumentValueError, 'ERR_INVALID_ARG_VALUE');
    thrown(() => new RedisQueue({ url: cluster.url, stream: 'jobs' }), InvalidArgumentValueError, 'ERR_CROSSSLOT');
    thrown(() => new StatefulRouteStore({ url: 'redis+cluster://h:0', namespace: 'x' }), InvalidArgumentValueError, 'ERR_INVALID_ARG_VALUE');
    const withPassword = cluster.url.replace('redis+cluster://', 'redis+cluster://app:s3cret@');
    const desc = createRedisQueueDescriptor({ url: withPassword, stream: '{d}' });
    const json = JSON.stringify(desc.toJSON());
    expect(json).not.toContain('s3cret');
    expect(desc.metadata.url).toBe(cluster.url.replace('redis+cluster://', 'redis+cluster://app@'));
    const q = new RedisQueue({ url: 'redis+cluster://127.0.0.1:1,[::1]:2?password=p', stream: '{d}' });
    expect(q.url).toBe('redis+cluster://127.0.0.1:1,[::1]:2');
    expect(JSON.stringify(q.toDescriptor().toJSON())).not.toContain('password');
  });
});

describe('RedisQueue on Redis Cluster', () => {
  it('round trips in auto-ack mode, explicit ack deletes, close() wakes a reader blocked on the slot master', async () => {
    const q = track(new RedisQueue<{ n: number }>({ url: cluster.url, stream: '{rt}', blockSliceMs: 5000 }));
    await q.putAsync({ n: 0 });
    expect(await q.putManyAsync(Array.from({ length: 999 }, (_, i) => ({ n: i + 1 })))).toBe(999);
    const got: number[] = [];
    while (got.length < 1000) got.push(...(await q.getManyAsync(1000, { timeoutMs: 2000 })).map((x) => x.n));
    expect(got).toEqual(Array.from({ length: 1000 }, (_, i) => i));

    const w = track(new RedisQueue<string>({ url: cluster.url, stream: '{rt}x', ackMode: 'explicit' }));
    await w.putManyAsync(['a', 'b']);
    const ms = await w.getManyAsync(10, { timeoutMs: 2000 });
    expect(ms.map((m) => m.value)).toEqual(['a', 'b']);
    expect(await w.ackMany(ms)).toEqual([true, true]);
    expect((await w.stats()).length).toBe(0);

    // A blocked XREADGROUP lives on the master of the slot; close() from another handle finds it there.
    const reader = track(new RedisQueue<string>({ url: cluster.url, stream: '{rt}c', blockSliceMs: 10_000 }));
    const closer = track(new RedisQueue<string>({ url: cluster.url, stream: '{rt}c' }));
    const outcome = rejected(reader.getAsync({ timeoutMs: 8000 }), Error, 'ERR_QUEUE_CLOSED');
    await sleep(300);
    const t0 = Date.now();
    await closer.close();
    await outcome;
    expect(Date.now() - t0).toBeLessThan(3000);
  });

  it('follows ASK, TRYAGAIN and MOVED while the queue slot migrates under traffic: nothing lost, nothing duplicated (auto ack)', async () => {
    const { stream, slot, master } = await tagOnHealthyMaster('mig');
    const topo = await cluster.topology();
    const target = cluster.node((topo.find((x) => x.role === 'master' && !x.failed && x.port !== master.port) as { port: number }).port);
    const producer = track(new RedisQueue<number>({ url: cluster.url, stream, commandTimeoutMs: 10_000 }));
    const consumer = track(new RedisQueue<number>({ url: cluster.url, stream, blockSliceMs: 200, commandTimeoutMs: 10_000 }));
    let stop = false;
    let sent = 0;
    const received: number[] = [];
    const produce = (async () => {
      while (!stop) {
        const batch = Array.from({ length: 20 }, (_, i) => sent + i);
        await producer.putManyAsync(batch);
        sent += batch.length;
        await sleep(5);
      }
    })();
    const consume = (async () => {
      while (!stop || received.length < sent) {
        try {
          received.push(...(await consumer.getManyAsync(200, { timeoutMs: 300 })));
        } catch (e) {
          if ((e as { code?: string }).code !== 'ERR_QUEUE_EMPTY') throw e;
          if (stop && received.length >= sent) break;
        }
      }
    })();
    await sleep(200);
    const { keys } = await cluster.migrateSlot(slot, target, 150);
    expect(keys).toBeGreaterThanOrEqual(1);
    await sleep(300); // traffic after MOVED
    stop = true;
    await produce;
    await Promise.race([consume, sleep(10_000)]);
    expect((await cluster.ownerOf(slot)).master.port).toBe(target.port);
    expect(sent).toBeGreaterThan(40);
    expect(received.length).toBe(sent);
    expect([...received].sort((a, b) => a - b)).toEqual(Array.from({ length: sent }, (_, i) => i));
  });
});

describe('StatefulRouteStore and StatefulRouter on Redis Cluster', () => {
  it('link users spread over the masters, batch get, pod events, and routing by link', async () => {
    const store = track(new StatefulRouteStore({ url: cluster.url, namespace: 'rc' }));
    const other = track(new StatefulRouteStore({ url: cluster.url, namespace: 'rc' }));
    await store.setServiceState('pod-a', 'ready');
    await store.setServiceState('pod-b', 'ready');
    await store.reportLoad('pod-a', 0.9);
    await store.reportLoad('pod-b', 0.1);
    const uids = Array.from({ length: 40 }, (_, i) => `user-${i}`);
    const links = await Promise.all(uids.map((u) => store.linkLeastLoadedIfAbsent(u)));
    expect(links.every((l) => l?.pod === 'pod-b')).toBe(true);
    const owners = new Set<number>();
    for (const u of uids.slice(0, 12)) owners.add((await cluster.ownerOf(await cluster.slotOf(store.linkKey(u)))).master.port);
    expect(owners.size).toBeGreaterThan(1); // the users' keys really live on several masters
    const read = await other.getLinks(uids, { cache: false });
    expect(read.map((l) => l?.pod)).toEqual(uids.map(() => 'pod-b'));
    expect(await store.setLink('user-0', 'pod-a', { persistent: true })).toBe('pod-b');

    const router = new StatefulRouter({ store, name: 'rc', maxRetries: 1, retryBaseMs: 0 });
    const queues = new Map<string, LocalQueue<Packet>>();
    ['pod-a', 'pod-b'].forEach((pod, i) => {
      const q = new LocalQueue<Packet>();
      queues.set(pod, q);
      router.addConnection({ broadcastIndex: 0, parallelIndex: i, targetName: pod, targetHandle: q });
    });
    const reports = await Promise.all(uids.slice(0, 10).map((u) => router.route(new Packet(u, { partitionKey: u }))));
    expect(reports.every((r) => r.ok)).toBe(true);
    expect(queues.get('pod-a')?.qsize()).toBe(1); // user-0, persistently linked to pod-a
    expect(queues.get('pod-b')?.qsize()).toBe(9);
    // A pod leaving 'ready' is published (PUBLISH reaches every node): the other store drops its
    // links. (Its subscription starts with its first call and calls do not wait for it: wait here,
    // or under load the PUBLISH can come before the SUBSCRIBE and nothing is there to hear it.)
    await other.eventsReady();
    await store.setServiceState('pod-b', 'draining');
    const deadline = Date.now() + 3000;
    while (other.stats().invalidatedLinks === 0 && Date.now() < deadline) await sleep(20);
    expect(other.stats().invalidatedLinks).toBeGreaterThan(0);
  });
});

describe('RedisWorkerPool on Redis Cluster', () => {
  it('workers joining by descriptor answer keyed jobs routed into partitions spread over the masters, in per-key order; one SIGKILLed mid-stream: its jobs taken over, every job answered', async () => {
    const pool = track(new RedisWorkerPool<{ job: number }, { job: number; key: string; worker: string }>({
      url: cluster.url, name: 'rcpool', partitions: 6, replies: true, leaseMs: 2000,
    }));
    const masters = new Set<number>();
    for (let i = 0; i < 6; i++) masters.add((await cluster.ownerOf(await cluster.slotOf(pool.queue.streamOf(i)))).master.port);
    expect(masters.size).toBeGreaterThan(1);
    const workers: ChildProcess[] = [0, 1].map(() =>
      fork(join(__dirname, '..', 'fixtures', 'redis-pool-worker.cjs'), [], {
        env: { ...process.env, SAGE_REDIS_POOL: JSON.stringify(pool.descriptor), SAGEQ_JOB_MS: '3' },
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      }),
    );
    let victimAnswered = 0;
    let victim = '';
    (workers[0] as ChildProcess).on('message', (m: { type: string; consumer?: string }) => {
      if (m.type === 'ready') victim = m.consumer as string;
      if (m.type === 'answered') victimAnswered++;
    });
    track({ close: async () => void workers.forEach((w) => w.exitCode === null && w.kill('SIGKILL')) });
    await pool.ready({ workers: 2, timeoutMs: 30_000 });
    const packets = Array.from({ length: 300 }, (_, i) => new Packet({ job: i }, { partitionKey: `u${i % 15}` }));
    expect((await pool.routeMany(packets)).ok).toBe(true);
    const waitFor = Date.now() + 20_000;
    while (victimAnswered < 10 && Date.now() < waitFor) await sleep(10);
    (workers[0] as ChildProcess).kill('SIGKILL');
    const answers: Array<{ job: number; key: string; worker: string }> = [];
    const deadline = Date.now() + 40_000;
    while (new Set(answers.map((a) => a.job)).size < 300 && Date.now() < deadline) {
      answers.push(...(await (pool.replies as RedisQueue<{ job: number; key: string; worker: string }>).getManyAsync(300, { timeoutMs: 1000 }).catch(() => [])));
    }
    expect(new Set(answers.map((a) => a.job)).size).toBe(300);
    // A job answered twice: the killed worker answered it and did not live to ack it (packets(): at most one).
    const repeated = answers.filter((a, i) => answers.findIndex((b) => b.job === a.job) !== i);
    expect(repeated.length).toBeLessThanOrEqual(1);
    for (const r of repeated) expect(answers.filter((a) => a.job === r.job && a.worker === victim)).toHaveLength(1);
    // Per key, the first answers in job order (the dead worker's jobs were taken over before newer ones).
    const byKey = new Map<string, number[]>();
    const seen = new Set<number>();
    for (const a of answers) {
      if (seen.has(a.job)) continue;
      seen.add(a.job);
      byKey.set(a.key, [...(byKey.get(a.key) ?? []), a.job]);
    }
    for (const [, jobs] of byKey) expect(jobs).toEqual([...jobs].sort((x, y) => x - y));
    expect(new Set(answers.map((a) => a.worker)).size).toBe(2);
    await pool.close({ timeoutMs: 15_000 });
    await Promise.all(workers.map((w) => new Promise((r) => (w.exitCode !== null || w.signalCode !== null ? r(undefined) : w.once('exit', r)))));
  }, 90_000);
});

describe('RedisQueue when a master is SIGKILLed', () => {
  it('waitReplicas: a put no replica confirmed rejects ERR_REDIS_NOT_REPLICATED (replica stopped); every acknowledged put survives the master kill', async () => {
    const { stream, slot, master, replica } = await tagOnHealthyMaster('kw');
    const opts = { url: cluster.url, stream, commandTimeoutMs: 15_000, unavailableTimeoutMs: 20_000, waitReplicas: { replicas: 1, timeoutMs: 300 } };
    const producer = track(new RedisQueue<number>(opts));
    const consumer = track(new RedisQueue<number>({ ...opts, ackMode: 'explicit', claimIdleMs: 500, blockSliceMs: 200 }));

    // Deterministic: a stopped replica acknowledges nothing, so WAIT times out. The put was
    // applied on the master (written 1) but is reported unconfirmed.
    process.kill(replica.child?.pid as number, 'SIGSTOP');
    try {
      const e = await rejected(producer.putAsync(-1), RedisBackendError, 'ERR_REDIS_NOT_REPLICATED');
      expect(e.replicas).toBe(0);
      expect((e as unknown as { written: number }).written).toBe(1);
    } finally {
      process.kill(replica.child?.pid as number, 'SIGCONT');
    }

    const acknowledged = new Set<number>([-1]); // -1 is in the stream (it replicates once the replica runs)
    const received = new Map<number, number>();
    let stop = false;
    let next = 0;
    let notReplicated = 0;
    const produce = (async () => {
      while (!stop) {
        const batch = Array.from({ length: 10 }, (_, i) => next + i);
        next += batch.length;
        try {
          await producer.putManyAsync(batch);
          for (const v of batch) acknowledged.add(v);
        } catch (e) {
          if (!(e instanceof RedisBackendError)) throw e;
          if (e.code === 'ERR_REDIS_NOT_REPLICATED') notReplicated++;
          await sleep(50);
        }
        await sleep(5);
      }
    })();
    const consume = (async () => {
      for (;;) {
        if (stop && [...acknowledged].every((v) => received.has(v))) break;
        try {
          const ms = await consumer.getManyAsync(100, { timeoutMs: 300 });
          for (const m of ms) received.set(m.value, (received.get(m.value) ?? 0) + 1);
          await consumer.ackMany(ms).catch(() => undefined); // a lost ack means a redelivery, allowed
        } catch (e) {
          const code = (e as { code?: string }).code;
          if (code !== 'ERR_QUEUE_EMPTY' && !(e instanceof RedisBackendError)) throw e;
        }
      }
    })();
    await sleep(300);
    await cluster.kill9(master);
    const promoted = await cluster.waitForFailover(slot, master.port);
    expect(promoted.port).toBe(replica.port);
    await sleep(300); // the new master has no replica yet: WAIT cannot be satisfied
    await cluster.restart(master); // the old master comes back as the new one's replica
    const before = acknowledged.size;
    const until = Date.now() + 5000;
    while (acknowledged.size < before + 30 && Date.now() < until) await sleep(50);
    stop = true;
    await produce;
    await Promise.race([consume, sleep(10_000)]);
    expect(acknowledged.size).toBeGreaterThan(before); // puts are confirmed again once a replica synced
    const missing = [...acknowledged].filter((v) => !received.has(v));
    expect(missing).toEqual([]);
    const duplicates = [...received.values()].filter((n) => n > 1).length;
    console.log(`waitReplicas kill: ${acknowledged.size} acknowledged puts, all received; ${notReplicated} put calls unconfirmed; ${duplicates} redelivered`);
  });

  it('without waitReplicas the queue keeps working after the failover; nothing is received that was not put', async () => {
    const { stream, slot, master, replica } = await tagOnHealthyMaster('kn');
    const opts = { url: cluster.url, stream, commandTimeoutMs: 15_000, unavailableTimeoutMs: 20_000 };
    const producer = track(new RedisQueue<number>(opts));
    const consumer = track(new RedisQueue<number>({ ...opts, blockSliceMs: 200, claimIdleMs: 500 }));
    const acknowledged: number[] = [];
    const received: number[] = [];
    let stop = false;
    let next = 0;
    const produce = (async () => {
      while (!stop) {
        const batch = Array.from({ length: 10 }, (_, i) => next + i);
        next += batch.length;
        await producer.putManyAsync(batch).then(() => acknowledged.push(...batch), (e: unknown) => {
          if (!(e instanceof RedisBackendError)) throw e;
        });
        await sleep(5);
      }
    })();
    const consume = (async () => {
      while (!stop || received.length < acknowledged.length) {
        try {
          received.push(...(await consumer.getManyAsync(100, { timeoutMs: 300 })));
        } catch (e) {
          const code = (e as { code?: string }).code;
          if (code === 'ERR_QUEUE_EMPTY' && stop) break;
          if (code !== 'ERR_QUEUE_EMPTY' && !(e instanceof RedisBackendError)) throw e;
        }
      }
    })();
    await sleep(300);
    await cluster.kill9(master);
    const promoted = await cluster.waitForFailover(slot, master.port);
    expect(promoted.port).toBe(replica.port);
    const afterFailover = acknowledged.length;
    const until = Date.now() + 5000;
    while (acknowledged.length < afterFailover + 50 && Date.now() < until) await sleep(50);
    stop = true;
    await produce;
    await Promise.race([consume, sleep(5000)]);
    // The queue works on the promoted master: what was put after the failover is received.
    expect(acknowledged.length).toBeGreaterThanOrEqual(afterFailover + 50);
    const got = new Set(received);
    expect(acknowledged.slice(afterFailover).filter((v) => !got.has(v))).toEqual([]);
    expect(received.every((v) => v >= 0 && v < next)).toBe(true);
    const lost = acknowledged.filter((v) => !got.has(v)).length;
    const duplicates = received.length - got.size;
    console.log(`no-WAIT kill: ${acknowledged.length} acknowledged puts, ${lost} lost (acknowledged before replicating), ${duplicates} duplicates`);
    await cluster.restart(master);
  });
});
