/**
 * collectRedisPoolMetrics(): a RedisWorkerPool's membership and routing counts in a prom-client
 * registry, read from each pool's stats() at scrape time (no Redis call: the primary's last
 * membership read). The pool's router is a BaseRouter: its families come from collectMetrics
 * ({ routers: [pool.router] }), as for any router.
 */
import type { Counter, Gauge, Registry } from 'prom-client';

import { InvalidArgumentTypeError } from '../errors';
import { checkRegistry, checkUnregistered, perScrape, promClient } from '../queue/metrics';
import { RedisWorkerPool } from './redis-pool';
import type { RedisWorkerPoolStats } from './redis-pool';

export const REDIS_POOL_METRIC_PREFIX = 'sage_queue_redis_pool_';

/** The handle collectRedisPoolMetrics() returns. */
export interface RedisPoolMetricsCollector {
  /** Follows more pools. */
  add(pools: readonly RedisWorkerPool[]): void;
  /** Stops following them. */
  remove(pools: readonly RedisWorkerPool[]): void;
  /** Removes the families from the registry. */
  close(): void;
}

function checkPools(value: unknown): readonly RedisWorkerPool[] {
  if (!Array.isArray(value) || !value.every((p) => p instanceof RedisWorkerPool)) {
    throw new InvalidArgumentTypeError('pools', 'an array of RedisWorkerPools', value);
  }
  return value as readonly RedisWorkerPool[];
}

/**
 * Registers the RedisWorkerPool families in `registry` and follows `pools`. A second call into one
 * registry is ERR_METRICS_REGISTERED: use add(). Names and labels: docs/api.md, "Metrics".
 */
export function collectRedisPoolMetrics(registry: Registry, pools: readonly RedisWorkerPool[] = []): RedisPoolMetricsCollector {
  checkRegistry(registry);
  const followed = new Set<RedisWorkerPool>(checkPools(pools));
  const { Counter, Gauge } = promClient();
  const p = REDIS_POOL_METRIC_PREFIX;
  const names = [`${p}workers`, `${p}unowned_partitions`, `${p}worker_joins_total`, `${p}worker_exits_total`, `${p}routed_total`];
  for (const n of names) checkUnregistered(registry, n);
  const snapshot = perScrape((): RedisWorkerPoolStats[] => [...followed].map((x) => x.stats()));
  new Gauge({
    name: names[0] as string, help: 'Live workers of the pool (membership not expired) at the primary\'s last read.', labelNames: ['pool'], registers: [registry],
    collect(this: Gauge) {
      this.reset();
      for (const s of snapshot.fresh()) this.set({ pool: s.name }, s.workers.length);
    },
  });
  new Gauge({
    name: names[1] as string, help: 'Partitions of the pool that no live worker reads.', labelNames: ['pool'], registers: [registry],
    collect(this: Gauge) {
      this.reset();
      for (const s of snapshot.shared()) this.set({ pool: s.name }, s.unowned);
    },
  });
  new Counter({
    name: names[2] as string, help: 'Workers seen joining the pool.', labelNames: ['pool'], registers: [registry],
    collect(this: Counter) {
      this.reset();
      for (const s of snapshot.shared()) this.inc({ pool: s.name }, s.joined);
    },
  });
  new Counter({
    name: names[3] as string, help: 'Workers gone: reason "left" (released) or "lost" (membership expired: dead, hung or cut off).', labelNames: ['pool', 'reason'], registers: [registry],
    collect(this: Counter) {
      this.reset();
      for (const s of snapshot.shared()) {
        this.inc({ pool: s.name, reason: 'left' }, s.left);
        this.inc({ pool: s.name, reason: 'lost' }, s.lost);
      }
    },
  });
  new Counter({
    name: names[4] as string, help: 'Packets routed into the pool: path "route" (route(), and what a batch put could not place) or "batch" (routeMany\'s batched puts).', labelNames: ['pool', 'path'], registers: [registry],
    collect(this: Counter) {
      this.reset();
      for (const s of snapshot.shared()) {
        this.inc({ pool: s.name, path: 'route' }, s.routed);
        this.inc({ pool: s.name, path: 'batch' }, s.batched);
      }
    },
  });
  return {
    add(more) {
      for (const x of checkPools(more)) followed.add(x);
    },
    remove(less) {
      for (const x of checkPools(less)) followed.delete(x);
    },
    close() {
      followed.clear();
      for (const n of names) registry.removeSingleMetric(n);
    },
  };
}
