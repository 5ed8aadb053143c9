/**
 * RedisQueue (queue type "redis"): a queue between processes and machines over a Redis Stream
 * read through a consumer group. Implements AsyncQueueLike only (a remote queue has no
 * synchronous calls).
 *
 * - putAsync / putManyAsync append with XADD inside a Lua script that also checks the close
 *   marker and, with `maxsize`, the stream length: a put waits (polling with backoff) while the
 *   stream holds `maxsize` unacknowledged entries, like every other queue's put.
 * - getAsync / getManyAsync read with XREADGROUP (BLOCK on a connection of its own).
 *   `ackMode: 'auto'` acknowledges an entry (XACK + XDEL) before handing it out: at most once
 *   if the consumer then crashes. `ackMode: 'explicit'` hands out RedisMessage objects to ack(),
 *   nack() or deadLetter(): at least once.
 * - Entries a consumer has held longer than `claimIdleMs` are reclaimed by another (XAUTOCLAIM);
 *   an entry delivered more than `maxDeliveries` times goes to the dead-letter stream.
 * - Every mutating script carries a per-instance sequence number recorded in a session hash, so
 *   a command that ioredis resends after a reconnect is applied once (see docs/redis.md).
 *
 * Key layout (all derived from `stream`; put a Redis Cluster hash tag in the stream name, e.g.
 * `{jobs}`, to keep them in one slot): `<stream>`, `<stream>:closed`, `<stream>:dead` (default
 * dead-letter stream), `<stream>:s:<instance>` (session hash, expires).
 */
import { createHash, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Redis as IORedis, RedisOptions } from 'ioredis';

import { WaiterList } from '../queue/async-waiters';
import { codecByName } from '../queue/codecs';
import type { Codec, CodecName } from '../queue/codecs';
import { QueueDescriptor } from '../queue/descriptor';
import {
  DescriptorError,
  InvalidArgumentTypeError,
  InvalidArgumentValueError,
  QueueClosedError,
  QueueEmptyError,
  QueueFullError,
  QueueReleasedError,
  SageQueueError,
  SerializationError,
  describe,
} from '../errors';
import type { AsyncWaitOptions } from '../queue/queue-like';
import { forgetResolved } from '../queue/registry';
import { checkInteger, checkKnownKeys, checkOptions, checkSignal, checkTimeoutMs } from '../validate';

// ------------------------------------------------------------------------------------------------
// Errors and connections shared by the Redis modules

/**
 * Redis could not be reached in time, a command timed out, or Redis answered with an error.
 * `code`: ERR_REDIS_UNAVAILABLE (no connection within the wait; nothing was sent),
 * ERR_REDIS_TIMEOUT (sent, no reply in time: the command may or may not have been applied, see
 * `maybeApplied`), ERR_REDIS_REPLY (Redis answered with an error, or with a reply of the wrong
 * shape).
 */
export class RedisBackendError extends SageQueueError {
  /** True when the command was sent and may have been applied although the call failed. */
  readonly maybeApplied: boolean;
  constructor(code: 'ERR_REDIS_UNAVAILABLE' | 'ERR_REDIS_TIMEOUT' | 'ERR_REDIS_REPLY', message: string, maybeApplied: boolean, cause?: unknown) {
    super(code, message, cause === undefined ? undefined : { cause });
    this.maybeApplied = maybeApplied;
  }
}

/** The environment variable a resolving process reads the Redis password from, by default. */
export const DEFAULT_PASSWORD_ENV = 'SAGE_REDIS_PASSWORD';

/** Passwords given in URLs in this process, by URL without the password (never serialised). */
const rememberedPasswords = new Map<string, string>();

/** A redis:// or rediss:// URL; returns it without the password, and the password apart. */
export function splitRedisUrl(url: unknown, name = 'options.url'): { url: string; password: string | undefined } {
  if (typeof url !== 'string') throw new InvalidArgumentTypeError(name, 'a redis:// or rediss:// URL string', url);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new InvalidArgumentValueError(`${name} must be a redis:// or rediss:// URL; received ${describe(redactUrlText(url))}`, redactUrlText(url));
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw new InvalidArgumentValueError(`${name} must use redis:// or rediss://; received ${JSON.stringify(parsed.protocol)}`, parsed.protocol);
  }
  if (parsed.hostname === '') throw new InvalidArgumentValueError(`${name} must name a host`, redactUrlText(url));
  if (!/^\/?(\d+)?$/.test(parsed.pathname)) {
    throw new InvalidArgumentValueError(`${name} may only have a database number as its path (redis://host:port/0); received ${JSON.stringify(parsed.pathname)}`, parsed.pathname);
  }
  let password = parsed.password === '' ? undefined : decodeURIComponent(parsed.password);
  parsed.password = '';
  const fromQuery = parsed.searchParams.get('password');
  if (fromQuery !== null) {
    password ??= fromQuery;
    parsed.searchParams.delete('password');
  }
  const clean = parsed.toString();
  if (password !== undefined) rememberedPasswords.set(clean, password);
  return { url: clean, password };
}

function redactUrlText(url: string): string {
  return url.replace(/\/\/([^@/]*):[^@/]*@/, '//$1:***@');
}

/** The password for a stripped URL: the environment variable first, then one seen in this process. */
export function passwordFor(cleanUrl: string, passwordEnv: string): string | undefined {
  const fromEnv = process.env[passwordEnv];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  return rememberedPasswords.get(cleanUrl);
}

type IoredisModule = typeof import('ioredis');
let ioredisModule: IoredisModule | undefined;
/** ioredis is loaded on first use, so importing sage-queue does not load it. */
function ioredis(): IoredisModule {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  ioredisModule ??= require('ioredis') as IoredisModule;
  return ioredisModule;
}

/** A Lua script registered on every connection as a custom command. */
export interface LuaScript {
  readonly name: string;
  readonly numberOfKeys: number;
  readonly lua: string;
}

export interface ConnOptions {
  url: string;
  password: string | undefined;
  connectionName: string;
  scripts: readonly LuaScript[];
  autoPipelining: boolean;
}

/**
 * One ioredis connection: no offline queue (a command is sent only when connected, so a call
 * that gives up while Redis is unreachable was never applied), unlimited reconnect attempts,
 * commands in flight at a disconnect resent in order after reconnecting (ioredis's
 * autoResendUnfulfilledCommands; our scripts deduplicate them).
 * @internal
 */
export class RedisConn {
  readonly client: IORedis;
  lastError: Error | undefined;
  readonly #wake = new Set<() => void>();
  #ended = false;

  constructor(options: ConnOptions) {
    const { Redis } = ioredis();
    const redisOptions: RedisOptions = {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: null,
      autoResendUnfulfilledCommands: true,
      enableReadyCheck: true,
      connectTimeout: 2000,
      retryStrategy: (times: number) => Math.min(20 * 2 ** Math.min(times, 5), 500),
      connectionName: options.connectionName,
      enableAutoPipelining: options.autoPipelining,
    };
    // The URL is parsed here rather than by ioredis, which lets a URL without a password
    // override the `password` option with an empty one.
    const u = new URL(options.url);
    redisOptions.host = u.hostname.replace(/^\[(.*)\]$/, '$1');
    redisOptions.port = u.port === '' ? 6379 : Number(u.port);
    const db = u.pathname.replace(/^\//, '');
    if (db !== '') redisOptions.db = Number(db);
    if (u.username !== '') redisOptions.username = decodeURIComponent(u.username);
    if (u.protocol === 'rediss:') redisOptions.tls = {};
    if (options.password !== undefined) redisOptions.password = options.password;
    this.client = new Redis(redisOptions);
    for (const s of options.scripts) this.client.defineCommand(s.name, { numberOfKeys: s.numberOfKeys, lua: s.lua });
    this.client.on('error', (e: Error) => {
      this.lastError = e;
    });
    this.client.on('ready', () => this.#wakeAll());
    this.client.on('end', () => {
      this.#ended = true;
      this.#wakeAll();
    });
  }

  get ended(): boolean {
    return this.#ended || this.client.status === 'end';
  }

  #wakeAll(): void {
    const waiting = [...this.#wake];
    this.#wake.clear();
    for (const w of waiting) w();
  }

  /** Resolves when the connection is ready; rejects ERR_REDIS_UNAVAILABLE at `deadline` (ms epoch). */
  whenReady(deadline: number, what: string): Promise<void> {
    const status = this.client.status;
    if (status === 'ready') return Promise.resolve();
    if (this.ended) return Promise.reject(new QueueReleasedError('this Redis connection was closed (release() or close() was called)'));
    if (status === 'wait') this.client.connect().catch(() => undefined);
    return new Promise((resolve, reject) => {
      const wake = (): void => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.#wake.delete(wake);
        const why = this.lastError ? `: ${this.lastError.message}` : '';
        reject(new RedisBackendError('ERR_REDIS_UNAVAILABLE', `${what}: Redis was not reachable in time (status ${this.client.status}${why}); nothing was sent`, false, this.lastError));
      }, Math.max(0, deadline - Date.now()));
      this.#wake.add(wake);
    });
  }

