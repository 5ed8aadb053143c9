/**
 * BaseRouter: sends each packet to every broadcast group, one copy per group, to the parallel
 * instance its strategy selects (broadcast: to all of them). Every send has a timeout; failures
 * are retried with jittered exponential backoff, then dead-lettered; targets that keep failing
 * are ejected for a growing time and probed again. Invariant: sent = delivered + dead-lettered +
 * failed (failed only when there is no dead-letter queue, or it refused the packet); route()
 * reports every delivery, and never says "sent" when a delivery failed.
 */
import { InvalidArgumentTypeError, InvalidArgumentValueError, describe } from '../errors';
import type { AsyncQueueLike } from '../queue/queue-like';
import { isAsyncQueueLike } from '../queue/queue-like';
import { checkBoolean, checkInteger, checkKnownKeys, checkOptions } from '../validate';
import type { Clock } from './clock';
import { systemClock } from './clock';
import { Connection } from './connection';
import type { ConnectionCounters, ConnectionHealth, ConnectionInit } from './connection';
import { HashRing, stableHash } from './hashing';
import { Packet } from './packet';
import type { PacketWire } from './packet';
import { KEYED_STRATEGIES, STRATEGIES, checkStrategy } from './strategy-names';
import type { StrategyName } from './strategy-names';

export interface RouterOptions {
  /** Name used in traces, reports and dead letters. Default 'router'. */
  name?: string;
  /** Default strategy; a packet's partitionStrategy overrides it. Default 'round_robin'. */
  strategy?: StrategyName;
  /** Where packets go after their last failed attempt (any AsyncQueueLike). */
  deadLetterQueue?: AsyncQueueLike<unknown>;
  /** Retries after the first attempt. Default 3. */
  maxRetries?: number;
  /** First retry backoff; doubles each retry, with full jitter. Default 10 ms. */
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** Every send gives up after this long, so a stopped consumer cannot stall routing. Default 1000 ms. */
  sendTimeoutMs?: number;
  /** Consecutive failures that eject a target. Default 5. */
  ejectAfterFailures?: number;
  /** Ejection lasts base × times ejected (capped by ejectMaxMs). Default 30 s. */
  ejectBaseMs?: number;
  ejectMaxMs?: number;
  /** At most this fraction of a group is ejected at once (at least one target). Default 0.5. */
  maxEjectedFraction?: number;
  /** Virtual nodes per target on the consistent-hash ring. Default 256. */
  ringPointsPerTarget?: number;
  /** load_balance ignores load reports older than this. Default 1000 ms. */
  loadStaleMs?: number;
  /** load_balance compares loads projected this far ahead along their trend. Default 250 ms. */
  trendHorizonMs?: number;
  /** Append a hop to each delivered packet's trace. Default true. */
  trace?: boolean;
  clock?: Clock;
  /** Source of randomness in [0, 1) (jitter, power of two choices). Default Math.random. */
  random?: () => number;
}

export type DeliveryStatus = 'delivered' | 'dead_lettered' | 'failed';

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

/** What the dead-letter queue receives. */
export interface DeadLetter {
  deadLetter: true;
  router: string;
  reason: string;
  attempts: number;
  lastTarget: string | null;
  broadcastIndex: number;
  at: number;
  packet: PacketWire;
}

