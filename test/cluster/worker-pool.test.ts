/**
 * WorkerPool (primary) and joinWorkerPool (worker) with real forked workers
 * (test/fixtures/pool-worker.cjs), real segments and real SIGKILL: keyed partitioning,
 * request/response, a worker killed mid-stream and replaced on the same queue, respawn off, a
 * SIGKILLed primary (its workers must exit by themselves, `sage-queue gc --yes` cleans up), and
 * close(). Every reply names the worker index and pid that handled the packet.
 *
 * The SIGKILLed-primary test runs in a private /dev/shm (a mount namespace with its own tmpfs) so
 * that `gc --yes` only sees that pool's segments, never other suites' abandoned queues.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';

import { Packet, QueueClosedError, QueueReleasedError, SageQueue, WorkerPool, stableHash } from '../../lib/index';
import type { RouteReport, WorkerPoolOptions } from '../../lib/index';

const root = path.resolve(__dirname, '..', '..');
const cliPath = path.join(root, 'dist', 'cli', 'main.js');
const workerScript = path.join(__dirname, '..', 'fixtures', 'pool-worker.cjs');
const primaryScript = path.join(__dirname, '..', 'fixtures', 'pool-primary.cjs');
const prefix = `ct-${process.pid}-`;
let counter = 0;
const uniq = (tag: string): string => `${prefix}${tag}-${++counter}`;

/** What the worker fixture checks each payload against (the same function is in pool-worker.cjs). */
const bodyFor = (seq: number): string => `packet-${seq}-${'z'.repeat(seq % 97)}`;

interface Seen {
  kind: 'seen';
  seq: number;
  key: string;
  ok: boolean;
  index: number;
  pid: number;
}
interface Response {
  kind: 'response';
  id: number;
  result: number;
  index: number;
  pid: number;
}
interface Stalled {
  kind: 'stalled';
  index: number;
  pid: number;
  taken: number;
}
/** From a worker in batch mode (CT_POOL_BATCHES): what batches({ max: 0 }) threw, and its end. */
interface BatchNote {
  kind: 'option-check' | 'ended';
  code?: string | null;
  index: number;
  pid: number;
}
type Reply = Seen | Response | Stalled | BatchNote;

// ------------------------------------------------------------------------------------------------
// Helpers

async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** True once the process no longer exists (or is a zombie nobody has reaped yet). */
function gone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state === 'Z' || state === 'X';
  } catch {
    return true;
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]);
}

/** Reads a reply queue in the background until stopped (or the queue is closed/released). */
function collect(q: SageQueue, onItem?: (item: Reply) => void): { items: Reply[]; stop: () => Promise<void> } {
  const items: Reply[] = [];
  const ac = new AbortController();
  const done = (async () => {
    for (;;) {
      try {
        const item = (await q.getAsync({ signal: ac.signal })) as Reply;
        items.push(item);
        onItem?.(item);
      } catch (e) {
        if (ac.signal.aborted || e instanceof QueueReleasedError || e instanceof QueueClosedError) return;
        throw e;
      }
    }
  })();
  return {
    items,
    stop: async () => {
      ac.abort();
      await done;
    },
  };
}

const seenOf = (items: Reply[]): Seen[] => items.filter((r): r is Seen => r.kind === 'seen');

/**
 * The checks every keyed run shares: `total` answers, each intact and once, over `keys` keys,
 * each key answered by one worker, in its order. Returns the answers by key for further checks.
 */
function checkKeyed(seen: Seen[], total: number, keys: number): Map<string, Seen[]> {
  expect(seen).toHaveLength(total);
  expect(seen.every((s) => s.ok)).toBe(true);
  expect(new Set(seen.map((s) => s.seq)).size).toBe(total);
  const byKey = new Map<string, Seen[]>();
  for (const s of seen) byKey.set(s.key, [...(byKey.get(s.key) ?? []), s]);
  expect(byKey.size).toBe(keys);
  for (const [key, list] of byKey) {
    const workers = new Set(list.map((s) => s.index));
    expect(workers.size, `key ${key} reached workers ${[...workers]}`).toBe(1);
    const seqs = list.map((s) => s.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b)); // per-key order
  }
  return byKey;
}

/**
 * Three rounds of `perRound` keyed packets (routeMany); in round i worker i is SIGKILLed from the
 * reply stream right after it answered its 300th packet of the round, while it still has hundreds
 * queued (somewhere inside its take/answer loop), and each round waits for its replacement.
 */
