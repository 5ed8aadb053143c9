/**
 * Connections to Redis shared by the Redis modules: URL and password handling, one ioredis
 * connection with bounded waits (RedisConn), reply timeouts, and RedisBackendError with the
 * classification of what Redis answered (unreachable, timed out, refused credentials, refused by
 * ACL, other error reply).
 */
import type { Cluster, ClusterOptions, Redis as IORedis, RedisCommander, RedisOptions } from 'ioredis';

import { InvalidArgumentTypeError, InvalidArgumentValueError, QueueReleasedError, SageQueueError, describe } from '../errors';
import type { RedisBackendErrorCode } from '../errors';
import { isClusterUrl, parseClusterUrl } from './cluster-url';

/** A single-server client or a Redis Cluster client (selected by the URL's scheme). */
export type RedisClient = IORedis | Cluster;
/** The commands both kinds of client have: what command callbacks receive. */
export type RedisCommands = RedisCommander;

/** The stable codes of RedisBackendError (listed in lib/errors.ts with every other code). */
export type { RedisBackendErrorCode } from '../errors';

/**
 * Redis could not be reached in time, a command timed out, or Redis refused or answered with an
 * error. `code`:
 * - ERR_REDIS_UNAVAILABLE: no connection within the wait; nothing was sent.
 * - ERR_REDIS_TIMEOUT: sent, no reply in time: the command may or may not have been applied (see
 *   `maybeApplied`).
 * - ERR_REDIS_AUTH: Redis refused the credentials (WRONGPASS, NOAUTH, invalid password); reported
 *   at once, not retried until unavailableTimeoutMs. Nothing was sent.
 * - ERR_REDIS_PERMISSION: the ACL user may not run a command or touch a key (NOPERM).
 * - ERR_REDIS_REPLY: Redis answered with another error, or with a reply of the wrong shape.
 * - ERR_REDIS_NOT_REPLICATED: a write was applied on the master but WAIT saw fewer replicas
 *   acknowledge it than `waitReplicas.replicas` within `waitReplicas.timeoutMs` (`replicas` says
 *   how many did): it is there, but a failover now may lose it.
 */
export class RedisBackendError extends SageQueueError {
  declare readonly code: RedisBackendErrorCode;
  /** True when the command was sent and may have been applied although the call failed. */
  readonly maybeApplied: boolean;
  /** ERR_REDIS_NOT_REPLICATED: how many replicas acknowledged the write in time. */
  replicas?: number;
  constructor(code: RedisBackendErrorCode, message: string, maybeApplied: boolean, cause?: unknown) {
    super(code, message, cause === undefined ? undefined : { cause });
    this.maybeApplied = maybeApplied;
  }
}

/** Redis refused the credentials: a wrong password or user, or no password where one is required. */
export function isAuthFailure(e: unknown): boolean {
  const msg = e instanceof Error ? e.message : String(e);
  return /^(WRONGPASS|NOAUTH)\b|invalid password|invalid username-password/i.test(msg);
}

/**
 * The ACL user may not run the command or touch the key: NOPERM, or (from inside a Lua script,
 * Redis 7) "The user executing the script can't run this command" / "can't access ... keys".
 */
export function isPermissionFailure(e: unknown): boolean {
  const msg = e instanceof Error ? e.message : String(e);
  return /\bNOPERM\b|user executing the script can't/i.test(msg);
}

/** The environment variable a resolving process reads the Redis password from, by default. */
export const DEFAULT_PASSWORD_ENV = 'SAGE_REDIS_PASSWORD';

/** Passwords given in URLs in this process, by URL without the password (never serialised). */
const rememberedPasswords = new Map<string, string>();

