/**
 * PartitionedRedisQueue's options: their types and checks (typed errors with stable codes), the
 * key layout (one stream per partition, each with its own hash tag, and the coordination keys
 * under the queue's name tag), and the "redis_partitioned" descriptor.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';

import { statelessCodecByName } from '../queue/codecs';
import type { StatelessCodecName } from '../queue/codecs';
import { QueueDescriptor } from '../queue/descriptor';
import { DescriptorError, InvalidArgumentTypeError, InvalidArgumentValueError, describe } from '../errors';
import type { PartitionKey } from '../router/hashing';
import { checkInteger, checkKnownKeys, checkOptions } from '../validate';
import { DEFAULT_PASSWORD_ENV, passwordFor, splitRedisUrl } from './connection';
import { checkAckMode, checkKeyName, resolveQueueOptions } from './queue-options';
import type { RedisAckMode, RedisQueueOptions, RedisWaitReplicas } from './queue-options';

/** The queue type of partitioned descriptors. */
export const PARTITIONED_QUEUE_TYPE = 'redis_partitioned';
/** Most partitions a queue may have. */
export const MAX_PARTITIONS = 1024;

export interface PartitionedRedisQueueOptions<T = unknown> {
  /** As for RedisQueue: `redis://…` (one server) or `redis+cluster://h1:p1,…` (a Cluster). Default redis://127.0.0.1:6379. */
  url?: string;
  /**
   * The queue's name (no `{` or `}`): partition i is the stream `{<name>:<i>}` (its own hash tag,
   * so partitions spread over a Cluster's masters); the consumer group's coordination keys are
   * `{<name>}:members`, `{<name>}:owners` and `{<name>}:meta`.
   */
  name: string;
  /** How many partitions (streams), 1-1024. Every handle of the queue must give the same number. */
  partitions: number;
  /**
   * The key of an item put without an explicit `key` (e.g. `(job) => job.userId`). Without it, or
   * when it returns undefined, a put goes to the partitions in rotation (no order between such items).
   */
  keyOf?: (item: T) => PartitionKey | undefined;
  /** Consumer group (shared by the partitions). Default 'sage'. */
  group?: string;
  /** This consumer's name in the group. Default `<host>:<pid>:<random>`. */
  consumer?: string;
  /** Per partition: most unacknowledged entries in one partition's stream. 0 (default) = unbounded. */
  maxsize?: number;
  codec?: StatelessCodecName;
  /** 'auto' (default): acknowledged before hand-out. 'explicit': gets return PartitionedRedisMessage. */
  ackMode?: RedisAckMode;
  /** As for RedisQueue, per partition. Default 30000 ms. */
  claimIdleMs?: number;
  /** As for RedisQueue. Default 5. */
  maxDeliveries?: number;
  /**
   * How long a consumer's hold on a partition (and its group membership) lasts without a
   * heartbeat; a dead consumer's partitions are taken over after at most this. Default 10000 ms.
   */
  leaseMs?: number;
  /** Interval of the heartbeat that renews the leases and rebalances. Default leaseMs / 4. */
  heartbeatMs?: number;
  /** Longest single blocking read of one partition. Default 1000 ms, at most leaseMs / 3. */
  blockSliceMs?: number;
  commandTimeoutMs?: number;
  unavailableTimeoutMs?: number;
  password?: string;
  passwordEnv?: string;
  /** As for RedisQueue (not carried by descriptors). */
  waitReplicas?: RedisWaitReplicas;
  /** The queue id this handle was resolved under (set by resolveDescriptor). */
  queueId?: string;
}

