/**
 * The pure target-selection functions of lib/router/strategies.ts, called directly on groups of
 * connections and selection contexts, without a router: round robin (cursor, skipping ejected and
 * excluded targets), hash (key → index, next available), the consistent-hash ring, availability
 * filtering, power of two choices on load and trend, broadcast, and TargetSelector's state.
 */
import { describe, expect, it } from 'vitest';

import { Connection, HashRing, LocalQueue, Packet, stableHash } from '../../lib/index';
import type { PartitionKey, SelectionContext } from '../../lib/index';
import {
  TargetSelector, availableCandidates, broadcastTargets, buildRing, hashTarget, leastLoadedTarget, loadScore, ringTarget, roundRobinTarget,
} from '../../lib/router/strategies';
import { FakeClock } from '../support/fake-clock';
import { OpaqueQueue } from '../support/opaque-queue';

const T0 = 1_000_000;

/** `n` connections t0..t(n-1) of broadcast group 0 over opaque queues (load only by report). */
function group(n: number, clock = new FakeClock({ start: T0 })): Connection[] {
  return Array.from({ length: n }, (_, i) => new Connection({ broadcastIndex: 0, parallelIndex: i, targetName: `t${i}`, targetHandle: new OpaqueQueue() }, clock));
}

function ctx(exclude: Connection[] = [], now = T0): SelectionContext {
  return { broadcastIndex: 0, attempt: 1, exclude: new Set(exclude), now };
}

/** Ejected until markUp() (no probe time). */
function down(c: Connection): Connection {
  c.markDown('test');
  return c;
}

/** A random source that returns the given values in turn. */
function sequence(...values: number[]): () => number {
  let i = 0;
  return () => values[i++ % values.length] as number;
}

describe('roundRobinTarget', () => {
  it('from cursor 0 over 3 targets, following the returned cursor picks t0, t1, t2, t0', () => {
    const g = group(3);
    const picks: string[] = [];
    let cursor = 0;
    for (let k = 0; k < 4; k++) {
      const pick = roundRobinTarget(g, cursor, ctx());
      picks.push(pick?.target.targetName as string);
      cursor = pick?.next as number;
    }
    expect(picks).toEqual(['t0', 't1', 't2', 't0']);
  });

  it('a cursor past the end wraps (cursor 7 over 3 targets starts at t1)', () => {
    expect(roundRobinTarget(group(3), 7, ctx())).toMatchObject({ target: { targetName: 't1' }, next: 2 });
  });

  it('skips an ejected target: cursor 1 with t1 ejected picks t2, next cursor 3', () => {
    const g = group(3);
    down(g[1] as Connection);
    expect(roundRobinTarget(g, 1, ctx())).toMatchObject({ target: { targetName: 't2' }, next: 3 });
  });

  it('avoids a target in context.exclude when another is available, and takes it when it is the only one left', () => {
    const g = group(2);
    expect(roundRobinTarget(g, 0, ctx([g[0] as Connection]))?.target.targetName).toBe('t1');
    down(g[1] as Connection);
    expect(roundRobinTarget(g, 0, ctx([g[0] as Connection]))).toMatchObject({ target: { targetName: 't0' }, next: 1 });
  });

  it('undefined for an empty group and for a group whose targets are all ejected', () => {
    expect(roundRobinTarget([], 0, ctx())).toBeUndefined();
    expect(roundRobinTarget(group(2).map(down), 0, ctx())).toBeUndefined();
  });
});

describe('hashTarget', () => {
  it('key k goes to index stableHash(k) % N, for string, number, bigint and byte keys', () => {
    const g = group(7);
    const keys: PartitionKey[] = ['user-1', 'ключ', 42, 12345678901234567890n, new Uint8Array([1, 2, 3])];
    for (const key of keys) expect(hashTarget(key, g, T0)?.parallelIndex).toBe(stableHash(key) % 7);
  });

  it("an unavailable target's keys go to the next available index (wrapping), and come back when it is up", () => {
    const g = group(5);
    const key = Array.from({ length: 100 }, (_, i) => `k${i}`).find((k) => stableHash(k) % 5 === 4) as string;
    down(g[4] as Connection);
    expect(hashTarget(key, g, T0)?.parallelIndex).toBe(0);
    (g[4] as Connection).markUp();
    expect(hashTarget(key, g, T0)?.parallelIndex).toBe(4);
  });

  it('undefined for an empty group and when every target is ejected', () => {
    expect(hashTarget('k', [], T0)).toBeUndefined();
    expect(hashTarget('k', group(3).map(down), T0)).toBeUndefined();
  });
});