  /** Runs a command when connected, with a reply timeout. Retries only what was never sent. */
  async call<T>(what: string, fn: (client: IORedis) => Promise<T>, unavailableDeadline: number, replyTimeoutMs: number): Promise<T> {
    for (;;) {
      await this.whenReady(unavailableDeadline, what);
      try {
        return await withTimeout(fn(this.client), replyTimeoutMs, what);
      } catch (e) {
        if (e instanceof Error && /isn't writeable/.test(e.message) && !this.ended) {
          if (Date.now() >= unavailableDeadline) {
            throw new RedisBackendError('ERR_REDIS_UNAVAILABLE', `${what}: Redis was not reachable in time; nothing was sent`, false, e);
          }
          continue; // never sent: safe to send again once connected
        }
        throw toBackendError(e, what);
      }
    }
  }

  /** Calls a script registered with defineCommand (Buffer replies when `buffers`). */
  script<T>(name: string, keys: readonly string[], args: ReadonlyArray<string | number | Buffer | Uint8Array>, buffers: boolean): Promise<T> {
    const fn = (this.client as unknown as Record<string, (...a: unknown[]) => Promise<T>>)[buffers ? `${name}Buffer` : name];
    if (typeof fn !== 'function') return Promise.reject(new Error(`script ${name} is not defined on this connection`));
    return fn.call(this.client, ...keys, ...args);
  }

  disconnect(): void {
    this.#ended = true;
    this.client.disconnect();
    this.#wakeAll();
  }

  async quit(timeoutMs: number): Promise<void> {
    if (this.ended) return;
    if (this.client.status !== 'ready') {
      this.disconnect();
      return;
    }
    try {
      await withTimeout(this.client.quit(), timeoutMs, 'QUIT');
    } catch {
      /* disconnect below */
    }
    this.disconnect();
  }
}

function toBackendError(e: unknown, what: string): Error {
  if (e instanceof SageQueueError || e instanceof QueueReleasedError) return e;
  if (e instanceof Error && /Connection is closed/.test(e.message)) {
    return new QueueReleasedError(`${what}: the Redis connection was closed (release() or close() was called)`);
  }
  if (e instanceof Error && e.name === 'ReplyError') {
    return new RedisBackendError('ERR_REDIS_REPLY', `${what}: Redis replied with an error: ${e.message}`, false, e);
  }
  const msg = e instanceof Error ? e.message : String(e);
  return new RedisBackendError('ERR_REDIS_REPLY', `${what} failed: ${msg}`, true, e);
}

