import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';

import { ArgumentRangeError, InvalidArgumentTypeError, InvalidArgumentValueError } from '../../lib/errors';
import { LocalQueue } from '../../lib/queue/local-queue';
import { Packet } from '../../lib/router/packet';
import { hashTagOf } from '../../lib/redis/connection';
import { QUEUE_SCRIPTS } from '../../lib/redis/queue-scripts';
import { StatefulRouteStore } from '../../lib/redis/route-store';
import type { StatefulRouteStoreOptions } from '../../lib/redis/route-store';
import { ROUTE_STORE_SCRIPTS, replyShapeProblem } from '../../lib/redis/route-store-scripts';
import type { RouteStoreScriptName } from '../../lib/redis/route-store-scripts';
import { StatefulRouter } from '../../lib/redis/stateful-router';
import { rejected, thrown } from '../support/expect-errors';
import { RedisServer } from '../support/redis-server';

let server: RedisServer;
let raw: Redis;
const stores: StatefulRouteStore[] = [];
/** Every script call of every store in this file: [script, keys]. */
const calls: Array<[string, readonly string[]]> = [];
let counter = 0;

beforeAll(async () => {
  server = await RedisServer.start();
  raw = server.client();
});

afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
});

afterAll(async () => {
  raw?.disconnect();
  await server?.stop();
});

function makeStore(options: Partial<StatefulRouteStoreOptions> = {}): StatefulRouteStore {
  const s = new StatefulRouteStore({
    url: server.url,
    namespace: options.namespace ?? `ns${process.pid}-${++counter}`,
    onScriptCall: (name, keys) => calls.push([name, keys]),
    ...options,
  });
  stores.push(s);
  return s;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function readyPods(store: StatefulRouteStore, loads: Record<string, number | null>): Promise<void> {
  for (const [pod, load] of Object.entries(loads)) {
    await store.setServiceState(pod, 'ready');
    if (load !== null) await store.reportLoad(pod, load);
  }
}

describe('StatefulRouteStore links', () => {
  it('set returns the previous pod, get reads it, remove returns it; "no pod" is null everywhere, pod "0" is a pod', async () => {
    const store = makeStore();
    expect(await store.getLink('u1')).toBeNull();
    expect(await store.setLink('u1', '0')).toBeNull();
    expect(await store.getLink('u1', { cache: false })).toMatchObject({ pod: '0', persistent: false });
    expect(await store.setLink('u1', '-1', { persistent: true })).toBe('0');
    const link = await store.getLink('u1', { cache: false });
    expect(link).toMatchObject({ pod: '-1', persistent: true, ttlMs: null });
    expect(link?.since).toBeGreaterThan(0);
    expect(await store.removeLink('u1')).toBe('-1');
    expect(await store.removeLink('u1')).toBeNull();
    expect(await store.getLink('u1')).toBeNull();
    expect(await store.compareAndRemoveLink('u1', '0')).toBe(false);
  });

  it('setLinkIfAbsent returns the existing pod; 50 concurrent calls from 5 stores for one user all return the same pod', async () => {
    const ns = `ns${process.pid}-race`;
    const many = Array.from({ length: 5 }, () => makeStore({ namespace: ns }));
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => (many[i % 5] as StatefulRouteStore).setLinkIfAbsent('racer', `pod-${i}`)),
    );
    const pods = new Set(results.map((r) => r.pod));
    expect(pods.size).toBe(1);
    expect(results.filter((r) => r.created)).toHaveLength(1);
    const winner = [...pods][0] as string;
    expect((await (many[0] as StatefulRouteStore).getLink('racer', { cache: false }))?.pod).toBe(winner);
    expect(await (many[1] as StatefulRouteStore).setLinkIfAbsent('racer', 'other')).toEqual({ pod: winner, created: false, persistent: false });
  });

  it('trySetLink never steals another pod\'s persistent link, but replaces a temporary one', async () => {
    const store = makeStore();
    await store.setLink('u', 'a', { persistent: true });
    expect(await store.trySetLink('u', 'b')).toEqual({ set: false, previous: 'a', previousPersistent: true });
    expect((await store.getLink('u', { cache: false }))?.pod).toBe('a');
    expect(await store.trySetLink('u', 'a', { ttlMs: 60_000 })).toEqual({ set: true, previous: 'a', previousPersistent: true });
    expect(await store.trySetLink('u', 'b')).toEqual({ set: true, previous: 'a', previousPersistent: false });
    expect(await store.trySetLink('v', 'b')).toEqual({ set: true, previous: null, previousPersistent: false });
  });

  it('compareAndRemoveLink removes only a link to the given pod', async () => {
    const store = makeStore();
    await store.setLink('u', 'a');
    expect(await store.compareAndRemoveLink('u', 'b')).toBe(false);
    expect((await store.getLink('u'))?.pod).toBe('a');
    expect(await store.compareAndRemoveLink('u', 'a')).toBe(true);
    expect(await store.getLink('u', { cache: false })).toBeNull();
  });

  it('temporary links expire after their TTL, persistent ones do not; refreshLink extends only a temporary link to that pod', async () => {
    const store = makeStore({ cacheTtlMs: 20 });
    await store.setLink('t', 'a', { ttlMs: 150 });
    await store.setLink('p', 'a', { persistent: true });
    const t = await store.getLink('t', { cache: false });
    expect(t?.ttlMs).toBeGreaterThan(0);
    expect(t?.ttlMs).toBeLessThanOrEqual(150);
    expect(await store.refreshLink('t', 'b', 150)).toBe(false);
    expect(await store.refreshLink('p', 'a', 150)).toBe(false);
    expect(await store.refreshLink('t', 'a', 400)).toBe(true);
    await sleep(250);
    expect((await store.getLink('t', { cache: false }))?.pod).toBe('a'); // refreshed
    await sleep(250);
    expect(await store.getLink('t', { cache: false })).toBeNull();
    expect(await store.getLink('p', { cache: false })).toMatchObject({ pod: 'a', persistent: true });
  });

  it('getLinks returns links in order, null where there is none, from the cache when it can', async () => {
    const store = makeStore();
    await store.setLink('a', 'p1');
    await store.setLink('c', 'p3', { persistent: true });
    const before = store.stats();
    const links = await store.getLinks(['a', 'b', 'c']);
    expect(links.map((l) => l?.pod ?? null)).toEqual(['p1', null, 'p3']);
    const after = store.stats();
    expect(after.cacheHits - before.cacheHits).toBe(2); // a and c were cached by setLink
    expect(after.cacheMisses - before.cacheMisses).toBe(1);
    expect((await store.getLinks(['a', 'b', 'c'], { cache: false })).map((l) => l?.pod ?? null)).toEqual(['p1', null, 'p3']);
  });

  it('user ids with braces cannot break the hash tag', async () => {
    const store = makeStore();
    expect(store.linkKey('a}b{c%')).toBe(`{${store.namespace}:lk:a%7Db%7Bc%25}`);
    await store.setLink('a}b{c%', 'p');
    expect((await store.getLink('a}b{c%', { cache: false }))?.pod).toBe('p');
  });
});

