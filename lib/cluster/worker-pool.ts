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

import { InvalidArgumentTypeError, SageQueueError } from '../errors';
import { BaseRouter } from '../router/base-router';
import type { RouteReport, RouterOptions } from '../router/base-router';
import type { Connection } from '../router/connection';
import type { PartitionKey } from '../router/hashing';
import { Packet } from '../router/packet';
import { SageQueue } from '../queue/sage-queue';
import type { SageQueueOptions } from '../queue/sage-queue';
import { checkBoolean, checkInteger, checkKnownKeys, checkOptions } from '../validate';
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
  queue?: SageQueueOptions;
  /** Create a shared reply queue the workers answer on (true, or its options). */
  replies?: boolean | SageQueueOptions;
  /** The router (strategy, timeouts, retries, dead-letter queue...). Default strategy 'consistent_hash'. */
  router?: RouterOptions;
  /** Replace a worker that exits unexpectedly. Default true. */
  respawn?: boolean;
  args?: string[];
  execArgv?: string[];
  env?: NodeJS.ProcessEnv;
}

interface Slot {
  index: number;
  queue: SageQueue;
  connection: Connection;
  child: ChildProcess;
  ready: Promise<void>;
  startedAt: number;
  /** Consecutive deaths within a second of starting (drives the respawn backoff). */
  quickDeaths: number;
}

export declare interface WorkerPool {
  on(event: 'worker-exit', listener: (info: { index: number; pid: number; code: number | null; signal: NodeJS.Signals | null }) => void): this;
  on(event: 'worker-replaced', listener: (info: { index: number; pid: number }) => void): this;
  on(event: 'error', listener: (error: Error) => void): this;
}

export class WorkerPool extends EventEmitter {
  readonly name: string;
  readonly router: BaseRouter;
  readonly replies: SageQueue | null;
  readonly #slots: Slot[] = [];
  readonly #opts: WorkerPoolOptions;
  #closing = false;
  #closed: Promise<void> | undefined;

  constructor(options: WorkerPoolOptions) {
    super();
    const o = checkOptions<WorkerPoolOptions>(options);
    checkKnownKeys(o, ['script', 'workers', 'name', 'queue', 'replies', 'router', 'respawn', 'args', 'execArgv', 'env']);
    if (typeof o.script !== 'string' || o.script.length === 0) throw new InvalidArgumentTypeError('options.script', 'a module path', o.script);
    const workers = o.workers === undefined ? Math.max(2, availableParallelism()) : checkInteger(o.workers, 'options.workers', 1, 1024);
    checkBoolean(o.respawn, 'options.respawn', true);
    if (o.name !== undefined && typeof o.name !== 'string') throw new InvalidArgumentTypeError('options.name', 'a string', o.name);
    this.#opts = o as WorkerPoolOptions;
    this.name = o.name ?? `pool-${process.pid}-${randomBytes(3).toString('hex')}`;
    this.router = new BaseRouter({ strategy: 'consistent_hash', name: this.name, ...o.router });
    const created: SageQueue[] = [];
    try {
      this.replies = o.replies ? SageQueue.create(`${this.name}.replies`, o.replies === true ? {} : o.replies) : null;
      if (this.replies) created.push(this.replies);
      for (let i = 0; i < workers; i++) {
        const queue = SageQueue.create(`${this.name}.w${i}`, o.queue);
        created.push(queue);
        const connection = this.router.addConnection({ broadcastIndex: 0, parallelIndex: i, targetName: `worker-${i}`, targetHandle: queue, targetType: 'sage_queue' });
        connection.markDown('starting');
        const slot = { index: i, queue, connection, quickDeaths: 0 } as Slot;
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
  get queues(): readonly SageQueue[] {
    return this.#slots.map((s) => s.queue);
  }

  /** Current worker pids, by index. */
  get pids(): Array<number | undefined> {
    return this.#slots.map((s) => s.child.pid);
  }

  /** Resolves when every worker has attached to its queues. */
  async ready(): Promise<void> {
    await Promise.all(this.#slots.map((s) => s.ready));
  }

  /** Routes a payload (keyed when `key` is given) or a Packet to the workers. */
  route(payload: unknown, key?: PartitionKey): Promise<RouteReport> {
    const packet = payload instanceof Packet ? payload : new Packet(payload, key === undefined ? undefined : { partitionKey: key });
    return this.router.route(packet);
  }

  /**
   * Closes every worker's queue (their `for await` loops end once drained), waits for the
   * workers to exit (SIGKILL after timeoutMs), and removes every queue of the pool.
   */
  async close(options?: { timeoutMs?: number }): Promise<void> {
    if (this.#closed !== undefined) return this.#closed; // idempotent
    this.#closed = this.#close(options?.timeoutMs ?? 10_000);
    return this.#closed;
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
    for (const s of this.#slots) s.queue.destroy();
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
    slot.child = child;
    slot.startedAt = Date.now();
    slot.ready = new Promise<void>((resolve, reject) => {
      const onMessage = (m: unknown): void => {
        if (typeof m === 'object' && m !== null && (m as { type?: unknown }).type === READY_MESSAGE) {
          child.off('message', onMessage);
          slot.connection.markUp();
          resolve();
        }
      };
      child.on('message', onMessage);
      child.once('exit', (code, signal) => {
        child.off('message', onMessage);
        reject(new SageQueueError('ERR_WORKER_EXITED', `worker ${slot.index} (pid ${child.pid}) exited before it attached (code ${code}, signal ${signal})`));
      });
    });
    slot.ready.catch(() => undefined); // observed through ready() or the exit event
    child.once('exit', (code, signal) => {
      if (this.#closing) return;
      slot.connection.markDown(`worker ${slot.index} (pid ${child.pid}) exited (code ${code}, signal ${signal})`);
      this.emit('worker-exit', { index: slot.index, pid: child.pid ?? -1, code, signal });
      if (o.respawn === false) return;
      // The replacement attaches to the same queue: what the dead worker left there is not lost.
      // A worker that keeps dying right after it starts is restarted with a growing delay.
      const lived = Date.now() - slot.startedAt;
      slot.quickDeaths = lived < 1000 ? slot.quickDeaths + 1 : 0;
      const delay = slot.quickDeaths === 0 ? 0 : Math.min(30_000, 100 * 2 ** (slot.quickDeaths - 1));
      const respawn = (): void => {
        if (this.#closing) return;
        this.#spawn(slot);
        slot.ready.then(
          () => this.emit('worker-replaced', { index: slot.index, pid: slot.child.pid ?? -1 }),
          (e: Error) => this.emit('error', e),
        );
      };
      if (delay === 0) respawn();
      else setTimeout(respawn, delay).unref();
    });
  }
}