/** Rejects with ERR_REDIS_TIMEOUT after ms; the original promise's outcome is then ignored. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new RedisBackendError('ERR_REDIS_TIMEOUT', `${what}: no reply from Redis within ${ms} ms; the command may still be applied`, true));
    }, ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

/** CLIENT subcommands ioredis's typings do not list with these arguments. */
interface ClientCommand<R> {
  client(...args: string[]): Promise<R>;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The `{...}` hash tag of a key, as Redis Cluster computes it (undefined when none). */
export function hashTagOf(key: string): string | undefined {
  const open = key.indexOf('{');
  if (open < 0) return undefined;
  const close = key.indexOf('}', open + 1);
  if (close <= open + 1) return undefined;
  return key.slice(open + 1, close);
}

// ------------------------------------------------------------------------------------------------
// Lua scripts of the queue. Reply shapes are documented beside each; parsers check them.

/**
 * Lua lines that record a mutating script's outcome under its sequence number `seq` in the
 * outcomes hash (so a resend after a reconnect returns it instead of applying twice), drop the
 * outcome ARGV[2] sequence numbers older, and refresh the hash's TTL (ARGV[3] ms).
 */
function recordOutcome(outcomesKey: string, value: string): string {
  return [
    `redis.call('HSET', ${outcomesKey}, seq, ${value})`,
    `redis.call('HDEL', ${outcomesKey}, tostring(tonumber(seq) - tonumber(ARGV[2])))`,
    `redis.call('PEXPIRE', ${outcomesKey}, ARGV[3])`,
  ].join('\n');
}

/**
 * Append. KEYS: stream, closed marker, session hash. ARGV: seq, window, session ttl ms, maxsize
 * (0 = none), head (1 = first in this producer's wait line: may pass the `blocked` flag), field,
 * values... Reply: integer, entries appended (>= 0, fewer than given when maxsize stops them),
 * or -1 when the queue is closed. A resent seq returns the first outcome without appending.
 */
const PUT_LUA = `
local seq = ARGV[1]
local done = redis.call('HGET', KEYS[3], seq)
if done then return tonumber(done) end
local added
if redis.call('EXISTS', KEYS[2]) == 1 then
  added = -1
else
  local n = #ARGV - 6
  local room = n
  local maxsize = tonumber(ARGV[4])
  if maxsize > 0 then
    if ARGV[5] ~= '1' and redis.call('HEXISTS', KEYS[3], 'blocked') == 1 then
      room = 0
    else
      room = math.min(n, math.max(0, maxsize - redis.call('XLEN', KEYS[1])))
    end
    if room < n then
      redis.call('HSET', KEYS[3], 'blocked', '1')
    elseif ARGV[5] == '1' then
      redis.call('HDEL', KEYS[3], 'blocked')
    end
  end
  for i = 1, room do
    redis.call('XADD', KEYS[1], '*', ARGV[6], ARGV[6 + i])
  end
  added = room
end
${recordOutcome('KEYS[3]', 'added')}
return added
`;

/**
 * Non-blocking read of new entries (creates the group at 0 when it is missing).
 * KEYS: stream, closed marker. ARGV: group, consumer, count.
 * Reply: { closed (0|1), id1, field1, value1, id2, ... }.
 */
const READ_LUA = `
local closed = redis.call('EXISTS', KEYS[2])
local r = redis.pcall('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3], 'STREAMS', KEYS[1], '>')
if type(r) == 'table' and r.err then
  if string.find(r.err, 'NOGROUP', 1, true) then
    redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
    r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3], 'STREAMS', KEYS[1], '>')
  else
    return redis.error_reply(r.err)
  end
end
local out = {closed}
if r then
  for _, e in ipairs(r[1][2]) do
    local f = e[2]
    if type(f) == 'table' and #f >= 2 then
      out[#out + 1] = e[1]
      out[#out + 1] = f[1]
      out[#out + 1] = f[2]
    end
  end
end
return out
`;

/**
 * Reclaims entries idle for at least min-idle from any consumer (XAUTOCLAIM); entries delivered
 * more than maxDeliveries times go to the dead-letter stream instead.
 * KEYS: stream, dead-letter stream. ARGV: group, consumer, minIdle, cursor, count, maxDeliveries,
 * deadMaxLen, now ms. Reply: { nextCursor, deadLettered, id1, deliveries1, field1, value1, ... }.
 */
const RECLAIM_LUA = `
local r = redis.pcall('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'COUNT', ARGV[5])
if type(r) == 'table' and r.err then
  if string.find(r.err, 'NOGROUP', 1, true) then
    redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
    return {'0-0', 0}
  end
  return redis.error_reply(r.err)
end
local maxDeliveries = tonumber(ARGV[6])
local out = {r[1], 0}
local dead = 0
for _, e in ipairs(r[2]) do
  local id = e[1]
  local f = e[2]
  if type(f) == 'table' and #f >= 2 then
    local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
    local deliveries = 1
    if p[1] then deliveries = tonumber(p[1][4]) end
    if deliveries > maxDeliveries then
      redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[7], '*', f[1], f[2], 'x-id', id, 'x-deliveries', deliveries,
        'x-reason', 'delivered ' .. deliveries .. ' times (maxDeliveries ' .. ARGV[6] .. ')', 'x-group', ARGV[1], 'x-at', ARGV[8])
      redis.call('XACK', KEYS[1], ARGV[1], id)
      redis.call('XDEL', KEYS[1], id)
      dead = dead + 1
    else
      out[#out + 1] = id
      out[#out + 1] = deliveries
      out[#out + 1] = f[1]
      out[#out + 1] = f[2]
    end
  end
end
out[2] = dead
return out
`;

/**
 * Settles entries this consumer holds: ack (XACK + XDEL), nack (made reclaimable at once: XCLAIM
 * to itself with IDLE = claimIdleMs, JUSTID so the delivery count is not raised) or dead (copied
 * to the dead-letter stream with the reason, then XACK + XDEL). An entry that is not pending for
 * this consumer (reclaimed by another, or already settled) is left alone.
 * KEYS: stream, session hash, dead-letter stream. ARGV: seq, window, session ttl ms, op, group,
 * consumer, claimIdleMs, deadMaxLen, reason, now ms, ids... Reply: a string of '1' (settled
 * here) and '0' (not pending for this consumer), one per id. A resent seq returns the first reply.
 */
const SETTLE_LUA = `
local seq = ARGV[1]
local done = redis.call('HGET', KEYS[2], seq)
if done then return done end
local op = ARGV[4]
local group = ARGV[5]
local consumer = ARGV[6]
local flags = {}
for i = 11, #ARGV do
  local id = ARGV[i]
  local p = redis.pcall('XPENDING', KEYS[1], group, id, id, 1, consumer)
  if type(p) == 'table' and not p.err and p[1] then
    if op == 'ack' then
      redis.call('XACK', KEYS[1], group, id)
      redis.call('XDEL', KEYS[1], id)
    elseif op == 'nack' then
      redis.call('XCLAIM', KEYS[1], group, consumer, 0, id, 'IDLE', ARGV[7], 'JUSTID')
    else
      local e = redis.call('XRANGE', KEYS[1], id, id)
      if e[1] and #e[1][2] >= 2 then
        local f = e[1][2]
        redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[8], '*', f[1], f[2], 'x-id', id, 'x-deliveries', p[1][4],
          'x-reason', ARGV[9], 'x-group', group, 'x-at', ARGV[10])
      end
      redis.call('XACK', KEYS[1], group, id)
      redis.call('XDEL', KEYS[1], id)
    end
    flags[#flags + 1] = '1'
  else
    flags[#flags + 1] = '0'
  end
end
local s = table.concat(flags)
${recordOutcome('KEYS[2]', 's')}
return s
`;

/**
 * Counts. KEYS: stream, closed marker, dead-letter stream. ARGV: group.
 * Reply: { length, pending, closed (0|1), deadLetters }.
 */
const INFO_LUA = `
local len = redis.call('XLEN', KEYS[1])
local pending = 0
local p = redis.pcall('XPENDING', KEYS[1], ARGV[1])
if type(p) == 'table' and not p.err then pending = p[1] end
return {len, pending, redis.call('EXISTS', KEYS[2]), redis.call('XLEN', KEYS[3])}
`;

/** The queue's scripts (exported for the reply-shape and key tests). @internal */
export const QUEUE_SCRIPTS: readonly LuaScript[] = [
  { name: 'sageqPut', numberOfKeys: 3, lua: PUT_LUA },
  { name: 'sageqRead', numberOfKeys: 2, lua: READ_LUA },
  { name: 'sageqReclaim', numberOfKeys: 2, lua: RECLAIM_LUA },
  { name: 'sageqSettle', numberOfKeys: 3, lua: SETTLE_LUA },
  { name: 'sageqInfo', numberOfKeys: 3, lua: INFO_LUA },
];

// ------------------------------------------------------------------------------------------------
// Public types

export type RedisAckMode = 'auto' | 'explicit';

export interface RedisQueueOptions {
  /** redis:// or rediss:// URL (a password in it is used, never serialised). Default redis://127.0.0.1:6379. */
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
  codec?: CodecName;
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
}

/** An entry handed out in explicit-ack mode. */
export interface RedisMessage<T = unknown> {
  readonly value: T;
  /** The stream entry id. */
  readonly id: string;
  /** 1 on first delivery; more when reclaimed after a consumer failed to settle it. */
  readonly deliveries: number;
  /** Acknowledges (and deletes) the entry. False when it was no longer this consumer's (reclaimed or settled). */
  ack(): Promise<boolean>;
  /** Gives the entry back for redelivery at once (its delivery count grows when it is taken again). */
  nack(): Promise<boolean>;
  /** Moves the entry to the dead-letter stream with a reason. */
  deadLetter(reason?: string): Promise<boolean>;
}

export interface RedisBatchOptions extends AsyncWaitOptions {}

export interface RedisQueueStats {
  /** Entries in the stream: waiting plus delivered and not yet acknowledged. What maxsize bounds. */
  length: number;
  /** Delivered to a consumer, not yet acknowledged. */
  pending: number;
  /** Not yet delivered to any consumer. */
  waiting: number;
  deadLetters: number;
  closed: boolean;
}

export interface DeadLetterEntry {
  /** Id in the dead-letter stream. */
  id: string;
  /** Id the entry had in the queue's stream. */
  originalId: string;
  deliveries: number;
  reason: string;
  /** ms since the epoch, Redis server time. */
  at: number;
  /** Decoded value (undefined, with `error`, when it cannot be decoded). */
  value: unknown;
  error?: SerializationError;
}

interface RawEntry {
  id: string;
  deliveries: number;
  field: string;
  value: Buffer;
  readAt: number;
  /** Auto mode: already acknowledged for this consumer (hand out, never drop). */
  acked?: boolean;
}

interface GetRequest {
  max: number;
  deadline: number | undefined;
  signal: AbortSignal | undefined;
}

type PutWait = { timeoutMs: number | undefined; signal: AbortSignal | undefined };

interface DirectPut {
  payloads: Uint8Array[];
  wait: PutWait;
  deadline: number | undefined;
  what: string;
  resolve(n: number): void;
  reject(e: unknown): void;
}

interface PutJob {
  payloads: Uint8Array[];
  done: number;
  inFlight: boolean;
  failure: unknown;
  settled: boolean;
  resolve(n: number): void;
  reject(e: unknown): void;
  cleanup(): void;
}

const FIELD_OF_CODEC: Record<CodecName, string> = { raw: 'r', json: 'j', v8: 'v', msgpack: 'm' };
const CODEC_OF_FIELD: Record<string, CodecName> = { r: 'raw', j: 'json', v: 'v8', m: 'msgpack' };
const OPTION_KEYS = [
  'url', 'stream', 'group', 'consumer', 'maxsize', 'codec', 'ackMode', 'claimIdleMs', 'maxDeliveries', 'deadLetterStream',
  'deadLetterMaxLen', 'commandTimeoutMs', 'unavailableTimeoutMs', 'blockSliceMs', 'password', 'passwordEnv', 'queueId',
] as const;
const DEFAULT_URL = 'redis://127.0.0.1:6379';
const MAX_KEY_LENGTH = 1024;
/** Entries per script call / read. */
const CHUNK = 512;
const READ_MAX = 1000;
/** Mutating calls in flight per instance; the session hash remembers this many outcomes. */
const SESSION_WINDOW = 4096;
const SESSION_TTL_MS = 10 * 60 * 1000;
const GET_KEYS = ['timeoutMs', 'signal'] as const;

function checkKeyName(value: unknown, name: string): string {
  if (typeof value !== 'string') throw new InvalidArgumentTypeError(name, 'a string', value);
  if (value.length === 0 || value.length > MAX_KEY_LENGTH) {
    throw new InvalidArgumentValueError(`${name} must be a non-empty string of at most ${MAX_KEY_LENGTH} characters; received ${describe(value)}`, value);
  }
  return value;
}

function checkAckMode(value: unknown): RedisAckMode {
  if (value === undefined) return 'auto';
  if (value === 'auto' || value === 'explicit') return value;
  throw new InvalidArgumentValueError(`options.ackMode must be 'auto' or 'explicit'; received ${describe(value)}`, value);
}

function checkWait(options: unknown, name = 'options'): { timeoutMs: number | undefined; signal: AbortSignal | undefined } {
  const o = checkOptions<AsyncWaitOptions>(options, name);
  checkKnownKeys(o, GET_KEYS, name);
  return { timeoutMs: checkTimeoutMs(o.timeoutMs, `${name}.timeoutMs`), signal: checkSignal(o.signal, `${name}.signal`) };
}

// ------------------------------------------------------------------------------------------------

/**
 * A queue over a Redis Stream. `T` is what you put; `Out` what gets return: `T` in auto-ack
 * mode, `RedisMessage<T>` in explicit-ack mode (see RedisQueue.open).
 */
export class RedisQueue<T = unknown, Out = T> {
  readonly stream: string;
  readonly group: string;
  readonly consumer: string;
  readonly maxsize: number;
  readonly ackMode: RedisAckMode;
  readonly claimIdleMs: number;
  readonly maxDeliveries: number;
  readonly deadLetterStream: string;
  readonly queueId: string | undefined;
  readonly #url: string;
  readonly #password: string | undefined;
  readonly #codec: Codec;
  readonly #field: string;
  readonly #closedKey: string;
  readonly #sessionKey: string;
  readonly #deadMaxLen: number;
  readonly #commandTimeoutMs: number;
  readonly #unavailableMs: number;
  readonly #sliceMs: number;
  readonly #blockName: string;
  readonly #blockPrefix: string;
  #cmd: RedisConn | undefined;
  #blk: RedisConn | undefined;
  #seq = 0;
  #inflight = 0;
  readonly #slotWaiters: Array<() => void> = [];
  // consumer side
  readonly #getters = new WaiterList<Out[], GetRequest>();
  #want = 0;
  #buffer: RawEntry[] = [];
  #pumping = false;
  #claimCursor = '0-0';
  #nextClaimAt = 0;
  #blockingRead = false;
  #closedCheckedAt = 0;
  #unconfirmed: { seq: number; entries: RawEntry[] } | undefined;
  #confirming: Promise<void> | undefined;
  // producer side
  readonly #lane: PutJob[] = [];
  readonly #direct: DirectPut[] = [];
  #directScheduled = false;
  #laneRunning = false;
  // lifetime
  #closedLocal = false;
  #closedSeen = false;
  #closing: Promise<void> | undefined;
  #released = false;
  #groupReady = false;

