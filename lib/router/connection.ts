/**
 * Connection: one downstream target of a router — a queue (or a descriptor resolved on first
 * use), its position in the router's groups, its load, its health and its counters.
 */
import { ArgumentRangeError, InvalidArgumentTypeError } from '../errors';
import { QueueDescriptor } from '../queue/descriptor';
import { isAsyncQueueLike } from '../queue/queue-like';
import type { AsyncQueueLike, QueueLike } from '../queue/queue-like';
import { resolveDescriptor } from '../queue/registry';
import { checkInteger, checkKnownKeys, checkOptions } from '../validate';
import type { Clock } from './clock';
import { systemClock } from './clock';
import { isItemFault } from './faults';
import { Packet } from './packet';

export interface ConnectionInit {
  /** Which broadcast group (every group gets one copy of each packet). */
  broadcastIndex: number;
  /** Which parallel instance within the group. */
  parallelIndex: number;
  /** A name for reports, traces and the consistent-hash ring (stable across restarts). */
  targetName: string;
  /** The target queue, or a descriptor resolved (resolveDescriptor) on first use. */
  targetHandle: AsyncQueueLike<unknown> | QueueDescriptor;
  /** The input of the receiving operator this connection feeds. Default 0. */
  targetInputIndex?: number;
  /** Free-form kind of target, for reports. */
  targetType?: string;
}

export type HealthState = 'healthy' | 'ejected' | 'probing';

export interface ConnectionHealth {
  state: HealthState;
  consecutiveFailures: number;
  timesEjected: number;
  /** When an ejected target may be tried again (clock ms), or null. */
  nextProbeAt: number | null;
  lastError: string | null;
}

/** A put that failed with an item fault (isItemFault: the packet itself was refused) counts in none of these. */
export interface ConnectionCounters {
  /** Attempts to put a packet (each retry counts). */
  sent: number;
  delivered: number;
  /** Attempts that failed by the target's fault. */
  failed: number;
  retried: number;
  /** Payload bytes delivered (Uint8Array and string payloads; others count 0). */
  bytes: number;
}

export interface LoadSample {
  at: number;
  load: number;
}

const HISTORY = 32;
/** Time constant of the load-slope EWMA: a sample weighs by how much time it covers, so
 * readings microseconds apart (one per routing decision) cannot blow the trend up. */
const TREND_TAU_MS = 250;

function payloadBytes(payload: unknown): number {
  if (payload instanceof Uint8Array) return payload.byteLength;
  if (typeof payload === 'string') return Buffer.byteLength(payload);
  return 0;
}

export class Connection {
  readonly broadcastIndex: number;
  readonly parallelIndex: number;
  readonly targetName: string;
  readonly targetInputIndex: number;
  readonly targetType: string;
  readonly counters: ConnectionCounters = { sent: 0, delivered: 0, failed: 0, retried: 0, bytes: 0 };
  readonly health: ConnectionHealth = { state: 'healthy', consecutiveFailures: 0, timesEjected: 0, nextProbeAt: null, lastError: null };
  #handle: AsyncQueueLike<unknown> | QueueDescriptor;
  #queue: AsyncQueueLike<unknown> | undefined;
  readonly #history: LoadSample[] = [];
  #trend = 0;
  #reported: LoadSample | undefined;
  #clock: Clock;

  constructor(init: ConnectionInit, clock: Clock = systemClock) {
    const o = checkOptions<ConnectionInit>(init, 'init');
    checkKnownKeys(o, ['broadcastIndex', 'parallelIndex', 'targetName', 'targetHandle', 'targetInputIndex', 'targetType'], 'init');
    this.broadcastIndex = checkInteger(o.broadcastIndex, 'init.broadcastIndex', 0);
    this.parallelIndex = checkInteger(o.parallelIndex, 'init.parallelIndex', 0);
    if (typeof o.targetName !== 'string' || o.targetName.length === 0) {
      throw new InvalidArgumentTypeError('init.targetName', 'a non-empty string', o.targetName);
    }
    this.targetName = o.targetName;
    if (!(o.targetHandle instanceof QueueDescriptor) && !isAsyncQueueLike(o.targetHandle)) {
      throw new InvalidArgumentTypeError('init.targetHandle', 'an AsyncQueueLike or a QueueDescriptor', o.targetHandle);
    }
    this.#handle = o.targetHandle as AsyncQueueLike<unknown> | QueueDescriptor;
    this.targetInputIndex = o.targetInputIndex === undefined ? 0 : checkInteger(o.targetInputIndex, 'init.targetInputIndex', 0);
    this.targetType = o.targetType === undefined ? (o.targetHandle instanceof QueueDescriptor ? o.targetHandle.queueType : 'queue') : String(o.targetType);
    this.#clock = clock;
  }

  /** The target queue (a descriptor handle is resolved here, once). */
  get queue(): AsyncQueueLike<unknown> {
    if (this.#queue === undefined) {
      this.#queue = this.#handle instanceof QueueDescriptor ? resolveDescriptor(this.#handle) : this.#handle;
    }
    return this.#queue;
  }

  /** `parallelIndex/broadcastIndex:targetName`, for reports. */
  toString(): string {
    return `${this.targetName}[${this.broadcastIndex}.${this.parallelIndex}]`;
  }

  /**
   * The target's fill level in [0, 1] from its real state (a SageQueue reads its depth from
   * shared memory, so this sees a consumer process's backlog). Records the sample.
   * Queues that cannot tell their load report through reportLoad(); undefined when unknown.
   */
  getBufferLoad(): number | undefined {
    const q = this.queue as Partial<{ bufferLoad(): number }>;
    if (typeof q.bufferLoad === 'function') {
      const load = q.bufferLoad();
      this.#record({ at: this.#clock.now(), load });
      return load;
    }
    return this.#reported?.load;
  }