/** A redis:// or rediss:// URL; returns it without the password, and the password apart. */
export function splitRedisUrl(url: unknown, name = 'options.url'): { url: string; password: string | undefined } {
  if (typeof url !== 'string') throw new InvalidArgumentTypeError(name, 'a redis://, rediss:// or redis+cluster:// URL string', url);
  if (isClusterUrl(url)) {
    const parsed = parseClusterUrl(url, name);
    if (parsed.password !== undefined) rememberedPasswords.set(parsed.clean, parsed.password);
    return { url: parsed.clean, password: parsed.password };
  }
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

function baseOptions(options: ConnOptions): RedisOptions {
  return {
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
}

function serverClient(options: ConnOptions): IORedis {
  const redisOptions = baseOptions(options);
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
  return new (ioredis().Redis)(redisOptions);
}

/**
 * A Cluster client: MOVED and ASK are followed, TRYAGAIN (a multi-key script during a slot
 * migration) and CLUSTERDOWN retried every 50-100 ms, a command whose node connection closed
 * (a master died) retried after a slot-map refresh every 100 ms, up to 64 redirections (about
 * 6 s: long enough for a replica to be promoted with cluster-node-timeout of a few seconds).
 * Node connections never reconnect by themselves (ioredis drops a lost node and learns the new
 * map), and no command is queued while the cluster is not ready.
 */
function clusterClient(options: ConnOptions): Cluster {
  const parsed = parseClusterUrl(options.url);
  const redisOptions = baseOptions(options);
  delete redisOptions.retryStrategy;
  if (parsed.username !== undefined) redisOptions.username = parsed.username;
  if (parsed.tls) redisOptions.tls = {};
  if (options.password !== undefined) redisOptions.password = options.password;
  const clusterOptions: ClusterOptions = {
    lazyConnect: true,
    enableOfflineQueue: false,
    enableReadyCheck: true,
    enableAutoPipelining: options.autoPipelining,
    maxRedirections: 64,
    retryDelayOnFailover: 100,
    retryDelayOnClusterDown: 100,
    retryDelayOnTryAgain: 50,
    slotsRefreshTimeout: 2000,
    clusterRetryStrategy: (times: number) => Math.min(20 * 2 ** Math.min(times, 5), 500),
    redisOptions,
  };
  return new (ioredis().Cluster)(parsed.nodes, clusterOptions);
}

/**
 * One ioredis connection: no offline queue (a command is sent only when connected, so a call
 * that gives up while Redis is unreachable was never applied), unlimited reconnect attempts,
 * commands in flight at a disconnect resent in order after reconnecting (ioredis's
 * autoResendUnfulfilledCommands; our scripts deduplicate them).
 * @internal
 */
export class RedisConn {
  readonly client: RedisClient;
  /** True when the URL named a Redis Cluster (redis+cluster://). */
  readonly cluster: boolean;
  lastError: Error | undefined;
  /** The credentials refusal seen since the last time the connection was ready. */
  authFailure: Error | undefined;
  readonly #wake = new Set<() => void>();
  readonly #scripts: readonly LuaScript[];
  #loading: Promise<void> | undefined;
  #ended = false;

  constructor(options: ConnOptions) {
    this.cluster = isClusterUrl(options.url);
    this.client = this.cluster ? clusterClient(options) : serverClient(options);
    this.#scripts = options.scripts;
    for (const s of options.scripts) this.client.defineCommand(s.name, { numberOfKeys: s.numberOfKeys, lua: s.lua });
    const onError = (e: Error): void => {
      this.lastError = e;
      if (isAuthFailure(e)) {
        // Retrying will not fix the credentials: waiting calls fail now (ioredis keeps
        // reconnecting in the background, so a corrected ACL is picked up later).
        this.authFailure = e;
        this.#wakeAll();
      }
    };
    this.client.on('error', onError);
    // A Cluster client reports its nodes' connection errors apart.
    if (this.cluster) this.client.on('node error', onError);
    this.client.on('ready', () => {
      this.authFailure = undefined;
      this.#wakeAll();
    });
    this.client.on('end', () => {
      this.#ended = true;
      this.#wakeAll();
    });
  }

  /** True when the connection is up and past its ready check. */
  get ready(): boolean {
    return this.client.status === 'ready';
  }

  /** ERR_REDIS_UNAVAILABLE (or ERR_REDIS_AUTH) describing why this connection is not ready now. */
  unavailableError(what: string): RedisBackendError {
    if (this.authFailure !== undefined) return authError(what, this.authFailure);
    const why = this.lastError ? `: ${this.lastError.message}` : '';
    return new RedisBackendError('ERR_REDIS_UNAVAILABLE', `${what}: Redis was not reachable in time (status ${this.client.status}${why}); nothing was sent`, false, this.lastError);
  }

  get ended(): boolean {
    return this.#ended || this.client.status === 'end';
  }

  #wakeAll(): void {
    const waiting = [...this.#wake];
    this.#wake.clear();
    for (const w of waiting) w();
  }

  /**
   * Resolves when the connection is ready; rejects ERR_REDIS_UNAVAILABLE at `deadline` (ms
   * epoch), or ERR_REDIS_AUTH as soon as Redis refuses the credentials.
   */
  whenReady(deadline: number, what: string): Promise<void> {
    const status = this.client.status;
    if (status === 'ready') return Promise.resolve();
    if (this.ended) return Promise.reject(new QueueReleasedError('this Redis connection was closed (release() or close() was called)'));
    if (this.authFailure !== undefined) return Promise.reject(authError(what, this.authFailure));
    if (status === 'wait') this.client.connect().catch(() => undefined);
    return new Promise((resolve, reject) => {
      const wake = (): void => {
        clearTimeout(timer);
        if (this.authFailure !== undefined && this.client.status !== 'ready') reject(authError(what, this.authFailure));
        else resolve();
      };
      const timer = setTimeout(() => {
        this.#wake.delete(wake);
        reject(this.unavailableError(what));
      }, Math.max(0, deadline - Date.now()));
      this.#wake.add(wake);
    });
  }

  /** Runs a command when connected, with a reply timeout. Retries only what was never sent. */
  async call<T>(what: string, fn: (client: RedisCommands) => Promise<T>, unavailableDeadline: number, replyTimeoutMs: number): Promise<T> {
    for (;;) {
      await this.whenReady(unavailableDeadline, what);
      try {
        return await withTimeout(fn(this.client), replyTimeoutMs, what);
      } catch (e) {
        if (e instanceof Error && /isn't writeable|Cluster isn't ready/.test(e.message) && !this.ended) {
          if (Date.now() >= unavailableDeadline) {
            throw new RedisBackendError('ERR_REDIS_UNAVAILABLE', `${what}: Redis was not reachable in time; nothing was sent`, false, e);
          }
          continue; // never sent: safe to send again once connected
        }
        if (e instanceof Error && e.name === 'ReplyError' && /^NOSCRIPT\b/.test(e.message) && this.cluster && !this.ended && Date.now() < unavailableDeadline) {
          // A node that took a slot over (migration, failover) may not have our scripts yet, and
          // an auto-pipelined EVALSHA is not retried as EVAL by ioredis: load them everywhere.
          await this.#loadScripts().catch(() => undefined);
          continue;
        }
        if (e instanceof Error && e.name === 'ReplyError' && /^(TRYAGAIN|CLUSTERDOWN|MOVED|ASK)\b/.test(e.message) && !this.ended) {
          // Refused before it ran (a slot migrating or failing over); ioredis follows these for
          // single commands, not for an auto-pipelined batch whose commands got different answers.
          if (Date.now() >= unavailableDeadline) {
            throw new RedisBackendError('ERR_REDIS_UNAVAILABLE', `${what}: the Redis Cluster kept refusing the command (${e.message}); nothing was applied`, false, e);
          }
          if (/^MOVED\b/.test(e.message)) (this.client as Cluster).refreshSlotsCache?.();
          await new Promise((r) => setTimeout(r, 50));
          continue;
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

  /**
   * A script call followed, on the same node connection and in the same pipeline, by WAIT
   * `replicas` `timeoutMs`: resolves with the script's reply and how many replicas acknowledged
   * every write this connection made up to then (the script's included).
   */
  async scriptThenWait<T>(name: string, keys: readonly string[], args: ReadonlyArray<string | number | Buffer | Uint8Array>, replicas: number, timeoutMs: number): Promise<{ reply: T; replicas: number }> {
    const pipeline = this.client.pipeline() as unknown as Record<string, (...a: unknown[]) => unknown> & { wait(n: number, t: number): unknown; exec(): Promise<Array<[Error | null, unknown]> | null> };
    const fn = pipeline[`${name}Buffer`];
    if (typeof fn !== 'function') throw new Error(`script ${name} is not defined on this connection`);
    fn.call(pipeline, ...keys, ...args);
    pipeline.wait(replicas, timeoutMs);
    const results = await pipeline.exec();
    if (results === null || results.length !== 2) throw new Error(`${name} + WAIT: the pipeline was not executed`);
    const [[scriptError, reply], [waitError, acked]] = results as [[Error | null, unknown], [Error | null, unknown]];
    if (scriptError !== null) throw scriptError;
    if (waitError !== null) throw waitError;
    return { reply: reply as T, replicas: Number(acked) };
  }

  /** SCRIPT LOAD of this connection's scripts on every master (at most one run at a time). */
  #loadScripts(): Promise<void> {
    this.#loading ??= (async () => {
      try {
        await Promise.all(this.masters().flatMap((node) => this.#scripts.map((s) => withTimeout((node as unknown as ClientCommand<string> & { script(...a: string[]): Promise<string> }).script('LOAD', s.lua), 2000, 'SCRIPT LOAD'))));
      } finally {
        this.#loading = undefined;
      }
    })();
    return this.#loading;
  }

  /** Every master this client talks to (the one server, or each Cluster master): for per-node commands such as CLIENT LIST. */
  masters(): RedisCommands[] {
    return this.cluster ? (this.client as Cluster).nodes('master') : [this.client];
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
  if (e instanceof Error && /Too many Cluster redirections/.test(e.message)) {
    return new RedisBackendError('ERR_REDIS_TIMEOUT', `${what}: the Redis Cluster did not settle (${e.message}); the command may have been applied`, true, e);
  }
  if (e instanceof Error && (/Connection is closed/.test(e.message) || /Cluster is ended/.test(e.message))) {
    return new QueueReleasedError(`${what}: the Redis connection was closed (release() or close() was called)`);
  }
  if (e instanceof Error && e.name === 'ReplyError') {
    if (isAuthFailure(e)) return authError(what, e);
    if (isPermissionFailure(e)) {
      // Refused before it ran, unless a script was refused one of its commands part way.
      const inScript = /script/i.test(e.message);
      return new RedisBackendError(
        'ERR_REDIS_PERMISSION',
        `${what}: the Redis user may not do this (${e.message}); grant the command and key pattern with ACL SETUSER`,
        inScript,
        e,
      );
    }
    return new RedisBackendError('ERR_REDIS_REPLY', `${what}: Redis replied with an error: ${e.message}`, false, e);
  }
  const msg = e instanceof Error ? e.message : String(e);
  return new RedisBackendError('ERR_REDIS_REPLY', `${what} failed: ${msg}`, true, e);
}

function authError(what: string, e: Error): RedisBackendError {
  return new RedisBackendError(
    'ERR_REDIS_AUTH',
    `${what}: Redis refused the credentials (${e.message}); check the password (options.password, the URL, or the passwordEnv variable) and the user name`,
    false,
    e,
  );
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
export interface ClientCommand<R> {
  client(...args: string[]): Promise<R>;
}

/** The `{...}` hash tag of a key, as Redis Cluster computes it (undefined when none). */
export function hashTagOf(key: string): string | undefined {
  const open = key.indexOf('{');
  if (open < 0) return undefined;
  const close = key.indexOf('}', open + 1);
  if (close <= open + 1) return undefined;
  return key.slice(open + 1, close);
}