async function killWorkersWhileBusy(pool: WorkerPool, perRound: number, keys: number): Promise<{ replies: ReturnType<typeof collect>; victims: number[] }> {
  let hook: ((item: Reply) => void) | undefined;
  const replies = collect(pool.replies as SageQueue, (item) => hook?.(item));
  const victims: number[] = [];
  for (let round = 0; round < 3; round++) {
    const victim = round;
    const victimPid = pool.pids[victim] as number;
    victims.push(victimPid);
    let answered = 0;
    hook = (item) => {
      if (item.kind === 'seen' && item.pid === victimPid && ++answered === 300) process.kill(victimPid, 'SIGKILL');
    };
    const replaced = withTimeout(once(pool, 'worker-replaced'), 15_000, `the replacement of worker ${victim}`);
    const batch = Array.from({ length: perRound }, (_, i) => {
      const seq = round * perRound + i;
      return new Packet({ seq, body: bodyFor(seq) }, { partitionKey: `key-${seq % keys}` });
    });
    expect((await pool.router.routeMany(batch)).ok).toBe(true);
    const [replacement] = (await replaced) as [{ index: number; pid: number }];
    expect(replacement.index).toBe(victim);
  }
  hook = undefined;
  return { replies, victims };
}

function segmentsOf(poolName: string): string[] {
  return readdirSync('/dev/shm').filter((f) => f.startsWith(`sageq.${poolName}.`));
}

// ------------------------------------------------------------------------------------------------
// Cleanup: every pool closed, every worker pid ever seen killed, every segment of ours removed.

const pools: WorkerPool[] = [];
const workerPids = new Set<number>();
const poolErrors: Error[] = [];
const tmpFiles: string[] = [];
const children = new Set<ChildProcess>();

function makePool(options: Partial<WorkerPoolOptions>): WorkerPool {
  const pool = new WorkerPool({
    script: workerScript,
    workers: 3,
    replies: true,
    name: uniq('pool'),
    queue: { capacity: 1 << 18 },
    execArgv: [],
    ...options,
  });
  pools.push(pool);
  pool.on('error', (e) => poolErrors.push(e));
  pool.on('worker-replaced', ({ pid }) => workerPids.add(pid));
  return pool;
}

async function ready(pool: WorkerPool): Promise<void> {
  await withTimeout(pool.ready(), 15_000, 'the workers to attach');
  for (const pid of pool.pids) if (pid !== undefined) workerPids.add(pid);
}

