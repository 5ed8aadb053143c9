/**
 * WorkerPool's lifecycle with real forked workers: ready() with a timeout and with an
 * AbortSignal (a worker script that never joins), the crash-loop limit (a worker script that
 * exits at once), the lifecycle events with their payloads when a worker is SIGKILLed and
 * replaced, stats(), and Symbol.asyncDispose (workers gone, segments removed).
 */
import { readdirSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';

import { PoolNotReadyError, SageQueue, WorkerPool } from '../../lib/index';
import type { WorkerCrashLoopInfo, WorkerExitInfo, WorkerPoolOptions, WorkerReadyInfo, WorkerStartInfo } from '../../lib/index';

const fixtures = path.join(__dirname, '..', 'fixtures');
const prefix = `ct-${process.pid}-`;
let counter = 0;
const uniq = (tag: string): string => `${prefix}${tag}-${++counter}`;

const pools: WorkerPool[] = [];
const pids = new Set<number>();

function makePool(options: Partial<WorkerPoolOptions> & { script: string }): WorkerPool {
  const pool = new WorkerPool({ workers: 2, name: uniq('pool'), queue: { capacity: 1 << 16 }, execArgv: [], ...options });
  pools.push(pool);
  pool.on('worker-start', ({ pid }) => pids.add(pid));
  return pool;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

afterEach(async () => {
  for (const pool of pools.splice(0)) await pool.close({ timeoutMs: 1000 }).catch(() => undefined);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  pids.clear();
  for (const f of readdirSync('/dev/shm')) if (f.startsWith(`sageq.${prefix}`)) SageQueue.destroy(f.slice('sageq.'.length));
});

afterAll(() => {
  expect(readdirSync('/dev/shm').filter((f) => f.startsWith(`sageq.${prefix}`))).toEqual([]);
});

describe('WorkerPool.ready()', () => {
  it('rejects with PoolNotReadyError (ERR_POOL_NOT_READY, naming every missing worker) after timeoutMs when the workers never join', async () => {
    const pool = makePool({ script: path.join(fixtures, 'pool-never-joins.cjs') });
    const started = Date.now();
    const err = await pool.ready({ timeoutMs: 300 }).then(
      () => null,
      (e: unknown) => e,
    );
    const elapsed = Date.now() - started;
    expect(err).toBeInstanceOf(PoolNotReadyError);
    expect(err).toMatchObject({ code: 'ERR_POOL_NOT_READY', pool: pool.name, timeoutMs: 300, notReady: [0, 1], pids: pool.pids });
    expect(elapsed).toBeGreaterThanOrEqual(290);
    expect(elapsed).toBeLessThan(5000);
    expect(pool.stats()).toMatchObject({ workers: 2, ready: 0 });
  });

  it('rejects with signal.reason when the signal aborts (and at once when it already has)', async () => {
    const pool = makePool({ script: path.join(fixtures, 'pool-never-joins.cjs') });
    const ac = new AbortController();
    const reason = new Error('stop waiting');
    setTimeout(() => ac.abort(reason), 100);
    await expect(pool.ready({ signal: ac.signal })).rejects.toBe(reason);
    await expect(pool.ready({ signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
  });

  it('validates its options and rejects with ERR_POOL_CLOSED after close()', async () => {
    const pool = makePool({ script: path.join(fixtures, 'pool-never-joins.cjs'), workers: 1 });
    await expect(pool.ready({ timeoutMs: -1 })).rejects.toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
    await expect(pool.ready({ timeout: 5 } as never)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    await expect(pool.ready({ signal: 'no' } as never)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    await pool.close({ timeoutMs: 500 });
    await expect(pool.ready()).rejects.toMatchObject({ code: 'ERR_POOL_CLOSED' });
  });
});

describe('WorkerPool crash-loop limit', () => {
  it('a worker that exits at once is restarted maxRestarts times, then given up with a worker-crash-loop event', async () => {
    const pool = makePool({ script: path.join(fixtures, 'pool-exits-at-once.cjs'), workers: 1, maxRestarts: 3, restartWindowMs: 60_000 });
    const starts: WorkerStartInfo[] = [];
    const exits: WorkerExitInfo[] = [];
    const loops: WorkerCrashLoopInfo[] = [];
    pool.on('worker-start', (i) => starts.push(i));
    pool.on('worker-exit', (i) => exits.push(i));
    pool.on('worker-crash-loop', (i) => loops.push(i));
    const firstPid = pool.pids[0];
    await until('the crash-loop event', () => loops.length > 0, 15_000);
    // the first start happened in the constructor, before the listener: 3 restarts seen here
    expect(starts.map((s) => s.restart)).toEqual([1, 2, 3]);
    expect(exits).toHaveLength(4);
    expect(exits[0]).toEqual({ index: 0, pid: firstPid, code: 7, signal: null });
    for (const e of exits) expect(e).toMatchObject({ index: 0, code: 7, signal: null });
    expect(loops).toEqual([{ index: 0, pid: exits[3]?.pid, restarts: 3, windowMs: 60_000, code: 7, signal: null }]);
    // given up: nothing more is started
    await new Promise((r) => setTimeout(r, 1200));
    expect(starts).toHaveLength(3);
    expect(pool.stats()).toMatchObject({ workers: 1, ready: 0, exits: 4, restarts: 3, crashLoops: 1, slots: [{ index: 0, state: 'gave-up', restarts: 3 }] });
    await expect(pool.ready()).rejects.toMatchObject({ code: 'ERR_WORKER_EXITED' });
  });

  it('maxRestarts: 0 gives up at the first exit; bad values are typed errors', async () => {
    const pool = makePool({ script: path.join(fixtures, 'pool-exits-at-once.cjs'), workers: 1, maxRestarts: 0 });
    const loops: WorkerCrashLoopInfo[] = [];
    pool.on('worker-crash-loop', (i) => loops.push(i));
    await until('the crash-loop event', () => loops.length > 0);
    expect(loops[0]).toMatchObject({ index: 0, restarts: 0, code: 7 });
    expect(() => makePool({ script: 'x.js', maxRestarts: -1 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => makePool({ script: 'x.js', maxRestarts: '3' as never })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => makePool({ script: 'x.js', restartWindowMs: 0 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
  });
});

describe('WorkerPool lifecycle events and disposal', () => {
  it('a SIGKILLed worker: worker-exit (pid, signal), worker-start (restart 1), worker-ready and worker-replaced with the new pid', async () => {
    const pool = makePool({ script: path.join(fixtures, 'pool-worker.cjs'), replies: true });
    const readies: WorkerReadyInfo[] = [];
    pool.on('worker-ready', (i) => readies.push(i));
    await pool.ready({ timeoutMs: 15_000 });
    expect(readies.map((r) => r.index).sort()).toEqual([0, 1]);
    expect(readies.map((r) => r.pid).sort()).toEqual([...pool.pids].sort());
    const exits: WorkerExitInfo[] = [];
    const starts: WorkerStartInfo[] = [];
    const replaced: WorkerReadyInfo[] = [];
    pool.on('worker-exit', (i) => exits.push(i));
    pool.on('worker-start', (i) => starts.push(i));
    pool.on('worker-replaced', (i) => replaced.push(i));
    const victim = pool.pids[1] as number;
    process.kill(victim, 'SIGKILL');
    await until('the replacement', () => replaced.length > 0);
    expect(exits).toEqual([{ index: 1, pid: victim, code: null, signal: 'SIGKILL' }]);
    expect(starts).toEqual([{ index: 1, pid: pool.pids[1], restart: 1 }]);
    expect(replaced).toEqual([{ index: 1, pid: pool.pids[1] }]);
    expect(readies.at(-1)).toEqual({ index: 1, pid: pool.pids[1] });
    expect(pool.stats()).toMatchObject({ workers: 2, ready: 2, exits: 1, restarts: 1, crashLoops: 0 });
  });

  it('Symbol.asyncDispose closes the pool: workers exit, every segment of the pool is removed', async () => {
    const pool = makePool({ script: path.join(fixtures, 'pool-worker.cjs'), replies: true });
    await pool.ready({ timeoutMs: 15_000 });
    const workerPids = pool.pids as number[];
    expect(readdirSync('/dev/shm').filter((f) => f.startsWith(`sageq.${pool.name}.`))).toHaveLength(3);
    await pool[Symbol.asyncDispose]();
    expect(readdirSync('/dev/shm').filter((f) => f.startsWith(`sageq.${pool.name}.`))).toEqual([]);
    await until('the workers to be gone', () => workerPids.every((pid) => !isAlive(pid)));
  });
});