/** What custom selection code gets besides the candidates. */
export interface SelectionContext {
  broadcastIndex: number;
  /** 1 for the first attempt. */
  attempt: number;
  /** Targets that already failed this packet (unkeyed strategies avoid them when they can). */
  exclude: ReadonlySet<Connection>;
  now: number;
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

export interface RouterStats {
  name: string;
  strategy: StrategyName;
  routed: number;
  /** Copies routed (one per packet and broadcast group, or per target for broadcast):
   * sent = delivered + deadLettered + failed. */
  sent: number;
  /** Put attempts, retries included. */
  attempts: number;
  delivered: number;
  deadLettered: number;
  failed: number;
  retried: number;
  decisions: Record<StrategyName, number>;
  /** Unkeyed packets routed round-robin under a keyed strategy. */
  unkeyedFallbacks: number;
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

const OPTION_KEYS = [
  'name', 'strategy', 'deadLetterQueue', 'maxRetries', 'retryBaseMs', 'retryMaxMs', 'sendTimeoutMs', 'ejectAfterFailures',
  'ejectBaseMs', 'ejectMaxMs', 'maxEjectedFraction', 'ringPointsPerTarget', 'loadStaleMs', 'trendHorizonMs', 'trace', 'clock', 'random',
] as const;
const LATENCY_SAMPLES = 1024;

function reasonOf(e: unknown): string {
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    return typeof code === 'string' ? `${code}: ${e.message}` : `${e.name}: ${e.message}`;
  }
  return String(e);
}

export class BaseRouter {
  readonly name: string;
  readonly strategy: StrategyName;
  readonly #opts: Required<Omit<RouterOptions, 'deadLetterQueue' | 'name' | 'strategy'>>;
  readonly #dlq: AsyncQueueLike<unknown> | undefined;
  readonly #groups = new Map<number, Map<number, Connection>>();
  readonly #ordered = new Map<number, Connection[]>(); // by parallelIndex, rebuilt on change
  readonly #rings = new Map<number, HashRing<Connection>>();
  readonly #rr = new Map<number, number>();
  readonly #keyChains = new Map<string, Promise<unknown>>();
  readonly #latencies = new Float64Array(LATENCY_SAMPLES);
  #latencyCount = 0;
  readonly #totals = { routed: 0, sent: 0, attempts: 0, delivered: 0, deadLettered: 0, failed: 0, retried: 0, unkeyedFallbacks: 0 };
  readonly #decisions = Object.fromEntries(STRATEGIES.map((s) => [s, 0])) as Record<StrategyName, number>;

  constructor(options?: RouterOptions) {
    const o = checkOptions<RouterOptions>(options);
    checkKnownKeys(o, OPTION_KEYS);
    this.name = o.name === undefined ? 'router' : String(o.name);
    this.strategy = o.strategy === undefined ? 'round_robin' : checkStrategy(o.strategy);
    if (o.deadLetterQueue !== undefined && !isAsyncQueueLike(o.deadLetterQueue)) {
      throw new InvalidArgumentTypeError('options.deadLetterQueue', 'an AsyncQueueLike', o.deadLetterQueue);
    }
    this.#dlq = o.deadLetterQueue;
    const fraction = o.maxEjectedFraction ?? 0.5;
    if (typeof fraction !== 'number' || !(fraction >= 0 && fraction <= 1)) {
      throw new InvalidArgumentValueError(`options.maxEjectedFraction must be a number in [0, 1]; received ${describe(fraction)}`, fraction, 'ERR_OUT_OF_RANGE');
    }
    if (o.clock !== undefined && (typeof o.clock?.now !== 'function' || typeof o.clock?.sleep !== 'function')) {
      throw new InvalidArgumentTypeError('options.clock', 'an object with now() and sleep(ms)', o.clock);
    }
    if (o.random !== undefined && typeof o.random !== 'function') throw new InvalidArgumentTypeError('options.random', 'a function', o.random);
    this.#opts = {
      maxRetries: o.maxRetries === undefined ? 3 : checkInteger(o.maxRetries, 'options.maxRetries', 0, 100),
      retryBaseMs: o.retryBaseMs === undefined ? 10 : checkInteger(o.retryBaseMs, 'options.retryBaseMs', 0),
      retryMaxMs: o.retryMaxMs === undefined ? 1000 : checkInteger(o.retryMaxMs, 'options.retryMaxMs', 0),
      sendTimeoutMs: o.sendTimeoutMs === undefined ? 1000 : checkInteger(o.sendTimeoutMs, 'options.sendTimeoutMs', 0),
      ejectAfterFailures: o.ejectAfterFailures === undefined ? 5 : checkInteger(o.ejectAfterFailures, 'options.ejectAfterFailures', 1),
      ejectBaseMs: o.ejectBaseMs === undefined ? 30_000 : checkInteger(o.ejectBaseMs, 'options.ejectBaseMs', 0),
      ejectMaxMs: o.ejectMaxMs === undefined ? 300_000 : checkInteger(o.ejectMaxMs, 'options.ejectMaxMs', 0),
      maxEjectedFraction: fraction,
      ringPointsPerTarget: o.ringPointsPerTarget === undefined ? 256 : checkInteger(o.ringPointsPerTarget, 'options.ringPointsPerTarget', 1, 100_000),
      loadStaleMs: o.loadStaleMs === undefined ? 1000 : checkInteger(o.loadStaleMs, 'options.loadStaleMs', 0),
      trendHorizonMs: o.trendHorizonMs === undefined ? 250 : checkInteger(o.trendHorizonMs, 'options.trendHorizonMs', 0),
      trace: checkBoolean(o.trace, 'options.trace', true),
      clock: o.clock ?? systemClock,
      random: o.random ?? Math.random,
    };
  }

