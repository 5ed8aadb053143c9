/**
 * Target selection: which connection of a broadcast group takes one copy of a packet. The
 * strategies are functions of the group (connections in parallel-index order, ejected ones
 * included), a SelectionContext and, where a strategy has state, that state passed in and
 * returned (round robin's cursor) or built from the group (the hash ring):
 *
 * - hashTarget: stableHash(key) % N over every target; an unavailable target's keys go to the
 *   next available index and come back when it recovers.
 * - ringTarget: the consistent-hash ring; an unavailable target's keys go to its ring successor.
 * - roundRobinTarget: the next available target after the cursor, avoiding targets that already
 *   failed this packet when it can.
 * - leastLoadedTarget: power of two choices on fresh load projected along its trend.
 * - broadcastTargets: every parallel instance.
 *
 * TargetSelector holds the per-group state (cursors, rings) and maps a strategy name to these.
 */
import type { Connection } from './connection';
import { HashRing, stableHash } from './hashing';
import type { PartitionKey } from './hashing';
import type { Packet } from './packet';
import type { StrategyName } from './strategy-names';

/** What custom selection code gets besides the candidates. */
export interface SelectionContext {
  broadcastIndex: number;
  /** 1 for the first attempt. */
  attempt: number;
  /** Targets that already failed this packet (unkeyed strategies avoid them when they can). */
  exclude: ReadonlySet<Connection>;
  now: number;
}

/** Whether a strategy partitions by key (KEYED_STRATEGIES.has, without a Set lookup per packet). */
export function isKeyedStrategy(strategy: StrategyName): boolean {
  return strategy === 'hash' || strategy === 'consistent_hash';
}

/** The exclusion set of a copy no target has failed yet (shared: nothing ever adds to it). */
export const NO_EXCLUDE: ReadonlySet<Connection> = new Set<Connection>();

/**
 * The SelectionContext of a copy's first attempt, whose `now` reads the clock only when asked
 * for (only an ejected target's availability needs the time, and a clock read costs as much as
 * a routing decision). `now` is an accessor: a copy made by spreading the context lacks it.
 */
export class FirstAttemptContext implements SelectionContext {
  readonly broadcastIndex: number;
  readonly attempt = 1;
  readonly exclude: ReadonlySet<Connection> = NO_EXCLUDE;
  readonly #clock: { now(): number };
  #now: number | undefined;

  constructor(broadcastIndex: number, clock: { now(): number }, now?: number) {
    this.broadcastIndex = broadcastIndex;
    this.#clock = clock;
    this.#now = now;
  }

