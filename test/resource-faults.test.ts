/**
 * Resource faults (issue 6): /dev/shm full at create time (a 256 KiB tmpfs in a private mount
 * namespace), the segment unlinked while in use, permission denied on attach (an opener running as
 * user nobody), a segment left by a creator killed during creation, thousands of queues created and
 * destroyed (no leaked descriptor, mapping or thread), and processes that exit with waits pending.
 * Children are real processes (`node -e`, under unshare/setpriv where needed); every segment, child
 * and mount is gone after each test, whether it passed or not.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { SageQueue, SharedMemoryError } from '../lib/index';
import { readablePackageCopy } from './support/readable-package';
import type { ReadablePackage } from './support/readable-package';

const REPO = path.resolve(__dirname, '..');
const DIST = path.join(REPO, 'dist', 'index.js');
const IS_ROOT = typeof process.getuid === 'function' && process.getuid() === 0;

function works(cmd: string, args: string[]): boolean {
  try {
    return spawnSync(cmd, args, { stdio: 'ignore', timeout: 10_000 }).status === 0;
  } catch {
    return false;
  }
}
const CAN_UNSHARE = IS_ROOT && works('unshare', ['-m', 'sh', '-c', 'mount -t tmpfs -o size=64k tmpfs /dev/shm']);
const CAN_SETPRIV = IS_ROOT && works('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'true']);
const CAN_FLOCK = works('flock', ['--version']);

// --- cleanup registry -----------------------------------------------------------------------------

const names = new Set<string>();
const handles = new Set<SageQueue>();
const children = new Set<ChildProcess>();

function qname(tag: string): string {
  const n = `rf-${process.pid}-${tag}-${randomBytes(3).toString('hex')}`;
  names.add(n);
  return n;
}

function track<T extends SageQueue>(q: T): T {
  handles.add(q);
  return q;
}

afterEach(() => {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null) {
      try {
        if (c.pid !== undefined) process.kill(-c.pid, 'SIGKILL'); // detached: its whole group
      } catch {
        c.kill('SIGKILL');
      }
    }
  }
  children.clear();
  for (const q of handles) q.release();
  handles.clear();
  for (const n of names) {
    try {
      SageQueue.destroy(n);
    } catch {
      // not ours to remove (e.g. a test left it owned by another user): fall through
    }
  }
  names.clear();
});

afterAll(() => {
  const left = readdirSync('/dev/shm').filter((f) => f.startsWith(`sageq.rf-${process.pid}-`));
  expect(left).toEqual([]);
});

// --- children -----------------------------------------------------------------------------------

interface Run {
  pid: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs `node -e code` (after `prefix`, e.g. setpriv ...) with SAGE_DIST set; resolves on exit. */
function runNode(
  code: string,
  opts: { prefix?: string[]; env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {},
): Promise<Run> & { child: ChildProcess } {
  const prefix = opts.prefix ?? [];
  const argv = [...prefix, process.execPath, '-e', code];
  const child = spawn(argv[0] as string, argv.slice(1), {
    cwd: opts.cwd,
    env: { ...process.env, SAGE_DIST: DIST, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  children.add(child);
  const started = Date.now();
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 20_000);
  const p = new Promise<Run>((resolve) => {
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ pid: child.pid as number, code, signal, stdout, stderr, ms: Date.now() - started });
    });
  }) as Promise<Run> & { child: ChildProcess };
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

/** Takes everything out of q (raw codec) and returns it as strings. */
function drain(q: SageQueue<Buffer | string>): string[] {
  const out: string[] = [];
  for (;;) {
    try {
      out.push(String(q.getNowait()));
    } catch (e) {
      if ((e as { code?: string }).code === 'ERR_QUEUE_EMPTY') return out;
      throw e;
    }
  }
}

function errorOf(fn: () => unknown): { code?: string; errno?: number; name?: string; message?: string } {
  try {
    fn();
  } catch (e) {
    return e as { code?: string };
  }
  throw new Error('expected an error');
}