  // ------------------------------------------------------------------------------------------
  // Downstream groups

  /** Adds a connection (or builds one from its init). Replacing an occupied slot is an error. */
  addConnection(connection: Connection | ConnectionInit): Connection {
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
    return [...this.#groups.keys()].sort((a, b) => a - b).flatMap((b) => this.#ordered.get(b) ?? []);
  }

  #changed(broadcastIndex: number): void {
    const group = this.#groups.get(broadcastIndex);
    if (group === undefined) {
      this.#ordered.delete(broadcastIndex);
    } else {
      this.#ordered.set(broadcastIndex, [...group.values()].sort((a, b) => a.parallelIndex - b.parallelIndex));
    }
    this.#rings.delete(broadcastIndex);
  }

  // ------------------------------------------------------------------------------------------
  // Routing

  /** Routes one packet to every broadcast group and reports each delivery. */
  async route(packet: Packet): Promise<RouteReport> {
    if (!(packet instanceof Packet)) throw new InvalidArgumentTypeError('packet', 'a Packet', packet);
    const clock = this.#opts.clock;
    const started = clock.now();
    const strategy = this.#strategyFor(packet);
    const indexes = [...this.#groups.keys()].sort((a, b) => a - b);
    let deliveries: DeliveryReport[];
    if (indexes.length === 0) {
      this.#totals.sent++;
      deliveries = [await this.#giveUp(packet, -1, null, 0, 'no downstream connections')];
    } else {
      const perGroup = indexes.map((b) => {
        const group = this.#ordered.get(b) ?? [];
        if (strategy === 'broadcast') return Promise.all(group.map((c) => this.#deliver(packet, b, strategy, c)));
        if (KEYED_STRATEGIES.has(strategy)) return this.#inKeyOrder(packet, b, () => this.#deliver(packet, b, strategy)).then((d) => [d]);
        return this.#deliver(packet, b, strategy).then((d) => [d]);
      });
      deliveries = (await Promise.all(perGroup)).flat();
    }
    const report: RouteReport = { traceId: packet.traceId, strategy, deliveries, delivered: 0, deadLettered: 0, failed: 0, ok: false };
    for (const d of deliveries) {
      if (d.status === 'delivered') report.delivered++;
      else if (d.status === 'dead_lettered') report.deadLettered++;
      else report.failed++;
    }
    report.ok = report.delivered === deliveries.length;
    this.#latencies[this.#latencyCount++ % LATENCY_SAMPLES] = clock.now() - started;
    return report;
  }

  /**
   * Routes many packets at once: each copy's target is chosen as route() would, then each
   * target's packets are put with one batch call when its queue has `putMany` (SageQueue), in
   * order. Copies that do not fit, and every copy of a key that still has a delivery in flight,
   * take route()'s per-packet path (timeouts, retries, failover, dead letters), so per-key order
   * holds across route() and routeMany() calls.
   */
  async routeMany(packets: readonly Packet[]): Promise<RouteManyReport> {
    if (!Array.isArray(packets)) throw new InvalidArgumentTypeError('packets', 'an array of Packets', packets);
    for (const p of packets) if (!(p instanceof Packet)) throw new InvalidArgumentTypeError('packets[i]', 'a Packet', p);
    const report: RouteManyReport = { packets: packets.length, delivered: 0, deadLettered: 0, failed: 0, problems: [], ok: false };
    const slow: Array<Promise<DeliveryReport[]>> = [];
    const now = this.#opts.clock.now();
    const strategies = packets.map((p) => this.#strategyFor(p));
    for (const [b, group] of [...this.#ordered.entries()].sort((x, y) => x[0] - y[0])) {
      const batches = new Map<Connection, Packet[]>();
      const origin = new Map<Packet, { packet: Packet; strategy: StrategyName }>(); // batched copy → what to retry
      packets.forEach((packet, i) => {
        const strategy = strategies[i] as StrategyName;
        if (strategy === 'broadcast') {
          for (const c of group) this.#addToBatch(batches, origin, c, packet, strategy);
          return;
        }
        if (KEYED_STRATEGIES.has(strategy) && this.#keyChains.has(this.#keyId(packet, b))) {
          slow.push(this.#inKeyOrder(packet, b, () => this.#deliver(packet, b, strategy)).then((d) => [d]));
          return;
        }
        const target = this.selectTarget(packet, group, strategy, { broadcastIndex: b, attempt: 1, exclude: new Set(), now });
        if (target === undefined) slow.push(this.#deliver(packet, b, strategy).then((d) => [d]));
        else this.#addToBatch(batches, origin, target, packet, strategy);
      });
      for (const [target, batch] of batches) {
        const q = target.queue as Partial<{ putMany(items: readonly unknown[], o: { block: boolean }): number }>;
        let put = 0;
        if (typeof q.putMany === 'function') {
          const copies = batch.map((p) => p.withInputIndex(target.targetInputIndex));
          try {
            put = q.putMany(copies, { block: false });
          } catch (e) {
            const written = (e as { written?: unknown }).written;
            put = typeof written === 'number' ? written : 0; // those are in: never send them twice
            target.recordFailure(e);
            this.#maybeEject(b, target);
          }
          if (put > 0) {
            target.counters.sent += put;
            target.counters.delivered += put;
            target.recordSuccess();
            this.#totals.sent += put;
            this.#totals.attempts += put;
            this.#totals.delivered += put;
            report.delivered += put;
          }
        }
        // The rest (in order) goes the per-packet way, chained per key behind each other.
        for (const copy of batch.slice(put)) {
          const { packet, strategy } = origin.get(copy) as { packet: Packet; strategy: StrategyName };
          const run = (): Promise<DeliveryReport> => this.#deliver(packet, b, strategy, strategy === 'broadcast' ? target : undefined);
          slow.push((KEYED_STRATEGIES.has(strategy) ? this.#inKeyOrder(packet, b, run) : run()).then((d) => [d]));
        }
      }
    }
    if (this.#ordered.size === 0) {
      for (const packet of packets) {
        this.#totals.sent++;
        slow.push(this.#giveUp(packet, -1, null, 0, 'no downstream connections').then((d) => [d]));
      }
    }
    for (const d of (await Promise.all(slow)).flat()) {
      if (d.status === 'delivered') report.delivered++;
      else if (d.status === 'dead_lettered') report.deadLettered++;
      else report.failed++;
      if (d.status !== 'delivered' || d.attempts > 1) report.problems.push(d);
    }
    report.ok = report.deadLettered === 0 && report.failed === 0;
    return report;
  }

  #addToBatch(
    batches: Map<Connection, Packet[]>,
    origin: Map<Packet, { packet: Packet; strategy: StrategyName }>,
    target: Connection,
    packet: Packet,
    strategy: StrategyName,
  ): void {
    const copy = this.#opts.trace ? packet.withHop(this.name, target.targetName) : packet;
    let batch = batches.get(target);
    if (batch === undefined) {
      batch = [];
      batches.set(target, batch);
    }
    batch.push(copy);
    origin.set(copy, { packet, strategy });
  }

  /** The strategy a packet is routed by (counted once per packet). */
  #strategyFor(packet: Packet): StrategyName {
    const requested = packet.partitionStrategy ?? this.strategy;
    let strategy = requested;
    if (KEYED_STRATEGIES.has(requested) && !packet.isKeyed()) {
      strategy = 'round_robin'; // documented: unkeyed packets under a keyed strategy rotate
      this.#totals.unkeyedFallbacks++;
    }
    this.#totals.routed++;
    this.#decisions[strategy]++;
    return strategy;
  }

  #keyId(packet: Packet, broadcastIndex: number): string {
    const key = packet.partitionKey as NonNullable<Packet['partitionKey']>;
    return `${broadcastIndex}:${typeof key}:${key instanceof Uint8Array ? Buffer.from(key).toString('hex') : String(key)}`;
  }

  /**
   * Chooses the target of one copy. Override it for a custom router: `group` is the broadcast
   * group's connections in parallel-index order (ejected ones included: use isAvailable());
   * return undefined when none can take the packet.
   */
  protected selectTarget(packet: Packet, group: readonly Connection[], strategy: StrategyName, context: SelectionContext): Connection | undefined {
    const now = context.now;
    switch (strategy) {
      case 'hash': {
        // hash % N over every target (stable while membership is); an unavailable target's keys
        // go to the next available index, and come back when it recovers.
        if (group.length === 0) return undefined;
        const start = stableHash(packet.partitionKey as NonNullable<Packet['partitionKey']>) % group.length;
        for (let k = 0; k < group.length; k++) {
          const c = group[(start + k) % group.length] as Connection;
          if (c.isAvailable(now)) return c;
        }
        return undefined;
      }
      case 'consistent_hash': {
        let ring = this.#rings.get(context.broadcastIndex);
        if (ring === undefined) {
          ring = new HashRing(group, (c) => c.targetName, this.#opts.ringPointsPerTarget);
          this.#rings.set(context.broadcastIndex, ring);
        }
        return ring.lookup(stableHash(packet.partitionKey as NonNullable<Packet['partitionKey']>), (c) => c.isAvailable(now));
      }
      case 'load_balance':
        return this.#leastLoaded(group, context);
      case 'round_robin':
      case 'broadcast':
      default:
        return this.#roundRobin(group, context);
    }
  }

  #available(group: readonly Connection[], context: SelectionContext): Connection[] {
    const available = group.filter((c) => c.isAvailable(context.now));
    const fresh = available.filter((c) => !context.exclude.has(c));
    return fresh.length > 0 ? fresh : available;
  }

  /** The next available target after the last one picked, in the group's stable order (an
   * ejected target is skipped without shifting the others' turns). */
  #roundRobin(group: readonly Connection[], context: SelectionContext): Connection | undefined {
    const n = group.length;
    if (n === 0) return undefined;
    const start = (this.#rr.get(context.broadcastIndex) ?? 0) % n;
    let fallback = -1;
    for (let k = 0; k < n; k++) {
      const i = (start + k) % n;
      const c = group[i] as Connection;
      if (!c.isAvailable(context.now)) continue;
      if (context.exclude.has(c)) {
        if (fallback < 0) fallback = i;
        continue;
      }
      this.#rr.set(context.broadcastIndex, i + 1);
      return c;
    }
    if (fallback < 0) return undefined;
    this.#rr.set(context.broadcastIndex, fallback + 1);
    return group[fallback];
  }

  /** Power of two choices on fresh load projected along its trend; unknown load counts as 0.5. */
  #leastLoaded(group: readonly Connection[], context: SelectionContext): Connection | undefined {
    const candidates = this.#available(group, context);
    if (candidates.length <= 1) return candidates[0];
    const random = this.#opts.random;
    const i = Math.floor(random() * candidates.length);
    let j = Math.floor(random() * (candidates.length - 1));
    if (j >= i) j++;
    const a = candidates[i] as Connection;
    const b = candidates[j] as Connection;
    const score = (c: Connection): number => {
      const load = c.freshLoad(this.#opts.loadStaleMs);
      if (load === undefined) return 0.5;
      return load + Math.max(0, c.loadTrend) * (this.#opts.trendHorizonMs / 1000);
    };
    const sa = score(a);
    const sb = score(b);
    return sa < sb || (sa === sb && a.parallelIndex < b.parallelIndex) ? a : b;
  }

  /** Runs deliveries of one key (per broadcast group) one after another: per-key order holds
   * under retries and failover even when route() is called without awaiting. */
  #inKeyOrder<T>(packet: Packet, broadcastIndex: number, run: () => Promise<T>): Promise<T> {
    const id = this.#keyId(packet, broadcastIndex);
    const previous = this.#keyChains.get(id);
    const mine = (previous === undefined ? run() : previous.then(run, run)) as Promise<T>;
    this.#keyChains.set(id, mine);
    const forget = (): void => {
      if (this.#keyChains.get(id) === mine) this.#keyChains.delete(id);
    };
    mine.then(forget, forget);
    return mine;
  }

  async #deliver(packet: Packet, broadcastIndex: number, strategy: StrategyName, fixed?: Connection): Promise<DeliveryReport> {
    const o = this.#opts;
    const exclude = new Set<Connection>();
    let attempts = 0;
    let last: Connection | null = null;
    let reason = '';
    this.#totals.sent++; // one copy, however many attempts it takes
    while (attempts <= o.maxRetries) {
      const group = this.#ordered.get(broadcastIndex) ?? [];
      const context: SelectionContext = { broadcastIndex, attempt: attempts + 1, exclude, now: o.clock.now() };
      const target = fixed !== undefined ? (fixed.isAvailable(context.now) ? fixed : undefined) : this.selectTarget(packet, group, strategy, context);
      if (target === undefined) {
        reason = reason || (fixed !== undefined ? 'target is ejected' : 'no available target in the group');
        break;
      }
      attempts++;
      last = target;
      this.#totals.attempts++;
      try {
        const copy = o.trace ? packet.withHop(this.name, target.targetName) : packet;
        await target.send(copy, { timeoutMs: o.sendTimeoutMs });
        target.recordSuccess();
        this.#totals.delivered++;
        return { broadcastIndex, target: target.targetName, parallelIndex: target.parallelIndex, status: 'delivered', attempts, retries: attempts - 1, ...(reason ? { reason } : {}) };
      } catch (e) {
        reason = reasonOf(e);
        target.recordFailure(e);
        this.#maybeEject(broadcastIndex, target);
        exclude.add(target);
      }
      if (attempts <= o.maxRetries) {
        target.counters.retried++;
        this.#totals.retried++;
        const cap = Math.min(o.retryMaxMs, o.retryBaseMs * 2 ** (attempts - 1));
        await o.clock.sleep(o.random() * cap); // full jitter
      }
    }
    return this.#giveUp(packet, broadcastIndex, last, attempts, reason);
  }

  #maybeEject(broadcastIndex: number, target: Connection): void {
    const o = this.#opts;
    const probing = target.health.state === 'probing';
    if (!probing && target.health.consecutiveFailures < o.ejectAfterFailures) return;
    if (target.health.state === 'ejected') return;
    const group = this.#ordered.get(broadcastIndex) ?? [];
    const ejected = group.filter((c) => c !== target && c.health.state === 'ejected').length;
    const limit = Math.max(1, Math.floor(o.maxEjectedFraction * group.length));
    if (ejected < limit) target.eject(o.ejectBaseMs, o.ejectMaxMs);
  }

  async #giveUp(packet: Packet, broadcastIndex: number, last: Connection | null, attempts: number, reason: string): Promise<DeliveryReport> {
    const base = { broadcastIndex, target: last?.targetName ?? null, parallelIndex: last?.parallelIndex ?? null, attempts, retries: Math.max(0, attempts - 1) };
    if (this.#dlq !== undefined) {
      const letter: DeadLetter = { deadLetter: true, router: this.name, reason, attempts, lastTarget: base.target, broadcastIndex, at: Date.now(), packet: packet.toJSON() };
      try {
        await this.#dlq.putAsync(letter, { timeoutMs: this.#opts.sendTimeoutMs });
        this.#totals.deadLettered++;
        return { ...base, status: 'dead_lettered', reason };
      } catch (e) {
        reason = `${reason}; the dead-letter queue refused it too (${reasonOf(e)})`;
      }
    }
    this.#totals.failed++;
    return { ...base, status: 'failed', reason };
  }

  // ------------------------------------------------------------------------------------------
  // Stop, stats

  /**
   * Puts a stop marker (see isStopSignal) into every downstream queue, in parallel; a queue that
   * throws or times out does not keep the others from getting theirs.
   */
  async sendStopSignal(reason = 'stop', options?: { timeoutMs?: number }): Promise<{ delivered: string[]; failed: Array<{ target: string; reason: string }> }> {
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
}