  get now(): number {
    if (this.#now === undefined) this.#now = this.#clock.now();
    return this.#now;
  }
}

/**
 * isAvailable without reading the time unless the target is ejected. `when` is the time, or a
 * context whose `now` is read only if needed (FirstAttemptContext reads the clock then).
 */
export function availableAt(c: Connection, when: number | { readonly now: number }): boolean {
  return c.health.state !== 'ejected' || c.isAvailable(typeof when === 'number' ? when : when.now);
}

/** The available targets that have not failed this packet yet; all available ones if every one has. */
export function availableCandidates(group: readonly Connection[], context: SelectionContext): Connection[] {
  const available = group.filter((c) => availableAt(c, context));
  const fresh = available.filter((c) => !context.exclude.has(c));
  return fresh.length > 0 ? fresh : available;
}

/** hash % N over every target (stable while membership is), then the next available index. */
export function hashTarget(key: PartitionKey, group: readonly Connection[], now: number | { readonly now: number }): Connection | undefined {
  if (group.length === 0) return undefined;
  const start = stableHash(key) % group.length;
  for (let k = 0; k < group.length; k++) {
    const c = group[(start + k) % group.length] as Connection;
    if (availableAt(c, now)) return c;
  }
  return undefined;
}

/** The consistent-hash ring of a group: positions depend only on the targets' names. */
export function buildRing(group: readonly Connection[], pointsPerTarget: number): HashRing<Connection> {
  return new HashRing(group, (c) => c.targetName, pointsPerTarget);
}

/** The first available owner clockwise from the key's hash. */
export function ringTarget(ring: HashRing<Connection>, key: PartitionKey, now: number | { readonly now: number }): Connection | undefined {
  return ring.lookup(stableHash(key), (c) => availableAt(c, now));
}

/** A round-robin pick and the cursor to pass next time. */
export interface RoundRobinPick {
  target: Connection;
  next: number;
}

/**
 * The first available target from `cursor` on, in the group's stable order (an ejected target is
 * skipped without shifting the others' turns); a target in context.exclude only when no other
 * is available. Undefined when none is available (the cursor is then unchanged).
 */
export function roundRobinTarget(group: readonly Connection[], cursor: number, context: SelectionContext): RoundRobinPick | undefined {
  const n = group.length;
  if (n === 0) return undefined;
  const start = cursor % n;
  let fallback = -1;
  for (let k = 0; k < n; k++) {
    const i = (start + k) % n;
    const c = group[i] as Connection;
    if (!availableAt(c, context)) continue;
    if (context.exclude.has(c)) {
      if (fallback < 0) fallback = i;
      continue;
    }
    return { target: c, next: i + 1 };
  }
  return fallback < 0 ? undefined : { target: group[fallback] as Connection, next: fallback + 1 };
}

export interface LoadScoreOptions {
  /** Load reports older than this count as unknown. */
  loadStaleMs: number;
  /** The load is projected this far ahead along its rising trend. */
  trendHorizonMs: number;
}

/** A target's fresh load plus its rising trend over the horizon; unknown load counts as 0.5. */
export function loadScore(c: Connection, options: LoadScoreOptions): number {
  const load = c.freshLoad(options.loadStaleMs);
  if (load === undefined) return 0.5;
  return load + Math.max(0, c.loadTrend) * (options.trendHorizonMs / 1000);
}

/**
 * Power of two choices: two distinct candidates drawn with `random` (in [0, 1)), the lower
 * loadScore wins, ties go to the lower parallel index. With one candidate, that one.
 */
export function leastLoadedTarget(
  group: readonly Connection[],
  context: SelectionContext,
  random: () => number,
  options: LoadScoreOptions,
): Connection | undefined {
  const candidates = availableCandidates(group, context);
  if (candidates.length <= 1) return candidates[0];
  const i = Math.floor(random() * candidates.length);
  let j = Math.floor(random() * (candidates.length - 1));
  if (j >= i) j++;
  const a = candidates[i] as Connection;
  const b = candidates[j] as Connection;
  const sa = loadScore(a, options);
  const sb = loadScore(b, options);
  return sa < sb || (sa === sb && a.parallelIndex < b.parallelIndex) ? a : b;
}

/** Every parallel instance gets a copy, ejected ones too (their copy is reported as not delivered). */
export function broadcastTargets(group: readonly Connection[]): readonly Connection[] {
  return group;
}

export interface TargetSelectorOptions extends LoadScoreOptions {
  ringPointsPerTarget: number;
  random: () => number;
}

/** The strategies with their per-group state: round-robin cursors and hash rings. */
export class TargetSelector {
  readonly #options: TargetSelectorOptions;
  readonly #cursors = new Map<number, number>();
  readonly #rings = new Map<number, HashRing<Connection>>();

  constructor(options: TargetSelectorOptions) {
    this.#options = options;
  }

  /**
   * The target of one copy under `strategy` (broadcast, asked for one target, rotates like
   * round_robin). Keyed strategies need a keyed packet.
   */
  select(packet: Packet, group: readonly Connection[], strategy: StrategyName, context: SelectionContext): Connection | undefined {
    switch (strategy) {
      case 'hash':
        return hashTarget(packet.partitionKey as PartitionKey, group, context);
      case 'consistent_hash':
        return ringTarget(this.#ring(group, context.broadcastIndex), packet.partitionKey as PartitionKey, context);
      case 'load_balance':
        return leastLoadedTarget(group, context, this.#options.random, this.#options);
      case 'round_robin':
      case 'broadcast':
      default: {
        const pick = roundRobinTarget(group, this.#cursors.get(context.broadcastIndex) ?? 0, context);
        if (pick === undefined) return undefined;
        this.#cursors.set(context.broadcastIndex, pick.next);
        return pick.target;
      }
    }
  }

  /** A group's membership changed: its ring is rebuilt on next use (its cursor stays). */
  invalidate(broadcastIndex: number): void {
    this.#rings.delete(broadcastIndex);
  }

  /** Forgets every cursor and ring. */
  clear(): void {
    this.#cursors.clear();
    this.#rings.clear();
  }

  #ring(group: readonly Connection[], broadcastIndex: number): HashRing<Connection> {
    let ring = this.#rings.get(broadcastIndex);
    if (ring === undefined) {
      ring = buildRing(group, this.#options.ringPointsPerTarget);
      this.#rings.set(broadcastIndex, ring);
    }
    return ring;
  }
}