  /** In explicit mode use `RedisQueue.open` (or type `Out` as RedisMessage<T> yourself). */
  constructor(options: RedisQueueOptions) {
    const o = checkOptions<RedisQueueOptions>(options);
    checkKnownKeys(o, OPTION_KEYS);
    if (o.stream === undefined) throw new InvalidArgumentTypeError('options.stream', 'a string (the stream key)', o.stream);
    this.stream = checkKeyName(o.stream, 'options.stream');
    this.group = o.group === undefined ? 'sage' : checkKeyName(o.group, 'options.group');
    this.consumer = o.consumer === undefined ? `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}` : checkKeyName(o.consumer, 'options.consumer');
    this.maxsize = o.maxsize === undefined ? 0 : checkInteger(o.maxsize, 'options.maxsize', 0);
    this.#codec = codecByName(o.codec ?? 'v8');
    this.#field = FIELD_OF_CODEC[this.#codec.name];
    this.ackMode = checkAckMode(o.ackMode);
    this.claimIdleMs = o.claimIdleMs === undefined ? 30_000 : checkInteger(o.claimIdleMs, 'options.claimIdleMs', 10);
    this.maxDeliveries = o.maxDeliveries === undefined ? 5 : checkInteger(o.maxDeliveries, 'options.maxDeliveries', 1);
    this.deadLetterStream = o.deadLetterStream === undefined ? `${this.stream}:dead` : checkKeyName(o.deadLetterStream, 'options.deadLetterStream');
    if (this.deadLetterStream === this.stream) {
      throw new InvalidArgumentValueError('options.deadLetterStream must differ from options.stream', this.deadLetterStream);
    }
    if (hashTagOf(this.stream) !== hashTagOf(this.deadLetterStream)) {
      throw new InvalidArgumentValueError(
        `options.deadLetterStream must have the same {hash tag} as the stream (${JSON.stringify(hashTagOf(this.stream) ?? null)}) so ` +
          'scripts touching both work on Redis Cluster',
        this.deadLetterStream,
        'ERR_CROSSSLOT',
      );
    }
    this.#deadMaxLen = o.deadLetterMaxLen === undefined ? 10_000 : checkInteger(o.deadLetterMaxLen, 'options.deadLetterMaxLen', 1);
    this.#commandTimeoutMs = o.commandTimeoutMs === undefined ? 5000 : checkInteger(o.commandTimeoutMs, 'options.commandTimeoutMs', 1);
    this.#unavailableMs = o.unavailableTimeoutMs === undefined ? 30_000 : checkInteger(o.unavailableTimeoutMs, 'options.unavailableTimeoutMs', 0);
    this.#sliceMs = o.blockSliceMs === undefined ? 1000 : checkInteger(o.blockSliceMs, 'options.blockSliceMs', 1, 600_000);
    if (o.password !== undefined && typeof o.password !== 'string') throw new InvalidArgumentTypeError('options.password', 'a string', '(hidden)');
    const passwordEnv = o.passwordEnv === undefined ? DEFAULT_PASSWORD_ENV : checkKeyName(o.passwordEnv, 'options.passwordEnv');
    const split = splitRedisUrl(o.url ?? DEFAULT_URL);
    this.#url = split.url;
    this.#password = o.password ?? split.password ?? passwordFor(split.url, passwordEnv);
    this.queueId = o.queueId === undefined ? undefined : checkKeyName(o.queueId, 'options.queueId');
    const instance = randomBytes(6).toString('hex');
    this.#closedKey = `${this.stream}:closed`;
    this.#sessionKey = `${this.stream}:s:${instance}`;
    const streamHash = createHash('sha1').update(this.stream).digest('hex').slice(0, 16);
    this.#blockPrefix = `sageq-b-${streamHash}-`;
    this.#blockName = `${this.#blockPrefix}${instance}`;
  }

  /** Opens a queue; with `ackMode: 'explicit'` the gets return RedisMessage<T>. */
  static open<T = unknown>(options: RedisQueueOptions & { ackMode: 'explicit' }): RedisQueue<T, RedisMessage<T>>;
  static open<T = unknown>(options: RedisQueueOptions & { ackMode?: 'auto' }): RedisQueue<T, T>;
  static open<T = unknown>(options: RedisQueueOptions): RedisQueue<T, T | RedisMessage<T>>;
  static open<T = unknown>(options: RedisQueueOptions): RedisQueue<T, T | RedisMessage<T>> {
    return new RedisQueue<T, T | RedisMessage<T>>(options);
  }

  /** The connection URL without its password. */
  get url(): string {
    return this.#url;
  }

  /** True once close() was called here or the close marker was seen. */
  get closed(): boolean {
    return this.#closedLocal || this.#closedSeen;
  }

  /** A descriptor other processes can resolve to this stream (the password is not in it). */
  toDescriptor(queueId?: string): QueueDescriptor {
    return createRedisQueueDescriptor({
      url: this.#url,
      stream: this.stream,
      group: this.group,
      queueId: queueId ?? this.queueId,
      maxsize: this.maxsize,
      codec: this.#codec.name,
      ackMode: this.ackMode,
      claimIdleMs: this.claimIdleMs,
      maxDeliveries: this.maxDeliveries,
      deadLetterStream: this.deadLetterStream,
    });
  }

  // ----------------------------------------------------------------------------------------------
  // Connections

  #conn(kind: 'cmd' | 'blk'): RedisConn {
    if (this.#released) throw new QueueReleasedError('this RedisQueue was released; open the queue again to use it');
    if (kind === 'cmd') {
      this.#cmd ??= new RedisConn({ url: this.#url, password: this.#password, connectionName: `sageq-c-${this.#blockName.slice(8)}`, scripts: QUEUE_SCRIPTS, autoPipelining: true });
      return this.#cmd;
    }
    this.#blk ??= new RedisConn({ url: this.#url, password: this.#password, connectionName: this.#blockName, scripts: [], autoPipelining: false });
    return this.#blk;
  }

  #call<T>(kind: 'cmd' | 'blk', what: string, fn: (c: IORedis) => Promise<T>, replyTimeoutMs = this.#commandTimeoutMs, deadline?: number): Promise<T> {
    let conn: RedisConn;
    try {
      conn = this.#conn(kind);
    } catch (e) {
      return Promise.reject(e);
    }
    const limit = Date.now() + this.#unavailableMs;
    return conn.call(what, fn, deadline === undefined ? limit : Math.min(deadline, limit), replyTimeoutMs);
  }

  #script<R>(name: string, keys: readonly string[], args: ReadonlyArray<string | number | Buffer | Uint8Array>, deadline?: number): Promise<R> {
    let conn: RedisConn;
    try {
      conn = this.#conn('cmd');
    } catch (e) {
      return Promise.reject(e);
    }
    const limit = Date.now() + this.#unavailableMs;
    return conn.call(name, () => conn.script<R>(name, keys, args, true), deadline === undefined ? limit : Math.min(deadline, limit), this.#commandTimeoutMs);
  }

  /** Mutating scripts carry a sequence number; at most SESSION_WINDOW are in flight. */
  async #withSeq<R>(fn: (seq: number) => Promise<R>): Promise<R> {
    while (this.#inflight >= SESSION_WINDOW) await new Promise<void>((resolve) => this.#slotWaiters.push(resolve));
    this.#inflight++;
    try {
      return await fn(++this.#seq);
    } finally {
      this.#inflight--;
      this.#slotWaiters.shift()?.();
    }
  }

  async #ensureGroup(): Promise<void> {
    if (this.#groupReady) return;
    try {
      await this.#call('cmd', 'XGROUP CREATE', (c) => c.xgroup('CREATE', this.stream, this.group, '0', 'MKSTREAM'));
    } catch (e) {
      if (!(e instanceof RedisBackendError && /BUSYGROUP/.test(e.message))) throw e;
    }
    this.#groupReady = true;
  }

  // ----------------------------------------------------------------------------------------------
  // Producing

  #encode(item: T): Uint8Array {
    return this.#codec.encode(item);
  }

