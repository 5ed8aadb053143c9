/**
 * RedisQueue's options: their types, their checks (typed errors with stable codes), and the
 * settings a queue runs with once they are checked and defaulted.
 */
import { createHash, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';

import { statelessCodecByName } from '../queue/codecs';
import type { Codec, StatelessCodecName } from '../queue/codecs';
import { QueueDescriptor } from '../queue/descriptor';
import { InvalidArgumentTypeError, InvalidArgumentValueError, describe } from '../errors';
import type { AsyncWaitOptions } from '../queue/queue-like';
import { checkInteger, checkKnownKeys, checkOptions, checkSignal, checkTimeoutMs } from '../validate';
import { isClusterUrl } from './cluster-url';
import { DEFAULT_PASSWORD_ENV, hashTagOf, passwordFor, splitRedisUrl } from './connection';

export type RedisAckMode = 'auto' | 'explicit';

export interface RedisQueueOptions {
  /**
   * redis:// or rediss:// URL of one server, or `redis+cluster://h1:p1,h2:p2` (`rediss+cluster://`)
   * naming startup nodes of a Redis Cluster (then `stream` must contain a {hash tag}). A password
   * in it is used, never serialised. Default redis://127.0.0.1:6379.
   */
  url?: string;
  /** The stream key. Put a hash tag in it (e.g. `{jobs}`) to keep every key of the queue in one Cluster slot. */
  stream: string;
  /** Consumer group. Default 'sage'. */
  group?: string;
  /** This instance's consumer name. Default `<host>:<pid>:<random>` (unique per instance). */
  consumer?: string;
  /** Most unacknowledged entries in the stream; a put waits while it is reached. 0 (default) = unbounded. */
  maxsize?: number;
  /** Message codec for what this instance puts (each entry records its codec). Default 'v8'. */
  codec?: StatelessCodecName;
  /** 'auto' (default): gets are acknowledged before they are handed out. 'explicit': getAsync returns RedisMessage. */
  ackMode?: RedisAckMode;
  /** An entry held this long without being settled is reclaimed by another consumer. Default 30000 ms. */
  claimIdleMs?: number;
  /** Deliveries after which an entry goes to the dead-letter stream instead. Default 5. */
  maxDeliveries?: number;
  /** Default `<stream>:dead`. */
  deadLetterStream?: string;
  /** The dead-letter stream is trimmed (approximately) to this length. Default 10000. */
  deadLetterMaxLen?: number;
  /** How long a Redis command may take to answer. Default 5000 ms. */
  commandTimeoutMs?: number;
  /** How long a call waits for an unreachable Redis before ERR_REDIS_UNAVAILABLE. Default 30000 ms. */
  unavailableTimeoutMs?: number;
  /** Longest single XREADGROUP BLOCK (a closed marker set elsewhere is seen within this). Default 1000 ms. */
  blockSliceMs?: number;
  /** Password (else from the environment variable `passwordEnv`, else from the URL). */
  password?: string;
  /** Environment variable holding the password. Default SAGE_REDIS_PASSWORD. */
  passwordEnv?: string;
  /** The queue id this instance was resolved under (set by resolveDescriptor). */
  queueId?: string;
  /**
   * Puts resolve only once WAIT saw `replicas` replicas acknowledge them (within `timeoutMs`;
   * else RedisBackendError ERR_REDIS_NOT_REPLICATED): an acknowledged put then survives the
   * master's death. Default: none (Redis replication is asynchronous; see docs/redis.md).
   */
  waitReplicas?: RedisWaitReplicas;
}

/** `waitReplicas`: how many replicas must confirm a put, and how long WAIT may take. */
export interface RedisWaitReplicas {
  /** At least 1. */
  replicas: number;
  /** WAIT's timeout, 1-60000 ms. */
  timeoutMs: number;
}

function checkWaitReplicas(value: unknown): RedisWaitReplicas | undefined {
  if (value === undefined) return undefined;
  const o = checkOptions<RedisWaitReplicas>(value, 'options.waitReplicas');
  checkKnownKeys(o, ['replicas', 'timeoutMs'], 'options.waitReplicas');
  return {
    replicas: checkInteger(o.replicas, 'options.waitReplicas.replicas', 1, 1000),
    timeoutMs: checkInteger(o.timeoutMs, 'options.waitReplicas.timeoutMs', 1, 60_000),
  };
}

export interface RedisBatchOptions extends AsyncWaitOptions {}

const OPTION_KEYS = [
  'url', 'stream', 'group', 'consumer', 'maxsize', 'codec', 'ackMode', 'claimIdleMs', 'maxDeliveries', 'deadLetterStream',
  'deadLetterMaxLen', 'commandTimeoutMs', 'unavailableTimeoutMs', 'blockSliceMs', 'password', 'passwordEnv', 'queueId', 'waitReplicas',
] as const;
const DEFAULT_URL = 'redis://127.0.0.1:6379';
const MAX_KEY_LENGTH = 1024;

/** A key, group, consumer or variable name: a non-empty string of at most 1024 characters. */
export function checkKeyName(value: unknown, name: string): string {
  if (typeof value !== 'string') throw new InvalidArgumentTypeError(name, 'a string', value);
  if (value.length === 0 || value.length > MAX_KEY_LENGTH) {
    throw new InvalidArgumentValueError(`${name} must be a non-empty string of at most ${MAX_KEY_LENGTH} characters; received ${describe(value)}`, value);
  }
  return value;
}

export function checkAckMode(value: unknown): RedisAckMode {
  if (value === undefined) return 'auto';
  if (value === 'auto' || value === 'explicit') return value;
  throw new InvalidArgumentValueError(`options.ackMode must be 'auto' or 'explicit'; received ${describe(value)}`, value);
}


/** What a RedisQueue runs with: every option checked and defaulted, and the keys derived from the stream. */
export interface QueueSettings {
  readonly stream: string;
  readonly group: string;
  readonly consumer: string;
  readonly maxsize: number;
  readonly codec: Codec & { name: StatelessCodecName };
  readonly ackMode: RedisAckMode;
  readonly claimIdleMs: number;
  readonly maxDeliveries: number;
  readonly deadLetterStream: string;
  readonly deadMaxLen: number;
  readonly commandTimeoutMs: number;
  readonly unavailableMs: number;
  readonly sliceMs: number;
  /** The URL without its password. */
  readonly url: string;
  readonly password: string | undefined;
  readonly queueId: string | undefined;
  readonly waitReplicas: RedisWaitReplicas | undefined;
  /** `<stream>:closed`. */
  readonly closedKey: string;
  /** `<stream>:s:<instance>`: this handle's session hash (outcomes of its mutating scripts). */
  readonly sessionKey: string;
  /** Connection-name prefix of every blocking reader of this stream (for CLIENT UNBLOCK). */
  readonly blockPrefix: string;
  /** This handle's blocking connection's name. */
  readonly blockName: string;
}

/** Checks RedisQueue options (typed errors with stable codes) and fills in the defaults. */
export function resolveQueueOptions(options: unknown): QueueSettings {
  const o = checkOptions<RedisQueueOptions>(options);
  checkKnownKeys(o, OPTION_KEYS);
  if (o.stream === undefined) throw new InvalidArgumentTypeError('options.stream', 'a string (the stream key)', o.stream);
  const stream = checkKeyName(o.stream, 'options.stream');
  const group = o.group === undefined ? 'sage' : checkKeyName(o.group, 'options.group');
  const consumer = o.consumer === undefined ? `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}` : checkKeyName(o.consumer, 'options.consumer');
  const maxsize = o.maxsize === undefined ? 0 : checkInteger(o.maxsize, 'options.maxsize', 0);
  const codec = statelessCodecByName(o.codec ?? 'v8');
  const ackMode = checkAckMode(o.ackMode);
  const claimIdleMs = o.claimIdleMs === undefined ? 30_000 : checkInteger(o.claimIdleMs, 'options.claimIdleMs', 10);
  const maxDeliveries = o.maxDeliveries === undefined ? 5 : checkInteger(o.maxDeliveries, 'options.maxDeliveries', 1);
  const deadLetterStream = o.deadLetterStream === undefined ? `${stream}:dead` : checkKeyName(o.deadLetterStream, 'options.deadLetterStream');
  if (deadLetterStream === stream) {
    throw new InvalidArgumentValueError('options.deadLetterStream must differ from options.stream', deadLetterStream);
  }
  if (hashTagOf(stream) !== hashTagOf(deadLetterStream)) {
    throw new InvalidArgumentValueError(
      `options.deadLetterStream must have the same {hash tag} as the stream (${JSON.stringify(hashTagOf(stream) ?? null)}) so ` +
        'scripts touching both work on Redis Cluster',
      deadLetterStream,
      'ERR_CROSSSLOT',
    );
  }
  const deadMaxLen = o.deadLetterMaxLen === undefined ? 10_000 : checkInteger(o.deadLetterMaxLen, 'options.deadLetterMaxLen', 1);
  const commandTimeoutMs = o.commandTimeoutMs === undefined ? 5000 : checkInteger(o.commandTimeoutMs, 'options.commandTimeoutMs', 1);
  const unavailableMs = o.unavailableTimeoutMs === undefined ? 30_000 : checkInteger(o.unavailableTimeoutMs, 'options.unavailableTimeoutMs', 0);
  const sliceMs = o.blockSliceMs === undefined ? 1000 : checkInteger(o.blockSliceMs, 'options.blockSliceMs', 1, 600_000);
  if (o.password !== undefined && typeof o.password !== 'string') throw new InvalidArgumentTypeError('options.password', 'a string', '(hidden)');
  const passwordEnv = o.passwordEnv === undefined ? DEFAULT_PASSWORD_ENV : checkKeyName(o.passwordEnv, 'options.passwordEnv');
  const split = splitRedisUrl(o.url ?? DEFAULT_URL);
  if (isClusterUrl(split.url) && hashTagOf(stream) === undefined) {
    throw new InvalidArgumentValueError(
      `on Redis Cluster options.stream must contain a {hash tag} (e.g. ${JSON.stringify(`{${stream}}`)}) so the stream, its close marker, ` +
        'dead-letter stream and session keys share one slot and every script stays single-slot',
      stream,
      'ERR_CROSSSLOT',
    );
  }
  const password = o.password ?? split.password ?? passwordFor(split.url, passwordEnv);
  const queueId = o.queueId === undefined ? undefined : checkKeyName(o.queueId, 'options.queueId');
  const waitReplicas = checkWaitReplicas(o.waitReplicas);
  const instance = randomBytes(6).toString('hex');
  const streamHash = createHash('sha1').update(stream).digest('hex').slice(0, 16);
  const blockPrefix = `sageq-b-${streamHash}-`;
  return {
    stream, group, consumer, maxsize, codec, ackMode, claimIdleMs, maxDeliveries, deadLetterStream, deadMaxLen, commandTimeoutMs,
    unavailableMs, sliceMs, url: split.url, password, queueId, waitReplicas,
    closedKey: `${stream}:closed`,
    sessionKey: `${stream}:s:${instance}`,
    blockPrefix,
    blockName: `${blockPrefix}${instance}`,
  };
}

/** Checked values of a "redis" descriptor; undefined ones are left out of the metadata. */
export interface RedisDescriptorFields {
  url: string;
  stream: string;
  group: string;
  /** Default `redis_<8 hex>`. */
  queueId: string | undefined;
  maxsize: number;
  codec: StatelessCodecName;
  ackMode: RedisAckMode;
  claimIdleMs: number | undefined;
  maxDeliveries: number | undefined;
  deadLetterStream: string | undefined;
  passwordEnv: string | undefined;
}

/**
 * The "redis" descriptor of checked values (the metadata's wire names are written here only):
 * `{ url, stream, group, maxsize, codec, ack_mode, claim_idle_ms, max_deliveries,
 * dead_letter_stream, password_env }`.
 */
export function redisDescriptor(f: RedisDescriptorFields): QueueDescriptor {
  const metadata: Record<string, string | number> = { url: f.url, stream: f.stream, group: f.group, maxsize: f.maxsize, codec: f.codec, ack_mode: f.ackMode };
  if (f.claimIdleMs !== undefined) metadata.claim_idle_ms = f.claimIdleMs;
  if (f.maxDeliveries !== undefined) metadata.max_deliveries = f.maxDeliveries;
  if (f.deadLetterStream !== undefined) metadata.dead_letter_stream = f.deadLetterStream;
  if (f.passwordEnv !== undefined) metadata.password_env = f.passwordEnv;
  const queueId = f.queueId ?? `redis_${randomBytes(4).toString('hex')}`;
  return new QueueDescriptor({ queueId, queueType: 'redis', metadata });
}
