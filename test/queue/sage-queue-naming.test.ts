/**
 * What a queue name refers to. Creation is atomic: the segment is built under a private temporary
 * name (`sageq-tmp.<hex>.<queue>`) and linked into place without replacing, so a name only ever
 * refers to a complete queue (concurrent creators, a `gc` loop and openers never see a half-made
 * one), and a creator killed mid-creation leaves only a temporary name, which `gc` removes. And a
 * handle's destroy() removes the name only while it still refers to the queue that handle opened.
 *
 * Real processes (`node -e` children loading the built package); every name, temporary file and
 * child is removed/killed afterwards, also when a test fails.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';

import { SageQueue, SharedMemoryError } from '../../lib/index';
import { testAddonEnv } from '../helpers/test-addon';

const DIST = path.resolve(__dirname, '..', '..', 'dist', 'index.js');
const TAG = `naming-${process.pid}-`;
const prefixes = new Set<string>();
const handles = new Set<SageQueue>();
const children = new Set<ChildProcess>();

function qprefix(tag: string): string {
  const p = `${TAG}${tag}-${randomBytes(3).toString('hex')}`;
  prefixes.add(p);
  return p;
}

function track<T extends SageQueue>(q: T): T {
  handles.add(q);
  return q;
}

/** Our files in /dev/shm: names and temporary names of queues starting with `prefix`. */
function ours(prefix: string): { names: string[]; temps: string[] } {
  const files = readdirSync('/dev/shm');
  return {
    names: files.filter((f) => f.startsWith(`sageq.${prefix}`)),
    temps: files.filter((f) => f.startsWith('sageq-tmp.') && f.slice('sageq-tmp.'.length + 17).startsWith(prefix)),
  };
}

afterEach(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  children.clear();
  for (const q of handles) q.release();
  handles.clear();
  for (const p of prefixes) {
    const { names, temps } = ours(p);
    for (const f of [...names, ...temps]) rmSync(`/dev/shm/${f}`, { force: true });
  }
  prefixes.clear();
});