  /** Appends one item; waits while the stream holds `maxsize` unacknowledged entries. */
  putAsync(item: T, options?: AsyncWaitOptions): Promise<void> {
    try {
      const wait = checkWait(options);
      if (wait.signal?.aborted) throw wait.signal.reason;
      this.#checkWritable();
      const bytes = this.#encode(item);
      return this.#put([bytes], wait, 'putAsync').then(() => undefined);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * Appends many items in order (encoded first: an item that cannot be encoded fails the call
   * with nothing appended). Resolves with the count; on timeout rejects QueueFullError with
   * `written` (how many were appended).
   */
  putManyAsync(items: readonly T[], options?: RedisBatchOptions): Promise<number> {
    try {
      if (!Array.isArray(items)) throw new InvalidArgumentTypeError('items', 'an array', items);
      const wait = checkWait(options);
      if (wait.signal?.aborted) throw wait.signal.reason;
      this.#checkWritable();
      const payloads = items.map((item) => this.#encode(item));
      return this.#put(payloads, wait, 'putManyAsync');
    } catch (e) {
      return Promise.reject(e);
    }
  }

  #checkWritable(): void {
    if (this.#released) throw new QueueReleasedError('this RedisQueue was released; open the queue again to use it');
    if (this.#closedLocal || this.#closedSeen) throw new QueueClosedError('the queue is closed: puts are refused');
  }

  /** Sends payloads[from..] in chunks, pipelined; returns how many were appended (stops at the first short chunk). */
  async #append(payloads: Uint8Array[], from: number, head: boolean): Promise<{ added: number; closed: boolean }> {
    const calls: Array<Promise<number>> = [];
    for (let at = from, first = true; at < payloads.length; at += CHUNK, first = false) {
      const chunk = payloads.slice(at, at + CHUNK);
      const headFlag = head && first ? '1' : '0';
      calls.push(
        this.#withSeq((seq) =>
          this.#script<number>('sageqPut', [this.stream, this.#closedKey, this.#sessionKey], [seq, SESSION_WINDOW, SESSION_TTL_MS, this.maxsize, headFlag, this.#field, ...chunk]),
        ),
      );
    }
    const results = await Promise.allSettled(calls);
    let added = 0;
    for (let i = 0; i < results.length; i++) {
      const r = results[i] as PromiseSettledResult<number>;
      if (r.status === 'rejected') {
        if (added > 0 || i > 0) throw Object.assign(r.reason as Error, { written: from + added });
        throw r.reason;
      }
      const n = Number(r.value);
      if (!Number.isInteger(n) || n < -1) throw new RedisBackendError('ERR_REDIS_REPLY', `sageqPut replied ${describe(r.value)}, not an integer >= -1`, true);
      if (n === -1) return { added, closed: true };
      added += n;
      const size = Math.min(CHUNK, payloads.length - (from + i * CHUNK));
      if (n < size) break; // the rest of this pipeline was refused (the producer is blocked)
    }
    return { added, closed: false };
  }

  /**
   * Puts issued in the same tick while no put waits for room go out together: one script call
   * (per CHUNK entries) for all of them, in call order.
   */
  #put(payloads: Uint8Array[], wait: PutWait, what: string): Promise<number> {
    if (payloads.length === 0) return Promise.resolve(0);
    const deadline = wait.timeoutMs === undefined ? undefined : Date.now() + wait.timeoutMs;
    if (this.#lane.length > 0) return this.#enterLane(payloads, 0, wait, deadline, what);
    return new Promise<number>((resolve, reject) => {
      this.#direct.push({ payloads, wait, deadline, what, resolve, reject });
      if (!this.#directScheduled) {
        this.#directScheduled = true;
        queueMicrotask(() => void this.#flushDirect());
      }
    });
  }

  async #flushDirect(): Promise<void> {
    this.#directScheduled = false;
    const jobs = this.#direct.splice(0);
    if (jobs.length === 0) return;
    if (this.#lane.length > 0 || this.#closedLocal || this.#closedSeen || this.#released) {
      for (const j of jobs) this.#enterLane(j.payloads, 0, j.wait, j.deadline, j.what).then(j.resolve, j.reject);
      return;
    }
    const all = jobs.length === 1 ? (jobs[0] as DirectPut).payloads : jobs.flatMap((j) => j.payloads);
    let added: number;
    let closed = false;
    let failure: unknown;
    try {
      const r = await this.#append(all, 0, false);
      added = r.added;
      closed = r.closed;
    } catch (e) {
      failure = e;
      added = typeof (e as { written?: unknown }).written === 'number' ? (e as { written: number }).written : 0;
    }
    if (closed) this.#closedSeen = true;
    let left = added;
    for (const j of jobs) {
      const n = j.payloads.length;
      if (left >= n) {
        left -= n;
        j.resolve(n);
        continue;
      }
      const done = left;
      left = 0;
      if (failure !== undefined) {
        j.reject(Object.assign(failure as object, { written: done }));
      } else if (closed) {
        j.reject(Object.assign(new QueueClosedError('the queue is closed: puts are refused'), { written: done }));
      } else if (j.wait.timeoutMs === 0) {
        j.reject(Object.assign(new QueueFullError(`${j.what} timed out after 0 ms: the queue is full (maxsize ${this.maxsize})`, true), { written: done }));
      } else {
        this.#enterLane(j.payloads, done, j.wait, j.deadline, j.what).then(j.resolve, j.reject);
      }
    }
  }

  /** Queues a put behind the others that wait for room (FIFO per handle). */
  #enterLane(payloads: Uint8Array[], done: number, wait: PutWait, deadline: number | undefined, what: string): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const onAbort = (): void => fail(wait.signal?.reason);
      const job: PutJob = {
        payloads,
        done,
        inFlight: false,
        failure: undefined,
        settled: false,
        resolve: (n) => {
          if (job.settled) return;
          job.settled = true;
          job.cleanup();
          resolve(n);
        },
        reject: (e) => {
          if (job.settled) return;
          job.settled = true;
          job.cleanup();
          reject(e);
        },
        cleanup: () => {
          if (timer !== undefined) clearTimeout(timer);
          wait.signal?.removeEventListener('abort', onAbort);
          const i = this.#lane.indexOf(job);
          if (i >= 0) this.#lane.splice(i, 1);
        },
      };
      const fail = (e: unknown): void => {
        if (job.inFlight) job.failure ??= e;
        else job.reject(e);
      };
      if (this.#released || this.#closedLocal || this.#closedSeen) {
        const err = this.#released ? new QueueReleasedError() : new QueueClosedError('the queue is closed: puts are refused');
        job.reject(Object.assign(err, { written: done }));
        return;
      }
      if (wait.signal?.aborted) {
        job.reject(wait.signal.reason);
        return;
      }
      if (deadline !== undefined) {
        timer = setTimeout(() => {
          fail(Object.assign(new QueueFullError(`${what} timed out after ${wait.timeoutMs} ms: the queue is still full (maxsize ${this.maxsize})`, true), { written: job.done }));
        }, Math.max(0, deadline - Date.now()));
      }
      wait.signal?.addEventListener('abort', onAbort, { once: true });
      this.#lane.push(job);
      void this.#runLane();
    });
  }

  /** Puts that found the queue full wait here, oldest first, each retried with backoff. */
  async #runLane(): Promise<void> {
    if (this.#laneRunning) return;
    this.#laneRunning = true;
    let backoff = 2;
    try {
      while (this.#lane.length > 0) {
        const job = this.#lane[0] as PutJob;
        if (this.#released || this.#closedLocal || this.#closedSeen) {
          for (const j of [...this.#lane]) {
            const err = this.#released ? new QueueReleasedError() : new QueueClosedError('the queue is closed: puts are refused');
            j.reject(Object.assign(err, { written: j.done }));
          }
          break;
        }
        job.inFlight = true;
        let r: { added: number; closed: boolean };
        try {
          r = await this.#append(job.payloads, job.done, true);
        } catch (e) {
          job.inFlight = false;
          const written = (e as { written?: number }).written;
          if (typeof written === 'number') job.done = written;
          job.reject(Object.assign(e as object, { written: job.done }));
          continue;
        }
        job.inFlight = false;
        job.done += r.added;
        if (r.closed) {
          this.#closedSeen = true;
          continue; // the loop rejects everything left
        }
        if (job.done === job.payloads.length) {
          job.resolve(job.done);
          backoff = 2;
          continue;
        }
        if (job.failure !== undefined) {
          const f = job.failure;
          if (f instanceof QueueFullError) Object.assign(f, { written: job.done });
          job.reject(f);
          continue;
        }
        if (r.added > 0) backoff = 2;
        await sleep(backoff);
        backoff = Math.min(backoff * 2, 100);
      }
    } finally {
      this.#laneRunning = false;
    }
  }

  // ----------------------------------------------------------------------------------------------
  // Consuming

  /** Takes one entry, waiting while the queue is empty (up to timeoutMs). */
  getAsync(options?: AsyncWaitOptions): Promise<Out> {
    return this.#get(1, options, 'getAsync').then((items) => items[0] as Out);
  }

  /**
   * Takes up to `max` entries: resolves as soon as at least one is there (waiting up to
   * timeoutMs; QueueEmptyError on timeout). QueueClosedError once closed and drained.
   */
  getManyAsync(max: number, options?: RedisBatchOptions): Promise<Out[]> {
    try {
      checkInteger(max, 'max', 1, READ_MAX);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#get(max, options, 'getManyAsync');
  }

  #get(max: number, options: unknown, what: string): Promise<Out[]> {
    let wait: { timeoutMs: number | undefined; signal: AbortSignal | undefined };
    try {
      wait = checkWait(options);
      if (wait.signal?.aborted) throw wait.signal.reason;
      if (this.#released) throw new QueueReleasedError('this RedisQueue was released; open the queue again to use it');
    } catch (e) {
      return Promise.reject(e);
    }
    if (wait.timeoutMs === 0) return this.#getNow(max, what);
    const deadline = wait.timeoutMs === undefined ? undefined : Date.now() + wait.timeoutMs;
    return this.#enqueueGetter({ max, deadline, signal: wait.signal }, what, wait.timeoutMs);
  }

  #enqueueGetter(req: GetRequest, what: string, timeoutMs: number | undefined): Promise<Out[]> {
    this.#want += req.max;
    const p = this.#getters.wait(req, {
      timeoutMs,
      signal: req.signal,
      onTimeout: () => new QueueEmptyError(`${what} timed out after ${timeoutMs} ms: the queue is still empty`, true),
    });
    const done = (): void => {
      this.#want -= req.max;
    };
    p.then(done, done);
    void this.#pump();
    return p;
  }

  /** timeoutMs 0: one non-blocking attempt (buffer, reclaim when due, read). */
  async #getNow(max: number, what: string): Promise<Out[]> {
    await this.#confirmAck();
    if (this.#buffer.length === 0) {
      if (Date.now() >= this.#nextClaimAt || this.closed) await this.#reclaim(max);
      if (this.#buffer.length === 0) {
        const closed = await this.#readNow(max);
        if (this.#buffer.length === 0) {
          if (closed || this.#closedLocal) throw new QueueClosedError('the queue is closed and drained');
          throw new QueueEmptyError(`${what} timed out after 0 ms: the queue is empty`, true);
        }
      }
    }
    const batch = this.#buffer.splice(0, max);
    const out = await this.#prepare(batch);
    if (out.failure !== undefined) throw out.failure;
    if (out.items.length === 0) return this.#getNow(max, what);
    return out.items;
  }

  /** Reads for waiting getters, one loop at a time. */
  async #pump(): Promise<void> {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      while (this.#getters.size > 0 && !this.#released) {
        await this.#confirmAck();
        this.#dropStale();
        if (this.#buffer.length > 0) {
          await this.#serve();
          continue;
        }
        const want = Math.max(1, Math.min(READ_MAX, this.#want));
        const closing = this.closed;
        if (closing || Date.now() >= this.#nextClaimAt) {
          if ((await this.#reclaim(want)) > 0) continue;
        }
        // A non-blocking read also checks the close marker: done when closing, and otherwise at
        // most once per block slice (a blocking read returns at once when entries are there).
        if (closing || Date.now() - this.#closedCheckedAt >= this.#sliceMs) {
          const closed = await this.#readNow(want);
          if (this.#buffer.length > 0) continue;
          if (closed || this.#closedLocal) {
            this.#getters.rejectAll(() => new QueueClosedError('the queue is closed and drained'));
            break;
          }
        }
        const slice = Math.max(1, Math.min(this.#sliceMs, this.#nextClaimAt - Date.now()));
        if (!(await this.#readBlocking(want, slice))) this.#closedCheckedAt = 0; // empty: check the marker next
      }
    } catch (e) {
      if (!this.#released) this.#getters.rejectAll(() => e);
    } finally {
      this.#pumping = false;
      if (this.#getters.size > 0 && !this.#released) setImmediate(() => void this.#pump());
    }
  }

  /**
   * Repeats an auto-mode ack whose outcome was not known (same sequence number); the entries it
   * acknowledged for this consumer go to the front of the buffer, marked acked.
   */
  #confirmAck(): Promise<void> {
    const u = this.#unconfirmed;
    if (u === undefined) return Promise.resolve();
    this.#confirming ??= (async () => {
      try {
        const flags = await this.#settle('ack', u.entries.map((e) => e.id), '', u.seq);
        this.#unconfirmed = undefined;
        const mine = u.entries.filter((_, i) => flags[i] === '1');
        for (const e of mine) e.acked = true;
        this.#buffer = [...mine, ...this.#buffer];
      } finally {
        this.#confirming = undefined;
      }
    })();
    return this.#confirming;
  }

  /** Buffered entries read long ago may have been reclaimed by another consumer: drop them (never acked ones). */
  #dropStale(): void {
    if (this.#buffer.length === 0) return;
    const limit = Date.now() - this.claimIdleMs / 2;
    if ((this.#buffer[0] as RawEntry).readAt >= limit) return;
    this.#buffer = this.#buffer.filter((e) => e.acked === true || e.readAt >= limit);
  }

  #addToBuffer(entries: RawEntry[]): void {
    if (entries.length === 0) return;
    if (this.#buffer.length === 0) {
      this.#buffer = entries;
      return;
    }
    const have = new Set(this.#buffer.map((e) => e.id));
    for (const e of entries) if (!have.has(e.id)) this.#buffer.push(e);
  }

  /** Non-blocking read of new entries into the buffer; returns the closed flag. */
  async #readNow(count: number): Promise<boolean> {
    const reply = await this.#script<unknown[]>('sageqRead', [this.stream, this.#closedKey], [this.group, this.consumer, count]);
    if (!Array.isArray(reply) || reply.length % 3 !== 1) throw new RedisBackendError('ERR_REDIS_REPLY', `sageqRead replied ${describe(reply)}`, true);
    const closed = Number(reply[0]) === 1;
    if (closed) this.#closedSeen = true;
    this.#closedCheckedAt = Date.now();
    const now = Date.now();
    const entries: RawEntry[] = [];
    for (let i = 1; i < reply.length; i += 3) {
      entries.push({ id: String(reply[i]), deliveries: 1, field: String(reply[i + 1]), value: reply[i + 2] as Buffer, readAt: now });
    }
    this.#groupReady = true;
    this.#addToBuffer(entries);
    return closed;
  }

  /** XREADGROUP BLOCK on the blocking connection (never abandoned: a late reply still lands in the buffer). */
  async #readBlocking(count: number, blockMs: number): Promise<boolean> {
    await this.#ensureGroup();
    this.#blockingRead = true;
    let reply: unknown;
    try {
      reply = await this.#call(
        'blk',
        'XREADGROUP',
        (c) => c.callBuffer('XREADGROUP', 'GROUP', this.group, this.consumer, 'COUNT', count, 'BLOCK', blockMs, 'STREAMS', this.stream, '>'),
        blockMs + this.#commandTimeoutMs,
      );
    } catch (e) {
      if (e instanceof RedisBackendError && /NOGROUP/.test(e.message)) {
        this.#groupReady = false;
        return false;
      }
      if (e instanceof RedisBackendError && e.code === 'ERR_REDIS_TIMEOUT') {
        // A read that outlived its BLOCK by commandTimeoutMs: the connection is likely dead.
        this.#blk?.client.disconnect(true);
        return false;
      }
      throw e;
    } finally {
      this.#blockingRead = false;
    }
    if (reply === null || reply === undefined) return false;
    const streams = reply as Array<[Buffer, Array<[Buffer, Buffer[] | null]>]>;
    const now = Date.now();
    const entries: RawEntry[] = [];
    for (const [, list] of streams) {
      for (const [id, fields] of list) {
        if (!Array.isArray(fields) || fields.length < 2) continue;
        entries.push({ id: id.toString(), deliveries: 1, field: (fields[0] as Buffer).toString(), value: fields[1] as Buffer, readAt: now });
      }
    }
    this.#addToBuffer(entries);
    return entries.length > 0;
  }

  /** Reclaims idle entries into the buffer; returns how many. */
  async #reclaim(count: number): Promise<number> {
    this.#nextClaimAt = Date.now() + Math.max(20, Math.min(this.claimIdleMs / 2, 5000));
    const reply = await this.#script<unknown[]>(
      'sageqReclaim',
      [this.stream, this.deadLetterStream],
      [this.group, this.consumer, this.claimIdleMs, this.#claimCursor, Math.max(count, 10), this.maxDeliveries, this.#deadMaxLen, Date.now()],
    );
    if (!Array.isArray(reply) || reply.length < 2 || (reply.length - 2) % 4 !== 0) {
      throw new RedisBackendError('ERR_REDIS_REPLY', `sageqReclaim replied ${describe(reply)}`, true);
    }
    this.#claimCursor = String(reply[0]);
    const now = Date.now();
    const entries: RawEntry[] = [];
    for (let i = 2; i < reply.length; i += 4) {
      entries.push({ id: String(reply[i]), deliveries: Number(reply[i + 1]), field: String(reply[i + 2]), value: reply[i + 3] as Buffer, readAt: now });
    }
    if (this.#claimCursor !== '0-0') this.#nextClaimAt = 0; // more to scan
    this.#addToBuffer(entries);
    return entries.length;
  }

  /** Hands buffered entries to the oldest getters (one settle call for all of them in auto mode). */
  async #serve(): Promise<void> {
    const assigned: Array<{ waiter: { payload: GetRequest; resolve(v: Out[]): void; reject(e: unknown): void }; batch: RawEntry[] }> = [];
    while (this.#buffer.length > 0) {
      const waiter = this.#getters.shift();
      if (waiter === undefined) break;
      assigned.push({ waiter, batch: this.#buffer.splice(0, waiter.payload.max) });
    }
    if (assigned.length === 0) return;
    const all = assigned.flatMap((a) => a.batch);
    let prepared: { items: Out[]; failure?: unknown; owners?: number[] };
    try {
      prepared = await this.#prepare(all, assigned.map((a) => a.batch.length));
    } catch (e) {
      for (const a of assigned) a.waiter.reject(e);
      return;
    }
    let at = 0;
    for (const a of assigned) {
      const mine = (prepared.owners as number[])[assigned.indexOf(a)] as number;
      const items = prepared.items.slice(at, at + mine);
      at += mine;
      if (prepared.failure !== undefined && a === assigned[0]) {
        a.waiter.reject(prepared.failure);
        continue;
      }
      if (items.length > 0) {
        a.waiter.resolve(items);
      } else {
        // Every entry of this getter turned out to be another consumer's: wait again.
        const req = a.waiter.payload;
        const remaining = req.deadline === undefined ? undefined : Math.max(1, req.deadline - Date.now());
        this.#enqueueGetter(req, 'getAsync', remaining).then(a.waiter.resolve, a.waiter.reject);
      }
    }
  }

  /**
   * Decodes entries (undecodable ones go to the dead-letter stream and fail the request); in
   * auto mode acknowledges the rest and keeps only those this consumer still owned. `sizes`
   * splits the entries between getters; `owners[i]` is how many items getter i receives.
   */
  async #prepare(entries: RawEntry[], sizes: number[] = [entries.length]): Promise<{ items: Out[]; failure?: unknown; owners: number[] }> {
    const decoded: Array<{ entry: RawEntry; value: unknown; group: number }> = [];
    const bad: Array<{ entry: RawEntry; error: SerializationError }> = [];
    let group = 0;
    let left = sizes[0] ?? 0;
    for (const entry of entries) {
      while (left === 0 && group < sizes.length - 1) left = sizes[++group] as number;
      left--;
      try {
        decoded.push({ entry, value: this.#decode(entry), group });
      } catch (e) {
        bad.push({ entry, error: e as SerializationError });
      }
    }
    let failure: unknown;
    if (bad.length > 0) {
      const reason = `cannot decode: ${(bad[0] as { error: Error }).error.message}`;
      await this.#settle('dead', bad.map((b) => b.entry.id), reason);
      failure = Object.assign((bad[0] as { error: Error }).error, { deadLetterIds: bad.map((b) => b.entry.id) });
      // The good entries of a failed request go back to the buffer for the next getter.
      this.#buffer = [...decoded.map((d) => d.entry), ...this.#buffer];
      return { items: [], failure, owners: sizes.map(() => 0) };
    }
    let kept = decoded;
    const toAck = decoded.filter((d) => !d.entry.acked);
    if (this.ackMode === 'auto' && toAck.length > 0) {
      const seq = ++this.#seq;
      let flags: string;
      try {
        flags = await this.#settle('ack', toAck.map((d) => d.entry.id), '', seq);
      } catch (e) {
        if (e instanceof RedisBackendError && e.maybeApplied) {
          // The ack may have been applied: these entries may be ours alone now. The same call
          // (same sequence number, so Redis answers what it answered then) is repeated before
          // anything else is handed out; an entry acked at Redis is never dropped here.
          this.#unconfirmed = { seq, entries: toAck.map((d) => d.entry) };
          const waiting = new Set(toAck);
          this.#buffer = [...decoded.filter((d) => !waiting.has(d)).map((d) => d.entry), ...this.#buffer];
        } else {
          this.#buffer = [...decoded.map((d) => d.entry), ...this.#buffer];
        }
        throw e;
      }
      const mine = new Set(toAck.filter((_, i) => flags[i] === '1'));
      kept = decoded.filter((d) => d.entry.acked || mine.has(d));
    }
    const owners = sizes.map(() => 0);
    for (const d of kept) owners[d.group] = (owners[d.group] as number) + 1;
    const items = kept.map((d) => (this.ackMode === 'auto' ? d.value : this.#message(d.entry, d.value)) as Out);
    return { items, owners };
  }

  #decode(entry: RawEntry): unknown {
    const name = CODEC_OF_FIELD[entry.field];
    if (name === undefined) {
      throw new SerializationError(`stream entry ${entry.id} has field ${JSON.stringify(entry.field)}, not one written by a RedisQueue (r, j, v or m)`);
    }
    return codecByName(name).decode(entry.value);
  }

  #message(entry: RawEntry, value: unknown): RedisMessage<unknown> {
    // A call repeated after one that failed with an unknown outcome reuses its sequence number,
    // so it answers what the first one did (true if that ack went through).
    let unknown: { op: string; seq: number } | undefined;
    const settle = async (op: 'ack' | 'nack' | 'dead', reason = ''): Promise<boolean> => {
      const seq = unknown?.op === op ? unknown.seq : ++this.#seq;
      try {
        const flags = await this.#settle(op, [entry.id], reason, seq);
        unknown = undefined;
        return flags === '1';
      } catch (e) {
        if (e instanceof RedisBackendError && e.maybeApplied) unknown = { op, seq };
        throw e;
      }
    };
    return Object.freeze({
      value,
      id: entry.id,
      deliveries: entry.deliveries,
      ack: () => settle('ack'),
      nack: () =>
        settle('nack').then((ok) => {
          this.#nextClaimAt = 0;
          if (this.#getters.size > 0) void this.#pump();
          return ok;
        }),
      deadLetter: (reason?: string) => settle('dead', reason === undefined ? 'dead-lettered by the consumer' : String(reason)),
    });
  }

  /** Acknowledges several messages of this queue with one call; returns one boolean per message. */
  async ackMany(messages: readonly RedisMessage<unknown>[]): Promise<boolean[]> {
    if (!Array.isArray(messages)) throw new InvalidArgumentTypeError('messages', 'an array of RedisMessage', messages);
    const ids = messages.map((m, i) => {
      if (m === null || typeof m !== 'object' || typeof m.id !== 'string') throw new InvalidArgumentTypeError(`messages[${i}]`, 'a RedisMessage', m);
      return m.id;
    });
    const out: boolean[] = [];
    for (let at = 0; at < ids.length; at += CHUNK) {
      const flags = await this.#settle('ack', ids.slice(at, at + CHUNK), '');
      for (const f of flags) out.push(f === '1');
    }
    return out;
  }

  async #settle(op: 'ack' | 'nack' | 'dead', ids: string[], reason: string, fixedSeq?: number): Promise<string> {
    if (ids.length === 0) return '';
    const flags = await this.#withSeq((next) =>
      this.#script<Buffer | string>('sageqSettle', [this.stream, this.#sessionKey, this.deadLetterStream], [
        fixedSeq ?? next, SESSION_WINDOW, SESSION_TTL_MS, op, this.group, this.consumer, this.claimIdleMs, this.#deadMaxLen, reason, Date.now(), ...ids,
      ]),
    );
    const s = flags.toString();
    if (s.length !== ids.length || /[^01]/.test(s)) throw new RedisBackendError('ERR_REDIS_REPLY', `sageqSettle replied ${describe(s)} for ${ids.length} ids`, true);
    return s;
  }

  /** Yields entries until the queue is closed and drained. */
  async *[Symbol.asyncIterator](): AsyncGenerator<Out, void, undefined> {
    for (;;) {
      let item: Out;
      try {
        item = await this.getAsync();
      } catch (e) {
        if (e instanceof QueueClosedError) return;
        throw e;
      }
      yield item;
    }
  }

  // ----------------------------------------------------------------------------------------------
  // Counts, dead letters

  /** Counts from Redis (one script call). */
  async stats(): Promise<RedisQueueStats> {
    const r = await this.#script<unknown[]>('sageqInfo', [this.stream, this.#closedKey, this.deadLetterStream], [this.group]);
    if (!Array.isArray(r) || r.length !== 4 || !r.every((x) => typeof x === 'number')) throw new RedisBackendError('ERR_REDIS_REPLY', `sageqInfo replied ${describe(r)}`, true);
    const [length, pending, closed, deadLetters] = r as number[];
    if (closed === 1) this.#closedSeen = true;
    return { length: length as number, pending: pending as number, waiting: Math.max(0, (length as number) - (pending as number)), deadLetters: deadLetters as number, closed: closed === 1 };
  }

  /** Entries not yet delivered to any consumer. */
  async qsize(): Promise<number> {
    return (await this.stats()).waiting;
  }

  /** True when no entry waits for delivery. */
  async empty(): Promise<boolean> {
    return (await this.qsize()) === 0;
  }

  /** The oldest entries of the dead-letter stream (not removed). */
  async deadLetters(options?: { count?: number }): Promise<DeadLetterEntry[]> {
    const o = checkOptions<{ count?: number }>(options);
    checkKnownKeys(o, ['count']);
    const count = o.count === undefined ? 100 : checkInteger(o.count, 'options.count', 1, 100_000);
    const rows = (await this.#call('cmd', 'XRANGE', (c) => c.xrangeBuffer(this.deadLetterStream, '-', '+', 'COUNT', count))) as Array<[Buffer, Buffer[]]>;
    return rows.map(([id, fields]) => {
      const f = new Map<string, Buffer>();
      for (let i = 0; i + 1 < fields.length; i += 2) f.set((fields[i] as Buffer).toString(), fields[i + 1] as Buffer);
      const field = (fields[0] as Buffer | undefined)?.toString() ?? '';
      const entry: DeadLetterEntry = {
        id: id.toString(),
        originalId: f.get('x-id')?.toString() ?? '',
        deliveries: Number(f.get('x-deliveries')?.toString() ?? 0),
        reason: f.get('x-reason')?.toString() ?? '',
        at: Number(f.get('x-at')?.toString() ?? 0),
        value: undefined,
      };
      try {
        entry.value = this.#decode({ id: entry.originalId, deliveries: entry.deliveries, field, value: fields[1] as Buffer, readAt: 0 });
      } catch (e) {
        entry.error = e as SerializationError;
      }
      return entry;
    });
  }

  // ----------------------------------------------------------------------------------------------
  // Lifetime

  /**
   * Closes the queue for every process: sets the close marker (puts everywhere are refused,
   * gets drain what is left then reject QueueClosedError), wakes blocked readers. Idempotent;
   * if Redis cannot be reached the promise rejects and a later close() tries again.
   */
  close(): Promise<void> {
    if (this.#released) return Promise.resolve();
    if (this.#closing !== undefined) return this.#closing;
    this.#closedLocal = true;
    for (const job of [...this.#lane]) {
      if (!job.inFlight) job.reject(Object.assign(new QueueClosedError('the queue was closed while this put waited for room'), { written: job.done }));
      else job.failure ??= new QueueClosedError('the queue was closed while this put waited for room');
    }
    const closing = (async () => {
      await this.#call('cmd', 'SET closed', (c) => c.set(this.#closedKey, '1'));
      await this.#unblockReaders(this.#blockPrefix);
      void this.#pump();
    })();
    this.#closing = closing;
    closing.catch(() => {
      if (this.#closing === closing) this.#closing = undefined;
    });
    return closing;
  }

  /** Wakes blocked XREADGROUP calls of this stream's readers (ours and other processes'), best effort. */
  async #unblockReaders(prefix: string): Promise<void> {
    try {
      const list = String(await this.#call('cmd', 'CLIENT LIST', (c) => (c as unknown as ClientCommand<string>).client('LIST', 'TYPE', 'normal')));
      const ids: string[] = [];
      for (const line of list.split('\n')) {
        const name = / name=(\S*)/.exec(line)?.[1];
        const id = /^id=(\d+)/.exec(line)?.[1];
        if (id !== undefined && name !== undefined && name.startsWith(prefix)) ids.push(id);
      }
      await Promise.all(ids.map((id) => this.#call('cmd', 'CLIENT UNBLOCK', (c) => (c as unknown as ClientCommand<number>).client('UNBLOCK', id))));
    } catch {
      /* no permission for CLIENT LIST/UNBLOCK: blocked readers see the marker within blockSliceMs */
    }
  }

  /**
   * Releases this handle: pending calls reject QueueReleasedError, entries read ahead are given
   * back (made reclaimable at once), the consumer leaves the group when it holds nothing, the
   * connections close. The queue itself (stream, other handles) is untouched.
   */
  async release(): Promise<void> {
    if (this.#released) return;
    const buffered = this.#buffer.map((e) => e.id);
    this.#buffer = [];
    if (this.#cmd !== undefined && this.#cmd.client.status === 'ready') {
      try {
        if (buffered.length > 0) await this.#settle('nack', buffered, '');
        if (this.#blockingRead) await this.#unblockReaders(this.#blockName);
        await this.#call('cmd', 'XGROUP DELCONSUMER', (c) =>
          c.eval(
            "local p = redis.pcall('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) if type(p) == 'table' and not p.err and #p == 0 then redis.pcall('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2]) end return 1",
            1, this.stream, this.group, this.consumer,
          ),
          Math.min(this.#commandTimeoutMs, 1000), Date.now() + 200,
        );
      } catch {
        /* best effort */
      }
    }
    this.#released = true;
    this.#getters.rejectAll(() => new QueueReleasedError('this RedisQueue was released while the get waited'));
    for (const job of [...this.#lane]) job.reject(Object.assign(new QueueReleasedError(), { written: job.done }));
    for (const w of this.#slotWaiters.splice(0)) w();
    this.#blk?.disconnect();
    await this.#cmd?.quit(500);
    if (this.queueId !== undefined) forgetResolved(this.queueId, this);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }

  /** Deletes the stream, its close marker and its dead-letter stream (every handle's view). */
  async destroy(): Promise<void> {
    await this.#call('cmd', 'DEL', (c) => c.del(this.stream, this.#closedKey, this.deadLetterStream));
    this.#groupReady = false;
  }
}

// ------------------------------------------------------------------------------------------------
// Descriptor

export interface RedisQueueDescriptorOptions {
  /** redis:// or rediss:// URL. A password in it is stripped (the resolving process reads it from `passwordEnv`). */
  url: string;
  stream: string;
  /** Default 'sage'. */
  group?: string;
  /** Default `redis_<8 hex>`. */
  queueId?: string;
  /** Default 0 (unbounded). */
  maxsize?: number;
  /** Default 'v8'. */
  codec?: CodecName;
  ackMode?: RedisAckMode;
  claimIdleMs?: number;
  maxDeliveries?: number;
  deadLetterStream?: string;
  /** Environment variable the resolving process reads the password from. Default SAGE_REDIS_PASSWORD. */
  passwordEnv?: string;
}

const DESCRIPTOR_KEYS = ['url', 'stream', 'group', 'queueId', 'maxsize', 'codec', 'ackMode', 'claimIdleMs', 'maxDeliveries', 'deadLetterStream', 'passwordEnv'] as const;

/**
 * A "redis" descriptor: metadata `{ url, stream, group, maxsize, codec, ack_mode, claim_idle_ms,
 * max_deliveries, dead_letter_stream, password_env }`. The URL never carries a password.
 */
export function createRedisQueueDescriptor(options: RedisQueueDescriptorOptions): QueueDescriptor {
  const o = checkOptions<RedisQueueDescriptorOptions>(options);
  checkKnownKeys(o, DESCRIPTOR_KEYS);
  const { url } = splitRedisUrl(o.url);
  if (o.stream === undefined) throw new InvalidArgumentTypeError('options.stream', 'a string (the stream key)', o.stream);
  const stream = checkKeyName(o.stream, 'options.stream');
  const group = o.group === undefined ? 'sage' : checkKeyName(o.group, 'options.group');
  const queueId = o.queueId === undefined ? `redis_${randomBytes(4).toString('hex')}` : checkKeyName(o.queueId, 'options.queueId');
  const maxsize = o.maxsize === undefined ? 0 : checkInteger(o.maxsize, 'options.maxsize', 0);
  const codec = codecByName(o.codec ?? 'v8').name;
  const ackMode = checkAckMode(o.ackMode);
  const metadata: Record<string, string | number> = { url, stream, group, maxsize, codec, ack_mode: ackMode };
  if (o.claimIdleMs !== undefined) metadata.claim_idle_ms = checkInteger(o.claimIdleMs, 'options.claimIdleMs', 10);
  if (o.maxDeliveries !== undefined) metadata.max_deliveries = checkInteger(o.maxDeliveries, 'options.maxDeliveries', 1);
  if (o.deadLetterStream !== undefined) metadata.dead_letter_stream = checkKeyName(o.deadLetterStream, 'options.deadLetterStream');
  if (o.passwordEnv !== undefined) metadata.password_env = checkKeyName(o.passwordEnv, 'options.passwordEnv');
  return new QueueDescriptor({ queueId, queueType: 'redis', metadata });
}

function metaString(desc: QueueDescriptor, key: string, required: boolean): string | undefined {
  const v = desc.metadata[key];
  if (v === undefined && !required) return undefined;
  if (typeof v !== 'string' || v.length === 0) {
    throw new DescriptorError(`metadata.${key} of a "redis" descriptor must be a non-empty string; received ${describe(v)}`);
  }
  return v;
}

function metaInt(desc: QueueDescriptor, key: string, min: number): number | undefined {
  const v = desc.metadata[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) {
    throw new DescriptorError(`metadata.${key} of a "redis" descriptor must be an integer >= ${min}; received ${describe(v)}`);
  }
  return v;
}

/** Opens a "redis" descriptor (the `redis` queue type; registered in lib/builtins.ts). */
export function openRedisDescriptor(desc: QueueDescriptor): RedisQueue<unknown, unknown> {
  const url = metaString(desc, 'url', true) as string;
  const ackMode = metaString(desc, 'ack_mode', false);
  if (ackMode !== undefined && ackMode !== 'auto' && ackMode !== 'explicit') {
    throw new DescriptorError(`metadata.ack_mode of a "redis" descriptor must be "auto" or "explicit"; received ${describe(ackMode)}`);
  }
  const codec = metaString(desc, 'codec', false);
  try {
    return new RedisQueue<unknown, unknown>({
      url,
      stream: metaString(desc, 'stream', true) as string,
      group: metaString(desc, 'group', false),
      maxsize: metaInt(desc, 'maxsize', 0),
      codec: codec as CodecName | undefined,
      ackMode: ackMode as RedisAckMode | undefined,
      claimIdleMs: metaInt(desc, 'claim_idle_ms', 10),
      maxDeliveries: metaInt(desc, 'max_deliveries', 1),
      deadLetterStream: metaString(desc, 'dead_letter_stream', false),
      passwordEnv: metaString(desc, 'password_env', false),
      queueId: desc.queueId,
    });
  } catch (e) {
    if (e instanceof DescriptorError) throw e;
    throw new DescriptorError(`a "redis" descriptor has invalid metadata: ${(e as Error).message}`);
  }
}

