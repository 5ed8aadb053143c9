/**
 * RedisWorkerPool's options and its descriptor: what a worker anywhere needs to join the pool
 * (the partitioned inbound queue's descriptor and the reply queue's), as JSON with no password.
 * Data and checks only.
 */
import { randomBytes } from 'node:crypto';

import { DescriptorError, InvalidArgumentTypeError, InvalidArgumentValueError, describe } from '../errors';
import { QueueDescriptor } from '../queue/descriptor';
import type { QueueDescriptorDict } from '../queue/descriptor';
import type { StatelessCodecName } from '../queue/codecs';
import type { RouterOptions } from '../router/router-options';
import { checkBoolean, checkInteger, checkKnownKeys, checkOptions } from '../validate';
import { checkQueueName } from './partition-options';
import type { RedisWaitReplicas } from './queue-options';

/** The environment variable joinRedisPool() reads the pool's descriptor from when given none. */
export const REDIS_POOL_ENV = 'SAGE_REDIS_POOL';
/** The `type` of a RedisWorkerPool descriptor. */
export const REDIS_POOL_TYPE = 'sage_redis_pool';

export interface RedisWorkerPoolOptions {
  /** `redis://…` (one server) or `redis+cluster://h1:p1,…` (a Cluster). Default redis://127.0.0.1:6379. */
  url?: string;
  /**
   * The pool's name (no `{` or `}`): its inbound queue is the PartitionedRedisQueue of this name,
   * its reply queue the stream `{<name>:replies}`. Default `rpool-<random>`.
   */
  name?: string;
  /** Partitions of the inbound queue (1-1024): at most this many workers read at once. Default 12. */
  partitions?: number;
  /** Per partition: most unacknowledged jobs (puts wait for room). Default 0 (unbounded). */
  maxsize?: number;
  /** Codec of the jobs and the replies. Default 'msgpack' (Packets travel as Packets). */
  codec?: StatelessCodecName;
  /**
   * A worker's hold on its partitions (and its membership) lasts this long without a heartbeat:
   * a dead worker's partitions, and the jobs it held, move to the others after at most this.
   * Default 10 000 ms.
   */
  leaseMs?: number;
  /**
   * A job a live worker holds unacknowledged this long is delivered again (to whoever reads its
   * partition). Default 60 000 ms: longer than a job may take.
   */
  claimIdleMs?: number;
  /** Deliveries before a job goes to its partition's dead-letter stream. Default 5. */
  maxDeliveries?: number;
  /** Create the reply queue the workers answer on (true, or its options). Default false. */
  replies?: boolean | RedisPoolReplyOptions;
  /**
   * The router of route() (retries, send timeout, dead-letter queue...; not `strategy`: the key
   * picks the partition). Defaults here: sendTimeoutMs 10 000 (a put may wait out a Cluster
   * failover).
   */
  router?: RouterOptions;
  /** How often the primary reads the workers' membership and the partitions' owners. Default 250 ms. */
  watchMs?: number;
  commandTimeoutMs?: number;
  unavailableTimeoutMs?: number;
  password?: string;
  passwordEnv?: string;
  /** As for RedisQueue: WAIT for this many replicas after each put (not carried by the descriptor). */
  waitReplicas?: RedisWaitReplicas;
}

export interface RedisPoolReplyOptions {
  /** Most replies waiting (workers' reply puts wait for room). Default 0 (unbounded). */
  maxsize?: number;
}

/** What a worker needs to join (JSON; no password: workers read it from `passwordEnv`). */
export interface RedisPoolDescriptor {
  type: typeof REDIS_POOL_TYPE;
  name: string;
  inbound: QueueDescriptorDict;
  replies: QueueDescriptorDict | null;
}

/** The checked options, defaults filled in. */
export interface RedisPoolSettings {
  url: string | undefined;
  name: string;
  partitions: number;
  maxsize: number;
  codec: StatelessCodecName;
  leaseMs: number;
  claimIdleMs: number;
  maxDeliveries: number;
  replies: RedisPoolReplyOptions | null;
  router: RouterOptions;
  watchMs: number;
  commandTimeoutMs: number | undefined;
  unavailableTimeoutMs: number | undefined;
  password: string | undefined;
  passwordEnv: string | undefined;
  waitReplicas: RedisWaitReplicas | undefined;
}

const OPTION_KEYS = [
  'url', 'name', 'partitions', 'maxsize', 'codec', 'leaseMs', 'claimIdleMs', 'maxDeliveries', 'replies', 'router', 'watchMs',
  'commandTimeoutMs', 'unavailableTimeoutMs', 'password', 'passwordEnv', 'waitReplicas',
] as const;

/**
 * Checks the pool's own options (typed errors naming the option); the queues' options are
 * checked again by the queues themselves when the pool opens them.
 */
