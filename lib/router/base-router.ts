/**
 * BaseRouter: sends each packet to every broadcast group, one copy per group, to the parallel
 * instance its strategy selects (broadcast: to all of them). It composes:
 * - strategies.ts: which target takes a copy (TargetSelector, behind the selectTarget hook);
 * - delivery.ts: sending with a timeout, retries with jittered backoff, ejection and probing,
 *   dead letters, and item faults (a bad packet is dead-lettered at once, its target not blamed);
 * - dispatch.ts: per-key ordering (KeyOrder) and routeMany's batch path.
 * - events.ts: what it tells listeners (retry, eject, recover, dead-letter, route).
 * Invariant: sent = delivered + dead-lettered + failed (failed only when there is no dead-letter
 * queue, or it refused the packet); route() reports every delivery, and never says "sent" when
 * a delivery failed.
 */
import { EventEmitter } from 'node:events';

import { InvalidArgumentTypeError, InvalidArgumentValueError, RouterDisposedError } from '../errors';
import { checkInteger, checkOptions } from '../validate';
import { Connection } from './connection';
import type { ConnectionInit } from './connection';
import { DeliveryPolicy } from './delivery';
import { KeyOrder, dispatchBatch } from './dispatch';
import type { RouterEventSink, RouterEvents } from './events';
import { reasonOf } from './faults';
import { Packet } from './packet';
import { PacketRouteReport } from './reports';
import type { DeliveryReport, RouteManyReport, RouteReport, RouterStats, StopSignal } from './reports';
import { resolveRouterOptions } from './router-options';
import type { ResolvedRouterOptions, RouterOptions } from './router-options';
import { FirstAttemptContext, TargetSelector, availableAt, broadcastTargets, isKeyedStrategy } from './strategies';
import type { SelectionContext } from './strategies';
import type { StrategyName } from './strategy-names';

// The router's public types, where its users have always imported them from.
export { isStopSignal } from './reports';
export type {
  DeadLetter, DeliveryFault, DeliveryReport, DeliveryStatus, RouteManyReport, RouteReport, RouterStats, StopSignal,
} from './reports';
export type { RouterOptions } from './router-options';
export type { SelectionContext } from './strategies';
export type { DeadLetterEvent, EjectEvent, RecoverEvent, RetryEvent, RouteEvent, RouterEvents } from './events';

const LATENCY_SAMPLES = 1024;
/** One route() in this many is timed for stats() (a clock read costs as much as a decision). */
const LATENCY_EVERY = 8;

/** Routes packets to its connections; emits RouterEvents (typed on / once / off). */
export class BaseRouter extends EventEmitter<RouterEvents> {
  readonly name: string;
  readonly strategy: StrategyName;
  readonly #opts: ResolvedRouterOptions;
  readonly #groups = new Map<number, Map<number, Connection>>();
  readonly #ordered = new Map<number, Connection[]>(); // by parallelIndex, rebuilt on change
  #indexes: readonly number[] = []; // the broadcast indexes in order, rebuilt on change
  #layout: ReadonlyArray<readonly [number, readonly Connection[]]> = []; // [index, its #ordered group], in index order
  readonly #selector: TargetSelector;
  readonly #policy: DeliveryPolicy;
  readonly #keyOrder = new KeyOrder();
  readonly #inFlight = new Set<Promise<unknown>>();
  #disposed = false;
  readonly #latencies = new Float64Array(LATENCY_SAMPLES);
  #latencyCount = 0;
  #routeCount = 0;
  readonly #totals = { routed: 0, sent: 0, attempts: 0, delivered: 0, deadLettered: 0, failed: 0, retried: 0, unkeyedFallbacks: 0 };
  // A literal (not built from STRATEGIES) keeps fast properties: one counter bump per route().
  readonly #decisions: Record<StrategyName, number> = { round_robin: 0, hash: 0, consistent_hash: 0, load_balance: 0, broadcast: 0 };

