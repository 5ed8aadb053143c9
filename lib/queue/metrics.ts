/**
 * Prometheus metrics of shared-memory queues (prom-client), read from the segments at scrape
 * time: nothing is counted on the hot path. The samples come from SageQueue handles
 * (`stats()`) or, host-wide, from inspecting every segment without attaching (what
 * `sage-queue metrics` serves). lib/router and lib/cluster add their families the same way;
 * collectMetrics() (lib/cluster/metrics.ts) composes them.
 *
 * prom-client is loaded on first use, so importing the package does not pay for it.
 */
import type * as PromClient from 'prom-client';
import type { Counter, Gauge, Registry } from 'prom-client';

import { InvalidArgumentTypeError, SageQueueError } from '../errors';
import type { NativeStats } from '../native';
import { inspectAllQueues } from './inspect';
import type { QueueLiveness } from './inspect';

let prom: typeof PromClient | undefined;

/** prom-client, loaded on first use. */
export function promClient(): typeof PromClient {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  prom ??= require('prom-client') as typeof PromClient;
  return prom;
}

/** Throws a typed error unless `registry` is a prom-client Registry. */
export function checkRegistry(registry: unknown): Registry {
  const r = registry as Partial<Registry> | null;
  if (r === null || typeof r !== 'object' || typeof r.registerMetric !== 'function' || typeof r.getSingleMetric !== 'function') {
    throw new InvalidArgumentTypeError('registry', 'a prom-client Registry', registry);
  }
  return registry as Registry;
}

/** Throws ERR_METRICS_REGISTERED when `registry` already has the family `name`. */
export function checkUnregistered(registry: Registry, name: string): void {
  if (registry.getSingleMetric(name) !== undefined) {
    throw new SageQueueError('ERR_METRICS_REGISTERED', `metric ${name} is already registered in this registry; add sources to the existing collector instead of collecting twice`);
  }
}

/**
 * A value read once per scrape and shared by a group of families: prom-client calls the
 * families' collect() in registration order within one scrape, so the group's first family
 * (`fresh`) reads anew and the others (`shared`) reuse that reading; a `shared` family collected
 * on its own (e.g. getSingleMetric().get()) reads anew when the reading is older than 1 s.
 */
export function perScrape<T>(read: () => T): { fresh: () => T; shared: () => T } {
  let cached: { value: T; at: number } | undefined;
  const fresh = (): T => {
    cached = { value: read(), at: Date.now() };
    return cached.value;
  };
  return { fresh, shared: () => (cached !== undefined && Date.now() - cached.at < 1000 ? cached.value : fresh()) };
}

/** One queue as the metrics see it. */
export interface QueueSample {
  name: string;
  liveness: QueueLiveness;
  /** Null when the segment could not be read. */
  stats: NativeStats | null;
}

/** Every sage-queue segment on this machine, inspected without attaching. */
export function hostQueueSamples(): QueueSample[] {
  return inspectAllQueues().map((v) => ({ name: v.name, liveness: v.liveness, stats: v.stats }));
}

/** A sample from a handle's stats(). */
export function sampleOf(stats: NativeStats): QueueSample {
  const alive = stats.processes.filter((p) => p.alive).length;
  const liveness: QueueLiveness = stats.processes.length === 0 ? 'idle' : alive > 0 ? 'alive' : 'dead';
  return { name: stats.name, liveness, stats };
}

type StatKey = 'enqueued' | 'dequeued' | 'waits' | 'wakeCalls' | 'abandonedClaims' | 'lostInRead' | 'lockRecoveries' | 'slotsReaped' | 'waiterHeals';

/** The counter families: name suffix, help, the stats field. */
const COUNTERS: ReadonlyArray<readonly [string, string, StatKey]> = [
  ['enqueued_total', 'Messages put into the queue.', 'enqueued'],
  ['dequeued_total', 'Messages taken from the queue.', 'dequeued'],
  ['waits_total', 'Futex sleeps entered by waiters (producers waiting for space, consumers for data).', 'waits'],
  ['wakes_total', 'FUTEX_WAKE system calls issued to wake waiters.', 'wakeCalls'],
  ['abandoned_claims_total', 'Claims of producers that died before committing, turned into padding.', 'abandonedClaims'],
  ['lost_in_read_total', 'Messages consumers were copying out when they died.', 'lostInRead'],
  ['lock_recoveries_total', 'Locks recovered from a dead holder.', 'lockRecoveries'],
  ['slots_reaped_total', 'Handle slots of dead processes reclaimed.', 'slotsReaped'],
  ['waiter_heals_total', 'Waiter counts repaired after a waiter died.', 'waiterHeals'],
];