describe('StatefulRouteStore pods and least-loaded linking', () => {
  it('links to the least-loaded ready pod, ignores pods that are not ready, returns an existing link as is, null when none is ready', async () => {
    const store = makeStore();
    expect(await store.linkLeastLoadedIfAbsent('u0')).toBeNull(); // no pods at all
    await readyPods(store, { a: 0.9, b: 0.2, c: 0.5 });
    await store.setServiceState('d', 'draining');
    await store.reportLoad('d', 0); // least loaded, but not ready
    expect(await store.linkLeastLoadedIfAbsent('u1')).toEqual({ pod: 'b', created: true, persistent: false });
    expect(await store.linkLeastLoadedIfAbsent('u1')).toEqual({ pod: 'b', created: false, persistent: false });
    expect(await store.linkLeastLoadedIfAbsent('u2', { candidates: ['a', 'c'], persistent: true })).toEqual({ pod: 'c', created: true, persistent: true });
    expect(await store.linkLeastLoadedIfAbsent('u3', { candidates: ['d'] })).toBeNull();
    // An existing link is returned even when its pod is no longer ready (the caller decides).
    await store.setServiceState('b', 'stopped');
    expect((await store.linkLeastLoadedIfAbsent('u1'))?.pod).toBe('b');
    expect(await store.readyPods()).toEqual(['a', 'c']);
  });

  it('ignores stale load reports: a pod whose report is older than loadStaleMs ranks after fresh ones', async () => {
    const store = makeStore({ loadStaleMs: 150, podStateMaxAgeMs: 0 });
    await readyPods(store, { quiet: 0.0, busy: 0.7 });
    await sleep(200);
    await store.reportLoad('busy', 0.7); // fresh again; quiet's 0.0 is now stale
    const states = await store.podStates();
    const quiet = states.find((p) => p.pod === 'quiet');
    expect(quiet?.load).toMatchObject({ load: 0, stale: true });
    expect(quiet?.load?.ageMs).toBeGreaterThanOrEqual(150);
    expect(states.find((p) => p.pod === 'busy')?.load?.stale).toBe(false);
    expect((await store.linkLeastLoadedIfAbsent('u'))?.pod).toBe('busy');
    // Without any fresh report, ties spread by user (highest random weight), deterministically.
    await sleep(200);
    const chosen = new Set<string>();
    for (let i = 0; i < 20; i++) chosen.add((await store.linkLeastLoadedIfAbsent(`spread-${i}`))?.pod as string);
    expect(chosen).toEqual(new Set(['quiet', 'busy']));
  });

  it('pod states carry service state, load and workload with Redis-clock ages', async () => {
    const store = makeStore();
    expect(await store.setServiceState('p', 'starting')).toBeNull();
    expect(await store.setServiceState('p', 'ready')).toBe('starting');
    await store.reportLoad('p', 0.25);
    await store.setWorkload('p', { sessions: 12, zones: ['a'] });
    const [p] = await store.podStates();
    expect(p).toMatchObject({ pod: 'p', ready: true, service: { state: 'ready' }, load: { load: 0.25, stale: false }, workload: { value: { sessions: 12, zones: ['a'] } } });
    expect(p?.service?.ageMs).toBeGreaterThanOrEqual(0);
    expect(JSON.parse(p?.raw.load as string)).toMatchObject({ load: 0.25 });
    expect(await store.removePod('p')).toBe(true);
    expect(await store.removePod('p')).toBe(false);
    expect(await store.podStates()).toEqual([]);
  });
});

