/**
 * The delivery policy: how one copy of a packet gets to a target, or to the dead-letter queue.
 *
 * - Each attempt picks a target (the strategy, or a fixed target for broadcast) and sends with a
 *   timeout.
 * - A target fault (closed, full, timed out, unreachable) counts against the target; after
 *   ejectAfterFailures consecutive ones it is ejected for ejectBaseMs × times ejected (a failed
 *   probe counts at once), never more than maxEjectedFraction of its group. The copy is retried
 *   after a fully jittered exponential backoff, avoiding targets that already failed it where the
 *   strategy allows, up to maxRetries times.
 * - An item fault (see isItemFault: the target cannot encode the packet, or it is too large) is
 *   dead-lettered at once with its reason: no retry, nothing counted against the target, no
 *   ejection, so no key moves because of a bad item.
 * - After the last attempt, or when no target is available, the copy is dead-lettered (or failed
 *   when there is no dead-letter queue, or it refused the letter).
 * Invariant over the totals: sent = delivered + deadLettered + failed, once every copy settled.
 */
import type { AsyncQueueLike } from '../queue/queue-like';
import type { Connection } from './connection';
import { NO_EVENTS } from './events';
import type { RouterEventSink } from './events';
import { isItemFault, reasonOf } from './faults';
import type { Packet } from './packet';
import type { DeadLetter, DeliveryFault, DeliveryReport, DeliveryTotals } from './reports';
import type { ResolvedRouterOptions } from './router-options';
import { NO_EXCLUDE } from './strategies';
import type { SelectionContext } from './strategies';


/** Picks the target of one attempt from the group's current connections. */
export type SelectFn = (group: readonly Connection[], context: SelectionContext) => Connection | undefined;

export type DeliveryOptions = Pick<
  ResolvedRouterOptions,
  | 'name' | 'deadLetterQueue' | 'maxRetries' | 'retryBaseMs' | 'retryMaxMs' | 'sendTimeoutMs' | 'ejectAfterFailures' | 'ejectBaseMs'
  | 'ejectMaxMs' | 'maxEjectedFraction' | 'trace' | 'clock' | 'random'
>;

/** The cap of the n-th retry's backoff (n from 1): base · 2^(n-1), at most max. The sleep is uniform in [0, cap). */
export function backoffCapMs(retry: number, baseMs: number, maxMs: number): number {
  return Math.min(maxMs, baseMs * 2 ** (retry - 1));
}

/**
 * Whether `target` must be ejected now: it is probing (a failed probe), or it has failed
 * `ejectAfterFailures` times in a row; and it is not ejected already; and fewer than
 * max(1, ⌊maxEjectedFraction · |group|⌋) others of its group are ejected.
 */
export function shouldEject(
  group: readonly Connection[],
  target: Connection,
  options: Pick<DeliveryOptions, 'ejectAfterFailures' | 'maxEjectedFraction'>,
): boolean {
  const probing = target.health.state === 'probing';
  if (!probing && target.health.consecutiveFailures < options.ejectAfterFailures) return false;
  if (target.health.state === 'ejected') return false;
  const ejected = group.filter((c) => c !== target && c.health.state === 'ejected').length;
  return ejected < Math.max(1, Math.floor(options.maxEjectedFraction * group.length));
}

export class DeliveryPolicy {
  readonly #o: DeliveryOptions;
  readonly #totals: DeliveryTotals;
  readonly #groupOf: (broadcastIndex: number) => readonly Connection[];
  readonly #events: RouterEventSink;

  /**
   * `groupOf` gives a broadcast group's current connections in parallel-index order; `events`
   * receives retry, eject, recover and dead-letter events.
   */
  constructor(
    options: DeliveryOptions,
    totals: DeliveryTotals,
    groupOf: (broadcastIndex: number) => readonly Connection[],
    events: RouterEventSink = NO_EVENTS,
  ) {
    this.#o = options;
    this.#totals = totals;
    this.#groupOf = groupOf;
    this.#events = events;
  }

