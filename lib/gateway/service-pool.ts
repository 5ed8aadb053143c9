/**
 * ServicePool: the worker processes of one service, as the gateway sees them. A WorkerPool forks
 * the workers; each worker gets its own cross-process PriorityMessageQueue (four SageQueue
 * lanes) and is registered in the InstanceRegistry as `<service>-<index>`. A worker that exits
 * is marked unhealthy at once (its sessions fail over to the next healthy instance; the route
 * cache is invalidated by the registry) and healthy again when WorkerPool's replacement has
 * attached to the same lanes (what it left there is served by the replacement).
 * The worker side is `joinGatewayService()`.
 */
import { randomBytes } from 'node:crypto';

import { InvalidArgumentTypeError, SageQueueError } from '../errors';
import { WorkerPool } from '../cluster/worker-pool';
import { joinWorkerPool } from '../cluster/join';
import type { SageQueue } from '../queue/sage-queue';
import type { SageAutoOptions } from '../queue/sage-options';
import { codecByName } from '../queue/codecs';
import { checkInteger, checkKnownKeys, checkOptions } from '../validate';
import { ServiceInstance } from './instance-registry';
import type { InstanceRegistry } from './instance-registry';
import { PriorityMessageQueue } from './priority-queue';
import type { SharedPriorityQueueOptions } from './priority-queue';
import type { PriorityQueueDescriptor } from './shared-lanes';

/** The environment variable telling a service worker its service and lanes. */
export const SERVICE_ENV = 'SAGE_GATEWAY_SERVICE';

interface ServiceAssignment {
  service: string;
  lanes: PriorityQueueDescriptor[];
}

export interface ServicePoolOptions {
  service: string;
  /** The worker module (it calls joinGatewayService()). */
  script: string;
  /** Default 2. */
  workers?: number;
  registry: InstanceRegistry;
  /** Options of each worker's lanes (capacity, lane SageQueue options, backpressure, dedup). */
  lanes?: SharedPriorityQueueOptions;
  /**
   * Options of the reply queue the workers put on and the gateway reads (a SageQueue): default
   * 8 MiB with the `records` codec. E.g. `{ codec: 'raw' }` when the workers write the bytes the
   * gateway forwards as they are. `spinUs` is that of the gateway's handle.
   */
  replies?: Pick<SageAutoOptions, 'capacity' | 'codec' | 'maxMessageSize' | 'spinUs'>;
  /** Prefix of the segment names. Default `gw-<pid>-<random>-<service>`. */
  name?: string;
  env?: NodeJS.ProcessEnv;
  execArgv?: string[];
}

export class ServicePool {
  readonly service: string;
  readonly name: string;
  readonly pool: WorkerPool;
  readonly #registry: InstanceRegistry;
  readonly #queues: PriorityMessageQueue[] = [];
  readonly #instances: ServiceInstance[] = [];
  #closed: Promise<void> | undefined;