afterEach(async () => {
  for (const pool of pools.splice(0)) {
    try {
      await pool.close({ timeoutMs: 2000 });
    } catch {
      // already closed by the test
    }
  }
  for (const pid of workerPids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  workerPids.clear();
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await Promise.all([...children].map((c) => (c.exitCode === null && c.signalCode === null ? once(c, 'exit') : undefined)));
  children.clear();
  for (const f of tmpFiles.splice(0)) {
    try {
      unlinkSync(f);
    } catch {
      // removed by the test
    }
  }
  for (const f of readdirSync('/dev/shm')) if (f.startsWith(`sageq.${prefix}`)) SageQueue.destroy(f.slice('sageq.'.length));
  const errors = poolErrors.splice(0);
  expect(errors).toEqual([]);
});

afterAll(() => {
  expect(readdirSync('/dev/shm').filter((f) => f.startsWith(`sageq.${prefix}`))).toEqual([]);
});

// ------------------------------------------------------------------------------------------------

describe('WorkerPool: partitioning and request/response', () => {
  it.each(['hash', 'consistent_hash'] as const)(
    '%s: every keyed packet reaches exactly one of 3 workers, each key always the same one, in key order, intact',
    async (strategy) => {
      const pool = makePool({ router: { strategy } });
      await ready(pool);
      const replies = collect(pool.replies as SageQueue);
      const total = 900;
      const keys = 45;
      const routedTo = new Map<string, Set<number>>();
      for (let seq = 0; seq < total; seq++) {
        const key = `key-${seq % keys}`;
        const report = await pool.route({ seq, body: bodyFor(seq) }, key);
        expect(report.ok).toBe(true);
        expect(report.deliveries).toHaveLength(1);
        const set = routedTo.get(key) ?? new Set<number>();
        set.add(report.deliveries[0]?.parallelIndex as number);
        routedTo.set(key, set);
      }
      await until('every reply', () => seenOf(replies.items).length >= total);
      await replies.stop();

      const seen = seenOf(replies.items);
      for (const [key, list] of checkKeyed(seen, total, keys)) {
        const workers = new Set(list.map((s) => s.index));
        expect(routedTo.get(key)).toEqual(workers);
        expect(list.every((s) => s.pid === pool.pids[s.index])).toBe(true);
        if (strategy === 'hash') expect([...workers][0]).toBe(stableHash(key) % 3);
      }
      expect(new Set(seen.map((s) => s.index))).toEqual(new Set([0, 1, 2])); // every worker has keys
      expect(pool.router.stats()).toMatchObject({ routed: total, delivered: total, failed: 0, deadLettered: 0 });
    },
  );

  it('request/response: 300 concurrent requests are each answered once, correctly, through pool.replies', async () => {
    const pool = makePool({ router: { strategy: 'round_robin' } });
    await ready(pool);
    const replies = collect(pool.replies as SageQueue);
    const n = (id: number): number => id * 7 + 3;
    const reports = await Promise.all(Array.from({ length: 300 }, (_, id) => pool.route({ kind: 'request', id, n: n(id) })));
    expect(reports.every((r) => r.ok)).toBe(true);
    await until('every response', () => replies.items.length >= 300);
    await replies.stop();

    const responses = replies.items as Response[];
    expect(responses).toHaveLength(300);
    expect(responses.every((r) => r.kind === 'response')).toBe(true);
    const byId = new Map(responses.map((r) => [r.id, r]));
    expect(byId.size).toBe(300);
    for (let id = 0; id < 300; id++) expect(byId.get(id)?.result).toBe(n(id) * n(id));
    const perWorker = [0, 1, 2].map((i) => responses.filter((r) => r.index === i).length);
    expect(perWorker).toEqual([100, 100, 100]); // round robin over 3 healthy workers
  });
});

describe('WorkerPool: batched end to end', () => {
  it('pool.routeMany to workers consuming with worker.batches() and answering with putMany: 3000 keyed packets each answered once, intact, every key on one worker in order; a stop signal ends batches()', async () => {
    const pool = makePool({ router: { strategy: 'consistent_hash' }, env: { ...process.env, CT_POOL_BATCHES: '64' } });
    await ready(pool);
    const replies = collect(pool.replies as SageQueue);
    const total = 3000;
    const keys = 60;
    for (let start = 0; start < total; start += 500) {
      const packets: Array<Packet<{ seq: number; body: string }>> = [];
      for (let seq = start; seq < start + 500; seq++) packets.push(new Packet({ seq, body: bodyFor(seq) }, { partitionKey: `key-${seq % keys}` }));
      const report = await pool.routeMany(packets);
      expect(report).toMatchObject({ packets: 500, delivered: 500, deadLettered: 0, failed: 0, ok: true });
    }
    const notes = (kind: BatchNote['kind']): BatchNote[] => replies.items.filter((r): r is BatchNote => r.kind === kind);
    await until('every answer', () => seenOf(replies.items).length >= total);
    expect((await pool.router.sendStopSignal('done')).failed).toEqual([]);
    await until('every worker to leave batches()', () => notes('ended').length === 3);
    await replies.stop();

    // batches({ max: 0 }) threw at the call, in every worker.
    expect(notes('option-check').map((n) => n.code)).toEqual(['ERR_OUT_OF_RANGE', 'ERR_OUT_OF_RANGE', 'ERR_OUT_OF_RANGE']);
    const seen = seenOf(replies.items) as Array<Seen & { batch: number }>;
    checkKeyed(seen, total, keys);
    // The workers did take batches (a routeMany put hundreds at once), never more than max.
    expect(Math.max(...seen.map((s) => s.batch))).toBeGreaterThan(1);
    expect(Math.max(...seen.map((s) => s.batch))).toBeLessThanOrEqual(64);
    expect(pool.router.stats()).toMatchObject({ routed: total, delivered: total, failed: 0, deadLettered: 0 });
  });
});

describe('WorkerPool: a worker dies', () => {
  it.each(['hash', 'consistent_hash'] as const)(
    '%s: a worker SIGKILLed mid-stream is ejected at once, its keys go elsewhere meanwhile, and a replacement on the SAME queue consumes what it left',
    async (strategy) => {
      const stallFile = path.join(tmpdir(), `${uniq('stall')}.json`);
      writeFileSync(stallFile, JSON.stringify({ index: 0, after: 20 }));
      tmpFiles.push(stallFile);
      const pool = makePool({ router: { strategy }, env: { ...process.env, CT_POOL_STALL_FILE: stallFile } });
      await ready(pool);
      const oldPid = pool.pids[0] as number;
      const queueName = pool.queues[0]?.name;
      const replies = collect(pool.replies as SageQueue);

      let seq = 0;
      const sentTo = new Map<number, number>(); // seq → parallel index the router chose
      const send = (key: string): Promise<RouteReport> => {
        const s = seq++;
        return pool.route({ seq: s, body: bodyFor(s) }, key).then((r) => {
          sentTo.set(s, r.deliveries[0]?.parallelIndex ?? -1);
          return r;
        });
      };

      // Phase 1: 300 packets over 30 keys. Worker 0 answers 20 of its packets, then stops taking
      // any: the rest of its share waits in its queue.
      const owner = new Map<string, number>();
      for (let i = 0; i < 300; i++) {
        const key = `key-${i % 30}`;
        const r = await send(key);
        expect(r.ok).toBe(true);
        const idx = r.deliveries[0]?.parallelIndex as number;
        expect(owner.get(key) ?? idx).toBe(idx);
        owner.set(key, idx);
      }
      const keysOf0 = [...owner].filter(([, idx]) => idx === 0).map(([k]) => k);
      const phase1To0 = [...sentTo].filter(([, idx]) => idx === 0).map(([s]) => s);
      expect(keysOf0.length).toBeGreaterThan(0);
      expect(phase1To0.length).toBeGreaterThan(20);
      await until('worker 0 to stall', () => replies.items.some((r) => r.kind === 'stalled'));
      expect(pool.queues[0]?.stats()).toMatchObject({ enqueued: phase1To0.length, dequeued: 20, depth: phase1To0.length - 20 });

      // The kill. Inside 'worker-exit' (before any replacement exists): the health the router
      // shows, the dead worker's segment, and where its keys go meanwhile.
      let atExit: { info: unknown; health: string | undefined; stats: ReturnType<SageQueue['stats']> } | undefined;
      const windowRoutes: Array<Promise<RouteReport>> = [];
      const windowSeqs: number[] = [];
      pool.once('worker-exit', (info) => {
        atExit = {
          info,
          health: pool.router.stats().connections.find((c) => c.parallelIndex === 0)?.health.state,
          stats: (pool.queues[0] as SageQueue).stats(),
        };
        for (const key of keysOf0) {
          windowSeqs.push(seq);
          windowRoutes.push(send(key));
        }
      });
      const replaced = withTimeout(once(pool, 'worker-replaced'), 15_000, "'worker-replaced'");
      unlinkSync(stallFile); // the replacement runs normally
      process.kill(oldPid, 'SIGKILL');
      const [replacement] = (await replaced) as [{ index: number; pid: number }];

      expect(atExit?.info).toEqual({ index: 0, pid: oldPid, code: null, signal: 'SIGKILL' });
      expect(atExit?.health).toBe('ejected');
      // The dead worker's queue is consistent: what it took is counted, the rest is still there.
      expect(atExit?.stats).toMatchObject({ enqueued: phase1To0.length, dequeued: 20, depth: phase1To0.length - 20, lostInRead: 0, abandonedClaims: 0 });
      expect(atExit?.stats.processes.filter((p) => p.pid === oldPid).every((p) => !p.alive)).toBe(true);

      const windowReports = await Promise.all(windowRoutes);
      for (const r of windowReports) {
        expect(r.ok).toBe(true);
        expect(r.deliveries[0]?.parallelIndex).not.toBe(0);
      }

      expect(replacement.index).toBe(0);
      expect(replacement.pid).not.toBe(oldPid);
      expect(pool.pids[0]).toBe(replacement.pid);
      expect(pool.queues[0]?.name).toBe(queueName);
      expect(pool.router.stats().connections.find((c) => c.parallelIndex === 0)?.health.state).toBe('healthy');
      expect(gone(oldPid)).toBe(true);

      // Phase 3: the keys come back to worker 0 once it is up again.
      for (let i = 0; i < 60; i++) {
        const key = `key-${i % 30}`;
        const r = await send(key);
        expect(r.ok).toBe(true);
        expect(r.deliveries[0]?.parallelIndex).toBe(owner.get(key));
      }

      await until('every packet to be answered', () => seenOf(replies.items).length >= seq);
      await replies.stop();
      const seen = seenOf(replies.items);
      expect(seen).toHaveLength(seq);
      expect(seen.every((s) => s.ok)).toBe(true); // nothing corrupt was delivered
      const bySeq = new Map(seen.map((s) => [s.seq, s]));
      expect(bySeq.size).toBe(seq); // each exactly once
      // The dead worker answered its first 20; the replacement everything it left behind.
      expect(phase1To0.slice(0, 20).map((s) => bySeq.get(s)?.pid)).toEqual(Array(20).fill(oldPid));
      expect(phase1To0.slice(20).map((s) => bySeq.get(s)?.pid)).toEqual(Array(phase1To0.length - 20).fill(replacement.pid));
      for (const s of windowSeqs) expect(bySeq.get(s)?.index).not.toBe(0);

      const final = (pool.queues[0] as SageQueue).stats();
      expect(final.depth).toBe(0);
      expect(final.dequeued).toBe(final.enqueued);
      expect(final.enqueued).toBe([...sentTo.values()].filter((idx) => idx === 0).length);
      expect(final.lostInRead).toBe(0);
      expect(final.processes).toContainEqual(expect.objectContaining({ pid: replacement.pid, alive: true }));

      const name = pool.name;
      pools.splice(pools.indexOf(pool), 1);
      await pool.close({ timeoutMs: 5000 });
      expect(segmentsOf(name)).toEqual([]);
      for (const pid of [oldPid, ...pool.pids]) expect(gone(pid as number)).toBe(true);
    },
  );

  it('workers SIGKILLed while busy (3 rounds, a different worker each time): nothing is delivered twice or corrupt, at most the packet in hand is lost, the replacement drains the rest', async () => {
    const pool = makePool({ router: { strategy: 'hash' }, queue: { capacity: 1 << 21 }, replies: { capacity: 1 << 20 } });
    await ready(pool);
    const perRound = 3000;
    const keys = 90;
    const { replies, victims } = await killWorkersWhileBusy(pool, perRound, keys);
    for (const pid of victims) expect(gone(pid)).toBe(true);
    const total = 3 * perRound;
    const drained = (): boolean => pool.queues.every((q) => q.stats().depth === 0) && (pool.replies as SageQueue).stats().depth === 0;
    await until('every queue to drain', drained);
    await new Promise((r) => setTimeout(r, 200)); // a packet taken just now is answered by then
    await until('the replies to drain', drained);
    await replies.stop();

    const seen = seenOf(replies.items);
    expect(seen.every((s) => s.ok)).toBe(true); // nothing corrupt
    const seqs = new Set(seen.map((s) => s.seq));
    expect(seqs.size).toBe(seen.length); // nothing twice
    const missing = Array.from({ length: total }, (_, seq) => seq).filter((seq) => !seqs.has(seq));
    // Each kill can lose at most the one packet the victim had in hand (iterate takes one at a
    // time), and only a packet of the victim's own keys routed before it died (worker i dies in
    // round i).
    expect(missing.length).toBeLessThanOrEqual(3);
    for (const seq of missing) expect(stableHash(`key-${seq % keys}`) % 3).toBeGreaterThanOrEqual(Math.floor(seq / perRound));
    let enqueued = 0;
    for (const q of pool.queues) {
      const st = q.stats();
      expect(st.dequeued + st.depth).toBe(st.enqueued);
      enqueued += st.enqueued;
    }
    expect(enqueued).toBe(total); // every packet was committed to a worker queue
    const victimSet = new Set(victims);
    expect(seen.filter((s) => victimSet.has(s.pid)).length).toBeGreaterThanOrEqual(900);
  });

  it.each([
    ['packets()', 1, 0],
    ['batches({ max: 32 })', 32, 32],
  ] as const)(
    'ack: true, workers consuming with %s SIGKILLed while busy (3 rounds): nothing lost, every duplicate is a job the victim answered but had not acked (at most %s per kill), per-key order kept',
    async (_how, perKill, batches) => {
      const pool = makePool({
        ack: true,
        router: { strategy: 'hash' },
        queue: { capacity: 1 << 21 },
        replies: { capacity: 1 << 20 },
        env: { ...process.env, CT_POOL_BATCHES: String(batches) },
      });
      expect(pool.ack).toBe(true);
      await ready(pool);
      const perRound = 3000;
      const keys = 90;
      const { replies, victims } = await killWorkersWhileBusy(pool, perRound, keys);
      const total = 3 * perRound;
      await until('every packet to be answered', () => new Set(seenOf(replies.items).map((s) => s.seq)).size >= total, 30_000);
      await new Promise((r) => setTimeout(r, 200)); // a late duplicate would have arrived by then
      await replies.stop();

      const seen = seenOf(replies.items);
      expect(seen.every((s) => s.ok)).toBe(true); // nothing corrupt
      const bySeq = new Map<number, Seen[]>();
      for (const s of seen) bySeq.set(s.seq, [...(bySeq.get(s.seq) ?? []), s]);
      expect(bySeq.size).toBe(total); // nothing lost
      const victimSet = new Set(victims);
      const duplicates = [...bySeq].filter(([, list]) => list.length > 1);
      for (const [seq, list] of duplicates) {
        // Answered by a victim that died before its ack was recorded, then by the replacement.
        expect(list, `seq ${seq}`).toHaveLength(2);
        expect(victimSet.has(list[0]?.pid as number), `seq ${seq} first answered by ${list[0]?.pid}`).toBe(true);
        expect(list[1]?.index).toBe(list[0]?.index);
        expect(victimSet.has(list[1]?.pid as number)).toBe(false);
      }
      expect(duplicates.length).toBeLessThanOrEqual(3 * perKill);
      // Per-key order: each key's answers never go back, a redelivered job repeating only itself.
      const byKey = new Map<string, number[]>();
      for (const s of seen) byKey.set(s.key, [...(byKey.get(s.key) ?? []), s.seq]);
      for (const [key, seqs] of byKey) {
        const firsts = seqs.filter((seq, i) => seqs.indexOf(seq) === i);
        expect(firsts, `key ${key}`).toEqual([...firsts].sort((x, y) => x - y));
      }
      for (const q of pool.queues) expect(q.stats().leases).toMatchObject({ redeliverable: 0 });
      expect(pool.queues.reduce((n, q) => n + (q.stats().leases?.deadLeases ?? 0), 0)).toBeGreaterThanOrEqual(duplicates.length);
    },
  );

  it('respawn: false: a SIGKILLed worker is ejected and not replaced; its keys go to the survivor', async () => {
    const pool = makePool({ workers: 2, respawn: false, router: { strategy: 'hash' } });
    await ready(pool);
    const replies = collect(pool.replies as SageQueue);
    let replacedEvents = 0;
    pool.on('worker-replaced', () => replacedEvents++);
    const victim = pool.pids[1] as number;
    const exited = withTimeout(once(pool, 'worker-exit'), 10_000, "'worker-exit'");
    process.kill(victim, 'SIGKILL');
    const [info] = (await exited) as [unknown];
    expect(info).toEqual({ index: 1, pid: victim, code: null, signal: 'SIGKILL' });
    expect(pool.router.stats().connections.find((c) => c.parallelIndex === 1)?.health.state).toBe('ejected');

    for (let seq = 0; seq < 100; seq++) {
      const r = await pool.route({ seq, body: bodyFor(seq) }, `key-${seq % 10}`);
      expect(r.ok).toBe(true);
      expect(r.deliveries[0]?.parallelIndex).toBe(0);
    }
    await until('every reply', () => seenOf(replies.items).length >= 100);
    await replies.stop();
    expect(seenOf(replies.items).every((s) => s.index === 0 && s.ok)).toBe(true);

    await new Promise((r) => setTimeout(r, 500)); // a replacement would have attached by now
    expect(replacedEvents).toBe(0);
    expect(pool.pids[1]).toBe(victim);
    expect(gone(victim)).toBe(true);
    expect(pool.router.stats().connections.find((c) => c.parallelIndex === 1)?.health.state).toBe('ejected');
    expect((pool.queues[1] as SageQueue).stats()).toMatchObject({ enqueued: 0, depth: 0 });

    const name = pool.name;
    pools.splice(pools.indexOf(pool), 1);
    await withTimeout(pool.close({ timeoutMs: 5000 }), 10_000, 'pool.close()');
    expect(segmentsOf(name)).toEqual([]);
  });
});

describe('WorkerPool: ack: true and a slot given up', () => {
  it('respawn: false: the jobs a killed worker left (queued, and the one it held unacked) are routed to the survivor; nothing lost, per-key order kept', async () => {
    const stallFile = path.join(tmpdir(), `${uniq('stall')}.json`);
    writeFileSync(stallFile, JSON.stringify({ index: 1, after: 20 }));
    tmpFiles.push(stallFile);
    const pool = makePool({ workers: 2, ack: true, respawn: false, router: { strategy: 'hash' }, env: { ...process.env, CT_POOL_STALL_FILE: stallFile } });
    await ready(pool);
    const replies = collect(pool.replies as SageQueue);
    const rehomed = withTimeout(once(pool, 'jobs-rehomed'), 15_000, "'jobs-rehomed'");
    const total = 300;
    for (let seq = 0; seq < total; seq++) expect((await pool.route({ seq, body: bodyFor(seq) }, `key-${seq % 30}`)).ok).toBe(true);
    // Worker 1 answers 20 of its packets, then stops inside its loop body (the 21st unacked).
    await until('worker 1 to stall', () => replies.items.some((r) => r.kind === 'stalled'));
    const victim = pool.pids[1] as number;
    const leftInQueue = (pool.queues[1] as SageQueue).stats().depth;
    expect(leftInQueue).toBeGreaterThan(0);
    process.kill(victim, 'SIGKILL');
    const [info] = (await rehomed) as [{ index: number; rehomed: number; failed: number }];
    // The queued ones, plus the one it held (answered but never acked: its body never finished).
    expect(info).toEqual({ index: 1, rehomed: leftInQueue + 1, failed: 0 });
    await until('every packet to be answered', () => new Set(seenOf(replies.items).map((s) => s.seq)).size >= total, 15_000);
    await replies.stop();
    const seen = seenOf(replies.items);
    expect(seen.every((s) => s.ok)).toBe(true);
    expect(new Set(seen.map((s) => s.seq)).size).toBe(total); // nothing lost
    const twice = seen.length - total;
    expect(twice).toBeLessThanOrEqual(1); // at most the job the victim held, answered before it stalled
    for (const s of seen.filter((x) => x.pid !== victim)) expect(s.index).toBe(0);
    const byKey = new Map<string, number[]>();
    for (const s of seen) byKey.set(s.key, [...(byKey.get(s.key) ?? []), s.seq]);
    for (const [key, seqs] of byKey) {
      const firsts = seqs.filter((seq, i) => seqs.indexOf(seq) === i);
      expect(firsts, `key ${key}`).toEqual([...firsts].sort((x, y) => x - y));
    }
    expect((pool.queues[1] as SageQueue).stats()).toMatchObject({ depth: 0, leases: expect.objectContaining({ redeliverable: 0 }) });
  });
});

describe('WorkerPool: lifetime', () => {
  it('pool.close() with packets in flight waits for every worker to exit and leaves no segment behind', async () => {
    const pool = makePool({ workers: 2, router: { strategy: 'consistent_hash' } });
    await ready(pool);
    const pids = pool.pids as number[];
    const name = pool.name;
    expect(segmentsOf(name).sort()).toEqual([`sageq.${name}.replies`, `sageq.${name}.w0`, `sageq.${name}.w1`]);
    const replies = collect(pool.replies as SageQueue);
    for (let seq = 0; seq < 200; seq++) expect((await pool.route({ seq, body: bodyFor(seq) }, `k${seq % 20}`)).ok).toBe(true);
    await until('every reply', () => seenOf(replies.items).length >= 200);
    for (let seq = 200; seq < 260; seq++) void pool.route({ seq, body: bodyFor(seq) }, `k${seq % 20}`);

    pools.splice(pools.indexOf(pool), 1);
    await withTimeout(pool.close({ timeoutMs: 5000 }), 10_000, 'pool.close()');
    await replies.stop();
    expect(segmentsOf(name)).toEqual([]);
    expect(SageQueue.list().filter((n) => n.startsWith(`${name}.`))).toEqual([]);
    for (const pid of pids) expect(gone(pid)).toBe(true);
    expect(seenOf(replies.items).every((s) => s.ok)).toBe(true);
  });

});

// ------------------------------------------------------------------------------------------------
// A SIGKILLed primary, in a private /dev/shm: a mount namespace with its own tmpfs, held open by a
// `sleep`; the primary (test/fixtures/pool-primary.cjs) and the CLI enter it with nsenter, which
// execs, so every pid is the real one.

const canSandbox =
  spawnSync('unshare', ['-m', '--propagation', 'private', 'sh', '-c', 'mount -t tmpfs tmpfs /dev/shm'], { stdio: 'ignore' }).status === 0 &&
  spawnSync('nsenter', ['--version'], { stdio: 'ignore' }).status === 0;
if (!canSandbox) console.warn('cluster.test.ts: unshare/nsenter unavailable: the SIGKILLed-primary tests (which run gc --yes) are skipped');

function output(child: ChildProcess): { text: string } {
  const o = { text: '' };
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (o.text += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (o.text += d));
  return o;
}

interface Sandboxed {
  /** Runs node with these arguments inside the sandbox. */
  node(args: string[]): ChildProcess;
  cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }>;
}