/** Explicit-ack queues only (auto-ack queues have no such series). */
const LEASE_COUNTERS: ReadonlyArray<readonly [string, string, 'acks' | 'nacks' | 'redeliveries' | 'expiredLeases' | 'deadLeases' | 'staleSettles']> = [
  ['acks_total', 'Explicit-ack queues: messages acked.', 'acks'],
  ['nacks_total', 'Explicit-ack queues: messages nacked (given back for redelivery).', 'nacks'],
  ['redeliveries_total', 'Explicit-ack queues: deliveries after the first.', 'redeliveries'],
  ['expired_leases_total', 'Explicit-ack queues: leases taken back at their deadline (ackTimeoutMs).', 'expiredLeases'],
  ['dead_leases_total', 'Explicit-ack queues: leases taken back from a consumer that died.', 'deadLeases'],
  ['stale_settles_total', 'Explicit-ack queues: acks/nacks refused because the lease was no longer held.', 'staleSettles'],
];

export const QUEUE_METRIC_PREFIX = 'sage_queue_';

/**
 * Registers the queue families in `registry`, each reading `samples()` (once per scrape).
 * Returns a function that removes them again.
 */
export function registerQueueMetrics(registry: Registry, samples: () => readonly QueueSample[]): () => void {
  checkRegistry(registry);
  const { Counter, Gauge } = promClient();
  const p = QUEUE_METRIC_PREFIX;
  checkUnregistered(registry, `${p}depth`);
  const snapshot = perScrape(samples);
  const readable = (first = false): Array<QueueSample & { stats: NativeStats }> =>
    (first ? snapshot.fresh() : snapshot.shared()).filter((s): s is QueueSample & { stats: NativeStats } => s.stats !== null);
  const names: string[] = [];
  const gauge = (suffix: string, help: string, labelNames: string[], fill: (g: Gauge) => void): void => {
    names.push(`${p}${suffix}`);
    new Gauge({
      name: `${p}${suffix}`, help, labelNames, registers: [registry],
      collect() {
        this.reset();
        fill(this);
      },
    });
  };
  gauge('depth', 'Messages in the queue now.', ['queue'], (g) => {
    for (const s of readable(true)) g.set({ queue: s.name }, s.stats.depth); // the first family: reads anew
  });
  gauge('depth_bytes', 'Bytes of records in the queue now.', ['queue'], (g) => {
    for (const s of readable()) g.set({ queue: s.name }, s.stats.depthBytes);
  });
  gauge('capacity_bytes', 'Size of the ring in bytes.', ['queue'], (g) => {
    for (const s of readable()) g.set({ queue: s.name }, s.stats.capacity);
  });
  gauge('waiters', 'Waiters registered now: consumers waiting for data, producers waiting for space.', ['queue', 'kind'], (g) => {
    for (const s of readable()) {
      g.set({ queue: s.name, kind: 'data' }, s.stats.dataWaiters);
      g.set({ queue: s.name, kind: 'space' }, s.stats.spaceWaiters);
    }
  });
  gauge('processes', 'Processes attached to the queue, alive or dead.', ['queue', 'state'], (g) => {
    for (const s of readable()) {
      const alive = s.stats.processes.filter((x) => x.alive).length;
      g.set({ queue: s.name, state: 'alive' }, alive);
      g.set({ queue: s.name, state: 'dead' }, s.stats.processes.length - alive);
    }
  });
  gauge('closed', '1 when the queue was closed.', ['queue'], (g) => {
    for (const s of readable()) g.set({ queue: s.name }, s.stats.closed ? 1 : 0);
  });
  gauge('liveness', '1 for the state the queue is in: alive, dead (every attached process died), idle, initialising, broken.', ['queue', 'state'], (g) => {
    for (const s of snapshot.shared()) g.set({ queue: s.name, state: s.liveness }, 1);
  });
  gauge('redeliverable', 'Explicit-ack queues: messages waiting to be delivered again (nacked, expired, or from a dead consumer).', ['queue'], (g) => {
    for (const s of readable()) if (s.stats.leases !== null) g.set({ queue: s.name }, s.stats.leases.redeliverable);
  });
  gauge('unacked_bytes', 'Explicit-ack queues: ring bytes held from the oldest unacked message to the head.', ['queue'], (g) => {
    for (const s of readable()) if (s.stats.leases !== null) g.set({ queue: s.name }, s.stats.leases.unackedBytes);
  });
  /** A counter family per queue: `read` gives its value, or undefined for a queue without it. */
  const counter = (suffix: string, help: string, read: (stats: NativeStats) => number | undefined): void => {
    names.push(`${p}${suffix}`);
    new Counter({
      name: `${p}${suffix}`, help, labelNames: ['queue'], registers: [registry],
      collect(this: Counter) {
        this.reset();
        for (const s of readable()) {
          const v = read(s.stats);
          if (v !== undefined) this.inc({ queue: s.name }, v);
        }
      },
    });
  };
  for (const [suffix, help, key] of LEASE_COUNTERS) counter(suffix, help, (st) => st.leases?.[key]);
  for (const [suffix, help, key] of COUNTERS) counter(suffix, help, (st) => st[key]);
  return () => {
    for (const n of names) registry.removeSingleMetric(n);
  };
}
