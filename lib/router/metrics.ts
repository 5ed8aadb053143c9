/**
 * Prometheus metrics of routers (prom-client): the counts come from each router's stats() at
 * scrape time; route latency is a histogram fed by the routers' 'route' events, with buckets
 * from 5 µs to 2.5 s so that shared-memory deliveries (tens of microseconds) are resolved.
 */
import type { Counter, Gauge, Histogram, Registry } from 'prom-client';

import { checkRegistry, checkUnregistered, perScrape, promClient } from '../queue/metrics';
import type { BaseRouter } from './base-router';
import type { RouteEvent } from './events';
import type { RouterStats } from './reports';

export const ROUTER_METRIC_PREFIX = 'sage_queue_router_';

/** Route latency buckets, seconds: 5 µs … 2.5 s. */
export const ROUTE_LATENCY_BUCKETS: readonly number[] = [
  0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
];

type TotalKey = 'routed' | 'sent' | 'attempts' | 'delivered' | 'deadLettered' | 'failed' | 'retried' | 'unkeyedFallbacks';

const COUNTERS: ReadonlyArray<readonly [string, string, TotalKey]> = [
  ['routed_total', 'Packets routed (route() and routeMany()).', 'routed'],
  ['sent_total', 'Copies routed: one per packet and broadcast group (per target for broadcast).', 'sent'],
  ['attempts_total', 'Put attempts, retries included.', 'attempts'],
  ['delivered_total', 'Copies delivered.', 'delivered'],
  ['dead_letters_total', 'Copies put on the dead-letter queue.', 'deadLettered'],
  ['failed_total', 'Copies given up without a dead-letter queue (or it refused them).', 'failed'],
  ['retries_total', 'Retries after a failed attempt.', 'retried'],
  ['unkeyed_fallbacks_total', 'Unkeyed packets routed round-robin under a keyed strategy.', 'unkeyedFallbacks'],
];

/** The routers a registry follows, and the latency histogram's listeners on them. */
export interface RouterMetrics {
  /** Follows more routers (latency from now on; counts from their start). */
  add(routers: readonly BaseRouter[]): void;
  /** Stops following routers. */
  remove(routers: readonly BaseRouter[]): void;
  /** Removes the families from the registry and every listener from the routers. */
  close(): void;
}

/** Registers the router families in `registry`. */
export function registerRouterMetrics(registry: Registry): RouterMetrics {
  checkRegistry(registry);
  const { Counter, Gauge, Histogram } = promClient();
  const p = ROUTER_METRIC_PREFIX;
  checkUnregistered(registry, `${p}routed_total`);
  const routers = new Map<BaseRouter, (e: RouteEvent) => void>();
  const snapshot = perScrape((): RouterStats[] => [...routers.keys()].map((r) => r.stats()));
  const names: string[] = [];
  for (const [suffix, help, key] of COUNTERS) {
    names.push(`${p}${suffix}`);
    const first = names.length === 1; // the first family reads the routers' stats anew
    new Counter({
      name: `${p}${suffix}`, help, labelNames: ['router'], registers: [registry],
      collect(this: Counter) {
        this.reset();
        for (const s of first ? snapshot.fresh() : snapshot.shared()) this.inc({ router: s.name }, s[key]);
      },
    });
  }
  names.push(`${p}decisions_total`);
  new Counter({
    name: `${p}decisions_total`, help: 'Routing decisions by the strategy that made them.', labelNames: ['router', 'strategy'], registers: [registry],
    collect(this: Counter) {
      this.reset();
      for (const s of snapshot.shared()) for (const [strategy, n] of Object.entries(s.decisions)) this.inc({ router: s.name, strategy }, n);
    },
  });
  names.push(`${p}ejections_total`);
  new Counter({
    name: `${p}ejections_total`, help: 'Times each target was ejected.', labelNames: ['router', 'target'], registers: [registry],
    collect(this: Counter) {
      this.reset();
      for (const s of snapshot.shared()) for (const c of s.connections) this.inc({ router: s.name, target: c.target }, c.health.timesEjected);
    },
  });
  names.push(`${p}targets`);
  new Gauge({
    name: `${p}targets`, help: 'Targets by health: healthy, ejected (out of rotation), probing.', labelNames: ['router', 'state'], registers: [registry],
    collect(this: Gauge) {
      this.reset();
      for (const s of snapshot.shared()) {
        for (const state of ['healthy', 'ejected', 'probing'] as const) {
          this.set({ router: s.name, state }, s.connections.filter((c) => c.health.state === state).length);
        }
      }
    },
  });
  names.push(`${p}route_latency_seconds`);
  const latency: Histogram = new Histogram({
    name: `${p}route_latency_seconds`, help: 'Time from route() to its report, retries included.', labelNames: ['router', 'ok'],
    buckets: [...ROUTE_LATENCY_BUCKETS], registers: [registry],
  });
  const metrics: RouterMetrics = {
    add(list) {
      for (const r of list) {
        if (routers.has(r)) continue;
        const listener = (e: RouteEvent): void => latency.observe({ router: e.router, ok: String(e.ok) }, e.latencyMs / 1000);
        r.on('route', listener);
        routers.set(r, listener);
      }
    },
    remove(list) {
      for (const r of list) {
        const listener = routers.get(r);
        if (listener === undefined) continue;
        r.off('route', listener);
        routers.delete(r);
      }
    },
    close() {
      metrics.remove([...routers.keys()]);
      for (const n of names) registry.removeSingleMetric(n);
    },
  };
  return metrics;
}
