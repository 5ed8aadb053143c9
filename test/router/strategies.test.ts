/**
 * BaseRouter strategies: round_robin, broadcast groups and the broadcast strategy, per-packet
 * strategy override, unkeyed fallback, hash (golden vectors, key types, stability across
 * processes), consistent_hash (movement and balance on 100k keys), load_balance (against fills,
 * stale reports, trends, and real consumer processes of different speeds), and a custom router.
 */
import fc from 'fast-check';
import murmurhash from 'murmurhash';
import { afterEach, describe, expect, it } from 'vitest';

import { BaseRouter, Connection, HashRing, LocalQueue, Packet, stableHash } from '../../lib/index';
import type { PartitionKey, RouterOptions, SelectionContext, StrategyName } from '../../lib/index';
import { FixtureChild, cleanup, startConsumers, stopConsumers } from '../helpers/harness';
import { FakeClock } from '../support/fake-clock';
import { OpaqueQueue } from '../support/opaque-queue';
import { seeded } from '../support/seeded';

// Children killed, handles released, segments destroyed after every test, whether it passed or not.
afterEach(cleanup);

// ---------------------------------------------------------------------------------------------
// Helpers

/** A router whose selection can be asked with any strategy and group (selectTarget is protected). */
class ProbeRouter extends BaseRouter {
  selectWith(packet: Packet, strategy: StrategyName, group: readonly Connection[], broadcastIndex = 0): Connection | undefined {
    return this.selectTarget(packet, group, strategy, { broadcastIndex, attempt: 1, exclude: new Set(), now: 0 });
  }
  group(broadcastIndex = 0): Connection[] {
    return this.connections().filter((c) => c.broadcastIndex === broadcastIndex);
  }
}

/** A router with `sizes[b]` LocalQueue targets in broadcast group b, named g<b>-t<p>. */
function build(
  sizes: number[],
  options: RouterOptions = {},
  maxsize = 0,
  nameOf: (b: number, p: number) => string = (b, p) => `g${b}-t${p}`,
): { router: ProbeRouter; queues: LocalQueue<Packet>[][] } {
  const router = new ProbeRouter(options);
  const queues = sizes.map((n, b) =>
    Array.from({ length: n }, (_, p) => {
      const q = new LocalQueue<Packet>({ maxsize });
      router.addConnection({ broadcastIndex: b, parallelIndex: p, targetName: nameOf(b, p), targetHandle: q });
      return q;
    }),
  );
  return { router, queues };
}

function drain<T>(q: LocalQueue<T>): T[] {
  const out: T[] = [];
  while (!q.empty()) out.push(q.getNowait());
  return out;
}

/** Routes `count` packets one at a time; returns the parallel index each copy of group 0 went to. */
async function routeSeq(router: BaseRouter, count: number, make: (i: number) => Packet = (i) => new Packet({ seq: i })): Promise<number[]> {
  const picks: number[] = [];
  for (let i = 0; i < count; i++) {
    const r = await router.route(make(i));
    expect(r.ok).toBe(true);
    picks.push(r.deliveries.find((d) => d.broadcastIndex === 0)?.parallelIndex as number);
  }
  return picks;
}

/** Written identically in test/fixtures/router-hash.cjs. */
function keyOf(i: number): PartitionKey {
  switch (i % 5) {
    case 0:
      return `key-${i}`;
    case 1:
      return i * 7919;
    case 2:
      return `ключ-${i}-✓`;
    case 3:
      return new Uint8Array([i & 255, (i >>> 8) & 255, (i >>> 16) & 255, 0xfe]);
    default:
      return BigInt(i) * 1000003n;
  }
}

// ---------------------------------------------------------------------------------------------

