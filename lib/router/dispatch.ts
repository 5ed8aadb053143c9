/**
 * Per-key ordering and batch dispatch.
 *
 * KeyOrder runs the deliveries of one key (per broadcast group) one after another, so per-key
 * order holds under retries and failover even when route() is called without awaiting. A copy
 * delivered at once (route()'s fast path) never enters it: only copies still in flight hold a key.
 *
 * dispatchBatch is routeMany's path: each copy's target is chosen as route() would, then each
 * target's copies are put with one non-blocking batch call when its queue has `putMany`
 * (SageQueue), else one by one with its non-blocking `putNowait` (LocalQueue), in order. Copies that do not fit, the rest of a batch whose put threw, and every
 * copy of a key that still has a delivery in flight take route()'s per-packet path (timeouts,
 * retries, failover, dead letters). A batch put that throws an item fault (one bad item: nothing
 * of its chunk was written) does not blame the target: the rest goes the per-packet way, where
 * the bad item alone is dead-lettered.
 */
import type { Connection } from './connection';
import type { DeliveryPolicy } from './delivery';
import { isItemFault } from './faults';
import type { Packet } from './packet';
import type { DeliveryReport, RouteManyReport } from './reports';
import { NO_EXCLUDE } from './strategies';
import type { SelectionContext } from './strategies';
import { KEYED_STRATEGIES } from './strategy-names';
import type { StrategyName } from './strategy-names';

type KeyId = string | number | bigint;

/** A key as a Map key: strings, numbers and bigints as they are (1, '1' and 1n stay apart), bytes by content. */
function keyIdOf(key: NonNullable<Packet['partitionKey']>): KeyId {
  return key instanceof Uint8Array ? Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('hex') : key;
}

/** Byte keys get their own map, so a byte key never meets a string key that spells its hex. */
interface GroupChains {
  values: Map<KeyId, Promise<unknown>>;
  bytes: Map<KeyId, Promise<unknown>>;
}

/** Chains the deliveries of each key (per broadcast group). */
export class KeyOrder {
  readonly #groups = new Map<number, GroupChains>();
  #size = 0; // chains in flight, all groups: busy() answers at once when there are none

  #chainsOf(packet: Packet, broadcastIndex: number, create: boolean): Map<KeyId, Promise<unknown>> | undefined {
    let g = this.#groups.get(broadcastIndex);
    if (g === undefined) {
      if (!create) return undefined;
      g = { values: new Map(), bytes: new Map() };
      this.#groups.set(broadcastIndex, g);
    }
    return packet.partitionKey instanceof Uint8Array ? g.bytes : g.values;
  }

  /** Whether a delivery of this key is still in flight (or queued) in this group. */
  busy(packet: Packet, broadcastIndex: number): boolean {
    if (this.#size === 0) return false;
    const chains = this.#chainsOf(packet, broadcastIndex, false);
    return chains !== undefined && chains.has(keyIdOf(packet.partitionKey as NonNullable<Packet['partitionKey']>));
  }

  /** Runs `run` after every earlier run of the same key (whether they succeeded or not). */
  run<T>(packet: Packet, broadcastIndex: number, run: () => Promise<T>): Promise<T> {
    const chains = this.#chainsOf(packet, broadcastIndex, true) as Map<KeyId, Promise<unknown>>;
    const id = keyIdOf(packet.partitionKey as NonNullable<Packet['partitionKey']>);
    const previous = chains.get(id);
    return this.#hold(chains, id, (previous === undefined ? run() : previous.then(run, run)) as Promise<T>);
  }

  /**
   * Records a delivery of an idle key that has already started (route()'s fast path fell back to
   * the per-packet path): later deliveries of the key wait for it, as behind run().
   */
  hold<T>(packet: Packet, broadcastIndex: number, delivery: Promise<T>): Promise<T> {
    const chains = this.#chainsOf(packet, broadcastIndex, true) as Map<KeyId, Promise<unknown>>;
    return this.#hold(chains, keyIdOf(packet.partitionKey as NonNullable<Packet['partitionKey']>), delivery);
  }

  #hold<T>(chains: Map<KeyId, Promise<unknown>>, id: KeyId, mine: Promise<T>): Promise<T> {
    if (!chains.has(id)) this.#size++;
    chains.set(id, mine);
    const forget = (): void => {
      if (chains.get(id) !== mine) return;
      chains.delete(id);
      this.#size--;
    };
    mine.then(forget, forget);
    return mine;
  }
}

/** What dispatchBatch needs from its router. */
export interface BatchRouting {
  name: string;
  trace: boolean;
  now: number;
  policy: DeliveryPolicy;
  keyOrder: KeyOrder;
  /** The broadcast groups by index, in index order, each in parallel-index order. */
  groups: ReadonlyArray<readonly [number, readonly Connection[]]>;
  /** The router's target selection (its selectTarget hook). */
  select(packet: Packet, group: readonly Connection[], strategy: StrategyName, context: SelectionContext): Connection | undefined;
  /** The per-packet path for one copy (not in key order: dispatchBatch orders keyed copies itself). */
  deliver(packet: Packet, broadcastIndex: number, strategy: StrategyName, fixed?: Connection): Promise<DeliveryReport>;
}

