/**
 * StatefulRouteStore: session affinity over Redis. Per-pod service state, load and workload (with
 * Redis-clock timestamps; stale load reports are ignored), and user → pod links that are
 * temporary (TTL) or persistent. Every operation is one Lua script (see route-store-scripts.ts)
 * touching the keys of one user only, which all share the hash tag `{<ns>:lk:<uid>}`; pod states
 * share `{<ns>:pods}`. "No pod" is `null` everywhere.
 *
 * A local LRU + TTL cache (lru-cache) holds links this process has read or written. A link is
 * dropped from it when its pod leaves the ready state, as seen by this process (its own
 * setServiceState, a pod-state refresh, or the pub/sub event every setServiceState publishes).
 * Other changes to a link made elsewhere are seen after at most `cacheTtlMs`.
 */
import { LRUCache } from 'lru-cache';

import { InvalidArgumentTypeError, InvalidArgumentValueError, describe } from '../errors';
import type { JsonValue } from '../queue/descriptor';
import { NAMESPACE, OPTION_KEYS, POD_SERVICE_STATES, checkPod, checkUid, escapeTagPart, flatToMap, parseJson } from './route-store-types';
import type { Link, LinkOptions, PodServiceState, PodState, RouteStoreStats, StatefulRouteStoreOptions } from './route-store-types';
import { checkBoolean, checkInteger, checkKnownKeys, checkOptions } from '../validate';
import { DEFAULT_PASSWORD_ENV, RedisBackendError, RedisConn, passwordFor, splitRedisUrl } from './connection';
import { ROUTE_STORE_SCRIPTS, replyShapeProblem } from './route-store-scripts';
import type { RouteStoreScriptName } from './route-store-scripts';

export type { StatefulRouteStoreOptions, LinkOptions, Link, PodState, PodServiceState, RouteStoreStats } from './route-store-types';
export { POD_SERVICE_STATES } from './route-store-types';

export class StatefulRouteStore {
  readonly namespace: string;
  readonly loadStaleMs: number;
  readonly defaultLinkTtlMs: number;
  readonly #url: string;
  readonly #password: string | undefined;
  readonly #cacheTtlMs: number;
  /** Pod states older than this are read again before a pod is chosen. */
  readonly podStateMaxAgeMs: number;
  readonly #timeoutMs: number;
  readonly #unavailableMs: number;
  readonly #subscribe: boolean;
  readonly #onScriptCall: ((script: string, keys: readonly string[]) => void) | undefined;
  readonly #cache: LRUCache<string, Link>;
  readonly #podKeys: readonly string[];
  readonly #channel: string;
  #cmd: RedisConn | undefined;
  #sub: RedisConn | undefined;
  #subscribed: Promise<void> | undefined;
  #pods = new Map<string, PodState>();
  #podsAt = -Infinity;
  #podsFetch: Promise<Map<string, PodState>> | undefined;
  #closed = false;
  readonly #stats = { cacheHits: 0, cacheMisses: 0, invalidatedLinks: 0, scriptCalls: 0, events: 0 };

