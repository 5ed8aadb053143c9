/**
 * collectMetrics(): every sage-queue metric family in a prom-client registry, for the queues,
 * routers and worker pools given (a pool brings its router, its queues and its reply queue).
 * Queue families: lib/queue/metrics.ts; router families: lib/router/metrics.ts; pool families
 * here. Everything is read at scrape time, except route latency (the routers' 'route' events).
 */
import type { Counter, Gauge, Registry } from 'prom-client';

import { InvalidArgumentTypeError } from '../errors';
import { checkRegistry, checkUnregistered, hostQueueSamples, perScrape, promClient, registerQueueMetrics, sampleOf } from '../queue/metrics';
import type { QueueSample } from '../queue/metrics';
import type { SageQueueStats } from '../queue/sage-queue';
import { SageQueue } from '../queue/sage-queue';
import { BaseRouter } from '../router/base-router';
import { registerRouterMetrics } from '../router/metrics';
import { checkKnownKeys, checkOptions } from '../validate';
import type { WorkerPoolStats } from './pool-events';
import { WorkerPool } from './worker-pool';

export const POOL_METRIC_PREFIX = 'sage_queue_pool_';

/** What the metrics read from a queue handle. */
export interface MetricsQueue {
  readonly name: string;
  stats(): SageQueueStats;
}

/** What the metrics read from a WorkerPool (of any payload types). */
export interface MetricsPool {
  readonly router: BaseRouter;
  readonly queues: readonly MetricsQueue[];
  readonly replies: MetricsQueue | null;
  stats(): WorkerPoolStats;
}

/** What collectMetrics() follows. */
export interface MetricsSources {
  /** SageQueue handles, or 'host': every queue on this machine, read without attaching. */
  queues?: readonly SageQueue[] | 'host';
  routers?: readonly BaseRouter[];
  /** Worker pools: their workers, exits and restarts, and their router and queues. */
  pools?: readonly MetricsPool[];
}

/** The handle collectMetrics() returns. */
export interface MetricsCollector {
  /** Follows more queues, routers and pools (`queues: 'host'` switches to every queue of the machine). */
  add(sources: MetricsSources): void;
  /** Stops following them. */
  remove(sources: MetricsSources): void;
  /** Removes every family from the registry and every listener this collector added. */
  close(): void;
}

function checkSources(value: unknown): MetricsSources {
  const o = checkOptions<MetricsSources>(value, 'sources');
  checkKnownKeys(o, ['queues', 'routers', 'pools'], 'sources');
  if (o.queues !== undefined && o.queues !== 'host' && !(Array.isArray(o.queues) && o.queues.every((q) => q instanceof SageQueue))) {
    throw new InvalidArgumentTypeError('sources.queues', "an array of SageQueues or 'host'", o.queues);
  }
  if (o.routers !== undefined && !(Array.isArray(o.routers) && o.routers.every((r) => r instanceof BaseRouter))) {
    throw new InvalidArgumentTypeError('sources.routers', 'an array of BaseRouters', o.routers);
  }
  if (o.pools !== undefined && !(Array.isArray(o.pools) && o.pools.every((p) => p instanceof WorkerPool))) {
    throw new InvalidArgumentTypeError('sources.pools', 'an array of WorkerPools', o.pools);
  }
  return o;
}

function registerPoolMetrics(registry: Registry, pools: () => Iterable<MetricsPool>): () => void {
  const { Counter, Gauge } = promClient();
  const p = POOL_METRIC_PREFIX;
  checkUnregistered(registry, `${p}workers`);
  const snapshot = perScrape((): WorkerPoolStats[] => [...pools()].map((x) => x.stats()));
  const names = [`${p}workers`, `${p}worker_exits_total`, `${p}worker_restarts_total`, `${p}crash_loops_total`];
  new Gauge({
    name: names[0] as string, help: 'Worker slots by state: starting, ready, restarting, gave-up (crash loop), exited.', labelNames: ['pool', 'state'], registers: [registry],
    collect(this: Gauge) {
      this.reset();
      for (const s of snapshot.fresh()) {
        for (const state of ['starting', 'ready', 'restarting', 'gave-up', 'exited'] as const) {
          this.set({ pool: s.name, state }, s.slots.filter((slot) => slot.state === state).length);
        }
      }
    },
  });
  const counter = (name: string, help: string, key: 'exits' | 'restarts' | 'crashLoops'): void => {
    new Counter({
      name, help, labelNames: ['pool'], registers: [registry],
      collect(this: Counter) {
        this.reset();
        for (const s of snapshot.shared()) this.inc({ pool: s.name }, s[key]);
      },
    });
  };
  counter(names[1] as string, 'Workers that exited while the pool ran (close() excluded).', 'exits');
  counter(names[2] as string, 'Replacement workers started.', 'restarts');
  counter(names[3] as string, 'Worker slots given up after a crash loop.', 'crashLoops');
  return () => {
    for (const n of names) registry.removeSingleMetric(n);
  };
}

/**
 * Registers every sage-queue metric family in `registry` (a prom-client Registry, e.g.
 * `register` or `new Registry()`) and follows `sources`. Scrape as usual (`registry.metrics()`).
 * Collecting twice into one registry is ERR_METRICS_REGISTERED: use the collector's add().
 * Metric names and labels: docs/api.md, "Metrics".
 */
export function collectMetrics(registry: Registry, sources?: MetricsSources): MetricsCollector {
  checkRegistry(registry);
  const initial = checkSources(sources);
  let host = false;
  const queues = new Set<SageQueue>();
  const pools = new Set<MetricsPool>();
  const ownRouters = new Set<BaseRouter>();
  const samples = (): QueueSample[] => {
    const out = host ? hostQueueSamples() : [];
    const seen = new Set(out.map((s) => s.name));
    const handles = [...queues, ...[...pools].flatMap((p) => [...p.queues, ...(p.replies ? [p.replies] : [])])];
    for (const q of handles) {
      if (seen.has(q.name)) continue;
      try {
        out.push(sampleOf(q.stats()));
        seen.add(q.name);
      } catch {
        // released or destroyed since: nothing to report
      }
    }
    return out;
  };
  const removeQueues = registerQueueMetrics(registry, samples);
  let routerMetrics: ReturnType<typeof registerRouterMetrics>;
  let removePools: () => void;
  try {
    routerMetrics = registerRouterMetrics(registry);
    removePools = registerPoolMetrics(registry, () => pools);
  } catch (e) {
    removeQueues();
    throw e;
  }
  const collector: MetricsCollector = {
    add(more) {
      const s = checkSources(more);
      if (s.queues === 'host') host = true;
      else for (const q of s.queues ?? []) queues.add(q);
      for (const r of s.routers ?? []) ownRouters.add(r);
      routerMetrics.add(s.routers ?? []);
      for (const p of s.pools ?? []) {
        pools.add(p);
        routerMetrics.add([p.router]);
      }
    },
    remove(less) {
      const s = checkSources(less);
      if (s.queues === 'host') host = false;
      else for (const q of s.queues ?? []) queues.delete(q);
      for (const r of s.routers ?? []) ownRouters.delete(r);
      routerMetrics.remove(s.routers ?? []);
      for (const p of s.pools ?? []) {
        pools.delete(p);
        if (!ownRouters.has(p.router)) routerMetrics.remove([p.router]);
      }
    },
    close() {
      routerMetrics.close();
      removeQueues();
      removePools();
      queues.clear();
      pools.clear();
    },
  };
  collector.add(initial);
  return collector;
}