/** One target's share of a batch: the copies to put, and (same index) what to retry each as. */
interface TargetBatch {
  /** What is put: the packets themselves, or (tracing) copies with this hop added. */
  copies: Packet[];
  packets: Packet[];
  strategies: StrategyName[];
}

type PutMany = (items: readonly unknown[], o: { block: boolean }) => number;

/** Routes `packets` (whose strategies are already decided) in batches; see the module comment. */
export async function dispatchBatch(packets: readonly Packet[], strategies: readonly StrategyName[], routing: BatchRouting): Promise<RouteManyReport> {
  const report: RouteManyReport = { packets: packets.length, delivered: 0, deadLettered: 0, failed: 0, problems: [], ok: false };
  const slow: Array<Promise<DeliveryReport>> = [];
  const { policy, keyOrder, trace } = routing;
  for (const [b, group] of routing.groups) {
    const batches = new Map<Connection, TargetBatch>();
    const add = (target: Connection, packet: Packet, strategy: StrategyName): void => {
      let batch = batches.get(target);
      if (batch === undefined) {
        const packets: Packet[] = [];
        batch = { copies: trace ? [] : packets, packets, strategies: [] };
        batches.set(target, batch);
      }
      batch.packets.push(packet);
      batch.strategies.push(strategy);
      if (trace) batch.copies.push(packet.withHop(routing.name, target.targetName));
    };
    for (let i = 0; i < packets.length; i++) {
      const packet = packets[i] as Packet;
      const strategy = strategies[i] as StrategyName;
      if (strategy === 'broadcast') {
        for (const c of group) add(c, packet, strategy);
        continue;
      }
      if (KEYED_STRATEGIES.has(strategy) && keyOrder.busy(packet, b)) {
        slow.push(keyOrder.run(packet, b, () => routing.deliver(packet, b, strategy)));
        continue;
      }
      const target = routing.select(packet, group, strategy, { broadcastIndex: b, attempt: 1, exclude: NO_EXCLUDE, now: routing.now });
      if (target === undefined) slow.push(routing.deliver(packet, b, strategy));
      else add(target, packet, strategy);
    }
    for (const [target, batch] of batches) {
      const put = putBatch(target, batch.copies, b, policy);
      if (put > 0) report.delivered += put;
      // The rest (in order) goes the per-packet way, chained per key behind each other.
      for (let k = put; k < batch.packets.length; k++) {
        const packet = batch.packets[k] as Packet;
        const strategy = batch.strategies[k] as StrategyName;
        const run = (): Promise<DeliveryReport> => routing.deliver(packet, b, strategy, strategy === 'broadcast' ? target : undefined);
        slow.push(KEYED_STRATEGIES.has(strategy) ? keyOrder.run(packet, b, run) : run());
      }
    }
  }
  if (routing.groups.length === 0) for (const packet of packets) slow.push(policy.unroutable(packet));
  for (const d of await Promise.all(slow)) {
    if (d.status === 'delivered') report.delivered++;
    else if (d.status === 'dead_lettered') report.deadLettered++;
    else report.failed++;
    if (d.status !== 'delivered' || d.attempts > 1) report.problems.push(d);
  }
  report.ok = report.deadLettered === 0 && report.failed === 0;
  return report;
}

/**
 * Puts a target's batch with one non-blocking putMany when its queue has one, else copy by copy
 * with its putNowait (Connection#sendNow); returns how many copies went in, from the first on (0
 * with neither). A target fault counts against the target; an item fault does not.
 */
function putBatch(target: Connection, batch: readonly Packet[], broadcastIndex: number, policy: DeliveryPolicy): number {
  const putMany = (target.queue as { putMany?: unknown }).putMany;
  if (typeof putMany !== 'function') return putEach(target, batch, policy);
  const copies = batch.map((p) => p.withInputIndex(target.targetInputIndex));
  let put: number;
  try {
    put = (putMany as PutMany).call(target.queue, copies, { block: false });
  } catch (e) {
    const written = (e as { written?: unknown }).written;
    put = typeof written === 'number' ? written : 0; // those are in: never send them twice
    if (!isItemFault(e)) policy.blame(broadcastIndex, target, e);
  }
  if (put > 0) policy.countBatchDelivered(target, put);
  return put;
}

/**
 * putBatch without putMany: putNowait copy by copy until one does not go in (the queue is full,
 * has no putNowait, or refused it: a target fault is left to the per-packet path, which counts
 * it; an item fault too, which dead-letters that copy alone). Connection#sendNow counts each.
 */
function putEach(target: Connection, batch: readonly Packet[], policy: DeliveryPolicy): number {
  let put = 0;
  try {
    while (put < batch.length && target.sendNow(batch[put] as Packet)) put++;
  } catch {
    // an item fault: that copy and the rest take the per-packet path
  }
  if (put > 0) policy.countBatchDelivered(target, put, true);
  return put;
}