// ------------------------------------------------------------------------------------------------

describe('/dev/shm full at create time (256 KiB tmpfs in a private mount namespace)', () => {
  it.skipIf(!CAN_UNSHARE)(
    'a queue that does not fit fails at create with ERR_NO_SHM_SPACE and leaves no file; queues that fit work, and one created before the tmpfs filled up uses its whole ring (no SIGBUS)',
    async () => {
      const code = `
        const { SageQueue } = require(process.env.SAGE_DIST);
        const fs = require('fs');
        const out = {};
        const err = (e) => ({ code: e.code, name: e.name, errno: e.errno, message: e.message });
        const reserved = SageQueue.create('reserved', { capacity: 64 * 1024, codec: 'raw' });
        try { SageQueue.create('big', { capacity: 1 << 20 }); out.big = 'created'; } catch (e) { out.big = err(e); }
        out.afterBig = fs.readdirSync('/dev/shm');
        const fill = [];
        try { for (;;) fill.push(SageQueue.create('fill' + fill.length, { capacity: 4096 })); } catch (e) { out.fill = { created: fill.length, error: err(e) }; }
        out.fsFull = fs.statfsSync('/dev/shm').bavail;
        // Every page of the reserved ring is written now that the tmpfs is full: fallocate at create
        // time means no page fault can fail (SIGBUS) here.
        let moved = 0;
        const msg = Buffer.alloc(4000, 7);
        for (let round = 0; round < 40; round++) {
          while (true) { try { reserved.putNowait(msg); moved++; } catch { break; } }
          while (true) { try { const m = reserved.getNowait(); if (!m.equals(msg)) throw new Error('corrupt'); } catch (e) { if (e.code === 'ERR_QUEUE_EMPTY') break; throw e; } }
        }
        out.moved = moved;
        for (const q of fill) q.destroy();
        reserved.destroy();
        out.end = fs.readdirSync('/dev/shm');
        console.log(JSON.stringify(out));`;
      const run = await runNode(code, {
        prefix: ['unshare', '-m', 'sh', '-c', 'mount -t tmpfs -o size=256k tmpfs /dev/shm && exec "$0" "$@"'],
      });
      const out = lastJson<{
        big: { code: string; name: string; errno: number };
        afterBig: string[];
        fill: { created: number; error: { code: string } };
        fsFull: number;
        moved: number;
        end: string[];
      }>(run);
      expect(run.code, run.stderr).toBe(0);
      expect(out.big).toMatchObject({ code: 'ERR_NO_SHM_SPACE', name: 'SharedMemoryError' });
      expect(out.afterBig).toEqual(['sageq.reserved']); // the failed create removed its file
      expect(out.fill.created).toBeGreaterThanOrEqual(3);
      expect(out.fill.error.code).toBe('ERR_NO_SHM_SPACE');
      expect(out.moved).toBeGreaterThan(40 * 10);
      expect(out.end).toEqual([]);
      // The tmpfs was private to the child: the real /dev/shm never saw these names.
      expect(existsSync('/dev/shm/sageq.reserved')).toBe(false);
      expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toMatch(/ \/dev\/shm .*size=256k/);
    },
  );
});

