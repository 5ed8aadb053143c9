/**
 * What a router reports: per copy (DeliveryReport), per packet (RouteReport), per batch
 * (RouteManyReport), what a dead-letter queue receives (DeadLetter), the router's counters
 * (RouterStats) and the stop marker (StopSignal). Data only (PacketRouteReport reads its
 * traceId lazily).
 */
import type { ConnectionCounters, ConnectionHealth } from './connection';
import type { PacketWire } from './packet';
import type { StrategyName } from './strategy-names';

export type DeliveryStatus = 'delivered' | 'dead_lettered' | 'failed';

/**
 * Why a copy was not delivered: 'item' when the packet itself could not be taken (see
 * isItemFault: dead-lettered at once, the target not blamed), 'target' otherwise (failed
 * attempts on the targets, or no target available).
 */
export type DeliveryFault = 'item' | 'target';

export interface DeliveryReport {
  broadcastIndex: number;
  /** The last target tried (null if none was available). */
  target: string | null;
  parallelIndex: number | null;
  status: DeliveryStatus;
  attempts: number;
  retries: number;
  /** Why the last attempt failed (absent when delivered on the first try). */
  reason?: string;
  /** Whose fault it was (present when the copy was not delivered). */
  fault?: DeliveryFault;
}

export interface RouteReport {
  traceId: string;
  strategy: StrategyName;
  deliveries: DeliveryReport[];
  delivered: number;
  deadLettered: number;
  failed: number;
  /** True only when every copy was delivered. */
  ok: boolean;
}

/**
 * route()'s report. `traceId` is read from the packet only when asked for (a packet makes its
 * traceId on first use, so a route() nobody asks the traceId of never makes one); it is an
 * accessor, so JSON.stringify includes it (toJSON) while Object.keys and spreads do not.
 */
export class PacketRouteReport implements RouteReport {
  readonly #packet: { readonly traceId: string };
  #traceId: string | undefined;
  strategy: StrategyName;
  deliveries: DeliveryReport[];
  delivered = 0;
  deadLettered = 0;
  failed = 0;
  ok: boolean;

  constructor(packet: { readonly traceId: string }, strategy: StrategyName, deliveries: DeliveryReport[]) {
    this.#packet = packet;
    this.strategy = strategy;
    this.deliveries = deliveries;
    for (const d of deliveries) {
      if (d.status === 'delivered') this.delivered++;
      else if (d.status === 'dead_lettered') this.deadLettered++;
      else this.failed++;
    }
    this.ok = this.delivered === deliveries.length;
  }

  get traceId(): string {
    return this.#traceId ?? this.#packet.traceId;
  }

  set traceId(id: string) {
    this.#traceId = id;
  }

  toJSON(): RouteReport {
    const { strategy, deliveries, delivered, deadLettered, failed, ok } = this;
    return { traceId: this.traceId, strategy, deliveries, delivered, deadLettered, failed, ok };
  }
}

/** What the dead-letter queue receives. */
export interface DeadLetter {
  deadLetter: true;
  router: string;
  reason: string;
  /** 'item': the packet itself was refused (replaying it unchanged will fail again). */
  fault: DeliveryFault;
  attempts: number;
  lastTarget: string | null;
  broadcastIndex: number;
  at: number;
  packet: PacketWire;
}

/** What routeMany() reports: totals, and the report of every copy that was not delivered at once. */
export interface RouteManyReport {
  packets: number;
  delivered: number;
  deadLettered: number;
  failed: number;
  /** Copies that took the per-packet path (retries, failover) and did not end delivered first time. */
  problems: DeliveryReport[];
  ok: boolean;
}

/** The router totals the delivery policy keeps (part of RouterStats). */
export interface DeliveryTotals {
  /** Copies routed (one per packet and broadcast group, or per target for broadcast):
   * sent = delivered + deadLettered + failed. */
  sent: number;
  /** Put attempts, retries included. */
  attempts: number;
  delivered: number;
  deadLettered: number;
  failed: number;
  retried: number;
}

export interface RouterStats extends DeliveryTotals {
  name: string;
  strategy: StrategyName;
  routed: number;
  decisions: Record<StrategyName, number>;
  /** Unkeyed packets routed round-robin under a keyed strategy. */
  unkeyedFallbacks: number;
  /** route() latency (router clock ms) over the latest 1024 timed calls: one route() in 8 is timed. */
  routeLatencyMs: { p50: number; p99: number; samples: number };
  connections: Array<{
    target: string;
    broadcastIndex: number;
    parallelIndex: number;
    health: ConnectionHealth;
    counters: ConnectionCounters;
    load: number | undefined;
    loadTrend: number;
  }>;
}

/** The stop marker sendStopSignal() puts into every downstream queue. */
export interface StopSignal {
  sageStop: true;
  router: string;
  reason: string;
}

export function isStopSignal(value: unknown): value is StopSignal {
  return typeof value === 'object' && value !== null && (value as { sageStop?: unknown }).sageStop === true;
}