describe('StatefulRouteStore local cache', () => {
  it('drops cached links of a pod that leaves the ready state, here and in another store (event)', async () => {
    const ns = `ns${process.pid}-cache`;
    const a = makeStore({ namespace: ns, cacheTtlMs: 60_000 });
    const b = makeStore({ namespace: ns, cacheTtlMs: 60_000 });
    await b.eventsReady();
    await readyPods(a, { p1: 0.1, p2: 0.5 });
    await a.setLink('u1', 'p1');
    await a.setLink('u2', 'p2');
    expect((await b.getLink('u1'))?.pod).toBe('p1');
    expect((await b.getLink('u2'))?.pod).toBe('p2');
    expect(a.cachedLink('u1')?.pod).toBe('p1');
    expect(b.cachedLink('u1')?.pod).toBe('p1');
    await a.setServiceState('p1', 'draining');
    expect(a.cachedLink('u1')).toBeUndefined(); // this store, at once
    expect(a.cachedLink('u2')?.pod).toBe('p2');
    for (let i = 0; i < 100 && b.cachedLink('u1') !== undefined; i++) await sleep(10);
    expect(b.cachedLink('u1')).toBeUndefined(); // the other store, through the event
    expect(b.cachedLink('u2')?.pod).toBe('p2');
    expect(b.stats().invalidatedLinks).toBeGreaterThanOrEqual(1);
  });

  it('a pod-state refresh that finds a pod no longer ready drops its links too (no events)', async () => {
    const ns = `ns${process.pid}-refresh`;
    const a = makeStore({ namespace: ns, subscribe: false, cacheTtlMs: 60_000 });
    const b = makeStore({ namespace: ns, subscribe: false, cacheTtlMs: 60_000 });
    await readyPods(a, { p1: 0.1 });
    await b.podStates();
    await b.setLink('u', 'p1');
    await a.setServiceState('p1', 'stopped');
    expect(b.cachedLink('u')?.pod).toBe('p1'); // b has not heard yet
    await b.podStates();
    expect(b.cachedLink('u')).toBeUndefined();
    expect(b.isPodReady('p1')).toBe(false);
  });
});