  constructor(options: StatefulRouteStoreOptions) {
    const o = checkOptions<StatefulRouteStoreOptions>(options);
    checkKnownKeys(o, OPTION_KEYS);
    if (typeof o.namespace !== 'string') throw new InvalidArgumentTypeError('options.namespace', 'a string', o.namespace);
    if (!NAMESPACE.test(o.namespace)) {
      throw new InvalidArgumentValueError(`options.namespace must be 1-64 letters, digits, '_', '-' or '.'; received ${describe(o.namespace)}`, o.namespace);
    }
    this.namespace = o.namespace;
    const split = splitRedisUrl(o.url ?? 'redis://127.0.0.1:6379');
    this.#url = split.url;
    if (o.password !== undefined && typeof o.password !== 'string') throw new InvalidArgumentTypeError('options.password', 'a string', '(hidden)');
    const env = o.passwordEnv === undefined ? DEFAULT_PASSWORD_ENV : String(o.passwordEnv);
    this.#password = o.password ?? split.password ?? passwordFor(split.url, env);
    const cacheMax = o.cacheMax === undefined ? 10_000 : checkInteger(o.cacheMax, 'options.cacheMax', 1);
    this.#cacheTtlMs = o.cacheTtlMs === undefined ? 5000 : checkInteger(o.cacheTtlMs, 'options.cacheTtlMs', 1);
    this.loadStaleMs = o.loadStaleMs === undefined ? 10_000 : checkInteger(o.loadStaleMs, 'options.loadStaleMs', 0);
    this.podStateMaxAgeMs = o.podStateMaxAgeMs === undefined ? 1000 : checkInteger(o.podStateMaxAgeMs, 'options.podStateMaxAgeMs', 0);
    this.defaultLinkTtlMs = o.defaultLinkTtlMs === undefined ? 30 * 60 * 1000 : checkInteger(o.defaultLinkTtlMs, 'options.defaultLinkTtlMs', 1);
    this.#timeoutMs = o.commandTimeoutMs === undefined ? 5000 : checkInteger(o.commandTimeoutMs, 'options.commandTimeoutMs', 1);
    this.#unavailableMs = o.unavailableTimeoutMs === undefined ? 5000 : checkInteger(o.unavailableTimeoutMs, 'options.unavailableTimeoutMs', 0);
    this.#subscribe = checkBoolean(o.subscribe, 'options.subscribe', true);
    if (o.onScriptCall !== undefined && typeof o.onScriptCall !== 'function') {
      throw new InvalidArgumentTypeError('options.onScriptCall', 'a function', o.onScriptCall);
    }
    this.#onScriptCall = o.onScriptCall;
    this.#cache = new LRUCache<string, Link>({ max: cacheMax, ttl: this.#cacheTtlMs });
    const podTag = `{${this.namespace}:pods}`;
    this.#podKeys = Object.freeze([`${podTag}:svc`, `${podTag}:load`, `${podTag}:work`]);
    this.#channel = `${this.namespace}:pod-events`;
  }

  /** The key of a user's link: `{<ns>:lk:<uid>}` (the whole key is its hash tag). */
  linkKey(uid: string): string {
    return `{${this.namespace}:lk:${escapeTagPart(checkUid(uid))}}`;
  }

  /** The pod-state keys (svc, load, work), sharing the tag `{<ns>:pods}`. */
  get podKeys(): readonly string[] {
    return this.#podKeys;
  }

  /** The pub/sub channel pod-state changes are published on. */
  get eventChannel(): string {
    return this.#channel;
  }

  // ----------------------------------------------------------------------------------------------
  // Plumbing