  /**
   * The fast path of one copy whose first target is already chosen: one synchronous,
   * non-blocking put (Connection#sendNow). Delivered: a report, with no promise. An item fault:
   * dead-lettered at once, the target not blamed (as deliver() does). Anything else — the queue
   * has no synchronous put, it is full, or it threw a target fault — counts nothing and returns
   * undefined: the caller then takes deliver() with `first` = `target` (that attempt counts,
   * retries and ejects as ever), so the outcome is the one deliver() alone would give.
   */
  deliverNow(packet: Packet, broadcastIndex: number, target: Connection): DeliveryReport | Promise<DeliveryReport> | undefined {
    const o = this.#o;
    const copy = o.trace ? packet.withHop(o.name, target.targetName) : packet;
    let put: boolean;
    try {
      put = target.sendNow(copy);
    } catch (e) {
      // sendNow throws item faults only.
      this.#totals.sent++;
      this.#totals.attempts++;
      return this.giveUp(packet, broadcastIndex, target, 1, reasonOf(e), 'item');
    }
    if (!put) return undefined;
    this.#totals.sent++;
    this.#totals.attempts++;
    this.#totals.delivered++;
    this.#succeeded(target);
    return { broadcastIndex, target: target.targetName, parallelIndex: target.parallelIndex, status: 'delivered', attempts: 1, retries: 0 };
  }