describe('Lua scripts', () => {
  /** Runs a script directly and returns its raw reply. */
  function run(name: RouteStoreScriptName, keys: string[], args: Array<string | number>): Promise<unknown> {
    const s = ROUTE_STORE_SCRIPTS[name];
    expect(keys).toHaveLength(s.numberOfKeys);
    return raw.eval(s.lua, s.numberOfKeys, ...keys, ...args) as Promise<unknown>;
  }

  it('every script replies with its declared shape, in every branch', async () => {
    const ns = `shape${process.pid}`;
    const k = `{${ns}:lk:u}`;
    const pods = [`{${ns}:pods}:svc`, `{${ns}:pods}:load`, `{${ns}:pods}:work`];
    const replies: Array<[RouteStoreScriptName, unknown]> = [];
    const r = async (name: RouteStoreScriptName, keys: string[], args: Array<string | number>): Promise<unknown> => {
      const reply = await run(name, keys, args);
      replies.push([name, reply]);
      return reply;
    };
    expect(await r('get', [k], [])).toEqual([null, 0, -2, 0]);
    expect(await r('remove', [k], [])).toEqual([null, 0]);
    expect(await r('set', [k], ['a', '0', 60_000])).toEqual([null, 0]);
    expect(await r('set', [k], ['b', '1', 60_000])).toEqual(['a', 0]);
    expect(await r('setIfAbsent', [k], ['c', '0', 60_000])).toEqual(['b', 0, 1]);
    expect(await r('trySet', [k], ['c', '0', 60_000])).toEqual([0, 'b', 1]);
    expect(await r('trySet', [k], ['b', '0', 60_000])).toEqual([1, 'b', 1]);
    expect(await r('refresh', [k], ['b', 60_000])).toEqual([1, 'b']);
    expect(await r('refresh', [k], ['x', 60_000])).toEqual([0, 'b']);
    const got = (await r('get', [k], [])) as unknown[];
    expect(got.slice(0, 2)).toEqual(['b', 0]);
    expect(await r('compareAndRemove', [k], ['x'])).toEqual([0, 'b']);
    expect(await r('compareAndRemove', [k], ['b'])).toEqual([1, null]);
    expect(await r('refresh', [k], ['b', 60_000])).toEqual([0, null]);
    expect(await r('setIfAbsent', [k], ['c', '0', 60_000])).toEqual(['c', 1, 0]);
    expect(await r('linkLeastLoaded', [k], ['u', '0', 60_000, 10_000])).toEqual(['c', 0, 0]);
    await r('remove', [k], []);
    expect(await r('linkLeastLoaded', [k], ['u', '0', 60_000, 10_000])).toEqual([null, 0, 0]);
    // The states exactly as setService/reportLoad store them: the link script parses that format.
    expect(await r('setService', pods, ['p0', 'ready', `${ns}:ev`])).toEqual([null, expect.any(Number)]);
    expect(await r('setService', pods, ['p0', 'ready', `${ns}:ev`])).toEqual(['ready', expect.any(Number)]);
    expect(await r('reportLoad', pods, ['p0', '0.5'])).toEqual([expect.any(Number)]);
    expect(await r('setWorkload', pods, ['p0', '{"n":1}'])).toEqual([expect.any(Number)]);
    const [, svc, load, work] = (await r('getPods', pods, [])) as [number, string[], string[], string[]];
    expect(work[1]).toMatch(/^\{"at":\d+,"workload":\{"n":1\}\}$/);
    const args = ['u', '1', 60_000, 10_000, 'p0', svc[1] as string, load[1] as string, 'garbage', 'not json', ''];
    expect(await r('linkLeastLoaded', [k], args)).toEqual(['p0', 1, 1]);
    expect(await r('removePod', pods, ['p0', `${ns}:ev`])).toEqual([1]);
    expect(await r('removePod', pods, ['p0', `${ns}:ev`])).toEqual([0]);
    expect(await r('getPods', pods, [])).toEqual([expect.any(Number), [], [], []]);
    for (const [name, reply] of replies) expect(replyShapeProblem(name, reply), `${name} → ${JSON.stringify(reply)}`).toBeUndefined();
    // Every script was exercised.
    expect(new Set(replies.map(([n]) => n))).toEqual(new Set(Object.keys(ROUTE_STORE_SCRIPTS)));
    // The checker does catch a drifted reply.
    expect(replyShapeProblem('get', [null, 0, -2])).toMatch(/expected 4 elements/);
    expect(replyShapeProblem('setIfAbsent', [null, 1, 0])).toMatch(/element 0 should be pod/);
    expect(replyShapeProblem('set', [0, 0])).toMatch(/element 0 should be pod\?/);
  });

  it('scripts address Redis only through KEYS (no key built inside a script)', () => {
    const all = [...Object.values(ROUTE_STORE_SCRIPTS), ...QUEUE_SCRIPTS];
    for (const s of all) {
      for (const m of s.lua.matchAll(/redis\.p?call\('([A-Z]+)',\s*([^,)]+)/g)) {
        const [, command, first] = m as unknown as [string, string, string];
        if (['TIME', 'PUBLISH'].includes(command)) continue;
        if (command === 'XREADGROUP' || command === 'XGROUP') continue; // keys come after keywords; checked below
        const key = /^KEYS\[(\d)\]$/.exec(first.trim()) ?? /^key$/.exec(first.trim());
        expect(key, `${s.name}: ${command} ${first}`).not.toBeNull();
        if (key?.[1] !== undefined) expect(Number(key[1])).toBeLessThanOrEqual(s.numberOfKeys);
      }
      for (const m of s.lua.matchAll(/'(?:STREAMS|CREATE)', ([^,)]+)/g)) expect(m[1]).toMatch(/^KEYS\[\d\]$/);
    }
  });

  it('no CROSSSLOT: every script call of this file used keys of one hash tag', async () => {
    // Make sure every kind of call happened at least once, through the store API.
    const store = makeStore();
    await readyPods(store, { a: 0.1 });
    await store.setWorkload('a', 1);
    await store.podStates();
    await store.setLink('u', 'a');
    await store.setLinkIfAbsent('u', 'a');
    await store.trySetLink('u', 'a');
    await store.getLink('u', { cache: false });
    await store.getLinks(['u', 'v'], { cache: false });
    await store.refreshLink('u', 'a');
    await store.compareAndRemoveLink('u', 'a');
    await store.linkLeastLoadedIfAbsent('u');
    await store.removeLink('u');
    await store.removePod('a');
    expect(new Set(calls.map(([n]) => n))).toEqual(new Set(Object.values(ROUTE_STORE_SCRIPTS).map((s) => s.name)));
    for (const [name, keys] of calls) {
      const tags = new Set(keys.map((key) => hashTagOf(key)));
      expect(tags.size, `${name} ${JSON.stringify(keys)}`).toBe(1);
      expect([...tags][0], `${name} ${JSON.stringify(keys)}`).toBeDefined();
    }
    // Link keys are exactly their tag: {ns:lk:uid}.
    expect(hashTagOf(store.linkKey('u'))).toBe(`${store.namespace}:lk:u`);
  });
});