describe('the segment unlinked while in use', () => {
  it('attached handles keep working on the unlinked segment; the name opens no more, and can be created afresh as an independent queue', () => {
    const name = qname('unlinked');
    const a = track(SageQueue.create<string>(name, { codec: 'json' }));
    const b = track(SageQueue.open<string>(name));
    a.put('before');
    expect(SageQueue.destroy(name)).toBe(true);
    expect(existsSync(`/dev/shm/sageq.${name}`)).toBe(false);
    // Both handles still share the (now nameless) segment.
    b.put('after');
    expect(a.get(false)).toBe('before');
    expect(a.get(false)).toBe('after');
    expect(b.stats().processes).toHaveLength(2);
    // The name is free: open fails, destroy says it was not there, create makes a new queue.
    expect(errorOf(() => SageQueue.open(name))).toMatchObject({ code: 'ERR_QUEUE_NOT_FOUND', name: 'SharedMemoryError' });
    expect(SageQueue.destroy(name)).toBe(false);
    const fresh = track(SageQueue.create<string>(name, { codec: 'json' }));
    fresh.put('fresh');
    expect(a.qsize()).toBe(0);
    b.put('old');
    expect(fresh.qsize()).toBe(1);
    expect(fresh.get(false)).toBe('fresh');
    expect(a.get(false)).toBe('old');
    expect(SageQueue.list()).toContain(name);
  });

  it('removing the file behind the library (rm /dev/shm/sageq.*) is the same: no crash, the handle works until released', async () => {
    const name = qname('rm');
    const q = track(SageQueue.create<string>(name, { codec: 'json' }));
    const waiting = q.getAsync({ timeoutMs: 5000 });
    spawnSync('rm', ['-f', `/dev/shm/sageq.${name}`]);
    q.put('still here');
    await expect(waiting).resolves.toBe('still here');
    q.release();
    expect(q.released).toBe(true);
    expect(existsSync(`/dev/shm/sageq.${name}`)).toBe(false);
  });
});

describe('permission denied on attach (an opener running as user nobody)', () => {
  // nobody loads the package from a world-readable copy in a temp folder, never from the checkout,
  // which may live where nobody cannot read (a mktemp -d folder, a home directory).
  let pkg: ReadablePackage | undefined;
  beforeAll(() => {
    if (CAN_SETPRIV) pkg = readablePackageCopy(REPO);
  });
  afterAll(() => pkg?.dispose());

  it.skipIf(!CAN_SETPRIV)(
    "mode 0600: nobody's open, open-or-create and destroy fail with ERR_PERMISSION_DENIED and the queue is unchanged; mode 0666 (allowSharedMode on both sides): nobody can attach and put",
    async () => {
      const { dist, dir } = pkg as ReadablePackage;
      const closed = qname('perm600');
      const q = track(SageQueue.create<string>(closed, { codec: 'json', mode: 0o600 }));
      q.put('mine');
      const code = `
        const { SageQueue } = require(process.env.SAGE_DIST);
        const err = (f) => { try { f(); return 'no error'; } catch (e) { return { code: e.code, name: e.name, errno: e.errno }; } };
        const name = process.env.Q;
        console.log(JSON.stringify({
          uid: process.getuid(),
          open: err(() => SageQueue.open(name)),
          openOrCreate: err(() => new SageQueue(name)),
          destroy: err(() => SageQueue.destroy(name)),
        }));`;
      const nobody = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'];
      const run = await runNode(code, { prefix: nobody, cwd: dir, env: { Q: closed, SAGE_DIST: dist } });
      const out = lastJson<Record<string, unknown>>(run);
      expect(out.uid).toBe(65534);
      expect(out.open).toEqual({ code: 'ERR_PERMISSION_DENIED', name: 'SharedMemoryError', errno: 13 });
      expect(out.openOrCreate).toMatchObject({ code: 'ERR_PERMISSION_DENIED', name: 'SharedMemoryError' });
      expect(out.destroy).toMatchObject({ code: 'ERR_PERMISSION_DENIED', name: 'SharedMemoryError' });
      expect(existsSync(`/dev/shm/sageq.${closed}`)).toBe(true);
      expect(drain(q as SageQueue<string>)).toEqual(['mine']);
      expect(q.stats().processes).toHaveLength(1);

      const open = qname('perm666');
      const shared = track(SageQueue.create<string>(open, { codec: 'json', mode: 0o666, allowSharedMode: true }));
      const put = `
        const { SageQueue } = require(process.env.SAGE_DIST);
        const q = SageQueue.open(process.env.Q, { allowSharedMode: true }); // root's queue: root is trusted
        q.put('from nobody');
        q.release();
        console.log(JSON.stringify({ ok: true }));`;
      const run2 = await runNode(put, { prefix: nobody, cwd: dir, env: { Q: open, SAGE_DIST: dist } });
      expect(run2.code, run2.stderr).toBe(0);
      expect(shared.get(false)).toBe('from nobody');
    },
  );
});