describe('round_robin', () => {
  it('gives 0,1,2,0,1,2 over three targets', async () => {
    const { router } = build([3]);
    expect(await routeSeq(router, 6)).toEqual([0, 1, 2, 0, 1, 2]);
  });

  it('skips an ejected target (0,2,0,2) and takes it back in order once it is up again', async () => {
    const { router } = build([3]);
    expect(await routeSeq(router, 6)).toEqual([0, 1, 2, 0, 1, 2]);
    const t1 = router.group()[1] as Connection;
    t1.markDown('test');
    expect(await routeSeq(router, 6)).toEqual([0, 2, 0, 2, 0, 2]);
    t1.markUp();
    expect(await routeSeq(router, 6)).toEqual([0, 1, 2, 0, 1, 2]);
  });

  it('an ejection mid-rotation keeps the rotation order: after 0,1 with 1 ejected, the next are 2,0,2,0 (no target twice in a row)', async () => {
    const { router } = build([3]);
    expect(await routeSeq(router, 2)).toEqual([0, 1]);
    (router.group()[1] as Connection).markDown('test');
    // The cursor stood at target 2. Re-indexing the rotation over the shrunken list instead
    // sends to target 0 again right after 0,1.
    expect(await routeSeq(router, 4)).toEqual([2, 0, 2, 0]);
  });
});

describe('broadcast groups and the broadcast strategy', () => {
  it('two broadcast groups each get exactly one copy of each packet (round_robin inside each group)', async () => {
    const { router, queues } = build([3, 2]);
    const ids: string[] = [];
    for (let i = 0; i < 60; i++) {
      const p = new Packet({ seq: i });
      ids.push(p.traceId);
      const r = await router.route(p);
      expect(r.deliveries.map((d) => d.broadcastIndex).sort()).toEqual([0, 1]);
      expect(r).toMatchObject({ delivered: 2, failed: 0, deadLettered: 0, ok: true });
    }
    for (const group of queues) {
      const got = group.map(drain);
      const all = got.flat().map((p) => p.traceId);
      expect(all.length).toBe(60);
      expect(new Set(all)).toEqual(new Set(ids));
      const share = 60 / group.length;
      expect(got.map((g) => g.length)).toEqual(group.map(() => share));
    }
  });

  it('the broadcast strategy delivers every packet to every parallel instance of every group', async () => {
    const { router, queues } = build([3, 2], { strategy: 'broadcast' });
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) {
      const p = new Packet({ seq: i });
      ids.push(p.traceId);
      const r = await router.route(p);
      expect(r).toMatchObject({ strategy: 'broadcast', delivered: 5, ok: true });
      expect(r.deliveries.map((d) => d.target).sort()).toEqual(['g0-t0', 'g0-t1', 'g0-t2', 'g1-t0', 'g1-t1']);
    }
    for (const q of queues.flat()) expect(drain(q).map((p) => p.traceId)).toEqual(ids);
    expect(router.stats().decisions.broadcast).toBe(20);
  });
});

describe("a packet's partitionStrategy overrides the router's", () => {
  it('under a round_robin router, a broadcast packet reaches all targets and a hash packet its hash target', async () => {
    const { router, queues } = build([3]);
    const r1 = await router.route(new Packet('all', { partitionStrategy: 'broadcast' }));
    expect(r1.strategy).toBe('broadcast');
    expect(queues[0]?.map((q) => q.qsize())).toEqual([1, 1, 1]);
    for (const key of ['a', 'b', 'c', 'd', 'e', 'f']) {
      const want = stableHash(key) % 3;
      for (let k = 0; k < 3; k++) {
        const r = await router.route(new Packet(key, { partitionKey: key, partitionStrategy: 'hash' }));
        expect(r.strategy).toBe('hash');
        expect(r.deliveries[0]?.parallelIndex).toBe(want);
      }
    }
    const d = router.stats().decisions;
    expect(d).toMatchObject({ broadcast: 1, hash: 18, round_robin: 0 });
  });

  it('under a broadcast router, a round_robin packet goes to one target', async () => {
    const { router } = build([4], { strategy: 'broadcast' });
    const r = await router.route(new Packet(1, { partitionStrategy: 'round_robin' }));
    expect(r.deliveries.length).toBe(1);
    expect((await router.route(new Packet(2))).deliveries.length).toBe(4);
  });
});