  #conn(): RedisConn {
    if (this.#closed) throw new InvalidArgumentValueError('this StatefulRouteStore was closed', this.namespace, 'ERR_STORE_CLOSED');
    if (this.#cmd === undefined) {
      this.#cmd = new RedisConn({
        url: this.#url,
        password: this.#password,
        connectionName: `sageq-rs-${this.namespace}`,
        scripts: Object.values(ROUTE_STORE_SCRIPTS),
        autoPipelining: true,
      });
    }
    if (this.#subscribe && this.#subscribed === undefined) this.#subscribed = this.#startEvents();
    return this.#cmd;
  }

  async #run<K extends RouteStoreScriptName>(name: K, keys: readonly string[], args: ReadonlyArray<string | number>): Promise<unknown[]> {
    const conn = this.#conn();
    const s = ROUTE_STORE_SCRIPTS[name];
    this.#onScriptCall?.(s.name, keys);
    this.#stats.scriptCalls++;
    const reply = await conn.call(s.name, () => conn.script<unknown>(s.name, keys, args, false), Date.now() + this.#unavailableMs, this.#timeoutMs);
    const problem = replyShapeProblem(name, reply);
    if (problem !== undefined) throw new RedisBackendError('ERR_REDIS_REPLY', `script ${s.name} replied with the wrong shape: ${problem}`, true);
    return reply as unknown[];
  }

  async #startEvents(): Promise<void> {
    const sub = new RedisConn({ url: this.#url, password: this.#password, connectionName: `sageq-rs-sub-${this.namespace}`, scripts: [], autoPipelining: false });
    this.#sub = sub;
    let first = true;
    sub.client.on('ready', () => {
      // Events may have been missed while disconnected: forget what they would have corrected.
      if (!first) {
        this.#cache.clear();
        this.#podsAt = -Infinity;
      }
      first = false;
    });
    sub.client.on('message', (channel: string, message: string) => {
      if (channel !== this.#channel) return;
      this.#stats.events++;
      const ev = parseJson(message);
      if (ev === null || typeof ev.pod !== 'string' || typeof ev.state !== 'string') return;
      const known = this.#pods.get(ev.pod);
      if (ev.state !== 'ready') this.invalidatePod(ev.pod);
      if (ev.state === 'removed') {
        this.#pods.delete(ev.pod);
      } else if (known !== undefined) {
        const at = typeof ev.at === 'number' ? ev.at : 0;
        const raw = JSON.stringify({ state: ev.state, at });
        this.#pods.set(ev.pod, { ...known, service: { state: ev.state, at, ageMs: 0 }, ready: ev.state === 'ready', raw: { ...known.raw, service: raw } });
      } else {
        this.#podsAt = -Infinity; // a pod we have not seen: read them all again next time
      }
    });
    try {
      await sub.whenReady(Date.now() + this.#unavailableMs, 'SUBSCRIBE');
      await sub.client.subscribe(this.#channel);
    } catch {
      this.#subscribed = undefined; // retried on the next call
    }
  }

  /** Resolves once the event subscription is active (tests use it; calls do not wait for it). */
  async eventsReady(): Promise<void> {
    this.#conn();
    await this.#subscribed;
  }

  #opts(options: unknown, name = 'options'): { persistent: '1' | '0'; ttlMs: number } {
    const o = checkOptions<LinkOptions>(options, name);
    checkKnownKeys(o, ['persistent', 'ttlMs'], name);
    const persistent = checkBoolean(o.persistent, `${name}.persistent`, false);
    if (persistent && o.ttlMs !== undefined) {
      throw new InvalidArgumentValueError(`${name}.ttlMs cannot be given for a persistent link`, o.ttlMs, 'ERR_INVALID_ARG_VALUE');
    }
    const ttlMs = o.ttlMs === undefined ? this.defaultLinkTtlMs : checkInteger(o.ttlMs, `${name}.ttlMs`, 1);
    return { persistent: persistent ? '1' : '0', ttlMs };
  }

  #remember(uid: string, link: Link | null): void {
    if (link === null) {
      this.#cache.delete(uid);
      return;
    }
    const ttl = link.ttlMs === null ? this.#cacheTtlMs : Math.max(1, Math.min(this.#cacheTtlMs, link.ttlMs));
    this.#cache.set(uid, link, { ttl });
  }

  // ----------------------------------------------------------------------------------------------
  // Links

  /** Links `uid` to `pod` whatever was there; returns the previous pod (null when none). */
  async setLink(uid: string, pod: string, options?: LinkOptions): Promise<string | null> {
    const key = this.linkKey(uid);
    checkPod(pod);
    const o = this.#opts(options);
    const [prev] = await this.#run('set', [key], [pod, o.persistent, o.ttlMs]);
    this.#remember(uid, { pod, persistent: o.persistent === '1', ttlMs: o.persistent === '1' ? null : o.ttlMs, since: Date.now() });
    return prev as string | null;
  }

  /** Links `uid` to `pod` only when it has no link. Returns the pod linked afterwards, and whether this call made the link. */
  async setLinkIfAbsent(uid: string, pod: string, options?: LinkOptions): Promise<{ pod: string; created: boolean; persistent: boolean }> {
    const key = this.linkKey(uid);
    checkPod(pod);
    const o = this.#opts(options);
    const [linked, created, persistent] = await this.#run('setIfAbsent', [key], [pod, o.persistent, o.ttlMs]);
    const result = { pod: linked as string, created: created === 1, persistent: persistent === 1 };
    this.#remember(uid, { pod: result.pod, persistent: result.persistent, ttlMs: result.persistent ? null : result.created ? o.ttlMs : null, since: 0 });
    return result;
  }

  /**
   * Links `uid` to `pod` unless another pod holds a persistent link (which is never stolen).
   * `set` says whether it did; `previous` is the pod linked before (the holder when refused).
   */
  async trySetLink(uid: string, pod: string, options?: LinkOptions): Promise<{ set: boolean; previous: string | null; previousPersistent: boolean }> {
    const key = this.linkKey(uid);
    checkPod(pod);
    const o = this.#opts(options);
    const [set, previous, previousPersistent] = await this.#run('trySet', [key], [pod, o.persistent, o.ttlMs]);
    if (set === 1) this.#remember(uid, { pod, persistent: o.persistent === '1', ttlMs: o.persistent === '1' ? null : o.ttlMs, since: Date.now() });
    else this.#remember(uid, { pod: previous as string, persistent: true, ttlMs: null, since: 0 });
    return { set: set === 1, previous: previous as string | null, previousPersistent: previousPersistent === 1 };
  }

  /** Removes the link; returns the pod it pointed to (null when none). */
  async removeLink(uid: string): Promise<string | null> {
    const [prev] = await this.#run('remove', [this.linkKey(uid)], []);
    this.#cache.delete(uid);
    return prev as string | null;
  }

  /** Removes the link only if it points to `pod`; true when it did. */
  async compareAndRemoveLink(uid: string, pod: string): Promise<boolean> {
    const key = this.linkKey(uid);
    checkPod(pod);
    const [removed] = await this.#run('compareAndRemove', [key], [pod]);
    this.#cache.delete(uid);
    return removed === 1;
  }

  /** The user's link (from the local cache unless `{ cache: false }`), or null. */
  async getLink(uid: string, options?: { cache?: boolean }): Promise<Link | null> {
    const key = this.linkKey(uid);
    const o = checkOptions<{ cache?: boolean }>(options);
    checkKnownKeys(o, ['cache']);
    if (checkBoolean(o.cache, 'options.cache', true)) {
      const hit = this.#cache.get(uid);
      if (hit !== undefined) {
        this.#stats.cacheHits++;
        return { ...hit };
      }
    }
    this.#stats.cacheMisses++;
    return this.#fetchLink(uid, key);
  }

  async #fetchLink(uid: string, key: string): Promise<Link | null> {
    const [pod, persistent, pttl, since] = await this.#run('get', [key], []);
    if (pod === null) {
      this.#cache.delete(uid);
      return null;
    }
    const link: Link = { pod: pod as string, persistent: persistent === 1, ttlMs: (pttl as number) >= 0 ? (pttl as number) : null, since: since as number };
    this.#remember(uid, link);
    return { ...link };
  }

  /** Links of many users, in order (null where none): cached ones locally, the rest with one pipelined round trip. */
  async getLinks(uids: readonly string[], options?: { cache?: boolean }): Promise<Array<Link | null>> {
    if (!Array.isArray(uids)) throw new InvalidArgumentTypeError('uids', 'an array of strings', uids);
    const keys = uids.map((u, i) => this.linkKey(checkUid(u, `uids[${i}]`)));
    const o = checkOptions<{ cache?: boolean }>(options);
    checkKnownKeys(o, ['cache']);
    const useCache = checkBoolean(o.cache, 'options.cache', true);
    return Promise.all(
      uids.map((uid, i) => {
        const hit = useCache ? this.#cache.get(uid) : undefined;
        if (hit !== undefined) {
          this.#stats.cacheHits++;
          return { ...hit };
        }
        this.#stats.cacheMisses++;
        return this.#fetchLink(uid, keys[i] as string);
      }),
    );
  }

  /** Extends a temporary link to `pod` by `ttlMs`; false when the link is not (or no longer) that. */
  async refreshLink(uid: string, pod: string, ttlMs?: number): Promise<boolean> {
    const key = this.linkKey(uid);
    checkPod(pod);
    const ttl = ttlMs === undefined ? this.defaultLinkTtlMs : checkInteger(ttlMs, 'ttlMs', 1);
    const [refreshed, current] = await this.#run('refresh', [key], [pod, ttl]);
    if (refreshed === 1) this.#remember(uid, { pod, persistent: false, ttlMs: ttl, since: 0 });
    else if (current === null) this.#cache.delete(uid);
    return refreshed === 1;
  }

  /**
   * Links the user to the least-loaded ready pod unless it has a link (which is returned as it
   * is, ready or not). `candidates` limits the pods considered (e.g. those a router can reach).
   * Returns null when there is no link and no ready candidate.
   */
  async linkLeastLoadedIfAbsent(
    uid: string,
    options?: LinkOptions & { candidates?: readonly string[] },
  ): Promise<{ pod: string; created: boolean; persistent: boolean } | null> {
    const key = this.linkKey(uid);
    const o = checkOptions<LinkOptions & { candidates?: readonly string[] }>(options);
    checkKnownKeys(o, ['persistent', 'ttlMs', 'candidates']);
    const link = this.#opts({ persistent: o.persistent, ttlMs: o.ttlMs });
    let only: Set<string> | undefined;
    if (o.candidates !== undefined) {
      if (!Array.isArray(o.candidates)) throw new InvalidArgumentTypeError('options.candidates', 'an array of pod ids', o.candidates);
      only = new Set(o.candidates.map((p, i) => checkPod(p, `options.candidates[${i}]`)));
    }
    const pods = await this.podStates({ maxAgeMs: this.podStateMaxAgeMs });
    const args: Array<string | number> = [uid, link.persistent, link.ttlMs, this.loadStaleMs];
    for (const p of pods) {
      if (!p.ready || (only !== undefined && !only.has(p.pod))) continue;
      args.push(p.pod, p.raw.service ?? '', p.raw.load ?? '');
    }
    const [pod, created, persistent] = await this.#run('linkLeastLoaded', [key], args);
    if (pod === null) return null;
    const result = { pod: pod as string, created: created === 1, persistent: persistent === 1 };
    this.#remember(uid, { pod: result.pod, persistent: result.persistent, ttlMs: result.persistent ? null : result.created ? link.ttlMs : null, since: 0 });
    return result;
  }

  // ----------------------------------------------------------------------------------------------
  // Local cache

  /** The cached link of a user, without any I/O (undefined when not cached). */
  cachedLink(uid: string): Link | undefined {
    const hit = this.#cache.get(uid);
    return hit === undefined ? undefined : { ...hit };
  }

  /** Drops every cached link to `pod`; returns how many. */
  invalidatePod(pod: string): number {
    let n = 0;
    for (const [uid, link] of this.#cache.entries()) {
      if (link.pod === pod) {
        this.#cache.delete(uid);
        n++;
      }
    }
    this.#stats.invalidatedLinks += n;
    return n;
  }

  /** Whether a pod is ready according to the last pod states read (undefined when unknown). */
  isPodReady(pod: string): boolean | undefined {
    return this.#pods.get(pod)?.ready;
  }

  stats(): RouteStoreStats {
    return { ...this.#stats, cacheSize: this.#cache.size };
  }

  // ----------------------------------------------------------------------------------------------
  // Pods

  /** Sets a pod's service state; returns the previous state (null when none). Leaving 'ready' drops its cached links here and, through the event, in every subscribed process. */
  async setServiceState(pod: string, state: PodServiceState): Promise<string | null> {
    checkPod(pod);
    if (!(POD_SERVICE_STATES as readonly string[]).includes(state as string)) {
      throw new InvalidArgumentValueError(`state must be one of ${POD_SERVICE_STATES.join(', ')}; received ${describe(state)}`, state);
    }
    const [prev, at] = await this.#run('setService', this.#podKeys, [pod, state, this.#channel]);
    if (state !== 'ready') this.invalidatePod(pod);
    const known = this.#pods.get(pod);
    const raw = JSON.stringify({ state, at });
    if (known !== undefined) {
      this.#pods.set(pod, { ...known, service: { state, at: at as number, ageMs: 0 }, ready: state === 'ready', raw: { ...known.raw, service: raw } });
    } else {
      this.#podsAt = -Infinity;
    }
    return prev as string | null;
  }

  /** Records a pod's load (a finite number >= 0, e.g. a fill level in [0, 1]); stamped with the Redis clock. */
  async reportLoad(pod: string, load: number): Promise<void> {
    checkPod(pod);
    if (typeof load !== 'number') throw new InvalidArgumentTypeError('load', 'a number', load);
    if (!Number.isFinite(load) || load < 0) throw new InvalidArgumentValueError(`load must be a finite number >= 0; received ${describe(load)}`, load, 'ERR_OUT_OF_RANGE');
    await this.#run('reportLoad', this.#podKeys, [pod, String(load)]);
  }

  /** Records a pod's workload (any JSON value, e.g. { sessions: 120 }). */
  async setWorkload(pod: string, workload: JsonValue): Promise<void> {
    checkPod(pod);
    let text: string | undefined;
    try {
      text = JSON.stringify(workload);
    } catch {
      text = undefined;
    }
    if (text === undefined) throw new InvalidArgumentTypeError('workload', 'a JSON value', workload);
    await this.#run('setWorkload', this.#podKeys, [pod, text]);
  }

  /** Forgets a pod's states; true when it had any. */
  async removePod(pod: string): Promise<boolean> {
    checkPod(pod);
    const [existed] = await this.#run('removePod', this.#podKeys, [pod, this.#channel]);
    this.invalidatePod(pod);
    this.#pods.delete(pod);
    return existed === 1;
  }

  /**
   * Every pod's state, read with one script (or the last read, if younger than `maxAgeMs`).
   * Ages are computed on the Redis clock.
   */
  async podStates(options?: { maxAgeMs?: number }): Promise<PodState[]> {
    const o = checkOptions<{ maxAgeMs?: number }>(options);
    checkKnownKeys(o, ['maxAgeMs']);
    const maxAge = o.maxAgeMs === undefined ? 0 : checkInteger(o.maxAgeMs, 'options.maxAgeMs', 0);
    if (maxAge > 0 && Date.now() - this.#podsAt <= maxAge) return [...this.#pods.values()];
    this.#podsFetch ??= this.#fetchPods().finally(() => {
      this.#podsFetch = undefined;
    });
    return [...(await this.#podsFetch).values()];
  }

  /** Pods whose service state is 'ready', sorted. */
  async readyPods(options?: { maxAgeMs?: number }): Promise<string[]> {
    return (await this.podStates(options)).filter((p) => p.ready).map((p) => p.pod).sort();
  }

  async #fetchPods(): Promise<Map<string, PodState>> {
    const started = Date.now();
    const [now, svcFlat, loadFlat, workFlat] = await this.#run('getPods', this.#podKeys, []);
    const svc = flatToMap(svcFlat);
    const load = flatToMap(loadFlat);
    const work = flatToMap(workFlat);
    const names = new Set([...svc.keys(), ...load.keys(), ...work.keys()]);
    const next = new Map<string, PodState>();
    const t = now as number;
    for (const pod of names) {
      const rs = svc.get(pod) ?? null;
      const rl = load.get(pod) ?? null;
      const rw = work.get(pod) ?? null;
      const s = parseJson(rs);
      const l = parseJson(rl);
      const w = parseJson(rw);
      const service = s !== null && typeof s.state === 'string' && typeof s.at === 'number' ? { state: s.state, at: s.at, ageMs: t - s.at } : null;
      const loadState =
        l !== null && typeof l.load === 'number' && typeof l.at === 'number'
          ? { load: l.load, at: l.at, ageMs: t - l.at, stale: t - l.at > this.loadStaleMs }
          : null;
      const workload = w !== null && typeof w.at === 'number' && 'workload' in w ? { value: w.workload as JsonValue, at: w.at, ageMs: t - w.at } : null;
      next.set(pod, { pod, service, load: loadState, workload, ready: service?.state === 'ready', raw: { service: rs, load: rl, workload: rw } });
    }
    for (const [pod, before] of this.#pods) {
      if (before.ready && next.get(pod)?.ready !== true) this.invalidatePod(pod);
    }
    this.#pods = next;
    this.#podsAt = started;
    return next;
  }

  // ----------------------------------------------------------------------------------------------

  /** Closes the connections. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#cache.clear();
    this.#sub?.disconnect();
    await this.#cmd?.quit(500);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