describe('a segment left by a creator killed during creation', () => {
  // The creator is a real process: `flock` holds the creation lock on the segment file (as the core's
  // creator does until "initialised" is stored) while a node child writes half a header, then the
  // whole process group is SIGKILLed.
  async function halfCreated(name: string): Promise<ChildProcess> {
    const file = `/dev/shm/sageq.${name}`;
    const code = `
      const fs = require('fs');
      const fd = fs.openSync(process.env.F, 'r+');
      const h = Buffer.alloc(64);
      Buffer.from(process.env.MAGIC, 'hex').copy(h, 0); // magic and version written, 'initialised' never stored
      fs.writeSync(fd, h, 0, h.length, 0);
      fs.ftruncateSync(fd, 24576);
      console.log('ready');
      setInterval(() => {}, 1000);`;
    const child = spawn('flock', ['-x', file, process.execPath, '-e', code], { env: { ...process.env, F: file, MAGIC: realMagic() }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    children.add(child);
    await new Promise<void>((resolve, reject) => {
      let out = '';
      child.stdout?.setEncoding('utf8').on('data', (d: string) => {
        out += d;
        if (out.includes('ready')) resolve();
      });
      child.on('exit', (c) => reject(new Error(`the half creator exited early (${c})`)));
    });
    return child;
  }

  /** The first 12 bytes (magic, layout version) of a real segment, as hex. */
  function realMagic(): string {
    const name = qname('magic');
    const q = SageQueue.create(name, { capacity: 4096 });
    const head = readFileSync(`/dev/shm/sageq.${name}`).subarray(0, 12).toString('hex');
    q.destroy();
    return head;
  }

  function killGroup(child: ChildProcess): Promise<void> {
    return new Promise((resolve) => {
      child.once('exit', () => resolve());
      process.kill(-(child.pid as number), 'SIGKILL');
    });
  }

  it.skipIf(!CAN_FLOCK)(
    'while the creator lives openers wait initWaitMs then fail with ERR_QUEUE_INITIALISING; once it is killed they fail at once with ERR_QUEUE_NOT_INITIALISED; the name is recreated after SageQueue.destroy',
    async () => {
      const name = qname('halfborn');
      const creator = await halfCreated(name);
      let t = Date.now();
      expect(errorOf(() => SageQueue.open(name, { initWaitMs: 300 }))).toMatchObject({ code: 'ERR_QUEUE_INITIALISING', name: 'SharedMemoryError' });
      const waited = Date.now() - t;
      expect(waited).toBeGreaterThanOrEqual(280);
      expect(waited).toBeLessThan(3000);

      // An opener already waiting (up to 10 s) when the creator dies gives up right after.
      const opener = runNode(
        `const { SageQueue } = require(process.env.SAGE_DIST);
         const t = Date.now();
         try { SageQueue.open(process.env.Q, { initWaitMs: 10000 }); console.log(JSON.stringify({ opened: true })); }
         catch (e) { console.log(JSON.stringify({ code: e.code, ms: Date.now() - t })); }`,
        { env: { Q: name } },
      );
      await new Promise((r) => setTimeout(r, 400));
      const killedAt = Date.now();
      await killGroup(creator);
      const run = await opener;
      const out = lastJson<{ code: string; ms: number }>(run);
      expect(out.code).toBe('ERR_QUEUE_NOT_INITIALISED');
      expect(Date.now() - killedAt).toBeLessThan(3000); // not the 10 s it was willing to wait

      t = Date.now();
      expect(errorOf(() => SageQueue.open(name, { initWaitMs: 10_000 }))).toMatchObject({ code: 'ERR_QUEUE_NOT_INITIALISED' });
      expect(Date.now() - t).toBeLessThan(1000);
      expect(errorOf(() => SageQueue.create(name))).toMatchObject({ code: 'ERR_QUEUE_EXISTS' });
      expect(SageQueue.destroy(name)).toBe(true);
      const q = track(SageQueue.create<string>(name, { codec: 'json' }));
      q.put('reborn');
      expect(q.get(false)).toBe('reborn');
    },
  );

  it('an empty, truncated or foreign file under a queue name is refused at once, never mapped past its end', () => {
    const cases: Array<[string, Buffer, string]> = [
      ['empty', Buffer.alloc(0), 'ERR_QUEUE_NOT_INITIALISED'],
      ['magic-only', Buffer.from(realMagic(), 'hex'), 'ERR_QUEUE_TRUNCATED'], // ours (creation reserves the whole size first), then shrunk
      ['foreign', randomBytes(30_000), 'ERR_NOT_A_SAGE_QUEUE'],
    ];
    for (const [tag, bytes, code] of cases) {
      const name = qname(tag);
      writeFileSync(`/dev/shm/sageq.${name}`, bytes, { mode: 0o600 });
      const t = Date.now();
      expect(errorOf(() => SageQueue.open(name, { initWaitMs: 5000 })), tag).toMatchObject({ code, name: 'SharedMemoryError' });
      expect(Date.now() - t, tag).toBeLessThan(1000); // no creator holds the file's lock: no waiting
    }
  });
});

describe('thousands of queues created and destroyed', () => {
  const fdCount = (): number => readdirSync('/proc/self/fd').length;
  const maps = (): string[] => readFileSync('/proc/self/maps', 'utf8').trim().split('\n');
  const threads = (): number => Number(/Threads:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]);

  it('3000 create/put/get/destroy cycles (some with async waits) leak no file descriptor, mapping, thread or segment', async () => {
    const prefix = qname('many');
    names.delete(prefix);
    const cycle = async (i: number): Promise<void> => {
      const q = SageQueue.create<number>(`${prefix}-${i}`, { capacity: 4096, codec: 'json' });
      q.put(i);
      if (q.get(false) !== i) throw new Error(`cycle ${i}: wrong message`);
      if (i % 15 === 0) {
        // an async wait runs on a native notifier thread: it must be joined on destroy
        const pending = q.getAsync({ timeoutMs: 50 });
        q.put(-i);
        if ((await pending) !== -i) throw new Error(`cycle ${i}: wrong async message`);
        const timedOut = q.getAsync({ timeoutMs: 1 }).catch((e: { code?: string }) => e.code);
        if ((await timedOut) !== 'ERR_QUEUE_EMPTY') throw new Error(`cycle ${i}: the wait did not time out`);
      }
      q.destroy();
    };
    for (let i = 0; i < 30; i++) await cycle(i); // warm-up: lazily created fds, threads, heap pages
    const fds = fdCount();
    const mapLines = maps().length;
    const shmMaps = maps().filter((l) => l.includes('/dev/shm/sageq.')).length;
    const threadCount = threads();
    for (let i = 30; i < 3030; i++) await cycle(i);
    expect(fdCount()).toBe(fds);
    expect(maps().filter((l) => l.includes('/dev/shm/sageq.')).length).toBe(shmMaps);
    // V8's heap and malloc's arenas map anonymous pages as the 3000 cycles churn through ~400 MB of
    // slabs (about +60-100 here, and it varies with load); a mapping leaked per cycle would add 3000.
    expect(maps().length).toBeLessThan(mapLines + 600);
    expect(threads()).toBeLessThanOrEqual(threadCount + 1);
    expect(readdirSync('/dev/shm').filter((f) => f.startsWith(`sageq.${prefix}`))).toEqual([]);
  }, 60_000);

  it('3000 handles attached to one queue and released reuse its 128 slots: no slot, descriptor or mapping is left', () => {
    const name = qname('handles');
    const q = track(SageQueue.create<number>(name, { codec: 'json' }));
    const fds = fdCount();
    const shmMaps = maps().filter((l) => l.includes(`/dev/shm/sageq.${name}`)).length;
    for (let i = 0; i < 3000; i++) {
      const h = SageQueue.open<number>(name);
      h.put(i);
      h.release();
      if (i % 500 === 0) expect(q.stats().processes).toHaveLength(2 - 1);
    }
    expect(q.qsize()).toBe(3000);
    expect(q.stats().processes).toHaveLength(1);
    expect(fdCount()).toBe(fds);
    expect(maps().filter((l) => l.includes(`/dev/shm/sageq.${name}`)).length).toBe(shmMaps);
  });
});

describe('a process that exits with waits pending', () => {
  const waitsCode = (ending: string): string => `
    const { SageQueue } = require(process.env.SAGE_DIST);
    const empty = SageQueue.open(process.env.EMPTY);
    const full = SageQueue.open(process.env.FULL);
    empty.getAsync().catch(() => {});
    full.putAsync('x'.repeat(100)).catch(() => {});
    empty.iterate()[Symbol.asyncIterator]().next().catch(() => {});
    setTimeout(() => { console.log('waiting'); ${ending} }, 100);`;

  async function setup(): Promise<{ empty: SageQueue<string>; full: SageQueue<string>; env: Record<string, string> }> {
    const empty = track(SageQueue.create<string>(qname('empty'), { codec: 'json', capacity: 4096 }));
    const full = track(SageQueue.create<string>(qname('full'), { codec: 'json', capacity: 4096, maxsize: 1 }));
    full.put('occupied');
    return { empty, full, env: { EMPTY: empty.name, FULL: full.name } };
  }

  async function settled(q: SageQueue<string>, pid: number): Promise<void> {
    const deadline = Date.now() + 3000;
    while (q.stats().processes.some((p) => p.pid === pid && p.alive) || q.stats().dataWaiters + q.stats().spaceWaiters > 0) {
      if (Date.now() > deadline) throw new Error(`pid ${pid} still attached or waiting: ${JSON.stringify(q.stats().processes)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  it.each([
    ['process.exit(0)', 'process.exit(0);', 0],
    ['an uncaught exception', "throw new Error('boom');", 1],
    ['process.exitCode with the waits still armed, then exit()', 'process.exitCode = 3; process.exit();', 3],
  ])('exiting by %s with a get, a put and an iterator pending does not hang; the waits leave the queue', async (_what, ending, expected) => {
    const { empty, full, env } = await setup();
    const run = await runNode(waitsCode(ending), { env, timeoutMs: 15_000 });
    expect(run.stdout).toContain('waiting');
    expect(run.signal).toBeNull(); // not killed by our timeout
    expect(run.code).toBe(expected);
    expect(run.ms).toBeLessThan(10_000);
    await settled(empty, run.pid);
    await settled(full, run.pid);
    expect(full.get(false)).toBe('occupied');
    expect(full.qsize()).toBe(0);
  });

  it('a worker thread terminated with waits pending ends promptly, and its process then exits by itself', async () => {
    const { empty, env } = await setup();
    const code = `
      const { Worker } = require('worker_threads');
      const w = new Worker(\`
        const { SageQueue } = require(process.env.SAGE_DIST);
        const q = SageQueue.open(process.env.EMPTY);
        q.getAsync().catch(() => {});
        require('worker_threads').parentPort.postMessage('waiting');\`, { eval: true });
      w.on('message', async () => {
        const t = Date.now();
        await w.terminate();
        console.log(JSON.stringify({ terminateMs: Date.now() - t }));
      });`;
    const run = await runNode(code, { env, timeoutMs: 15_000 });
    expect(run.signal).toBeNull();
    expect(run.code, run.stderr).toBe(0);
    expect(lastJson<{ terminateMs: number }>(run).terminateMs).toBeLessThan(3000);
    await settled(empty, run.pid);
  });
});

// Keep the import of the error class used in type positions only honest.
void SharedMemoryError;