afterAll(() => {
  expect(readdirSync('/dev/shm').filter((f) => f.includes(TAG))).toEqual([]);
});

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** `node -e code` with SAGE_DIST set; the promise resolves on exit, `child` is the process. */
function runNode(code: string, env: NodeJS.ProcessEnv = {}, timeoutMs = 60_000): Promise<Run> & { child: ChildProcess } {
  const child = spawn(process.execPath, ['-e', code], { env: { ...process.env, SAGE_DIST: DIST, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const p = new Promise<Run>((resolve) =>
    child.on('exit', (c, s) => {
      clearTimeout(timer);
      resolve({ code: c, signal: s, stdout, stderr });
    }),
  ) as Promise<Run> & { child: ChildProcess };
  p.child = child;
  return p;
}

function lastJson<T>(run: Run): T {
  const line = run.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as T;
  } catch {
    throw new Error(`child printed no JSON (exit ${run.code}, ${run.signal}):\nstdout: ${run.stdout}\nstderr: ${run.stderr}`);
  }
}

describe('atomic creation: a name only ever refers to a complete queue', () => {
  it('4 processes racing new SageQueue(name) over the same 400 fresh names never fail, and each name ends up one queue', async () => {
    const prefix = qprefix('race');
    const N = 400;
    const code = `
      const { SageQueue } = require(process.env.SAGE_DIST);
      const start = Number(process.env.START);
      while (Date.now() < start) {} // line up with the other racers
      const failures = {};
      const nonces = [];
      for (let i = 0; i < ${N}; i++) {
        try {
          const q = new SageQueue(process.env.P + '-' + i, { capacity: 4096 });
          nonces.push(q.stats().nonce);
          q.release();
        } catch (e) { failures[e.code] = (failures[e.code] || 0) + 1; nonces.push(null); }
      }
      console.log(JSON.stringify({ failures, nonces }));`;
    const start = String(Date.now() + 1500);
    const runs = await Promise.all([0, 1, 2, 3].map(() => runNode(code, { P: prefix, START: start })));
    const outs = runs.map((r) => lastJson<{ failures: Record<string, number>; nonces: Array<string | null> }>(r));
    expect(outs.map((o) => o.failures)).toEqual([{}, {}, {}, {}]);
    // Every racer attached to the one queue that won each name.
    for (let i = 0; i < N; i++) {
      const seen = new Set(outs.map((o) => o.nonces[i]));
      expect(seen.size, `name ${i}`).toBe(1);
    }
    expect(ours(prefix).names).toHaveLength(N);
    expect(ours(prefix).temps).toEqual([]);
  }, 90_000);

  // The watcher follows the creator name by name, looking at each one as soon as it appears (a
  // tight loop on the next name: the moment a half-made segment would be visible).
  const creatorCode = (n: number): string => `
    const { SageQueue } = require(process.env.SAGE_DIST);
    const handles = [];
    const start = Number(process.env.START);
    while (Date.now() < start) {}
    for (let i = 0; i < ${n}; i++) handles.push(new SageQueue(process.env.P + '-' + i, { capacity: 4096 }));
    const fs = require('fs');
    const missing = [];
    for (let i = 0; i < ${n}; i++) if (!fs.existsSync('/dev/shm/sageq.' + process.env.P + '-' + i)) missing.push(i);
    for (const q of handles) q.release();
    console.log(JSON.stringify({ missing }));`;

  it('gc following a creator process (inspecting each name the moment it appears) never takes a fresh queue for garbage nor removes one', async () => {
    const prefix = qprefix('gcloop');
    const N = 1500;
    const start = String(Date.now() + 1000);
    const creator = runNode(creatorCode(N), { P: prefix, START: start });
    const watcher = runNode(`
      const { SageQueue } = require(process.env.SAGE_DIST);
      const verdicts = {};
      const removed = [];
      const deadline = Date.now() + 60000;
      for (let i = 0; i < ${N} && Date.now() < deadline; ) {
        const name = process.env.P + '-' + i;
        const v = SageQueue.inspect(name);
        if (v.error && v.error.code === 'ERR_QUEUE_NOT_FOUND') continue;
        const key = v.error ? v.error.code : v.liveness;
        verdicts[key] = (verdicts[key] || 0) + 1;
        // What gc would do with it (gc inspects it once more before removing).
        if (v.error) removed.push(...SageQueue.gc({ only: [name] }).removed);
        i++;
      }
      console.log(JSON.stringify({ verdicts, removed }));`, { P: prefix, START: start });
    const [c, w] = await Promise.all([creator, watcher]);
    expect(lastJson(c)).toEqual({ missing: [] });
    expect(lastJson(w)).toEqual({ verdicts: { alive: N }, removed: [] });
  }, 120_000);

  it('an opener following a creator process, with initWaitMs 1000 or 0, never sees ERR_QUEUE_NOT_INITIALISED or ERR_QUEUE_INITIALISING', async () => {
    const prefix = qprefix('follow');
    const N = 1500;
    const start = String(Date.now() + 1000);
    const creator = runNode(creatorCode(N), { P: prefix, START: start });
    const opener = runNode(`
      const { SageQueue } = require(process.env.SAGE_DIST);
      const errors = {};
      let opened = 0;
      const deadline = Date.now() + 60000;
      for (let i = 0; i < ${N} && Date.now() < deadline; ) {
        // Even without waiting (initWaitMs 0) there is never a half-made queue to wait for.
        try { SageQueue.open(process.env.P + '-' + i, { initWaitMs: i % 2 ? 0 : 1000 }).release(); opened++; i++; }
        catch (e) { if (e.code !== 'ERR_QUEUE_NOT_FOUND') { errors[e.code] = (errors[e.code] || 0) + 1; i++; } }
      }
      console.log(JSON.stringify({ opened, errors }));`, { P: prefix, START: start });
    const [c, o] = await Promise.all([creator, opener]);
    expect(lastJson(c)).toEqual({ missing: [] });
    expect(lastJson(o)).toEqual({ opened: N, errors: {} });
  }, 120_000);

  it('a creator SIGKILLed mid-creation (test hook) leaves no name, only a temporary name that list() ignores and gc removes; the name can then be created', async () => {
    const prefix = qprefix('killed');
    const name = `${prefix}-q`;
    const creator = runNode(
      `
      require(process.env.SAGE_QUEUE_NATIVE_ADDON).setTestHook('mid-create');
      const { SageQueue } = require(process.env.SAGE_DIST);
      SageQueue.create(process.env.Q, { capacity: 4096 });
      console.log('created?!');`,
      { ...testAddonEnv(), Q: name },
    );
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the creator never reached the mid-create hook')), 20_000);
      let text = '';
      creator.child.stderr?.on('data', (d: Buffer | string) => {
        text += String(d);
        if (text.includes('SAGE_HOOK mid-create')) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    creator.child.kill('SIGKILL');
    const run = await creator;
    expect(run.signal).toBe('SIGKILL');

    const left = ours(prefix);
    expect(left.names).toEqual([]);
    expect(left.temps).toHaveLength(1);
    expect(SageQueue.list()).not.toContain(name);
    expect(() => SageQueue.open(name)).toThrow(expect.objectContaining({ code: 'ERR_QUEUE_NOT_FOUND' }));

    expect(SageQueue.gc({ only: [name], dryRun: true }).temps).toEqual(left.temps);
    expect(ours(prefix).temps).toEqual(left.temps);
    expect(SageQueue.gc({ only: [name] })).toMatchObject({ removed: [], temps: left.temps });
    expect(ours(prefix)).toEqual({ names: [], temps: [] });

    const q = track(SageQueue.create<string>(name, { codec: 'json' }));
    q.put('reborn');
    expect(q.get(false)).toBe('reborn');
  }, 30_000);
});

describe("destroy() on a handle removes only the queue it opened", () => {
  it('a stale handle whose name was removed and re-created by another process leaves the new queue alone (ERR_QUEUE_REPLACED) and is released', async () => {
    const prefix = qprefix('replaced');
    const name = `${prefix}-q`;
    const stale = SageQueue.create<string>(name, { codec: 'json' });
    // Another process removes the queue and creates a new one under the same name, then exits.
    const other = await runNode(`
      const { SageQueue } = require(process.env.SAGE_DIST);
      SageQueue.destroy(process.env.Q);
      const q = SageQueue.create(process.env.Q, { codec: 'json' });
      q.put('theirs');
      q.release();
      console.log(JSON.stringify({ ok: true }));`, { Q: name });
    expect(lastJson(other)).toEqual({ ok: true });

    let err: unknown;
    try {
      stale.destroy();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SharedMemoryError);
    expect(err).toMatchObject({ code: 'ERR_QUEUE_REPLACED', queueName: name });
    expect(stale.released).toBe(true);
    const theirs = track(SageQueue.open<string>(name));
    expect(theirs.get(false)).toBe('theirs'); // untouched

    // Their own handle's destroy() removes it; a name already gone is not an error.
    const again = SageQueue.open<string>(name);
    again.destroy();
    expect(SageQueue.list()).not.toContain(name);
    theirs.destroy(); // gone already: a no-op
    expect(theirs.released).toBe(true);
  }, 30_000);
});
