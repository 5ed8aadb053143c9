/**
 * WorkerPool: the primary side of a cluster wired with sage-queue, in a few lines. It creates one
 * SageQueue per worker (plus an optional shared reply queue), a BaseRouter with a connection per
 * worker, and forks the workers, which attach with joinWorkerPool(). A worker that exits is taken
 * out of rotation at once (its keyed traffic moves to the successor; messages already in its
 * queue wait there, consistent), and a replacement attached to the same queue takes over.
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { availableParallelism } from 'node:os';

import { ArgumentRangeError, InvalidArgumentTypeError, PoolNotReadyError, SageQueueError } from '../errors';
import { BaseRouter } from '../router/base-router';
import type { RouteManyReport, RouteReport, RouterOptions } from '../router/base-router';
import type { Connection } from '../router/connection';
import type { PartitionKey } from '../router/hashing';
import { Packet } from '../router/packet';
import type { PacketWire } from '../router/packet';
import { SageQueue } from '../queue/sage-queue';
import type { SageAutoOptions } from '../queue/sage-queue';
import type { SageMessage } from '../queue/sage-leases';
import { checkBoolean, checkInteger, checkKnownKeys, checkOptions, checkSignal, checkTimeoutMs } from '../validate';
import type { WorkerPoolEvents, WorkerPoolStats, WorkerState } from './pool-events';
import { POOL_ENV, READY_MESSAGE } from './pool-env';
import type { PoolAssignment } from './pool-env';

export interface WorkerPoolOptions {
  /** The worker module (it calls joinWorkerPool()). */
  script: string;
  /** Default: one per core, at least 2. */
  workers?: number;
  /** Prefix of the queue names. Default `pool-<pid>-<random>`. */
  name?: string;
  /** Options of each worker's inbound queue (capacity, maxsize, codec...). */
  queue?: SageAutoOptions;
  /** Create a shared reply queue the workers answer on (true, or its options). */
  replies?: boolean | SageAutoOptions;
  /**
   * At-least-once jobs: each worker's queue is an explicit-ack SageQueue, and a worker acks a job
   * when its handling finished (see PoolWorker.packets). A worker that dies mid-job has its
   * unacked jobs delivered again to its replacement, before newer ones (per-key order kept).
   * true, or the lease settings recorded in the queues. Default false (a killed worker loses the
   * job in hand).
   */
  ack?: boolean | PoolAckOptions;
  /** The router (strategy, timeouts, retries, dead-letter queue...). Default strategy 'consistent_hash'. */
  router?: RouterOptions;
  /** Replace a worker that exits unexpectedly. Default true. */
  respawn?: boolean;
  /**
   * Crash-loop limit: a slot whose worker exits again after this many restarts within
   * restartWindowMs is given up ('worker-crash-loop'). Default 5; Infinity never gives up.
   */
  maxRestarts?: number;
  /** The window of maxRestarts. Default 60 000 ms. */
  restartWindowMs?: number;
  args?: string[];
  execArgv?: string[];
  env?: NodeJS.ProcessEnv;
}

/** The lease settings of a pool with `ack` (see SageQueueOptions). */
export interface PoolAckOptions {
  /** How long a worker may hold a job before it is delivered again. Default 30 000 ms. */
  ackTimeoutMs?: number;
  /** Recorded in the queues (see SageQueueOptions.maxDeliveries). Default 5. */
  maxDeliveries?: number;
}

/** Options of WorkerPool#ready(). */
export interface PoolReadyOptions {
  /** Reject with PoolNotReadyError (ERR_POOL_NOT_READY) after this long. Default: wait forever. */
  timeoutMs?: number;
  /** Reject with `signal.reason` when aborted. */
  signal?: AbortSignal;
}

/** What a pool's workers receive through their inbound queue. */
export type PoolInbound<In> = PacketWire<In> | Packet<In>;