  /** For targets that cannot be read directly: a load measured elsewhere, and when. */
  reportLoad(load: number, at = this.#clock.now()): void {
    if (typeof load !== 'number') throw new InvalidArgumentTypeError('load', 'a number in [0, 1]', load);
    if (!(load >= 0 && load <= 1)) throw new ArgumentRangeError('load', 'a number in [0, 1]', load);
    if (typeof at !== 'number' || !Number.isFinite(at)) throw new InvalidArgumentTypeError('at', 'a finite time in clock ms', at);
    this.#reported = { at, load };
    this.#record(this.#reported);
  }

  /** The latest load if it is younger than maxAgeMs (reading it afresh when possible). */
  freshLoad(maxAgeMs: number): number | undefined {
    const direct = this.getBufferLoad();
    if (this.#reported === undefined || typeof (this.queue as Partial<{ bufferLoad(): number }>).bufferLoad === 'function') return direct;
    return this.#clock.now() - this.#reported.at <= maxAgeMs ? this.#reported.load : undefined;
  }

  /** Recent load samples, oldest first. */
  get loadHistory(): readonly LoadSample[] {
    return this.#history;
  }

  /** Smoothed slope of the load, per second (positive: filling up). */
  get loadTrend(): number {
    return this.#trend;
  }

  /** Whether the router may send here now (an ejected target becomes probing once its time is up). */
  isAvailable(now = this.#clock.now()): boolean {
    if (this.health.state !== 'ejected') return true;
    if (this.health.nextProbeAt !== null && now >= this.health.nextProbeAt) {
      this.health.state = 'probing';
      return true;
    }
    return false;
  }

  /**
   * Delivers a copy of `packet` addressed to this connection's input, waiting at most timeoutMs
   * (a full or stopped target cannot stall the caller). Counts it; throws what the queue threw.
   * An item fault (the queue refused this packet itself, see isItemFault) is not counted: the
   * target is not at fault.
   */
  async send(packet: Packet, options?: { timeoutMs?: number; signal?: AbortSignal }): Promise<void> {
    if (!(packet instanceof Packet)) throw new InvalidArgumentTypeError('packet', 'a Packet', packet);
    const copy = packet.withInputIndex(this.targetInputIndex);
    this.counters.sent++;
    try {
      await this.queue.putAsync(copy, options);
    } catch (e) {
      if (isItemFault(e)) this.counters.sent--;
      else this.counters.failed++;
      throw e;
    }
    this.counters.delivered++;
    this.counters.bytes += payloadBytes(packet.payload);
  }

  /**
   * @internal The router's fast path: puts a copy of `packet` with the queue's synchronous,
   * non-blocking `putNowait` (QueueLike: SageQueue, LocalQueue) and counts it. False, counting
   * nothing, when the queue has no putNowait or it threw a target fault (full, closed, ...): the
   * caller then takes send()'s way. Throws an item fault (isItemFault), uncounted, as send() does.
   * A queue's putNowait must be synchronous (a returned promise is not awaited).
   */
  sendNow(packet: Packet): boolean {
    const queue = this.queue as AsyncQueueLike<unknown> & Partial<Pick<QueueLike<unknown>, 'putNowait'>>;
    const putNowait = queue.putNowait;
    if (typeof putNowait !== 'function') return false;
    try {
      putNowait.call(queue, packet.withInputIndex(this.targetInputIndex));
    } catch (e) {
      if (isItemFault(e)) throw e;
      return false;
    }
    this.counters.sent++;
    this.counters.delivered++;
    this.counters.bytes += payloadBytes(packet.payload);
    return true;
  }

  /**
   * Takes the target out of rotation until markUp(), e.g. because its consumer process exited.
   * Keyed traffic moves to the successor meanwhile; nothing probes it automatically.
   */
  markDown(reason: string): void {
    this.health.state = 'ejected';
    this.health.nextProbeAt = null;
    this.health.lastError = String(reason);
  }

  /** Puts a target taken out by markDown() (or ejected) back into rotation. */
  markUp(): void {
    this.health.state = 'healthy';
    this.health.consecutiveFailures = 0;
    this.health.nextProbeAt = null;
  }

  /** @internal The router's bookkeeping after an attempt. True when a probing target recovered. */
  recordSuccess(): boolean {
    this.health.consecutiveFailures = 0;
    // A send that was in flight when the target got ejected must not cancel its probe time.
    if (this.health.state === 'probing') {
      this.health.state = 'healthy';
      this.health.nextProbeAt = null;
      return true;
    }
    return false;
  }

  /** @internal */
  recordFailure(error: unknown): void {
    this.health.consecutiveFailures++;
    this.health.lastError = error instanceof Error ? `${(error as { code?: string }).code ?? error.name}: ${error.message}` : String(error);
  }

  /** @internal Ejects for base × times ejected (a probe that fails ejects for longer). */
  eject(baseMs: number, maxMs: number): void {
    this.health.timesEjected++;
    this.health.state = 'ejected';
    this.health.nextProbeAt = this.#clock.now() + Math.min(maxMs, baseMs * this.health.timesEjected);
  }

  #record(sample: LoadSample): void {
    const prev = this.#history[this.#history.length - 1];
    if (prev !== undefined && sample.at > prev.at) {
      const dt = sample.at - prev.at;
      const slope = ((sample.load - prev.load) * 1000) / dt;
      this.#trend += (1 - Math.exp(-dt / TREND_TAU_MS)) * (slope - this.#trend);
    }
    if (prev !== undefined && sample.at === prev.at) this.#history[this.#history.length - 1] = sample;
    else this.#history.push(sample);
    if (this.#history.length > HISTORY) this.#history.shift();
  }
}