describe('buildRing / ringTarget', () => {
  it('ringTarget returns the owner a HashRing over the target names gives the key', () => {
    const g = group(6);
    const ring = buildRing(g, 64);
    const reference = new HashRing(g.map((c) => c.targetName), (name) => name, 64);
    expect(ring.size).toBe(6 * 64);
    for (let i = 0; i < 500; i++) {
      const key = `key-${i}`;
      expect(ringTarget(ring, key, T0)?.targetName).toBe(reference.lookup(stableHash(key)));
    }
  });

  it("with one target ejected, only that target's keys move (to other targets); the others' keys stay", () => {
    const g = group(5);
    const ring = buildRing(g, 128);
    const keys = Array.from({ length: 2000 }, (_, i) => `key-${i}`);
    const before = keys.map((k) => ringTarget(ring, k, T0)?.targetName);
    down(g[2] as Connection);
    const after = keys.map((k) => ringTarget(ring, k, T0)?.targetName);
    const moved = keys.filter((_, i) => before[i] !== after[i]);
    expect(moved.length).toBeGreaterThan(0);
    expect(keys.every((_, i) => before[i] === 't2' ? after[i] !== 't2' : after[i] === before[i])).toBe(true);
    expect(moved.length).toBe(before.filter((t) => t === 't2').length);
  });
});

describe('availableCandidates', () => {
  it('drops ejected targets and excluded ones; when every available target is excluded, returns them all', () => {
    const g = group(4);
    down(g[0] as Connection);
    expect(availableCandidates(g, ctx([g[1] as Connection])).map((c) => c.targetName)).toEqual(['t2', 't3']);
    expect(availableCandidates(g, ctx([g[1], g[2], g[3]] as Connection[])).map((c) => c.targetName)).toEqual(['t1', 't2', 't3']);
  });

  it('an ejected target whose probe time has come is a candidate again (probing)', () => {
    const clock = new FakeClock({ start: T0 });
    const g = group(2, clock);
    (g[0] as Connection).eject(100, 1000);
    expect(availableCandidates(g, ctx([], T0 + 99)).map((c) => c.targetName)).toEqual(['t1']);
    expect(availableCandidates(g, ctx([], T0 + 100)).map((c) => c.targetName)).toEqual(['t0', 't1']);
    expect((g[0] as Connection).health.state).toBe('probing');
  });
});

describe('loadScore / leastLoadedTarget', () => {
  const opts = { loadStaleMs: 1000, trendHorizonMs: 0 };

  it('loadScore is the fresh reported load, 0.5 when unknown or stale', () => {
    const clock = new FakeClock({ start: T0 });
    const [a, b, c] = group(3, clock) as [Connection, Connection, Connection];
    a.reportLoad(0.2);
    c.reportLoad(0.1, T0 - 5000);
    expect([loadScore(a, opts), loadScore(b, opts), loadScore(c, opts)]).toEqual([0.2, 0.5, 0.5]);
  });

  it('loadScore adds a rising trend over the horizon, and ignores a falling one', () => {
    const clock = new FakeClock({ start: T0 });
    const [up, fall] = group(2, clock) as [Connection, Connection];
    up.reportLoad(0.1);
    fall.reportLoad(0.9);
    clock.advance(1000);
    up.reportLoad(0.5);
    fall.reportLoad(0.5);
    expect(up.loadTrend).toBeGreaterThan(0);
    expect(loadScore(up, { loadStaleMs: 1000, trendHorizonMs: 500 })).toBeCloseTo(0.5 + up.loadTrend * 0.5, 10);
    expect(loadScore(fall, { loadStaleMs: 1000, trendHorizonMs: 500 })).toBe(0.5);
  });

  it('of the two sampled candidates, the less loaded wins (random 0 then 0.99 samples t0 and t3)', () => {
    const g = group(4);
    [0.9, 0.1, 0.1, 0.3].forEach((load, i) => (g[i] as Connection).reportLoad(load));
    expect(leastLoadedTarget(g, ctx(), sequence(0, 0.99), opts)?.targetName).toBe('t3');
  });

  it('two distinct candidates are always compared: random 0.5, 0.5 over 2 targets samples both', () => {
    const g = group(2);
    (g[0] as Connection).reportLoad(0.1);
    (g[1] as Connection).reportLoad(0.8);
    expect(leastLoadedTarget(g, ctx(), sequence(0.5, 0.5), opts)?.targetName).toBe('t0');
  });

  it('equal scores go to the lower parallel index', () => {
    const g = group(2);
    expect(leastLoadedTarget(g, ctx(), sequence(0.9, 0), opts)?.targetName).toBe('t0');
  });

  it('one candidate left (others ejected or excluded): that one, without drawing', () => {
    const g = group(3);
    down(g[0] as Connection);
    let draws = 0;
    const random = (): number => {
      draws++;
      return 0;
    };
    expect(leastLoadedTarget(g, ctx([g[1] as Connection]), random, opts)?.targetName).toBe('t2');
    expect(draws).toBe(0);
    expect(leastLoadedTarget(group(0), ctx(), random, opts)).toBeUndefined();
  });
});