interface Slot {
  index: number;
  queue: SageQueue<PoolInbound<unknown>>;
  connection: Connection;
  child: ChildProcess;
  ready: Promise<void>;
  state: WorkerState;
  startedAt: number;
  /** Consecutive deaths within a second of starting (drives the respawn backoff). */
  quickDeaths: number;
  /** When this slot was restarted (pruned to the crash-loop window). */
  restartTimes: number[];
  restarts: number;
}

const OPTION_KEYS = [
  'script', 'workers', 'name', 'queue', 'replies', 'ack', 'router', 'respawn', 'maxRestarts', 'restartWindowMs', 'args', 'execArgv', 'env',
] as const;

/** The queue options that make a worker's queue explicit-ack (undefined: auto). */
function ackQueueOptions(ack: unknown): { ackMode: 'explicit'; ackTimeoutMs?: number; maxDeliveries?: number } | undefined {
  if (ack === undefined || ack === false) return undefined;
  if (ack === true) return { ackMode: 'explicit' };
  const a = checkOptions<PoolAckOptions>(ack, 'options.ack');
  checkKnownKeys(a, ['ackTimeoutMs', 'maxDeliveries'], 'options.ack');
  const out: { ackMode: 'explicit'; ackTimeoutMs?: number; maxDeliveries?: number } = { ackMode: 'explicit' };
  if (a.ackTimeoutMs !== undefined) out.ackTimeoutMs = checkInteger(a.ackTimeoutMs, 'options.ack.ackTimeoutMs', 1, 86_400_000);
  if (a.maxDeliveries !== undefined) out.maxDeliveries = checkInteger(a.maxDeliveries, 'options.ack.maxDeliveries', 1, 1_000_000);
  return out;
}

/**
 * The primary side of a pool of worker processes. `In` is the payload type routed to the
 * workers, `Out` what they answer on the reply queue. Events: see WorkerPoolEvents (typed
 * on / once / off).
 */
export class WorkerPool<In = unknown, Out = unknown> extends EventEmitter<WorkerPoolEvents> implements AsyncDisposable {
  readonly name: string;
  readonly router: BaseRouter;
  readonly replies: SageQueue<Out> | null;
  /** True when the workers ack their jobs (options.ack): at least once. */
  readonly ack: boolean;
  readonly #slots: Slot[] = [];
  readonly #opts: WorkerPoolOptions;
  readonly #maxRestarts: number;
  readonly #restartWindowMs: number;
  #closing = false;
  #closed: Promise<void> | undefined;
  #exits = 0;
  #restarts = 0;

