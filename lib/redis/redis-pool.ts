/**
 * RedisWorkerPool: the WorkerPool idea across hosts. The primary routes keyed work into a
 * PartitionedRedisQueue (explicit acks); workers run anywhere that reaches Redis, join with the
 * pool's descriptor (joinRedisPool, pool-worker.ts), take a fair share of the partitions, and ack
 * each job once handled. A worker that dies stops renewing its leases: after at most `leaseMs`
 * its partitions go to the others, who take over the jobs it held before reading newer ones.
 *
 * - route() / routeMany() / replies as WorkerPool's: route() goes through a BaseRouter (retries,
 *   send timeout, dead letters, stats) whose one target is the partitioned queue; the partition is
 *   the consistent hash of the packet's key (per-key order). routeMany() puts each partition's
 *   share with one script call.
 * - Events from the membership the workers' heartbeats keep (pool-members.ts): 'worker-ready',
 *   'worker-exit' (`left` or `lost`), 'partitions' (owners changed), 'error'.
 * - The primary forks nothing: workers are whatever processes join (the tests fork them; in
 *   production a process manager or another host starts them).
 */
import { EventEmitter } from 'node:events';

import { InvalidArgumentTypeError, SageQueueError } from '../errors';
import { BaseRouter } from '../router/base-router';
import type { RouteManyReport, RouteReport } from '../router/base-router';
import type { PartitionKey } from '../router/hashing';
import { stableHash } from '../router/hashing';
import { Packet } from '../router/packet';
import type { DeliveryReport } from '../router/reports';
import { checkBoolean, checkInteger, checkKnownKeys, checkOptions, checkSignal, checkTimeoutMs } from '../validate';
import { PartitionedRedisQueue } from './partitioned-queue';
import type { PartitionedRedisQueueStats } from './partitioned-queue';
import type { PartitionedRedisMessage } from './partition-handout';
import { PoolMembers } from './pool-members';
import type { MembersView, RedisPoolExitInfo, RedisPoolMember, RedisPoolWorkerInfo } from './pool-members';
import { REDIS_POOL_TYPE, replyStream, resolvePoolOptions } from './pool-options';
import type { RedisPoolDescriptor, RedisPoolSettings, RedisWorkerPoolOptions } from './pool-options';
import { RedisQueue } from './redis-queue';
import { DEFAULT_PASSWORD_ENV, passwordFor, splitRedisUrl } from './connection';

/** The events of a RedisWorkerPool and their listeners' arguments. */
export interface RedisWorkerPoolEvents {
  /** A worker joined (its first heartbeat was seen). */
  'worker-ready': [info: RedisPoolWorkerInfo];
  /** A worker is gone: released itself ('left') or its membership expired ('lost'). */
  'worker-exit': [info: RedisPoolExitInfo];
  /** The partitions' owners changed (index: partition; null: nobody reads it now). */
  partitions: [owners: ReadonlyArray<string | null>];
  /** Redis could not be read for the membership (the pool keeps trying). */
  error: [error: Error];
}

export interface RedisWorkerPoolStats {
  name: string;
  partitions: number;
  /** Live workers at the last membership read, with the partitions each holds. */
  workers: RedisPoolMember[];
  /** Partitions nobody reads now. */
  unowned: number;
  /** Workers seen joining and leaving since the pool started. */
  joined: number;
  left: number;
  lost: number;
  /** Packets routed: through route(), and through routeMany()'s batched puts (its retried ones count under route). */
  routed: number;
  batched: number;
}

/** Options of RedisWorkerPool#ready(). */
export interface RedisPoolReadyOptions {
  /** Wait for at least this many workers (and every partition owned). Default 1. */
  workers?: number;
  /** Reject with ERR_POOL_NOT_READY after this long. Default: wait forever. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** Options of RedisWorkerPool#close(). */
export interface RedisPoolCloseOptions {
  /** How long to wait for the jobs to be done and the workers to leave. Default 10 000 ms. */
  timeoutMs?: number;
  /** Delete the pool's streams afterwards (what is left in them is lost). Default true. */
  destroy?: boolean;
}

interface Waiter {
  workers: number;
  resolve: () => void;
  reject: (e: Error) => void;
}

/** The primary side of a pool of workers anywhere (see the file comment). */
export class RedisWorkerPool<In = unknown, Out = unknown> extends EventEmitter<RedisWorkerPoolEvents> implements AsyncDisposable {
  readonly name: string;
  readonly partitions: number;
  readonly router: BaseRouter;
  /** The inbound queue (the primary only puts to it). */
  readonly queue: PartitionedRedisQueue<Packet<In>, PartitionedRedisMessage<Packet<In>>>;
  /** The reply queue the workers answer on (auto ack), if the pool has one. */
  readonly replies: RedisQueue<Out> | null;
  readonly #s: RedisPoolSettings;
  readonly #members: PoolMembers;
  readonly #waiters = new Set<Waiter>();
  /**
   * Per key hash, the last route() and the last routeMany() of that key still in flight: a
   * routeMany waits for both, a route() for a routeMany only (the router orders route() calls of
   * one key itself), so per-key order holds between the two paths.
   */
  readonly #routeTails = new Map<number, Promise<unknown>>();
  readonly #batchTails = new Map<number, Promise<unknown>>();
  #rotation = 0;
  #owners: ReadonlyArray<string | null> = [];
  #counts = { joined: 0, left: 0, lost: 0, routed: 0, batched: 0 };
  #closed: Promise<void> | undefined;