describe('broadcastTargets', () => {
  it('is every parallel instance of the group, ejected ones included, in order', () => {
    const g = group(3);
    down(g[1] as Connection);
    expect(broadcastTargets(g).map((c) => c.targetName)).toEqual(['t0', 't1', 't2']);
  });
});

describe('TargetSelector', () => {
  const options = { ringPointsPerTarget: 64, loadStaleMs: 1000, trendHorizonMs: 0, random: () => 0 };

  it('round_robin keeps one cursor per broadcast group', () => {
    const sel = new TargetSelector(options);
    const g0 = group(3);
    const g1 = group(2);
    const c1 = { ...ctx(), broadcastIndex: 1 };
    const picks = [sel.select(new Packet(1), g0, 'round_robin', ctx()), sel.select(new Packet(2), g1, 'round_robin', c1), sel.select(new Packet(3), g0, 'round_robin', ctx()), sel.select(new Packet(4), g1, 'round_robin', c1)];
    expect(picks.map((c) => c?.targetName)).toEqual(['t0', 't0', 't1', 't1']);
  });

  it('hash and consistent_hash pick what hashTarget and ringTarget pick', () => {
    const sel = new TargetSelector(options);
    const g = group(5);
    const ring = buildRing(g, 64);
    for (let i = 0; i < 200; i++) {
      const p = new Packet(i, { partitionKey: `u${i}` });
      expect(sel.select(p, g, 'hash', ctx())).toBe(hashTarget(`u${i}`, g, T0));
      expect(sel.select(p, g, 'consistent_hash', ctx())?.targetName).toBe(ringTarget(ring, `u${i}`, T0)?.targetName);
    }
  });

  it('after invalidate() the ring is rebuilt from the new group: a removed target gets no key', () => {
    const sel = new TargetSelector(options);
    const g = group(4);
    const keys = Array.from({ length: 300 }, (_, i) => new Packet(i, { partitionKey: `k${i}` }));
    expect(keys.some((p) => sel.select(p, g, 'consistent_hash', ctx())?.targetName === 't3')).toBe(true);
    const smaller = g.slice(0, 3);
    sel.invalidate(0);
    expect(keys.some((p) => sel.select(p, smaller, 'consistent_hash', ctx())?.targetName === 't3')).toBe(false);
  });

  it('a LocalQueue target reports its own fill to load_balance (bufferLoad), no report needed', () => {
    const clock = new FakeClock({ start: T0 });
    const full = new LocalQueue<unknown>({ maxsize: 10 });
    for (let i = 0; i < 9; i++) full.put(i);
    const g = [full, new LocalQueue<unknown>({ maxsize: 10 })].map(
      (q, i) => new Connection({ broadcastIndex: 0, parallelIndex: i, targetName: `q${i}`, targetHandle: q }, clock),
    );
    const sel = new TargetSelector(options);
    expect(sel.select(new Packet(0), g, 'load_balance', ctx())?.targetName).toBe('q1');
  });
});