  /**
   * Delivers one copy of `packet` to broadcast group `broadcastIndex`: to `fixed` when given
   * (broadcast: no failover), else to what `select` picks at each attempt; the first attempt goes
   * to `first` when given (a target the caller already selected for this copy).
   */
  async deliver(packet: Packet, broadcastIndex: number, select: SelectFn, fixed?: Connection, first?: Connection): Promise<DeliveryReport> {
    const o = this.#o;
    let exclude: Set<Connection> | undefined; // allocated at the first failure
    let attempts = 0;
    let last: Connection | null = null;
    let reason = '';
    this.#totals.sent++; // one copy, however many attempts it takes
    while (attempts <= o.maxRetries) {
      let target: Connection | undefined;
      if (attempts === 0 && first !== undefined) {
        target = first;
      } else {
        const context: SelectionContext = { broadcastIndex, attempt: attempts + 1, exclude: exclude ?? NO_EXCLUDE, now: o.clock.now() };
        target = fixed !== undefined ? (fixed.isAvailable(context.now) ? fixed : undefined) : select(this.#groupOf(broadcastIndex), context);
      }
      if (target === undefined) {
        reason = reason || (fixed !== undefined ? 'target is ejected' : 'no available target in the group');
        break;
      }
      attempts++;
      last = target;
      this.#totals.attempts++;
      try {
        const copy = o.trace ? packet.withHop(o.name, target.targetName) : packet;
        await target.send(copy, { timeoutMs: o.sendTimeoutMs });
        this.#succeeded(target);
        this.#totals.delivered++;
        return { broadcastIndex, target: target.targetName, parallelIndex: target.parallelIndex, status: 'delivered', attempts, retries: attempts - 1, ...(reason ? { reason } : {}) };
      } catch (e) {
        reason = reasonOf(e);
        // The packet is bad, not the target: no retry can help, and the target is not blamed.
        if (isItemFault(e)) return this.giveUp(packet, broadcastIndex, target, attempts, reason, 'item');
        this.blame(broadcastIndex, target, e);
        (exclude ??= new Set()).add(target);
      }
      if (attempts <= o.maxRetries) {
        target.counters.retried++;
        this.#totals.retried++;
        const delayMs = o.random() * backoffCapMs(attempts, o.retryBaseMs, o.retryMaxMs); // full jitter
        this.#events.emit('retry', {
          router: o.name, traceId: packet.traceId, broadcastIndex, target: target.targetName, parallelIndex: target.parallelIndex, attempt: attempts, delayMs, reason,
        });
        await o.clock.sleep(delayMs);
      }
    }
    return this.giveUp(packet, broadcastIndex, last, attempts, reason, 'target');
  }

  /** Counts a target fault against `target` (and ejects it when due). Not for item faults. */
  blame(broadcastIndex: number, target: Connection, error: unknown): void {
    target.recordFailure(error);
    const o = this.#o;
    if (!shouldEject(this.#groupOf(broadcastIndex), target, o)) return;
    target.eject(o.ejectBaseMs, o.ejectMaxMs);
    const h = target.health;
    this.#events.emit('eject', {
      router: o.name, target: target.targetName, broadcastIndex, parallelIndex: target.parallelIndex, timesEjected: h.timesEjected,
      ejectedForMs: (h.nextProbeAt ?? o.clock.now()) - o.clock.now(), reason: h.lastError,
    });
  }

  /** A successful put: a probing target is back in rotation ('recover'). */
  #succeeded(target: Connection): void {
    if (!target.recordSuccess()) return;
    this.#events.emit('recover', {
      router: this.#o.name, target: target.targetName, broadcastIndex: target.broadcastIndex, parallelIndex: target.parallelIndex, timesEjected: target.health.timesEjected,
    });
  }

  /**
   * Counts `count` copies that a batch put delivered to `target` at the first attempt (in the
   * target's counters too unless `connectionCounted`: Connection#sendNow counted them).
   */
  countBatchDelivered(target: Connection, count: number, connectionCounted = false): void {
    if (!connectionCounted) {
      target.counters.sent += count;
      target.counters.delivered += count;
    }
    this.#succeeded(target);
    this.#totals.sent += count;
    this.#totals.attempts += count;
    this.#totals.delivered += count;
  }

  /** A copy that has no target at all (the router has no connections): counted and dead-lettered. */
  unroutable(packet: Packet): Promise<DeliveryReport> {
    this.#totals.sent++;
    return this.giveUp(packet, -1, null, 0, 'no downstream connections', 'target');
  }

  /** Puts a dead letter with the reason, attempts and last target; 'failed' when that is not possible. */
  async giveUp(packet: Packet, broadcastIndex: number, last: Connection | null, attempts: number, reason: string, fault: DeliveryFault): Promise<DeliveryReport> {
    const base = { broadcastIndex, target: last?.targetName ?? null, parallelIndex: last?.parallelIndex ?? null, attempts, retries: Math.max(0, attempts - 1) };
    const dlq: AsyncQueueLike<unknown> | undefined = this.#o.deadLetterQueue;
    if (dlq !== undefined) {
      const letter: DeadLetter = {
        deadLetter: true, router: this.#o.name, reason, fault, attempts, lastTarget: base.target, broadcastIndex, at: Date.now(), packet: packet.toJSON(),
      };
      try {
        await dlq.putAsync(letter, { timeoutMs: this.#o.sendTimeoutMs });
        this.#totals.deadLettered++;
        this.#gaveUp(packet, base, 'dead_lettered', fault, reason);
        return { ...base, status: 'dead_lettered', reason, fault };
      } catch (e) {
        reason = `${reason}; the dead-letter queue refused it too (${reasonOf(e)})`;
      }
    }
    this.#totals.failed++;
    this.#gaveUp(packet, base, 'failed', fault, reason);
    return { ...base, status: 'failed', reason, fault };
  }

  #gaveUp(packet: Packet, base: { broadcastIndex: number; target: string | null; attempts: number }, status: 'dead_lettered' | 'failed', fault: DeliveryFault, reason: string): void {
    this.#events.emit('dead-letter', {
      router: this.#o.name, traceId: packet.traceId, broadcastIndex: base.broadcastIndex, target: base.target, status, fault, reason, attempts: base.attempts,
    });
  }
}