  constructor(options?: RouterOptions) {
    super();
    this.#opts = resolveRouterOptions(options);
    this.name = this.#opts.name;
    this.strategy = this.#opts.strategy;
    this.#selector = new TargetSelector(this.#opts);
    this.#policy = new DeliveryPolicy(this.#opts, this.#totals, (b) => this.#ordered.get(b) ?? [], this.#sink);
  }

  /** The delivery policy's way to emit: a listener that throws cannot break a delivery (see events.ts). */
  readonly #sink: RouterEventSink = {
    emit: (event, ...args) => {
      try {
        (this.emit as (e: string, ...a: unknown[]) => boolean)(event, ...args);
      } catch (e) {
        process.nextTick(() => {
          throw e;
        });
      }
    },
    listening: (event) => this.listenerCount(event) > 0,
  };

  // ------------------------------------------------------------------------------------------
  // Downstream groups

  /** Adds a connection (or builds one from its init). Replacing an occupied slot is an error. */
  addConnection(connection: Connection | ConnectionInit): Connection {
    this.#checkOpen();
    const conn = connection instanceof Connection ? connection : new Connection(connection, this.#opts.clock);
    let group = this.#groups.get(conn.broadcastIndex);
    if (group === undefined) {
      group = new Map();
      this.#groups.set(conn.broadcastIndex, group);
    }
    if (group.has(conn.parallelIndex)) {
      throw new InvalidArgumentValueError(
        `broadcast group ${conn.broadcastIndex} already has a connection at parallel index ${conn.parallelIndex}; remove it first`,
        conn.parallelIndex,
        'ERR_CONNECTION_EXISTS',
      );
    }
    group.set(conn.parallelIndex, conn);
    this.#changed(conn.broadcastIndex);
    return conn;
  }

  /** Removes a connection; false if there was none. Keys of other targets do not move. */
  removeConnection(broadcastIndex: number, parallelIndex: number): boolean {
    const group = this.#groups.get(checkInteger(broadcastIndex, 'broadcastIndex', 0));
    if (group === undefined || !group.delete(checkInteger(parallelIndex, 'parallelIndex', 0))) return false;
    if (group.size === 0) this.#groups.delete(broadcastIndex);
    this.#changed(broadcastIndex);
    return true;
  }

  /** `{ broadcastIndex → { parallelIndex → Connection } }` */
  get groups(): ReadonlyMap<number, ReadonlyMap<number, Connection>> {
    return this.#groups;
  }

  /** Every connection, by broadcast then parallel index. */
  connections(): Connection[] {
    return this.#indexes.flatMap((b) => this.#ordered.get(b) ?? []);
  }

  #changed(broadcastIndex: number): void {
    const group = this.#groups.get(broadcastIndex);
    if (group === undefined) {
      this.#ordered.delete(broadcastIndex);
    } else {
      this.#ordered.set(broadcastIndex, [...group.values()].sort((a, b) => a.parallelIndex - b.parallelIndex));
    }
    this.#indexes = [...this.#ordered.keys()].sort((a, b) => a - b);
    this.#layout = this.#indexes.map((b) => [b, this.#ordered.get(b) as Connection[]] as const);
    this.#selector.invalidate(broadcastIndex);
  }

  // ------------------------------------------------------------------------------------------
  // Routing

  /**
   * Routes one packet to every broadcast group and reports each delivery. A copy whose key has
   * no delivery in flight, whose target is available and whose queue takes it at once with its
   * synchronous non-blocking put (putNowait: SageQueue, LocalQueue) is delivered right there, with
   * no timer and no promise chain; any other copy takes the per-packet path (putAsync with the
   * send timeout, retries, failover, dead letters), in key order behind its key's earlier copies.
   */
  async route(packet: Packet): Promise<RouteReport> {
    if (!(packet instanceof Packet)) throw new InvalidArgumentTypeError('packet', 'a Packet', packet);
    this.#checkOpen();
    const report = this.#route(packet);
    return report instanceof PacketRouteReport ? report : this.#track(report);
  }

  /**
   * The target route() would give `packet`'s copy in broadcast group `broadcastIndex` (default:
   * the lowest) if it were routed now; undefined when the router has no such group or none of its
   * targets is available. Nothing is sent and nothing is counted in stats(), but it is a decision
   * like route()'s: under round_robin it takes the next turn, under load_balance it reads loads.
   * A broadcast packet has no single target: ERR_INVALID_ARG_VALUE.
   */
  pick(packet: Packet, broadcastIndex?: number): Connection | undefined {
    if (!(packet instanceof Packet)) throw new InvalidArgumentTypeError('packet', 'a Packet', packet);
    const b = broadcastIndex === undefined ? this.#indexes[0] : checkInteger(broadcastIndex, 'broadcastIndex', 0);
    this.#checkOpen();
    const requested = packet.partitionStrategy ?? this.strategy;
    const strategy = packet.partitionKey === null && isKeyedStrategy(requested) ? 'round_robin' : requested;
    if (strategy === 'broadcast') {
      throw new InvalidArgumentValueError('pick() chooses one target: a broadcast packet goes to every connection of each group', strategy);
    }
    const group = b === undefined ? undefined : this.#ordered.get(b);
    if (group === undefined) return undefined;
    return this.selectTarget(packet, group, strategy, new FirstAttemptContext(b as number, this.#opts.clock));
  }

  /**
   * route()'s work: the report itself when every copy was settled at once, else its promise. The
   * clock is read only when the time matters: to time a sampled route() (one in LATENCY_EVERY,
   * whatever its path) or one a 'route' listener hears of, a route() that went the per-packet
   * way, or to check whether an ejected target may be probed.
   */
  #route(packet: Packet): PacketRouteReport | Promise<PacketRouteReport> {
    const clock = this.#opts.clock;
    const sampled = (this.#routeCount++ & (LATENCY_EVERY - 1)) === 0;
    const started = sampled || this.#sink.listening('route') ? clock.now() : undefined;
    const strategy = this.#strategyFor(packet);
    const layout = this.#layout;
    if (layout.length === 0) return this.#settle(packet, strategy, started ?? clock.now(), sampled, [this.#policy.unroutable(packet)]);
    const keyed = isKeyedStrategy(strategy);
    if (layout.length === 1 && strategy !== 'broadcast') {
      // The usual shape: one group, one copy.
      const entry = layout[0] as readonly [number, readonly Connection[]];
      const d = this.#copy(packet, entry[0], entry[1], strategy, keyed, new FirstAttemptContext(entry[0], clock, started));
      return d instanceof Promise ? this.#settle(packet, strategy, started ?? clock.now(), sampled, [d]) : this.#report(packet, strategy, started, sampled, [d]);
    }
    const deliveries: Array<DeliveryReport | Promise<DeliveryReport>> = [];
    let pending = false;
    for (const entry of layout) {
      const b = entry[0];
      const group = entry[1];
      const context = new FirstAttemptContext(b, clock, started);
      if (strategy === 'broadcast') {
        for (const c of broadcastTargets(group)) {
          const d = availableAt(c, context)
            ? (this.#policy.deliverNow(packet, b, c) ?? this.#deliver(packet, b, strategy, c, c))
            : this.#deliver(packet, b, strategy, c);
          pending ||= d instanceof Promise;
          deliveries.push(d);
        }
        continue;
      }
      const d = this.#copy(packet, b, group, strategy, keyed, context);
      pending ||= d instanceof Promise;
      deliveries.push(d);
    }
    if (!pending) return this.#report(packet, strategy, started, sampled, deliveries as DeliveryReport[]);
    return this.#settle(packet, strategy, started ?? clock.now(), sampled, deliveries);
  }

  /**
   * One copy of a non-broadcast strategy in group `b`: behind its key's copies in flight, or to
   * the selected target at once, or (not taken at once) the per-packet way, holding its key.
   */
  #copy(
    packet: Packet, b: number, group: readonly Connection[], strategy: StrategyName, keyed: boolean, context: FirstAttemptContext,
  ): DeliveryReport | Promise<DeliveryReport> {
    if (keyed && this.#keyOrder.busy(packet, b)) return this.#keyOrder.run(packet, b, () => this.#deliver(packet, b, strategy));
    const target = this.selectTarget(packet, group, strategy, context);
    const d = (target === undefined ? undefined : this.#policy.deliverNow(packet, b, target)) ?? this.#deliver(packet, b, strategy, undefined, target);
    // A copy still in flight holds its key: later copies of the key wait for it.
    return keyed && d instanceof Promise ? this.#keyOrder.hold(packet, b, d) : d;
  }

  async #settle(
    packet: Packet, strategy: StrategyName, started: number, sampled: boolean, deliveries: ReadonlyArray<DeliveryReport | Promise<DeliveryReport>>,
  ): Promise<PacketRouteReport> {
    return this.#report(packet, strategy, started, sampled, await Promise.all(deliveries));
  }

  /**
   * The report of a settled route(). With its start time known: records its latency when it is
   * sampled, and tells 'route' listeners.
   */
  #report(packet: Packet, strategy: StrategyName, started: number | undefined, sampled: boolean, deliveries: DeliveryReport[]): PacketRouteReport {
    const report = new PacketRouteReport(packet, strategy, deliveries);
    if (started === undefined) return report;
    const latencyMs = this.#opts.clock.now() - started;
    if (sampled) this.#latencies[this.#latencyCount++ % LATENCY_SAMPLES] = latencyMs;
    if (this.#sink.listening('route')) {
      this.#sink.emit('route', { router: this.name, traceId: packet.traceId, strategy, latencyMs, ok: report.ok, copies: deliveries.length });
    }
    return report;
  }

  /**
   * Routes many packets at once: each copy's target is chosen as route() would, then each
   * target's packets are put with one batch call when its queue has `putMany` (SageQueue), else
   * one by one with its non-blocking `putNowait` (LocalQueue), in order. Copies that do not fit, and every copy of a key that still has a delivery in flight,
   * take route()'s per-packet path (timeouts, retries, failover, dead letters), so per-key order
   * holds across route() and routeMany() calls. A packet the target cannot take (an item fault)
   * is dead-lettered alone; the others of its batch are delivered.
   */
  async routeMany(packets: readonly Packet[]): Promise<RouteManyReport> {
    if (!Array.isArray(packets)) throw new InvalidArgumentTypeError('packets', 'an array of Packets', packets);
    for (const p of packets) if (!(p instanceof Packet)) throw new InvalidArgumentTypeError('packets[i]', 'a Packet', p);
    this.#checkOpen();
    const now = this.#opts.clock.now();
    const strategies = packets.map((p) => this.#strategyFor(p));
    return this.#track(
      dispatchBatch(packets, strategies, {
        name: this.name,
        trace: this.#opts.trace,
        now,
        policy: this.#policy,
        keyOrder: this.#keyOrder,
        groups: this.#layout,
        select: (packet, group, strategy, context) => this.selectTarget(packet, group, strategy, context),
        deliver: (packet, b, strategy, fixed) => this.#deliver(packet, b, strategy, fixed),
      }),
    );
  }

  /** The strategy a packet is routed by (counted once per packet). */
  #strategyFor(packet: Packet): StrategyName {
    const requested = packet.partitionStrategy ?? this.strategy;
    let strategy = requested;
    if (packet.partitionKey === null && isKeyedStrategy(requested)) {
      strategy = 'round_robin'; // documented: unkeyed packets under a keyed strategy rotate
      this.#totals.unkeyedFallbacks++;
    }
    this.#totals.routed++;
    this.#decisions[strategy]++;
    return strategy;
  }

  /**
   * Chooses the target of one copy. Override it for a custom router: `group` is the broadcast
   * group's connections in parallel-index order (ejected ones included: use isAvailable());
   * return undefined when none can take the packet.
   */
  protected selectTarget(packet: Packet, group: readonly Connection[], strategy: StrategyName, context: SelectionContext): Connection | undefined {
    return this.#selector.select(packet, group, strategy, context);
  }

  /**
   * One copy through the delivery policy, its targets picked by selectTarget (or `fixed`); the
   * first attempt goes to `first` when the caller already selected it.
   */
  #deliver(packet: Packet, broadcastIndex: number, strategy: StrategyName, fixed?: Connection, first?: Connection): Promise<DeliveryReport> {
    return this.#policy.deliver(packet, broadcastIndex, (group, context) => this.selectTarget(packet, group, strategy, context), fixed, first);
  }

  /** Remembers a routing call until it settles (see Symbol.asyncDispose). */
  #track<T>(work: Promise<T>): Promise<T> {
    this.#inFlight.add(work);
    const done = (): void => {
      this.#inFlight.delete(work);
    };
    work.then(done, done);
    return work;
  }

  #checkOpen(): void {
    if (this.#disposed) throw new RouterDisposedError(this.name);
  }

  // ------------------------------------------------------------------------------------------
  // Stop, stats

  /**
   * Puts a stop marker (see isStopSignal) into every downstream queue, in parallel; a queue that
   * throws or times out does not keep the others from getting theirs.
   */
  async sendStopSignal(reason = 'stop', options?: { timeoutMs?: number }): Promise<{ delivered: string[]; failed: Array<{ target: string; reason: string }> }> {
    this.#checkOpen();
    const o = checkOptions<{ timeoutMs?: number }>(options);
    const timeoutMs = o.timeoutMs === undefined ? this.#opts.sendTimeoutMs : checkInteger(o.timeoutMs, 'options.timeoutMs', 0);
    const signal: StopSignal = { sageStop: true, router: this.name, reason: String(reason) };
    const targets = this.connections();
    const results = await Promise.allSettled(targets.map(async (c) => c.queue.putAsync(signal, { timeoutMs })));
    const out = { delivered: [] as string[], failed: [] as Array<{ target: string; reason: string }> };
    results.forEach((r, i) => {
      const name = (targets[i] as Connection).toString();
      if (r.status === 'fulfilled') out.delivered.push(name);
      else out.failed.push({ target: name, reason: reasonOf(r.reason) });
    });
    return out;
  }

  stats(): RouterStats {
    const n = Math.min(this.#latencyCount, LATENCY_SAMPLES);
    const sorted = Array.from(this.#latencies.subarray(0, n)).sort((a, b) => a - b);
    const pct = (p: number): number => (n === 0 ? 0 : (sorted[Math.min(n - 1, Math.floor(p * n))] as number));
    return {
      name: this.name,
      strategy: this.strategy,
      ...this.#totals,
      decisions: { ...this.#decisions },
      routeLatencyMs: { p50: pct(0.5), p99: pct(0.99), samples: n },
      connections: this.connections().map((c) => ({
        target: c.targetName,
        broadcastIndex: c.broadcastIndex,
        parallelIndex: c.parallelIndex,
        health: { ...c.health },
        counters: { ...c.counters },
        load: c.loadHistory[c.loadHistory.length - 1]?.load,
        loadTrend: c.loadTrend,
      })),
    };
  }

  /**
   * Disposes of the router (`await using router = new BaseRouter(...)`). BaseRouter has no
   * close(): it owns no queue — its targets are the caller's (a descriptor resolves to the
   * process-wide instance others may use) — so disposing sends nothing (no stop signal: call
   * sendStopSignal() first for that) and closes no queue. It:
   * - refuses new work: route(), routeMany(), addConnection() and sendStopSignal() then throw
   *   RouterDisposedError (ERR_ROUTER_DISPOSED);
   * - waits until every route() and routeMany() already started has settled, retries and dead
   *   letters included, so nothing is put by this router after the promise resolves;
   * - lets go of its connections and its strategies' state (stats() then lists no connection;
   *   its totals stay readable).
   * Idempotent; a second call waits like the first.
   */
  async [Symbol.asyncDispose](): Promise<void> {
    this.#disposed = true;
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
    this.#groups.clear();
    this.#ordered.clear();
    this.#indexes = [];
    this.#layout = [];
    this.#selector.clear();
  }
}
