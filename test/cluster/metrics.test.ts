/**
 * collectMetrics() scraped from a real prom-client registry after real traffic: a SageQueue with
 * puts and gets, a router with a healthy and a full target (retries, an ejection, dead letters,
 * decisions, route latency), and a WorkerPool with real forked workers, one of them SIGKILLed and
 * replaced (exits, restarts). Every asserted series has the value the traffic implies.
 */
import { readdirSync } from 'node:fs';
import * as path from 'node:path';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';

import { BaseRouter, LocalQueue, Packet, SageQueue, WorkerPool, collectMetrics } from '../../lib/index';
import type { MetricsCollector } from '../../lib/index';
import { parseProm, series } from '../support/prom-text';

const prefix = `ct-${process.pid}-`;
let counter = 0;
const uniq = (tag: string): string => `${prefix}${tag}-${++counter}`;

const queues: SageQueue[] = [];
const pools: WorkerPool[] = [];
const collectors: MetricsCollector[] = [];

afterEach(async () => {
  for (const c of collectors.splice(0)) c.close();
  for (const p of pools.splice(0)) await p.close({ timeoutMs: 2000 });
  for (const q of queues.splice(0)) q.destroy();
  for (const f of readdirSync('/dev/shm')) if (f.startsWith(`sageq.${prefix}`)) SageQueue.destroy(f.slice('sageq.'.length));
});

function create(name: string, options?: Parameters<typeof SageQueue.create>[1]): SageQueue {
  const q = SageQueue.create(name, options);
  queues.push(q);
  return q;
}