  constructor(options: WorkerPoolOptions) {
    super();
    const o = checkOptions<WorkerPoolOptions>(options);
    checkKnownKeys(o, OPTION_KEYS);
    if (typeof o.script !== 'string' || o.script.length === 0) throw new InvalidArgumentTypeError('options.script', 'a module path', o.script);
    const workers = o.workers === undefined ? Math.max(2, availableParallelism()) : checkInteger(o.workers, 'options.workers', 1, 1024);
    checkBoolean(o.respawn, 'options.respawn', true);
    if (o.name !== undefined && typeof o.name !== 'string') throw new InvalidArgumentTypeError('options.name', 'a string', o.name);
    this.#maxRestarts = checkMaxRestarts(o.maxRestarts);
    this.#restartWindowMs = o.restartWindowMs === undefined ? 60_000 : checkInteger(o.restartWindowMs, 'options.restartWindowMs', 1);
    this.#opts = o as WorkerPoolOptions;
    this.name = o.name ?? `pool-${process.pid}-${randomBytes(3).toString('hex')}`;
    this.router = new BaseRouter({ strategy: 'consistent_hash', name: this.name, ...o.router });
    const ack = ackQueueOptions(o.ack);
    this.ack = ack !== undefined;
    const created: SageQueue[] = [];
    try {
      this.replies = o.replies ? SageQueue.create<Out>(`${this.name}.replies`, o.replies === true ? {} : o.replies) : null;
      if (this.replies) created.push(this.replies);
      for (let i = 0; i < workers; i++) {
        // (With ack, the primary only puts: the explicit-ack queue's gets are the worker's.)
        const queue = (ack === undefined
          ? SageQueue.create<PoolInbound<unknown>>(`${this.name}.w${i}`, o.queue)
          : SageQueue.create<PoolInbound<unknown>>(`${this.name}.w${i}`, { ...o.queue, ...ack })) as SageQueue<PoolInbound<unknown>>;
        created.push(queue);
        const connection = this.router.addConnection({ broadcastIndex: 0, parallelIndex: i, targetName: `worker-${i}`, targetHandle: queue, targetType: 'sage_queue' });
        connection.markDown('starting');
        const slot = { index: i, queue, connection, quickDeaths: 0, restartTimes: [], restarts: 0, state: 'starting' } as unknown as Slot;
        this.#slots.push(slot);
        this.#spawn(slot);
      }
    } catch (e) {
      for (const s of this.#slots) s.child?.kill('SIGKILL');
      for (const q of created) q.destroy();
      throw e;
    }
  }

  /** Number of workers. */
  get size(): number {
    return this.#slots.length;
  }

  /** Each worker's inbound queue, by index. */
  get queues(): ReadonlyArray<SageQueue<PoolInbound<In>>> {
    return this.#slots.map((s) => s.queue as SageQueue<PoolInbound<In>>);
  }

  /** Current worker pids, by index. */
  get pids(): Array<number | undefined> {
    return this.#slots.map((s) => s.child.pid);
  }

  /**
   * Resolves when every worker has attached to its queues. Rejects with ERR_WORKER_EXITED when a
   * worker exits before it attached, with PoolNotReadyError (ERR_POOL_NOT_READY, naming the
   * workers still missing) after `timeoutMs`, with `signal.reason` when `signal` aborts, and with
   * ERR_POOL_CLOSED once close() was called. A timeout stops nothing: close() the pool (or wait again).
   */
  async ready(options?: PoolReadyOptions): Promise<void> {
    const o = checkOptions<PoolReadyOptions>(options);
    checkKnownKeys(o, ['timeoutMs', 'signal']);
    const timeoutMs = checkTimeoutMs(o.timeoutMs, 'options.timeoutMs');
    const signal = checkSignal(o.signal, 'options.signal');
    if (this.#closing) throw new SageQueueError('ERR_POOL_CLOSED', `worker pool ${this.name} is closed`);
    signal?.throwIfAborted();
    const all = Promise.all(this.#slots.map((s) => s.ready)).then(() => undefined);
    if (timeoutMs === undefined && signal === undefined) return all;
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    const stop = new Promise<never>((_, reject) => {
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          const missing = this.#slots.filter((s) => s.state !== 'ready');
          reject(new PoolNotReadyError(this.name, timeoutMs, missing.map((s) => s.index), missing.map((s) => s.child.pid)));
        }, timeoutMs);
      }
      if (signal !== undefined) {
        onAbort = () => reject(signal.reason);
        signal.addEventListener('abort', onAbort, { once: true });
      }
    });
    try {
      await Promise.race([all, stop]);
    } finally {
      clearTimeout(timer);
      if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Routes a payload (keyed when `key` is given) or a Packet to the workers. */
  route(payload: In | Packet<In>, key?: PartitionKey): Promise<RouteReport> {
    const packet = payload instanceof Packet ? payload : new Packet(payload, key === undefined ? undefined : { partitionKey: key });
    return this.router.route(packet);
  }

  /**
   * Routes many packets at once (the fast path: each worker's share goes in with one batch put;
   * see BaseRouter#routeMany). Per-key order holds across route() and routeMany() calls.
   */
  routeMany(packets: ReadonlyArray<Packet<In>>): Promise<RouteManyReport> {
    return this.router.routeMany(packets);
  }

  /** Workers, restarts, exits and crash loops so far. */
  stats(): WorkerPoolStats {
    return {
      name: this.name,
      workers: this.#slots.length,
      ready: this.#slots.filter((s) => s.state === 'ready').length,
      exits: this.#exits,
      restarts: this.#restarts,
      crashLoops: this.#slots.filter((s) => s.state === 'gave-up').length,
      slots: this.#slots.map((s) => ({ index: s.index, pid: s.child.pid, state: s.state, restarts: s.restarts })),
    };
  }

  /**
   * Closes every worker's queue (their `for await` loops end once drained), waits for the
   * workers to exit (SIGKILL after timeoutMs), and removes every queue of the pool.
   */
  async close(options?: { timeoutMs?: number }): Promise<void> {
    if (this.#closed !== undefined) return this.#closed; // idempotent
    const o = checkOptions<{ timeoutMs?: number }>(options);
    checkKnownKeys(o, ['timeoutMs']);
    this.#closed = this.#close(checkTimeoutMs(o.timeoutMs, 'options.timeoutMs') ?? 10_000);
    return this.#closed;
  }

  /** `await using pool = new WorkerPool(...)`: close() with its default timeout. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #close(timeoutMs: number): Promise<void> {
    this.#closing = true;
    for (const s of this.#slots) s.queue.close();
    await Promise.all(
      this.#slots.map(
        (s) =>
          new Promise<void>((resolve) => {
            if (s.child.exitCode !== null || s.child.signalCode !== null) return resolve();
            const timer = setTimeout(() => s.child.kill('SIGKILL'), timeoutMs);
            s.child.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
          }),
      ),
    );
    for (const s of this.#slots) {
      s.state = 'exited';
      s.queue.destroy();
    }
    this.replies?.destroy();
  }

  #spawn(slot: Slot): void {
    const o = this.#opts;
    const assignment: PoolAssignment = {
      pool: this.name,
      index: slot.index,
      inbound: slot.queue.descriptor.toDict(),
      replies: this.replies ? this.replies.descriptor.toDict() : null,
    };
    const child = fork(o.script, o.args ?? [], {
      env: { ...(o.env ?? process.env), [POOL_ENV]: JSON.stringify(assignment) },
      execArgv: o.execArgv,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    child.on('error', (e) => this.emit('error', e));
    slot.child = child;
    slot.startedAt = Date.now();
    slot.state = slot.restarts === 0 ? 'starting' : 'restarting';
    this.emit('worker-start', { index: slot.index, pid: child.pid ?? -1, restart: slot.restarts });
    slot.ready = new Promise<void>((resolve, reject) => {
      const onMessage = (m: unknown): void => {
        if (typeof m === 'object' && m !== null && (m as { type?: unknown }).type === READY_MESSAGE) {
          child.off('message', onMessage);
          slot.connection.markUp();
          slot.state = 'ready';
          this.emit('worker-ready', { index: slot.index, pid: child.pid ?? -1 });
          if (slot.restarts > 0) this.emit('worker-replaced', { index: slot.index, pid: child.pid ?? -1 });
          resolve();
        }
      };
      child.on('message', onMessage);
      child.once('exit', (code, signal) => {
        child.off('message', onMessage);
        reject(new SageQueueError('ERR_WORKER_EXITED', `worker ${slot.index} (pid ${child.pid}) exited before it attached (code ${code}, signal ${signal})`));
      });
    });
    slot.ready.catch(() => undefined); // observed through ready() or the 'worker-exit' event
    child.once('exit', (code, signal) => this.#exited(slot, child, code, signal));
  }

  /**
   * A pool with `ack`, a slot given up: route what is left in its queue (never taken, or held by
   * its dead worker and given back by the queue's lease scan) to the workers in rotation, acking
   * each job in the slot's queue once the router placed it elsewhere. A job the router cannot
   * place is nacked back (it stays for close() to account).
   */
  #rehome(slot: Slot): void {
    if (!this.ack) return;
    const queue = slot.queue as unknown as SageQueue<PoolInbound<unknown>, SageMessage<PoolInbound<unknown>>>;
    let rehomed = 0;
    let failed = 0;
    const run = async (): Promise<void> => {
      let quietSince = Date.now();
      while (!this.#closing && Date.now() - quietSince < REHOME_SETTLE_MS) {
        const jobs = queue.getMany(1024, { block: false });
        if (jobs.length === 0) {
          await new Promise((r) => setTimeout(r, 5));
          continue;
        }
        quietSince = Date.now();
        // One route() per job (rare, and each job's outcome decides its ack): in order, so that
        // per-key order holds on the new worker.
        const before = rehomed;
        for (const m of jobs) {
          const packet = m.value instanceof Packet ? m.value : Packet.from(m.value as PacketWire<unknown>);
          const report = await this.router.route(packet as Packet<In>);
          try {
            if (report.ok) {
              m.ack();
              rehomed++;
            } else {
              failed++;
              m.nack();
            }
          } catch {
            // its lease was lost meanwhile: it is delivered again anyway
          }
        }
        if (rehomed === before) return; // nowhere to put them (no worker in rotation): they stay
      }
    };
    run().then(
      () => this.emit('jobs-rehomed', { index: slot.index, rehomed, failed }),
      (e: unknown) => {
        if (!this.#closing) this.emit('error', e instanceof Error ? e : new Error(String(e))); // (close() releases the queue under it)
      },
    );
  }

  /** A worker exited while the pool runs: out of rotation, then replaced (with backoff) or given up. */
  #exited(slot: Slot, child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.#closing) return;
    this.#exits++;
    slot.state = 'exited';
    slot.connection.markDown(`worker ${slot.index} (pid ${child.pid}) exited (code ${code}, signal ${signal})`);
    const pid = child.pid ?? -1;
    this.emit('worker-exit', { index: slot.index, pid, code, signal });
    if (this.#opts.respawn === false) {
      this.#rehome(slot);
      return;
    }
    const now = Date.now();
    slot.restartTimes = slot.restartTimes.filter((t) => now - t < this.#restartWindowMs);
    if (slot.restartTimes.length >= this.#maxRestarts) {
      slot.state = 'gave-up';
      this.emit('worker-crash-loop', { index: slot.index, pid, restarts: slot.restartTimes.length, windowMs: this.#restartWindowMs, code, signal });
      this.#rehome(slot);
      return;
    }
    // The replacement attaches to the same queue: what the dead worker left there is not lost.
    // A worker that keeps dying right after it starts is restarted with a growing delay.
    slot.quickDeaths = now - slot.startedAt < 1000 ? slot.quickDeaths + 1 : 0;
    const delay = slot.quickDeaths === 0 ? 0 : Math.min(30_000, 100 * 2 ** (slot.quickDeaths - 1));
    slot.state = 'restarting';
    const respawn = (): void => {
      if (this.#closing) return;
      slot.restartTimes.push(Date.now());
      slot.restarts++;
      this.#restarts++;
      this.#spawn(slot);
    };
    if (delay === 0) respawn();
    else setTimeout(respawn, delay).unref();
  }
}

/** How long a rehoming waits for a dead worker's leases to come back (lease scans run every 10 ms). */
const REHOME_SETTLE_MS = 50;

function checkMaxRestarts(value: unknown): number {
  if (value === undefined) return 5;
  if (value === Infinity) return Infinity;
  if (typeof value !== 'number') throw new InvalidArgumentTypeError('options.maxRestarts', 'an integer >= 0 or Infinity', value);
  if (!Number.isSafeInteger(value) || value < 0) throw new ArgumentRangeError('options.maxRestarts', 'an integer >= 0 or Infinity', value);
  return value;
}