  constructor(options?: RedisWorkerPoolOptions) {
    super();
    const s = resolvePoolOptions(options);
    this.#s = s;
    this.name = s.name;
    this.partitions = s.partitions;
    const shared = {
      ...(s.url === undefined ? {} : { url: s.url }),
      ...(s.commandTimeoutMs === undefined ? {} : { commandTimeoutMs: s.commandTimeoutMs }),
      ...(s.unavailableTimeoutMs === undefined ? {} : { unavailableTimeoutMs: s.unavailableTimeoutMs }),
      ...(s.password === undefined ? {} : { password: s.password }),
      ...(s.passwordEnv === undefined ? {} : { passwordEnv: s.passwordEnv }),
    };
    // (The router first: its options are checked before any queue handle exists.)
    this.router = new BaseRouter({ name: s.name, sendTimeoutMs: 10_000, ...s.router, strategy: 'round_robin' });
    this.queue = new PartitionedRedisQueue<Packet<In>>({
      ...shared, name: s.name, partitions: s.partitions, ackMode: 'explicit', codec: s.codec, maxsize: s.maxsize, leaseMs: s.leaseMs,
      claimIdleMs: s.claimIdleMs, maxDeliveries: s.maxDeliveries, keyOf: (p) => (p.partitionKey === null ? undefined : p.partitionKey),
      ...(s.waitReplicas === undefined ? {} : { waitReplicas: s.waitReplicas }),
    });
    this.replies = s.replies === null ? null : new RedisQueue<Out>({ ...shared, stream: replyStream(s.name), codec: s.codec, maxsize: s.replies.maxsize ?? 0 });
    this.router.addConnection({ broadcastIndex: 0, parallelIndex: 0, targetName: s.name, targetHandle: this.queue, targetType: 'redis_partitioned' });
    this.#owners = new Array<string | null>(s.partitions).fill(null);
    this.#members = new PoolMembers({
      url: this.queue.url, password: poolPassword(s), name: s.name, partitions: s.partitions, watchMs: s.watchMs,
      commandTimeoutMs: s.commandTimeoutMs ?? 5000,
      on: {
        ready: (info) => {
          this.#counts.joined++;
          this.emit('worker-ready', info);
        },
        exit: (info) => {
          this.#counts[info.reason]++;
          this.emit('worker-exit', info);
        },
        view: (view) => this.#onView(view),
        error: (e) => {
          if (this.listenerCount('error') > 0) this.emit('error', e instanceof Error ? e : new Error(String(e)));
        },
      },
    });
    this.#members.start();
    // A primary restarted with this pool's name: replies its predecessor had read and not handed
    // out (auto-ack read-ahead) are still pending for that predecessor's consumer; claim them now
    // instead of after the reply queue's claimIdleMs. (One primary per pool name: every reader of
    // the reply queue other than this one counts as departed.) Failed (Redis unreachable): they
    // come back through XAUTOCLAIM after claimIdleMs, as any reply held that long.
    this.replies?.takeOverDeparted([]).catch(() => undefined);
  }

  /** What a worker passes to joinRedisPool() (JSON.stringify it to send it; no password in it). */
  get descriptor(): RedisPoolDescriptor {
    return {
      type: REDIS_POOL_TYPE,
      name: this.name,
      inbound: this.queue.toDescriptor(`${this.name}.inbound`).toDict(),
      replies: this.replies === null ? null : this.replies.toDescriptor(`${this.name}.replies`).toDict(),
    };
  }

  #onView(view: MembersView): void {
    const changed = view.owners.some((o, i) => o !== this.#owners[i]);
    this.#owners = view.owners;
    if (changed) this.emit('partitions', view.owners);
    for (const w of [...this.#waiters]) {
      if (this.#isReady(w.workers)) {
        this.#waiters.delete(w);
        w.resolve();
      }
    }
  }

  /** At least `workers` live workers, every partition owned, and the shares settled (each worker holds at least ⌊N/M⌋). */
  #isReady(workers: number): boolean {
    const members = this.#members.last.members;
    if (members.length < workers || !this.#owners.every((o) => o !== null)) return false;
    const floor = Math.floor(this.partitions / members.length);
    return members.every((m) => m.partitions.length >= floor);
  }

  /**
   * Resolves once at least `workers` workers (default 1) are live, every partition has an owner
   * and the partitions are spread (each worker holds at least its fair share rounded down). Rejects with ERR_POOL_NOT_READY after `timeoutMs`, with `signal.reason` when aborted,
   * with ERR_POOL_CLOSED once close() was called.
   */
  async ready(options?: RedisPoolReadyOptions): Promise<void> {
    const o = checkOptions<RedisPoolReadyOptions>(options);
    checkKnownKeys(o, ['workers', 'timeoutMs', 'signal']);
    const workers = o.workers === undefined ? 1 : checkInteger(o.workers, 'options.workers', 1, 1_000_000);
    const timeoutMs = checkTimeoutMs(o.timeoutMs, 'options.timeoutMs');
    const signal = checkSignal(o.signal, 'options.signal');
    this.#checkOpen();
    signal?.throwIfAborted();
    await this.#members.read();
    if (this.#isReady(workers)) return;
    let waiter: Waiter | undefined;
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        waiter = { workers, resolve, reject };
        this.#waiters.add(waiter);
        if (timeoutMs !== undefined) {
          timer = setTimeout(() => {
            const have = this.#members.last.members.length;
            const unowned = this.#owners.filter((x) => x === null).length;
            reject(new SageQueueError('ERR_POOL_NOT_READY', `redis worker pool ${this.name}: ${have} of ${workers} worker(s) joined and ${unowned} of ${this.partitions} partition(s) unowned after ${timeoutMs} ms; check that the workers call joinRedisPool() with this pool's descriptor and reach Redis`));
          }, timeoutMs);
        }
        if (signal !== undefined) {
          onAbort = () => reject(signal.reason);
          signal.addEventListener('abort', onAbort, { once: true });
        }
      });
    } finally {
      if (waiter !== undefined) this.#waiters.delete(waiter);
      clearTimeout(timer);
      if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Routes a payload (keyed when `key` is given) or a Packet into the pool's partitions. */
  async route(payload: In | Packet<In>, key?: PartitionKey): Promise<RouteReport> {
    this.#checkOpen();
    const packet = payload instanceof Packet ? payload : new Packet(payload, key === undefined ? undefined : { partitionKey: key });
    const k = packet.partitionKey;
    const h = k === null ? undefined : stableHash(k);
    const batch = h === undefined ? undefined : this.#batchTails.get(h);
    if (batch !== undefined) await batch.catch(() => undefined);
    this.#counts.routed++;
    const done = this.router.route(packet);
    if (h !== undefined) setTail(this.#routeTails, [h], done);
    return done;
  }

  /**
   * Routes many packets: each partition's share goes in with one put script call (in order), in
   * parallel over the partitions. What a batch put could not place (Redis unreachable past the
   * send timeout, a packet the codec refuses) takes route()'s path: retries, then the router's
   * dead letters. Per-key order holds across route() and routeMany() calls.
   */
  async routeMany(packets: ReadonlyArray<Packet<In>>): Promise<RouteManyReport> {
    if (!Array.isArray(packets)) throw new InvalidArgumentTypeError('packets', 'an array of Packets', packets);
    for (const p of packets) if (!(p instanceof Packet)) throw new InvalidArgumentTypeError('packets[i]', 'a Packet', p);
    this.#checkOpen();
    const hashes = new Set<number>();
    const groups = new Map<number, Array<Packet<In>>>();
    for (const p of packets) {
      let part: number;
      if (p.partitionKey === null) {
        part = this.#rotation++ % this.partitions;
      } else {
        const h = stableHash(p.partitionKey);
        hashes.add(h);
        part = this.queue.partitionOf(p.partitionKey);
      }
      const g = groups.get(part);
      if (g === undefined) groups.set(part, [p]);
      else g.push(p);
    }
    const before = [...hashes].flatMap((h) => [this.#routeTails.get(h), this.#batchTails.get(h)]).filter((t) => t !== undefined);
    const run = async (): Promise<RouteManyReport> => {
      if (before.length > 0) await Promise.allSettled(before);
      const report: RouteManyReport = { packets: packets.length, delivered: 0, deadLettered: 0, failed: 0, problems: [], ok: true };
      const timeoutMs = this.#sendTimeoutMs();
      await Promise.all([...groups].map(async ([part, group]) => {
        let written = 0;
        try {
          written = await this.queue.putManyAsync(group, { partition: part, timeoutMs });
        } catch (e) {
          const w = (e as { written?: unknown }).written;
          written = typeof w === 'number' ? w : 0;
        }
        this.#counts.batched += written;
        report.delivered += written;
        // The rest, in order, one at a time through the router (retries, dead letters).
        for (const p of group.slice(written)) {
          this.#counts.routed++;
          const r = await this.router.route(p);
          report.delivered += r.delivered;
          report.deadLettered += r.deadLettered;
          report.failed += r.failed;
          for (const d of r.deliveries) if (d.status !== 'delivered' || d.attempts > 1) report.problems.push(d as DeliveryReport);
        }
      }));
      report.ok = report.deadLettered === 0 && report.failed === 0;
      return report;
    };
    const done = run();
    setTail(this.#batchTails, [...hashes], done);
    return done;
  }

  #sendTimeoutMs(): number {
    return this.#s.router.sendTimeoutMs ?? 10_000;
  }

  /** The workers and partitions at the last membership read (no Redis call), and counts. */
  stats(): RedisWorkerPoolStats {
    const view = this.#members.last;
    return {
      name: this.name, partitions: this.partitions, workers: view.members, unowned: this.#owners.filter((o) => o === null).length, ...this.#counts,
    };
  }

  /** The inbound queue's counts from Redis (waiting, pending, dead letters), summed and per partition. */
  queueStats(): Promise<PartitionedRedisQueueStats> {
    return this.queue.stats();
  }

  #checkOpen(): void {
    if (this.#closed !== undefined) throw new SageQueueError('ERR_POOL_CLOSED', `redis worker pool ${this.name} is closed`);
  }

  /**
   * Closes the inbound queue (workers' loops end once it is drained), waits up to `timeoutMs`
   * for every job to be acknowledged and every worker to leave, then (with `destroy`, the
   * default) deletes the pool's streams. Idempotent. When Redis cannot be reached it rejects
   * with RedisBackendError (after `unavailableTimeoutMs`); the pool's connections are closed
   * either way, and the pool stays closed.
   */
  close(options?: RedisPoolCloseOptions): Promise<void> {
    if (this.#closed !== undefined) return this.#closed;
    const o = checkOptions<RedisPoolCloseOptions>(options);
    checkKnownKeys(o, ['timeoutMs', 'destroy']);
    const timeoutMs = checkTimeoutMs(o.timeoutMs, 'options.timeoutMs') ?? 10_000;
    const destroy = checkBoolean(o.destroy, 'options.destroy', true);
    this.#closed = this.#close(timeoutMs, destroy);
    return this.#closed;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #close(timeoutMs: number, destroy: boolean): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (const w of this.#waiters) w.reject(new SageQueueError('ERR_POOL_CLOSED', `redis worker pool ${this.name} was closed while ready() waited`));
    this.#waiters.clear();
    try {
      await this.router[Symbol.asyncDispose]();
      await this.queue.close();
      for (;;) {
        const [q] = await Promise.all([this.queue.stats().catch(() => undefined), this.#members.read()]);
        if (q !== undefined && q.length === 0 && this.#members.last.members.length === 0) break;
        if (Date.now() >= deadline) break;
        await new Promise((r) => setTimeout(r, Math.min(50, this.#s.watchMs)));
      }
      if (destroy) {
        await this.queue.destroy();
        await this.replies?.destroy();
      }
    } finally {
      // Whatever failed above (Redis unreachable past its timeouts), this handle lets go of its
      // connections: close() rejects with that error, and the pool stays closed.
      await this.#members.stop();
      await this.queue.release().catch(() => undefined);
      await this.replies?.release().catch(() => undefined);
    }
  }
}

/** The password the pool's own connection uses: as the queues resolve theirs (option, URL, environment). */
function poolPassword(s: RedisPoolSettings): string | undefined {
  const split = splitRedisUrl(s.url ?? 'redis://127.0.0.1:6379');
  return s.password ?? split.password ?? passwordFor(split.url, s.passwordEnv ?? DEFAULT_PASSWORD_ENV);
}

/** Records `p` as the last call in flight of each key hash, until it settles. */
function setTail(tails: Map<number, Promise<unknown>>, hashes: readonly number[], p: Promise<unknown>): void {
  for (const h of hashes) tails.set(h, p);
  const clear = (): void => {
    for (const h of hashes) if (tails.get(h) === p) tails.delete(h);
  };
  p.then(clear, clear);
}