async function sandbox(): Promise<Sandboxed> {
  const holder = spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', 'mount -t tmpfs -o size=32m tmpfs /dev/shm && echo ready && exec sleep 3600'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(holder);
  const holderOut = output(holder);
  await until('the sandbox', () => holderOut.text.includes('ready'));
  const node = (args: string[]): ChildProcess => {
    const c = spawn('nsenter', ['-t', String(holder.pid), '-m', '--', process.execPath, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(c);
    return c;
  };
  return {
    node,
    async cli(args) {
      const c = node([cliPath, ...args]);
      let stdout = '';
      let stderr = '';
      c.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
      c.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      const [code] = (await withTimeout(once(c, 'close'), 20_000, `sage-queue ${args.join(' ')}`)) as [number | null];
      return { code, stdout, stderr };
    },
  };
}

interface PrimaryReport {
  pid: number;
  workers: number[];
  queues: string[];
  answered: number;
  ok: boolean;
  replies: { depth: number; spaceWaiters: number };
}

/** Starts pool-primary.cjs in the sandbox and waits for its report. */
async function startPrimary(ns: Sandboxed, poolName: string, mode: 'read' | 'noread'): Promise<{ primary: ChildProcess; report: PrimaryReport }> {
  const primary = ns.node([primaryScript, poolName, mode]);
  const out = output(primary);
  await until('the primary to report', () => /^ready /m.test(out.text) || primary.exitCode !== null, 20_000);
  const line = /^ready (.*)$/m.exec(out.text);
  expect(line, out.text).not.toBeNull();
  const report = JSON.parse(line?.[1] as string) as PrimaryReport;
  for (const pid of report.workers) workerPids.add(pid);
  expect(report.pid).toBe(primary.pid);
  expect(report.workers).toHaveLength(2);
  expect([...report.queues].sort()).toEqual([`${poolName}.replies`, `${poolName}.w0`, `${poolName}.w1`]);
  return { primary, report };
}

type View = { name: string; alive: number; dead: number; stats: { processes: Array<{ pid: number; alive: boolean }> } };

describe('WorkerPool: the primary is SIGKILLed (in a private /dev/shm)', () => {
  (canSandbox ? it : it.skip)(
    'its idle workers exit by themselves, and `sage-queue gc --yes` then removes the pool segments',
    async () => {
      const ns = await sandbox();
      const poolName = uniq('orphaned');
      const { primary, report } = await startPrimary(ns, poolName, 'read');
      expect(report).toMatchObject({ answered: 40, ok: true });
      const queues = [...report.queues].sort();

      const before = await ns.cli(['ls', '--json']);
      expect(before.code, before.stderr).toBe(0);
      const live = JSON.parse(before.stdout) as View[];
      expect(live.map((v) => v.name)).toEqual(queues);
      for (const v of live) expect(v.alive).toBeGreaterThanOrEqual(2); // primary + worker(s)

      primary.kill('SIGKILL');
      await until('every worker to exit', () => report.workers.every(gone), 10_000);

      const after = await ns.cli(['ls']);
      expect(after.code, after.stderr).toBe(0);
      const rows = after.stdout.split('\n').slice(1).filter((l) => l !== '');
      expect(rows).toHaveLength(3);
      for (const row of rows) expect(row).toMatch(/ abandoned /);
      const afterJson = JSON.parse((await ns.cli(['ls', '--json'])).stdout) as View[];
      for (const v of afterJson) {
        expect(v.alive).toBe(0);
        expect(v.stats.processes.map((p) => p.pid)).toContain(report.pid);
      }

      const gc = await ns.cli(['gc', '--yes', '--json']);
      expect(gc.code, gc.stderr).toBe(0);
      expect(JSON.parse(gc.stdout)).toEqual({ removed: queues, failed: [], temps: [] });
      const empty = await ns.cli(['ls', '--json']);
      expect(JSON.parse(empty.stdout)).toEqual([]);
    },
  );

  (canSandbox ? it : it.skip)(
    'workers blocked answering on a full reply queue also exit by themselves (no orphans), so gc --yes can remove the segments',
    async () => {
      const ns = await sandbox();
      const poolName = uniq('blocked');
      const { primary, report } = await startPrimary(ns, poolName, 'noread');
      expect(report.replies.spaceWaiters).toBeGreaterThanOrEqual(2); // both workers wait in replies.putAsync

      primary.kill('SIGKILL');
      await until('every worker to exit', () => report.workers.every(gone), 5_000).catch((e: Error) => {
        throw new Error(`${e.message}: still running ${report.workers.filter((pid) => !gone(pid)).join(', ')} (orphans)`);
      });
      const gc = await ns.cli(['gc', '--yes', '--json']);
      expect(gc.code, gc.stderr).toBe(0);
      expect(JSON.parse(gc.stdout)).toEqual({ removed: [...report.queues].sort(), failed: [], temps: [] });
    },
  );
});