describe('unkeyed packets under keyed strategies', () => {
  for (const strategy of ['hash', 'consistent_hash'] as const) {
    it(`${strategy}: unkeyed packets rotate round-robin and stats.unkeyedFallbacks counts them; keys 0 and "" are keys`, async () => {
      const { router } = build([3], { strategy });
      expect(await routeSeq(router, 6)).toEqual([0, 1, 2, 0, 1, 2]);
      let s = router.stats();
      expect(s.unkeyedFallbacks).toBe(6);
      expect(s.decisions).toMatchObject({ round_robin: 6, [strategy]: 0 });
      await router.route(new Packet(1, { partitionKey: 0 }));
      await router.route(new Packet(1, { partitionKey: '' }));
      s = router.stats();
      expect(s.unkeyedFallbacks).toBe(6);
      expect(s.decisions[strategy]).toBe(2);
      expect(s.routed).toBe(8);
    });
  }
});

describe('hash', () => {
  it('stableHash golden vectors: MurmurHash3 x86_32', () => {
    expect(stableHash('')).toBe(0);
    expect(stableHash('hello')).toBe(613153351);
    expect(stableHash('The quick brown fox jumps over the lazy dog')).toBe(776992547);
    expect(stableHash('Hello, world!', 1234)).toBe(0xfaf6cdb3);
  });

  it('non-ASCII keys hash their UTF-8 bytes (fixed examples and a property over arbitrary strings)', () => {
    for (const key of ['héllo', 'ключ', '键值', '🔑', 'a\u0000b', 'e\u0301']) {
      expect(stableHash(key)).toBe(murmurhash.v3(Buffer.from(key, 'utf8')));
    }
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 40 }), fc.nat(), (key, seed) => {
        expect(stableHash(key, seed)).toBe(murmurhash.v3(Buffer.from(key, 'utf8'), seed));
      }),
      { numRuns: 500 },
    );
  });

  it('number and bigint keys hash as their decimal text', () => {
    for (const n of [0, 1, -1, 42, 3.25, -0.5, 1e21, 2 ** 53]) expect(stableHash(n)).toBe(murmurhash.v3(String(n)));
    expect(stableHash(42)).toBe(stableHash('42'));
    expect(stableHash(12345678901234567890n)).toBe(murmurhash.v3('12345678901234567890'));
  });

  it('Uint8Array keys hash by their bytes', () => {
    const bytes = new Uint8Array([0xff, 0x00, 0x80, 0x41]);
    expect(stableHash(bytes)).toBe(murmurhash.v3(Buffer.from(bytes)));
    expect(stableHash(Buffer.from('abc'))).toBe(stableHash('abc'));
    // Not the same as the string of those code points (which UTF-8 encodes 0xff and 0x80 in two bytes).
    expect(stableHash(bytes)).not.toBe(stableHash('\u00ff\u0000\u0080A'));
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (b) => {
        expect(stableHash(b)).toBe(murmurhash.v3(Buffer.from(b)));
      }),
      { numRuns: 300 },
    );
  });

  it('the hash strategy sends key k to target stableHash(k) % N, every time', async () => {
    const { router } = build([5], { strategy: 'hash' });
    for (let i = 0; i < 300; i++) {
      const key = keyOf(i);
      const r = await router.route(new Packet(i, { partitionKey: key }));
      expect(r.deliveries[0]?.parallelIndex).toBe(stableHash(key) % 5);
    }
  });

  it('the target of 100k keys over 7 targets is the same in another process (hash and consistent_hash)', async () => {
    const N = 100_000;
    const child = new FixtureChild('router-hash.cjs', [String(N), '7']);
    // The ring positions depend on the target names: the child names its targets t0..t6 too.
    const { router } = build([7], {}, 0, (_b, p) => `t${p}`);
    const group = router.group();
    const hash = new Uint8Array(N);
    const consistent = new Uint8Array(N);
    for (let i = 0; i < N; i++) {
      const p = new Packet(null, { partitionKey: keyOf(i) });
      hash[i] = (router.selectWith(p, 'hash', group) as Connection).parallelIndex;
      consistent[i] = (router.selectWith(p, 'consistent_hash', group) as Connection).parallelIndex;
    }
    const m = await child.next('indexes', 30_000);
    expect(m.pid).not.toBe(process.pid);
    const theirHash = Buffer.from(m.hash as string, 'base64');
    const theirConsistent = Buffer.from(m.consistent as string, 'base64');
    expect(theirHash.length).toBe(N);
    expect(theirConsistent.length).toBe(N);
    let hashDiff = 0;
    let ringDiff = 0;
    for (let i = 0; i < N; i++) {
      if (theirHash[i] !== hash[i]) hashDiff++;
      if (theirConsistent[i] !== consistent[i]) ringDiff++;
    }
    expect({ hashDiff, ringDiff }).toEqual({ hashDiff: 0, ringDiff: 0 });
    // And the keys are spread over all 7 targets.
    expect(new Set(hash).size).toBe(7);
    expect(new Set(consistent).size).toBe(7);
  }, 40_000);
});