async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('collectMetrics', () => {
  it('queue families: depth, enqueued, dequeued, waits, wakes, recovery counters, processes, liveness of a SageQueue after real traffic', async () => {
    const registry = new Registry();
    const name = uniq('mq');
    const q = create(name, { capacity: 1 << 16 });
    collectors.push(collectMetrics(registry, { queues: [q] }));
    for (let i = 0; i < 5; i++) q.put({ i });
    q.get();
    q.get();
    // a consumer that waits, then is woken by a put: one futex sleep, one wake
    q.setSpinUs(0);
    q.getMany(10);
    const waiting = q.getAsync({ timeoutMs: 5000 });
    await until('the consumer to sleep', () => q.stats().dataWaiters === 1);
    q.put('wake');
    expect(await waiting).toBe('wake');
    const m = parseProm(await registry.metrics());
    const s = q.stats();
    const l = { queue: name };
    expect(m.get(series('sage_queue_depth', l))).toBe(0);
    expect(m.get(series('sage_queue_enqueued_total', l))).toBe(6);
    expect(m.get(series('sage_queue_dequeued_total', l))).toBe(6);
    expect(m.get(series('sage_queue_waits_total', l))).toBe(s.waits);
    expect(s.waits).toBeGreaterThanOrEqual(1);
    expect(m.get(series('sage_queue_wakes_total', l))).toBe(s.wakeCalls);
    expect(s.wakeCalls).toBeGreaterThanOrEqual(1);
    expect(m.get(series('sage_queue_abandoned_claims_total', l))).toBe(0);
    expect(m.get(series('sage_queue_lost_in_read_total', l))).toBe(0);
    expect(m.get(series('sage_queue_capacity_bytes', l))).toBe(1 << 16);
    expect(m.get(series('sage_queue_processes', { ...l, state: 'alive' }))).toBe(1);
    expect(m.get(series('sage_queue_processes', { ...l, state: 'dead' }))).toBe(0);
    expect(m.get(series('sage_queue_liveness', { ...l, state: 'alive' }))).toBe(1);
    expect(m.get(series('sage_queue_waiters', { ...l, kind: 'data' }))).toBe(0);
    expect(m.get(series('sage_queue_closed', l))).toBe(0);
    // values are read at scrape time
    q.put(1);
    q.put(2);
    const again = parseProm(await registry.metrics());
    expect(again.get(series('sage_queue_depth', l))).toBe(2);
    expect(again.get(series('sage_queue_enqueued_total', l))).toBe(8);
  });

  it('router families: decisions, retries, ejections, dead letters, copies by outcome, target health and a microsecond-resolving latency histogram', async () => {
    const registry = new Registry();
    const dlq = new LocalQueue();
    const router = new BaseRouter({ name: 'm-router', strategy: 'round_robin', maxRetries: 1, retryBaseMs: 1, sendTimeoutMs: 0, ejectAfterFailures: 2, ejectBaseMs: 60_000, deadLetterQueue: dlq });
    const good = create(uniq('good'), { capacity: 1 << 16 });
    const full = create(uniq('full'), { capacity: 1 << 16, maxsize: 1 });
    full.put('filler');
    router.addConnection({ broadcastIndex: 0, parallelIndex: 0, targetName: 'full', targetHandle: full });
    router.addConnection({ broadcastIndex: 0, parallelIndex: 1, targetName: 'good', targetHandle: good });
    collectors.push(collectMetrics(registry, { routers: [router] }));
    const reports = [];
    for (let i = 0; i < 10; i++) reports.push(await router.route(new Packet({ i }, { partitionStrategy: i === 9 ? 'broadcast' : null })));
    const stats = router.stats();
    const m = parseProm(await registry.metrics());
    const r = { router: 'm-router' };
    expect(stats.retried).toBeGreaterThanOrEqual(2);
    expect(m.get(series('sage_queue_router_routed_total', r))).toBe(10);
    expect(m.get(series('sage_queue_router_decisions_total', { ...r, strategy: 'round_robin' }))).toBe(9);
    expect(m.get(series('sage_queue_router_decisions_total', { ...r, strategy: 'broadcast' }))).toBe(1);
    expect(m.get(series('sage_queue_router_decisions_total', { ...r, strategy: 'hash' }))).toBe(0);
    expect(m.get(series('sage_queue_router_retries_total', r))).toBe(stats.retried);
    expect(m.get(series('sage_queue_router_attempts_total', r))).toBe(stats.attempts);
    expect(m.get(series('sage_queue_router_sent_total', r))).toBe(11); // 9 + 2 broadcast copies
    expect(m.get(series('sage_queue_router_delivered_total', r))).toBe(stats.delivered);
    // the broadcast copy to the ejected full target is dead-lettered
    expect(stats.deadLettered).toBe(1);
    expect(m.get(series('sage_queue_router_dead_letters_total', r))).toBe(1);
    expect(dlq.qsize()).toBe(1);
    expect(m.get(series('sage_queue_router_failed_total', r))).toBe(0);
    expect(m.get(series('sage_queue_router_ejections_total', { ...r, target: 'full' }))).toBe(1);
    expect(m.get(series('sage_queue_router_ejections_total', { ...r, target: 'good' }))).toBe(0);
    expect(m.get(series('sage_queue_router_targets', { ...r, state: 'ejected' }))).toBe(1);
    expect(m.get(series('sage_queue_router_targets', { ...r, state: 'healthy' }))).toBe(1);
    // latency: one observation per route(), by outcome; buckets from 5 µs
    const okCount = reports.filter((x) => x.ok).length;
    expect(okCount).toBe(9);
    const h = { ...r, ok: 'true' };
    expect(m.get(series('sage_queue_router_route_latency_seconds_count', h))).toBe(9);
    expect(m.get(series('sage_queue_router_route_latency_seconds_count', { ...r, ok: 'false' }))).toBe(1);
    expect(m.get(series('sage_queue_router_route_latency_seconds_bucket', { ...h, le: '+Inf' }))).toBe(9);
    expect(m.has(series('sage_queue_router_route_latency_seconds_bucket', { ...h, le: '0.000005' }))).toBe(true);
    expect(m.has(series('sage_queue_router_route_latency_seconds_bucket', { ...h, le: '0.00005' }))).toBe(true);
    expect(m.get(series('sage_queue_router_route_latency_seconds_sum', h))).toBeGreaterThan(0);
  });

  it('pool families: workers by state, exits and restarts after a SIGKILLed worker is replaced; the pool brings its router and queues', async () => {
    const registry = new Registry();
    const pool = new WorkerPool({ script: path.join(__dirname, '..', 'fixtures', 'pool-worker.cjs'), workers: 2, replies: true, name: uniq('mpool'), queue: { capacity: 1 << 16 }, execArgv: [] });
    pools.push(pool);
    collectors.push(collectMetrics(registry, { pools: [pool] }));
    await pool.ready({ timeoutMs: 15_000 });
    for (let i = 0; i < 6; i++) expect((await pool.route({ seq: i, body: `packet-${i}-${'z'.repeat(i % 97)}` }, `k${i}`)).ok).toBe(true);
    for (let i = 0; i < 6; i++) await pool.replies?.getAsync({ timeoutMs: 10_000 });
    const victim = pool.pids[0] as number;
    const replaced = new Promise((resolve) => pool.once('worker-replaced', resolve));
    process.kill(victim, 'SIGKILL');
    await replaced;
    const m = parseProm(await registry.metrics());
    const p = { pool: pool.name };
    expect(m.get(series('sage_queue_pool_workers', { ...p, state: 'ready' }))).toBe(2);
    expect(m.get(series('sage_queue_pool_workers', { ...p, state: 'gave-up' }))).toBe(0);
    expect(m.get(series('sage_queue_pool_worker_exits_total', p))).toBe(1);
    expect(m.get(series('sage_queue_pool_worker_restarts_total', p))).toBe(1);
    expect(m.get(series('sage_queue_pool_crash_loops_total', p))).toBe(0);
    expect(m.get(series('sage_queue_router_routed_total', { router: pool.name }))).toBe(6);
    expect(m.get(series('sage_queue_router_route_latency_seconds_count', { router: pool.name, ok: 'true' }))).toBe(6);
    const inbound = pool.queues.map((q) => m.get(series('sage_queue_enqueued_total', { queue: q.name })) ?? NaN);
    expect(inbound.reduce((a, b) => a + b, 0)).toBe(6);
    expect(m.get(series('sage_queue_enqueued_total', { queue: `${pool.name}.replies` }))).toBe(6);
  });

  it("queues: 'host' reports every queue of the machine, ours included, without attaching to them", async () => {
    const registry = new Registry();
    const name = uniq('host');
    const q = create(name, { capacity: 1 << 16 });
    q.put('a');
    collectors.push(collectMetrics(registry, { queues: 'host' }));
    const m = parseProm(await registry.metrics());
    expect(m.get(series('sage_queue_depth', { queue: name }))).toBe(1);
    expect(q.stats().processes.map((p) => p.pid)).toEqual([process.pid]);
  });

  it('a second collectMetrics() into the same registry is ERR_METRICS_REGISTERED; close() removes every family; bad arguments are typed errors', async () => {
    const registry = new Registry();
    const c = collectMetrics(registry);
    expect(() => collectMetrics(registry)).toThrow(expect.objectContaining({ code: 'ERR_METRICS_REGISTERED' }));
    expect((await registry.getMetricsAsJSON()).map((x) => x.name)).toContain('sage_queue_router_route_latency_seconds');
    c.close();
    expect(await registry.getMetricsAsJSON()).toEqual([]);
    collectors.push(collectMetrics(registry)); // registrable again after close()
    expect(() => collectMetrics({} as Registry)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => collectMetrics(new Registry(), { queues: 'all' as never })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => collectMetrics(new Registry(), { routers: [{}] as never })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => collectMetrics(new Registry(), { queue: [] } as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
  });
});