  constructor(options: ServicePoolOptions) {
    const o = checkOptions<ServicePoolOptions>(options);
    checkKnownKeys(o, ['service', 'script', 'workers', 'registry', 'lanes', 'replies', 'name', 'env', 'execArgv']);
    if (typeof o.service !== 'string' || !/^[A-Za-z0-9_-]{1,40}$/.test(o.service)) throw new InvalidArgumentTypeError('options.service', 'a name of 1-40 letters, digits, _ or -', o.service);
    if (typeof o.script !== 'string' || o.script.length === 0) throw new InvalidArgumentTypeError('options.script', 'a module path', o.script);
    if (o.registry === undefined || typeof o.registry.register !== 'function') throw new InvalidArgumentTypeError('options.registry', 'an InstanceRegistry', o.registry);
    const workers = o.workers === undefined ? 2 : checkInteger(o.workers, 'options.workers', 1, 256);
    const replies = o.replies === undefined ? {} : checkOptions<NonNullable<ServicePoolOptions['replies']>>(o.replies, 'options.replies');
    checkKnownKeys(replies, ['capacity', 'codec', 'maxMessageSize', 'spinUs'], 'options.replies');
    if (replies.codec !== undefined) codecByName(replies.codec); // before any segment exists
    this.service = o.service;
    this.#registry = o.registry;
    this.name = o.name ?? `gw-${process.pid}-${randomBytes(3).toString('hex')}-${o.service}`;
    try {
      for (let i = 0; i < workers; i++) this.#queues.push(PriorityMessageQueue.create(`${this.name}.i${i}`, o.lanes));
      const assignment: ServiceAssignment = { service: this.service, lanes: this.#queues.map((q) => q.descriptor as PriorityQueueDescriptor) };
      this.pool = new WorkerPool({
        script: o.script,
        workers,
        name: `${this.name}.pool`,
        replies: { capacity: 8 << 20, ...replies }, // records by default: faster than msgpack for reply objects
        queue: { capacity: 4096 },
        router: { strategy: 'round_robin' },
        env: { ...(o.env ?? process.env), [SERVICE_ENV]: JSON.stringify(assignment) },
        execArgv: o.execArgv,
      });
    } catch (e) {
      for (const q of this.#queues) q.destroy();
      throw e;
    }
    for (let i = 0; i < workers; i++) {
      const instance = new ServiceInstance(this.service, `${this.service}-${i}`, '127.0.0.1', 0, { index: i, lanes: this.name });
      this.#instances.push(instance);
      this.#registry.register(instance);
      this.#registry.setHealthy(this.service, instance.instanceId, false); // until its worker attached
    }
    this.pool.on('worker-exit', ({ index }) => this.#setHealthy(index, false));
    this.pool.on('worker-replaced', ({ index }) => this.#setHealthy(index, true));
    this.pool.on('error', () => undefined); // a replacement that failed to start stays unhealthy
  }

  /** Resolves when every worker has attached (they are marked healthy then). */
  async ready(): Promise<void> {
    await this.pool.ready();
    for (let i = 0; i < this.#instances.length; i++) this.#setHealthy(i, true);
  }

  get instances(): readonly ServiceInstance[] {
    return this.#instances;
  }

  /** The shared queue the workers put their replies on. */
  get replies(): SageQueue {
    return this.pool.replies as SageQueue;
  }

  /** The lanes of an instance (by instanceId or index). */
  queueOf(instance: string | number): PriorityMessageQueue {
    const index = typeof instance === 'number' ? instance : this.#instances.findIndex((i) => i.instanceId === instance);
    const q = this.#queues[index];
    if (q === undefined) throw new SageQueueError('ERR_UNKNOWN_INSTANCE', `service ${this.service} has no instance ${String(instance)}`);
    return q;
  }

  /** A health check for the registry: the worker process of the instance is alive. */
  isAlive(instance: ServiceInstance): boolean {
    const pid = this.pool.pids[instance.metadata.index as number];
    if (pid === undefined) return false;
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  }

  /** Closes the lanes (workers drain them, then exit), stops the pool, removes every segment. */
  close(options?: { timeoutMs?: number }): Promise<void> {
    this.#closed ??= (async () => {
      for (const q of this.#queues) q.close();
      for (const i of this.#instances) this.#registry.deregister(this.service, i.instanceId);
      try {
        await this.pool.close(options);
      } finally {
        for (const q of this.#queues) q.destroy();
      }
    })();
    return this.#closed;
  }

  #setHealthy(index: number, healthy: boolean): void {
    const instance = this.#instances[index];
    if (instance !== undefined && this.#closed === undefined) this.#registry.setHealthy(this.service, instance.instanceId, healthy);
  }
}

/** What a service worker gets from joinGatewayService(). */
export interface GatewayServiceWorker<T = unknown, R = unknown> {
  readonly service: string;
  readonly index: number;
  readonly instanceId: string;
  /** This worker's lanes: `dequeueBatch()` / `batches()` serve the most urgent first, with aging. */
  readonly queue: PriorityMessageQueue<T>;
  /** Where replies go (the gateway reads them). */
  readonly replies: SageQueue<R>;
  /** Aborted when the gateway process goes away. */
  readonly signal: AbortSignal;
  release(): void;
}

/** Options of joinGatewayService(). */
export interface JoinGatewayServiceOptions {
  /**
   * How long a wait on this worker's lanes polls before it sleeps (µs; default the SageQueue
   * default, 50). A worker fed in batches a few milliseconds apart gains nothing from polling: 0
   * sleeps at once and leaves the CPU to the gateway.
   */
  spinUs?: number;
}

/** The worker side of a ServicePool: attaches to this worker's lanes and the reply queue. */
export function joinGatewayService<T = unknown, R = unknown>(env: NodeJS.ProcessEnv = process.env, options?: JoinGatewayServiceOptions): GatewayServiceWorker<T, R> {
  if (env === null || typeof env !== 'object') throw new InvalidArgumentTypeError('env', 'an environment object', env);
  const o = checkOptions<JoinGatewayServiceOptions>(options);
  checkKnownKeys(o, ['spinUs']);
  const spinUs = o.spinUs === undefined ? undefined : checkInteger(o.spinUs, 'options.spinUs', 0, 1_000_000);
  const text = env[SERVICE_ENV];
  if (text === undefined) throw new SageQueueError('ERR_NOT_A_POOL_WORKER', `this process was not started by a ServicePool (${SERVICE_ENV} is not set)`);
  const assignment = JSON.parse(text) as ServiceAssignment;
  const worker = joinWorkerPool<unknown, R>(env);
  const descriptor = assignment.lanes[worker.index];
  if (descriptor === undefined || worker.replies === null) throw new SageQueueError('ERR_NOT_A_POOL_WORKER', `no lanes for worker ${worker.index}`);
  const queue = PriorityMessageQueue.attach<T>(descriptor, spinUs === undefined ? { backpressure: false } : { backpressure: false, spinUs });
  worker.signal.addEventListener('abort', () => queue.release(), { once: true });
  return {
    service: assignment.service,
    index: worker.index,
    instanceId: `${assignment.service}-${worker.index}`,
    queue,
    replies: worker.replies,
    signal: worker.signal,
    release() {
      queue.release();
      worker.release();
    },
  };
}