export function resolvePoolOptions(options: unknown): RedisPoolSettings {
  const o = checkOptions<RedisWorkerPoolOptions>(options);
  checkKnownKeys(o, OPTION_KEYS);
  const name = o.name === undefined ? `rpool-${randomBytes(4).toString('hex')}` : checkQueueName(o.name);
  let replies: RedisPoolReplyOptions | null = null;
  if (typeof o.replies === 'object' && o.replies !== null) {
    const r = checkOptions<RedisPoolReplyOptions>(o.replies, 'options.replies');
    checkKnownKeys(r, ['maxsize'], 'options.replies');
    replies = r.maxsize === undefined ? {} : { maxsize: checkInteger(r.maxsize, 'options.replies.maxsize', 0) };
  } else if (checkBoolean(o.replies, 'options.replies', false)) {
    replies = {};
  }
  return {
    url: o.url,
    name,
    partitions: o.partitions === undefined ? 12 : checkInteger(o.partitions, 'options.partitions', 1, 1024),
    maxsize: o.maxsize === undefined ? 0 : checkInteger(o.maxsize, 'options.maxsize', 0),
    codec: o.codec ?? 'msgpack',
    leaseMs: o.leaseMs === undefined ? 10_000 : checkInteger(o.leaseMs, 'options.leaseMs', 300, 3_600_000),
    claimIdleMs: o.claimIdleMs === undefined ? 60_000 : checkInteger(o.claimIdleMs, 'options.claimIdleMs', 10),
    maxDeliveries: o.maxDeliveries === undefined ? 5 : checkInteger(o.maxDeliveries, 'options.maxDeliveries', 1),
    replies,
    router: checkPoolRouter(o.router),
    watchMs: o.watchMs === undefined ? 250 : checkInteger(o.watchMs, 'options.watchMs', 10, 60_000),
    commandTimeoutMs: o.commandTimeoutMs,
    unavailableTimeoutMs: o.unavailableTimeoutMs,
    password: o.password,
    passwordEnv: o.passwordEnv,
    waitReplicas: o.waitReplicas,
  };
}

/** The router's options: any BaseRouter option but `strategy` (its one target is the partitioned queue; the key picks the partition). */
function checkPoolRouter(value: unknown): RouterOptions {
  if (value === undefined) return {};
  const r = checkOptions<RouterOptions>(value, 'options.router');
  if (r.strategy !== undefined) {
    throw new InvalidArgumentValueError('options.router.strategy cannot be set: the pool routes to its partitioned queue, where the packet\'s key picks the partition (consistent hash)', r.strategy);
  }
  return r;
}

/** The reply stream of a pool. */
export function replyStream(name: string): string {
  return `{${name}:replies}`;
}

/** A descriptor given as JSON text or as the object; DescriptorError when it is not one. */
export function parsePoolDescriptor(value: unknown): RedisPoolDescriptor {
  let d: unknown = value;
  if (typeof value === 'string') {
    try {
      d = JSON.parse(value);
    } catch {
      throw new DescriptorError(`a RedisWorkerPool descriptor must be JSON; received ${describe(value.slice(0, 80))}`);
    }
  } else if (value === null || typeof value !== 'object') {
    throw new InvalidArgumentTypeError('descriptor', 'a RedisWorkerPool descriptor (JSON text or object)', value);
  }
  const o = d as Partial<RedisPoolDescriptor> | null;
  if (o === null || typeof o !== 'object' || o.type !== REDIS_POOL_TYPE) {
    throw new DescriptorError(`not a RedisWorkerPool descriptor (its "type" must be "${REDIS_POOL_TYPE}"); received ${describe(o?.type)}`);
  }
  if (typeof o.name !== 'string' || o.name.length === 0) throw new DescriptorError(`a RedisWorkerPool descriptor's "name" must be a non-empty string; received ${describe(o.name)}`);
  // fromDict checks each queue descriptor's own shape (DescriptorError).
  const inbound = QueueDescriptor.fromDict(o.inbound as QueueDescriptorDict);
  if (inbound.queueType !== 'redis_partitioned') {
    throw new DescriptorError(`a RedisWorkerPool descriptor's inbound queue must be "redis_partitioned"; received ${describe(inbound.queueType)}`);
  }
  if (o.replies !== null && o.replies !== undefined) {
    const replies = QueueDescriptor.fromDict(o.replies);
    if (replies.queueType !== 'redis') throw new DescriptorError(`a RedisWorkerPool descriptor's reply queue must be "redis"; received ${describe(replies.queueType)}`);
  }
  return { type: REDIS_POOL_TYPE, name: o.name, inbound: o.inbound as QueueDescriptorDict, replies: o.replies ?? null };
}