describe('consistent_hash on 100k keys over 10 targets', () => {
  const N = 100_000;
  const keys = Array.from({ length: N }, (_, i) => `user:${i}`);
  const assign = (router: ProbeRouter): string[] => {
    const group = router.group();
    return keys.map((k) => (router.selectWith(new Packet(null, { partitionKey: k }), 'consistent_hash', group) as Connection).targetName);
  };
  const tenTargets = (points?: number): ProbeRouter => {
    const router = new ProbeRouter({ strategy: 'consistent_hash', ...(points === undefined ? {} : { ringPointsPerTarget: points }) });
    for (let t = 0; t < 10; t++) router.addConnection({ broadcastIndex: 0, parallelIndex: t, targetName: `t${t}`, targetHandle: new LocalQueue() });
    return router;
  };

  it('removing one target moves only its keys (none move between survivors); adding an 11th moves keys only to it', () => {
    const router = tenTargets();
    const before = assign(router);

    router.removeConnection(0, 3);
    const without = assign(router);
    let moved = 0;
    let betweenSurvivors = 0;
    let ownedByRemoved = 0;
    for (let i = 0; i < N; i++) {
      if (before[i] === 't3') ownedByRemoved++;
      if (without[i] !== before[i]) {
        moved++;
        if (before[i] !== 't3') betweenSurvivors++;
      }
    }
    expect(betweenSurvivors).toBe(0);
    expect(moved).toBe(ownedByRemoved);
    expect(without.includes('t3')).toBe(false);

    router.addConnection({ broadcastIndex: 0, parallelIndex: 3, targetName: 't3', targetHandle: new LocalQueue() });
    expect(assign(router)).toEqual(before); // the ring depends on names only: t3 gets back exactly its keys

    router.addConnection({ broadcastIndex: 0, parallelIndex: 10, targetName: 't10', targetHandle: new LocalQueue() });
    const eleven = assign(router);
    let toNew = 0;
    let elsewhere = 0;
    for (let i = 0; i < N; i++) {
      if (eleven[i] !== before[i]) {
        if (eleven[i] === 't10') toNew++;
        else elsewhere++;
      }
    }
    expect(elsewhere).toBe(0);
    expect(toNew).toBeGreaterThan(N / 11 / 2);
    expect(toNew).toBeLessThan((N / 11) * 1.5);
    console.log(
      `[consistent_hash 100k keys, 256 points] remove t3: moved ${moved} (${((100 * moved) / N).toFixed(2)}%, all of t3's), ` +
        `between survivors ${betweenSurvivors}; add t10: moved ${toNew} (${((100 * toNew) / N).toFixed(2)}%, ideal ${(100 / 11).toFixed(2)}%) all to t10`,
    );
  });

  it('balance: max share / mean share < 1.25 with the default 256 points per target (figures for 64/256/1000 and hash % N reported)', () => {
    const share = (names: string[]): { ratio: number; min: number; max: number } => {
      const counts = new Map<string, number>();
      for (const n of names) counts.set(n, (counts.get(n) ?? 0) + 1);
      const values = [...counts.values()];
      const mean = N / values.length;
      return { ratio: Math.max(...values) / mean, min: Math.min(...values), max: Math.max(...values) };
    };
    const d = share(assign(tenTargets()));
    const lines = [`default(256): max/mean ${d.ratio.toFixed(3)} (min ${d.min}, max ${d.max}, mean ${N / 10})`];
    for (const points of [64, 1000]) lines.push(`${points}: max/mean ${share(assign(tenTargets(points))).ratio.toFixed(3)}`);
    // For comparison: hash % N moves almost every key when a target is removed.
    const modRouter = tenTargets();
    const modBefore = keys.map((k) => stableHash(k) % 10);
    modRouter.removeConnection(0, 3);
    const modGroup = modRouter.group();
    const modAfter = keys.map((k) => (modRouter.selectWith(new Packet(null, { partitionKey: k }), 'hash', modGroup) as Connection).targetName);
    const modMoved = modAfter.filter((t, i) => t !== `t${modBefore[i]}`).length;
    lines.push(`hash % N, remove 1 of 10: ${((100 * modMoved) / N).toFixed(1)}% of keys move`);
    console.log(`[consistent_hash balance, 10 targets, 100k keys] ${lines.join('; ')}`);
    expect(d.ratio).toBeLessThan(1.25);
  });

  it('route() delivers each keyed packet to the target the ring names (end to end, 2000 keys)', async () => {
    const router = tenTargets();
    const group = router.group();
    const ring = new HashRing(group, (c) => c.targetName, 256);
    for (let i = 0; i < 2000; i++) {
      const key = keys[i] as string;
      const r = await router.route(new Packet(i, { partitionKey: key }));
      const want = (router.selectWith(new Packet(null, { partitionKey: key }), 'consistent_hash', group) as Connection).targetName;
      expect(r.deliveries[0]?.target).toBe(want);
      expect(ring.lookup(stableHash(key))?.targetName).toBe(want);
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe('load_balance against in-process queues', () => {
  it('prefers the emptier queue: with fills 80% / 50% / 10% the fullest gets clearly fewer over 3000 decisions', async () => {
    const clock = new FakeClock();
    const { router, queues } = build([3], { strategy: 'load_balance', clock, random: seeded(1) }, 10_000);
    const fills = [8000, 5000, 1000];
    queues[0]?.forEach((q, i) => {
      for (let k = 0; k < (fills[i] as number); k++) q.put(new Packet(null));
    });
    const picks = await routeSeq(router, 3000);
    const counts = [0, 1, 2].map((t) => picks.filter((p) => p === t).length);
    console.log(`[load_balance fills 80/50/10%] packets per target: ${counts.join(' / ')}`);
    expect(counts[0]).toBeLessThan((counts[2] as number) / 4);
    expect(counts[0]).toBeLessThan((counts[1] as number) / 2);
    expect(counts[2]).toBeGreaterThan(counts[1] as number);
  });

  it('two targets at 90% and 10%: every packet goes to the emptier', async () => {
    const clock = new FakeClock();
    const { router, queues } = build([2], { strategy: 'load_balance', clock }, 1000);
    for (let k = 0; k < 900; k++) queues[0]?.[0]?.put(new Packet(null));
    for (let k = 0; k < 100; k++) queues[0]?.[1]?.put(new Packet(null));
    const picks = await routeSeq(router, 500);
    expect(picks.every((p) => p === 1)).toBe(true);
  });

  it('ignores stale load reports: an old report of 0 on a queue without bufferLoad counts as unknown, and loses to a fresh 0.3', async () => {
    const clock = new FakeClock();
    const router = new ProbeRouter({ strategy: 'load_balance', clock, loadStaleMs: 1000 });
    const a = router.addConnection({ broadcastIndex: 0, parallelIndex: 0, targetName: 'a', targetHandle: new OpaqueQueue() });
    const b = router.addConnection({ broadcastIndex: 0, parallelIndex: 1, targetName: 'b', targetHandle: new OpaqueQueue() });
    a.reportLoad(0, clock.now() - 5000);
    b.reportLoad(0.3);
    expect(a.freshLoad(1000)).toBeUndefined();
    expect((await routeSeq(router, 100)).every((p) => p === 1)).toBe(true);
    // The same report, fresh, wins.
    a.reportLoad(0);
    expect((await routeSeq(router, 100)).every((p) => p === 0)).toBe(true);
    // And goes stale again as time passes.
    clock.advance(1500);
    b.reportLoad(0.3);
    expect((await routeSeq(router, 100)).every((p) => p === 1)).toBe(true);
  });

  it('a one-message blip 20 µs after the previous reading does not outweigh a level difference of 0.6 (trend must not amplify sampling noise)', async () => {
    // Readings taken per decision are microseconds apart: one message more in that time is a
    // slope of hundreds per second. A trend that turns that into a score of ~19 makes an almost
    // empty queue lose to a queue that is 60% full.
    const clock = new FakeClock();
    const { router, queues } = build([2], { strategy: 'load_balance', clock }, 200);
    const [emptyish, busy] = queues[0] as [LocalQueue<Packet>, LocalQueue<Packet>];
    const [cEmptyish] = router.group() as [Connection, Connection];
    for (let k = 0; k < 120; k++) busy.put(new Packet(null));
    cEmptyish.getBufferLoad();
    clock.advance(0.02);
    emptyish.put(new Packet(null)); // 1/200
    const picks = await routeSeq(router, 1);
    console.log(`[load_balance blip] loadTrend of the almost empty queue after one message in 20 µs: ${cEmptyish.loadTrend.toFixed(1)} per s`);
    expect(picks).toEqual([0]);
  });

  it('considers the trend: at an equal level, the target whose load is rising loses (even though it wins ties by index)', async () => {
    const clock = new FakeClock();
    const { router, queues } = build([2], { strategy: 'load_balance', clock }, 10_000);
    const [rising, flat] = queues[0] as [LocalQueue<Packet>, LocalQueue<Packet>];
    const [cRising, cFlat] = router.group() as [Connection, Connection];
    for (let k = 0; k < 3000; k++) rising.put(new Packet(null));
    for (let k = 0; k < 5000; k++) flat.put(new Packet(null));
    cRising.getBufferLoad();
    cFlat.getBufferLoad();
    clock.advance(200);
    for (let k = 0; k < 2000; k++) rising.put(new Packet(null));
    expect(cRising.getBufferLoad()).toBe(0.5);
    expect(cFlat.getBufferLoad()).toBe(0.5);
    expect(cRising.loadTrend).toBeGreaterThan(0);
    expect(cFlat.loadTrend).toBe(0);
    const picks = await routeSeq(router, 200);
    expect(picks.every((p) => p === 1)).toBe(true);
  });
});

interface LoadBalanceRun {
  counts: number[];
  maxLoad: number[];
  maxTrend: number[];
  routedMs: number;
}

/**
 * 3 SageQueues (maxsize 200), each drained by its own consumer process; consumer SLOW sleeps 4 ms
 * per message. Routes N packets with load_balance and checks every one arrives exactly once.
 */
async function runLoadBalance(N: number, SLOW: number, options: RouterOptions): Promise<LoadBalanceRun> {
  const MAXSIZE = 200;
  const delaysMs = [0, 1, 2].map((i) => (i === SLOW ? 4 : 0));
  const { queues, consumers } = await startConsumers('lb', delaysMs, { capacity: 1 << 18, maxsize: MAXSIZE, codec: 'v8' });

  const router = new BaseRouter({ name: 'lb', strategy: 'load_balance', sendTimeoutMs: 5000, ...options });
  queues.forEach((q, i) => router.addConnection({ broadcastIndex: 0, parallelIndex: i, targetName: `c${i}`, targetHandle: q }));
  const conns = router.connections();

  const maxLoad = [0, 0, 0];
  const maxTrend = [0, 0, 0];
  const t0 = performance.now();
  for (let seq = 0; seq < N; seq++) {
    const r = await router.route(new Packet({ seq }));
    expect(r.ok).toBe(true);
    queues.forEach((q, i) => {
      maxLoad[i] = Math.max(maxLoad[i] as number, q.bufferLoad());
      maxTrend[i] = Math.max(maxTrend[i] as number, (conns[i] as Connection).loadTrend);
    });
    // A steady stream rather than one burst: let the consumers run now and then.
    if (seq % 50 === 49) await new Promise((resolve) => setTimeout(resolve, 1));
  }
  const routedMs = performance.now() - t0;
  const received = await stopConsumers(router, consumers, 10_000, 30_000);
  const all = received.flat().sort((a, b) => a - b);
  expect(all.length).toBe(N);
  expect(all.every((s, i) => s === i)).toBe(true); // exactly once, none missing
  expect(router.stats()).toMatchObject({ delivered: N, failed: 0, deadLettered: 0 });
  const counts = received.map((s) => s.length);
  console.log(
    `[load_balance ${JSON.stringify(options)}, 3 consumer processes, slow = c${SLOW} (4 ms/msg)] received ${counts.join(' / ')}; ` +
      `max bufferLoad ${maxLoad.map((l) => l.toFixed(3)).join(' / ')}; max loadTrend ${maxTrend.map((t) => t.toFixed(1)).join(' / ')} per s; ` +
      `routed ${N} in ${routedMs.toFixed(0)} ms`,
  );
  return { counts, maxLoad, maxTrend, routedMs };
}

describe('load_balance against consumer processes of different speeds', () => {
  const SLOW = 0; // index 0 also wins ties: the hardest place for the slow consumer

  it('3 SageQueues (maxsize 200), one drained slowly: its fill stays near the others (max < 0.9), it gets clearly fewer, every packet arrives exactly once', async () => {
    const r = await runLoadBalance(3000, SLOW, {});
    const fast = r.counts.filter((_, i) => i !== SLOW);
    expect(r.maxLoad[SLOW]).toBeLessThan(0.9);
    expect(r.counts[SLOW]).toBeLessThan(Math.min(...fast) / 2);
  }, 60_000);

  it('the same with the trend term off (trendHorizonMs 0): level-only power of two choices keeps the slow queue low', async () => {
    const r = await runLoadBalance(3000, SLOW, { trendHorizonMs: 0 });
    const fast = r.counts.filter((_, i) => i !== SLOW);
    expect(r.maxLoad[SLOW]).toBeLessThan(0.9);
    expect(r.counts[SLOW]).toBeLessThan(Math.min(...fast) / 2);
  }, 60_000);
});

// ---------------------------------------------------------------------------------------------

/** A custom router: always the last available target of the group. */
class LastAvailableRouter extends BaseRouter {
  readonly calls: Array<{ strategy: StrategyName; attempt: number; excluded: string[] }> = [];
  protected override selectTarget(_packet: Packet, group: readonly Connection[], strategy: StrategyName, context: SelectionContext): Connection | undefined {
    this.calls.push({ strategy, attempt: context.attempt, excluded: [...context.exclude].map((c) => c.targetName) });
    for (let i = group.length - 1; i >= 0; i--) {
      const c = group[i] as Connection;
      if (c.isAvailable(context.now) && !context.exclude.has(c)) return c;
    }
    return undefined;
  }
}

describe('a custom router overriding selectTarget', () => {
  it('route() sends where the override says: always the last available target', async () => {
    const router = new LastAvailableRouter({ name: 'last' });
    const queues = [0, 1, 2].map((p) => {
      const q = new LocalQueue<Packet>();
      router.addConnection({ broadcastIndex: 0, parallelIndex: p, targetName: `t${p}`, targetHandle: q });
      return q;
    });
    expect(await routeSeq(router, 5)).toEqual([2, 2, 2, 2, 2]);
    (router.groups.get(0)?.get(2) as Connection).markDown('gone');
    expect(await routeSeq(router, 3)).toEqual([1, 1, 1]);
    expect(queues.map((q) => q.qsize())).toEqual([0, 3, 5]);
    expect(router.calls.every((c) => c.strategy === 'round_robin' && c.attempt === 1)).toBe(true);
  });

  it('on retry the override sees the failed target in context.exclude and picks the next one', async () => {
    const clock = new FakeClock();
    const router = new LastAvailableRouter({ name: 'last', clock, maxRetries: 2 });
    const good = new LocalQueue<Packet>();
    const closed = new LocalQueue<Packet>();
    closed.close();
    router.addConnection({ broadcastIndex: 0, parallelIndex: 0, targetName: 'good', targetHandle: good });
    router.addConnection({ broadcastIndex: 0, parallelIndex: 1, targetName: 'closed', targetHandle: closed });
    const r = await router.route(new Packet('x'));
    expect(r.ok).toBe(true);
    expect(r.deliveries[0]).toMatchObject({ target: 'good', attempts: 2, retries: 1, status: 'delivered' });
    expect(router.calls).toEqual([
      { strategy: 'round_robin', attempt: 1, excluded: [] },
      { strategy: 'round_robin', attempt: 2, excluded: ['closed'] },
    ]);
    expect(good.qsize()).toBe(1);
  });
});