/** Options of a put: the item's partition key (else `keyOf(item)`, else rotation), or the partition itself. */
export interface PartitionedPutOptions {
  key?: PartitionKey;
  /** Put into this partition (0..partitions-1) whatever the key; not with `key`. */
  partition?: number;
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** Checked and defaulted options. */
export interface PartitionSettings {
  readonly name: string;
  readonly partitions: number;
  readonly group: string;
  readonly consumer: string;
  readonly ackMode: RedisAckMode;
  readonly leaseMs: number;
  readonly heartbeatMs: number;
  readonly sliceMs: number;
  readonly keyOf: ((item: unknown) => PartitionKey | undefined) | undefined;
  /** The URL without its password. */
  readonly url: string;
  readonly password: string | undefined;
  readonly passwordEnv: string;
  readonly queueId: string | undefined;
  readonly maxsize: number;
  readonly codec: StatelessCodecName;
  readonly claimIdleMs: number;
  readonly maxDeliveries: number;
  readonly commandTimeoutMs: number;
  readonly unavailableMs: number;
  /** What every partition's RedisQueue is opened with, but `stream` and `ackMode`. */
  readonly base: Omit<RedisQueueOptions, 'stream' | 'ackMode'>;
}

const OPTION_KEYS = [
  'url', 'name', 'partitions', 'keyOf', 'group', 'consumer', 'maxsize', 'codec', 'ackMode', 'claimIdleMs', 'maxDeliveries', 'leaseMs',
  'heartbeatMs', 'blockSliceMs', 'commandTimeoutMs', 'unavailableTimeoutMs', 'password', 'passwordEnv', 'waitReplicas', 'queueId',
] as const;

/** The queue name: a key name without `{` or `}` (they would change the partitions' hash tags). */
export function checkQueueName(value: unknown, name = 'options.name'): string {
  const s = checkKeyName(value, name);
  if (/[{}]/.test(s)) throw new InvalidArgumentValueError(`${name} may not contain { or } (each partition gets its own hash tag {<name>:<i>}); received ${describe(s)}`, s);
  return s;
}

/** Stream key of partition `i`. */
export function partitionStream(name: string, i: number): string {
  return `{${name}:${i}}`;
}

/** The coordination keys (one slot: the `{<name>}` tag). */
export function leaseKeys(name: string): { members: string; owners: string; meta: string } {
  return { members: `{${name}}:members`, owners: `{${name}}:owners`, meta: `{${name}}:meta` };
}

/** Checks the options (typed errors with stable codes) and fills in the defaults. */
export function resolvePartitionOptions(options: unknown): PartitionSettings {
  const o = checkOptions<PartitionedRedisQueueOptions>(options);
  checkKnownKeys(o, OPTION_KEYS);
  if (o.name === undefined) throw new InvalidArgumentTypeError('options.name', 'a string (the queue name)', o.name);
  const name = checkQueueName(o.name);
  if (o.partitions === undefined) throw new InvalidArgumentTypeError('options.partitions', `an integer 1-${MAX_PARTITIONS}`, o.partitions);
  const partitions = checkInteger(o.partitions, 'options.partitions', 1, MAX_PARTITIONS);
  if (o.keyOf !== undefined && typeof o.keyOf !== 'function') throw new InvalidArgumentTypeError('options.keyOf', 'a function (item) => key', o.keyOf);
  const group = o.group === undefined ? 'sage' : checkKeyName(o.group, 'options.group');
  const consumer = o.consumer === undefined ? `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}` : checkKeyName(o.consumer, 'options.consumer');
  const ackMode = checkAckMode(o.ackMode);
  const leaseMs = o.leaseMs === undefined ? 10_000 : checkInteger(o.leaseMs, 'options.leaseMs', 300, 3_600_000);
  const heartbeatMs = o.heartbeatMs === undefined ? Math.floor(leaseMs / 4) : checkInteger(o.heartbeatMs, 'options.heartbeatMs', 50, Math.floor(leaseMs / 2));
  const sliceMs = o.blockSliceMs === undefined ? Math.min(1000, Math.floor(leaseMs / 3)) : checkInteger(o.blockSliceMs, 'options.blockSliceMs', 1, Math.floor(leaseMs / 3));
  const split = splitRedisUrl(o.url ?? 'redis://127.0.0.1:6379');
  const passwordEnv = o.passwordEnv === undefined ? DEFAULT_PASSWORD_ENV : checkKeyName(o.passwordEnv, 'options.passwordEnv');
  if (o.password !== undefined && typeof o.password !== 'string') throw new InvalidArgumentTypeError('options.password', 'a string', '(hidden)');
  const maxsize = o.maxsize === undefined ? 0 : checkInteger(o.maxsize, 'options.maxsize', 0);
  const codec = statelessCodecByName(o.codec ?? 'v8').name;
  const claimIdleMs = o.claimIdleMs === undefined ? 30_000 : checkInteger(o.claimIdleMs, 'options.claimIdleMs', 10);
  const maxDeliveries = o.maxDeliveries === undefined ? 5 : checkInteger(o.maxDeliveries, 'options.maxDeliveries', 1);
  const commandTimeoutMs = o.commandTimeoutMs === undefined ? 5000 : checkInteger(o.commandTimeoutMs, 'options.commandTimeoutMs', 1);
  const unavailableMs = o.unavailableTimeoutMs === undefined ? 30_000 : checkInteger(o.unavailableTimeoutMs, 'options.unavailableTimeoutMs', 0);
  const queueId = o.queueId === undefined ? undefined : checkKeyName(o.queueId, 'options.queueId');
  const password = o.password ?? split.password ?? passwordFor(split.url, passwordEnv);
  const base: Omit<RedisQueueOptions, 'stream' | 'ackMode'> = {
    url: split.url, group, consumer, maxsize, codec, claimIdleMs, maxDeliveries, commandTimeoutMs, unavailableTimeoutMs: unavailableMs,
    blockSliceMs: sliceMs, passwordEnv, ...(password === undefined ? {} : { password }), ...(o.waitReplicas === undefined ? {} : { waitReplicas: o.waitReplicas }),
  };
  resolveQueueOptions({ ...base, stream: partitionStream(name, 0) }); // the rest (waitReplicas): typed errors now
  return {
    name, partitions, group, consumer, ackMode, leaseMs, heartbeatMs, sliceMs, keyOf: o.keyOf as ((item: unknown) => PartitionKey | undefined) | undefined,
    url: split.url, password, passwordEnv, queueId, maxsize, codec, claimIdleMs, maxDeliveries, commandTimeoutMs, unavailableMs, base,
  };
}

/** What a "redis_partitioned" descriptor carries (no consumer name, no password, no keyOf). */
export type PartitionedDescriptorOptions = Pick<
  PartitionedRedisQueueOptions,
  'name' | 'partitions' | 'group' | 'maxsize' | 'codec' | 'ackMode' | 'claimIdleMs' | 'maxDeliveries' | 'leaseMs' | 'passwordEnv' | 'queueId'
> & { url: string };

const DESCRIPTOR_KEYS = ['url', 'name', 'partitions', 'group', 'maxsize', 'codec', 'ackMode', 'claimIdleMs', 'maxDeliveries', 'leaseMs', 'passwordEnv', 'queueId'] as const;

/**
 * A "redis_partitioned" descriptor: metadata `{ url, name, partitions, group, maxsize, codec,
 * ack_mode, claim_idle_ms, max_deliveries, lease_ms, password_env? }`; the URL never carries a
 * password.
 */
export function createPartitionedRedisQueueDescriptor(options: PartitionedDescriptorOptions): QueueDescriptor {
  const o = checkOptions<PartitionedDescriptorOptions>(options);
  checkKnownKeys(o, DESCRIPTOR_KEYS);
  if (o.url === undefined) throw new InvalidArgumentTypeError('options.url', 'a redis:// or redis+cluster:// URL string', o.url);
  const s = resolvePartitionOptions({ ...o, consumer: 'descriptor' });
  const metadata: Record<string, string | number> = {
    url: s.url, name: s.name, partitions: s.partitions, group: s.group, maxsize: s.maxsize, codec: s.codec, ack_mode: s.ackMode,
    claim_idle_ms: s.claimIdleMs, max_deliveries: s.maxDeliveries, lease_ms: s.leaseMs,
  };
  if (o.passwordEnv !== undefined) metadata.password_env = s.passwordEnv;
  return new QueueDescriptor({ queueId: s.queueId ?? `redisp_${randomBytes(4).toString('hex')}`, queueType: PARTITIONED_QUEUE_TYPE, metadata });
}

/** The options a "redis_partitioned" descriptor carries; DescriptorError for malformed metadata. */
export function partitionOptionsFromDescriptor(desc: QueueDescriptor): PartitionedRedisQueueOptions {
  const m = desc.metadata;
  const str = (key: string, required: boolean): string | undefined => {
    const v = m[key];
    if (v === undefined && !required) return undefined;
    if (typeof v !== 'string' || v.length === 0) throw new DescriptorError(`metadata.${key} of a "${PARTITIONED_QUEUE_TYPE}" descriptor must be a non-empty string; received ${describe(v)}`);
    return v;
  };
  const int = (key: string, required: boolean): number | undefined => {
    const v = m[key];
    if (v === undefined && !required) return undefined;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new DescriptorError(`metadata.${key} of a "${PARTITIONED_QUEUE_TYPE}" descriptor must be an integer >= 0; received ${describe(v)}`);
    return v;
  };
  const ackMode = str('ack_mode', false);
  if (ackMode !== undefined && ackMode !== 'auto' && ackMode !== 'explicit') {
    throw new DescriptorError(`metadata.ack_mode of a "${PARTITIONED_QUEUE_TYPE}" descriptor must be "auto" or "explicit"; received ${describe(ackMode)}`);
  }
  return {
    url: str('url', true), name: str('name', true) as string, partitions: int('partitions', true) as number, group: str('group', false),
    maxsize: int('maxsize', false), codec: str('codec', false) as StatelessCodecName | undefined, ackMode: ackMode as RedisAckMode | undefined,
    claimIdleMs: int('claim_idle_ms', false), maxDeliveries: int('max_deliveries', false), leaseMs: int('lease_ms', false),
    passwordEnv: str('password_env', false), queueId: desc.queueId,
  };
}