describe('StatefulRouteStore argument checks', () => {
  it('bad arguments fail with typed errors and codes', async () => {
    thrown(() => new StatefulRouteStore({ namespace: 'a{b}' }), InvalidArgumentValueError, 'ERR_INVALID_ARG_VALUE');
    thrown(() => new StatefulRouteStore({} as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => new StatefulRouteStore({ namespace: 'x', cacheTtlMs: -1 }), ArgumentRangeError, 'ERR_OUT_OF_RANGE');
    thrown(() => new StatefulRouteStore({ namespace: 'x', url: 'http://h' }), InvalidArgumentValueError, 'ERR_INVALID_ARG_VALUE');
    const store = makeStore();
    await expect(store.setLink('', 'a')).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' });
    await expect(store.setLink(5 as never, 'a')).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    await expect(store.setLink('u', '')).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' });
    await expect(store.setLink('u', 'a', { ttlMs: 0 })).rejects.toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
    await expect(store.setLink('u', 'a', { persistent: true, ttlMs: 5 })).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' });
    await expect(store.setLink('u', 'a', { ttl: 5 } as never)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    await expect(store.setServiceState('p', 'up' as never)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' });
    await rejected(store.reportLoad('p', -0.5), InvalidArgumentValueError, 'ERR_OUT_OF_RANGE');
    await rejected(store.reportLoad('p', Number.NaN), InvalidArgumentValueError, 'ERR_OUT_OF_RANGE');
    await rejected(store.setWorkload('p', (() => 1) as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    await expect(store.linkLeastLoadedIfAbsent('u', { candidates: 'a' as never })).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    thrown(() => new StatefulRouter({ store: {} as never }), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
  });
});

describe('StatefulRouter', () => {
  function routerWith(store: StatefulRouteStore, pods: string[], link?: { persistent?: boolean; ttlMs?: number }): { router: StatefulRouter; queues: Map<string, LocalQueue<Packet>> } {
    const router = new StatefulRouter({ store, link, name: 'sr', maxRetries: 1, retryBaseMs: 0 });
    const queues = new Map<string, LocalQueue<Packet>>();
    pods.forEach((pod, i) => {
      const q = new LocalQueue<Packet>();
      queues.set(pod, q);
      router.addConnection({ broadcastIndex: 0, parallelIndex: i, targetName: pod, targetHandle: q });
    });
    return { router, queues };
  }

  function where(queues: Map<string, LocalQueue<Packet>>): Map<string, string[]> {
    const out = new Map<string, string[]>();
    for (const [pod, q] of queues) {
      const keys: string[] = [];
      while (!q.empty()) keys.push(String(q.getNowait().partitionKey));
      out.set(pod, keys);
    }
    return out;
  }

  it('links a user on first sight to the least-loaded ready pod and keeps routing there; two routers agree', async () => {
    const ns = `ns${process.pid}-router`;
    const store = makeStore({ namespace: ns });
    const other = makeStore({ namespace: ns });
    await readyPods(store, { 'pod-a': 0.8, 'pod-b': 0.1, 'pod-c': 0.5 });
    const { router, queues } = routerWith(store, ['pod-a', 'pod-b', 'pod-c']);
    const second = routerWith(other, ['pod-a', 'pod-b', 'pod-c']);
    const reports = await Promise.all([
      ...Array.from({ length: 10 }, (_, i) => router.route(new Packet(i, { partitionKey: 'alice' }))),
      ...Array.from({ length: 10 }, (_, i) => second.router.route(new Packet(i, { partitionKey: 'alice' }))),
    ]);
    expect(reports.every((r) => r.ok)).toBe(true);
    expect(where(queues).get('pod-b')).toHaveLength(10);
    expect(where(second.queues).get('pod-b')).toHaveLength(10);
    expect((await store.getLink('alice', { cache: false }))?.pod).toBe('pod-b');
    expect(router.statefulStats().linked + second.router.statefulStats().linked).toBe(1);
    // Unkeyed packets are routed as BaseRouter does (round robin fallback).
    expect((await router.route(new Packet('x'))).ok).toBe(true);
  });

  it('fails over a temporary link when its pod leaves the ready state, and never moves a persistent one', async () => {
    const store = makeStore({ podStateMaxAgeMs: 0 });
    await readyPods(store, { 'pod-a': 0.1, 'pod-b': 0.5, 'pod-c': 0.9 });
    await store.setLink('pinned', 'pod-a', { persistent: true });
    const { router, queues } = routerWith(store, ['pod-a', 'pod-b', 'pod-c']);
    await router.route(new Packet(1, { partitionKey: 'bob' }));
    await router.route(new Packet(1, { partitionKey: 'pinned' }));
    expect(where(queues).get('pod-a')).toEqual(['bob', 'pinned']);
    await store.setServiceState('pod-a', 'draining');
    await router.route(new Packet(2, { partitionKey: 'bob' }));
    await router.route(new Packet(2, { partitionKey: 'pinned' }));
    const after = where(queues);
    expect(after.get('pod-b')).toContain('bob'); // relinked to the least-loaded ready pod
    expect((await store.getLink('bob', { cache: false }))?.pod).toBe('pod-b');
    expect(router.statefulStats().relinked).toBe(1);
    expect((await store.getLink('pinned', { cache: false }))?.pod).toBe('pod-a'); // persistent: not moved
    expect([...after.values()].flat()).toContain('pinned'); // routed to a fallback meanwhile
    expect(after.get('pod-a')).toEqual([]);
    expect(router.statefulStats().fallbacks).toBeGreaterThanOrEqual(1);
    await store.setServiceState('pod-a', 'ready');
    await router.route(new Packet(3, { partitionKey: 'pinned' }));
    expect(where(queues).get('pod-a')).toEqual(['pinned']); // back home
  });

  it('routeMany links every new user once and delivers each user\'s packets to one pod', async () => {
    const store = makeStore();
    await readyPods(store, { p1: null, p2: null, p3: null });
    const { router, queues } = routerWith(store, ['p1', 'p2', 'p3']);
    const packets = Array.from({ length: 60 }, (_, i) => new Packet(i, { partitionKey: `user-${i % 12}` }));
    const report = await router.routeMany(packets);
    expect(report.ok).toBe(true);
    expect(report.delivered).toBe(60);
    const byPod = where(queues);
    const podOf = new Map<string, string>();
    for (const [pod, keys] of byPod) for (const k of keys) {
      expect(podOf.get(k) ?? pod).toBe(pod);
      podOf.set(k, pod);
    }
    expect(podOf.size).toBe(12);
    for (const [user, pod] of podOf) expect((await store.getLink(user, { cache: false }))?.pod).toBe(pod);
    expect(router.statefulStats().linked).toBe(12);
  });
});
