/**
 * The `sage-queue` command (dist/cli/main.js) run as a real subprocess against real segments:
 * queues owned by this test process, by child processes (test/fixtures/cli-owner.cjs), and by
 * children that were SIGKILLed. Every output is checked in its human and its --json form.
 *
 * `gc` removes every abandoned queue on the machine, so the gc tests (which really remove) run in
 * a private /dev/shm: a mount namespace with its own tmpfs (`unshare -m`), entered with
 * `nsenter -m` by the queue owners and by the CLI. Processes keep their real pids there, so
 * liveness and SIGKILL work as on the host, and other test suites' segments are never touched.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';

import { SageQueue } from '../../lib/index';

const root = path.resolve(__dirname, '..', '..');
const cliPath = path.join(root, 'dist', 'cli', 'main.js');
const ownerFixture = path.join(__dirname, '..', 'fixtures', 'cli-owner.cjs');
const prefix = `ct-${process.pid}-`;
let counter = 0;
const uniq = (tag: string): string => `${prefix}${tag}-${++counter}`;

// ------------------------------------------------------------------------------------------------
// Processes

interface Proc {
  child: ChildProcess;
  pid: number;
  stdout: string;
  stderr: string;
  /** Resolves when the process has exited and its output is closed. */
  closed: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const children = new Set<Proc>();

function start(command: string, args: readonly string[]): Proc {
  const child = spawn(command, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  const p: Proc = {
    child,
    pid: child.pid as number,
    stdout: '',
    stderr: '',
    closed: new Promise((resolve) => child.once('close', (code, signal) => resolve({ code, signal }))),
  };
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (p.stdout += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (p.stderr += d));
  children.add(p);
  return p;
}

function alive(p: Proc): boolean {
  return p.child.exitCode === null && p.child.signalCode === null;
}

async function until(what: string, check: () => boolean, timeoutMs = 10_000, proc?: Proc): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}${proc ? `\nstdout: ${proc.stdout}\nstderr: ${proc.stderr}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A private /dev/shm: a mount namespace (held open by a `sleep`) with its own tmpfs. */
interface Sandbox {
  pid: number;
}

function sandboxAvailable(): boolean {
  const r = spawnSync('unshare', ['-m', '--propagation', 'private', 'sh', '-c', 'mount -t tmpfs tmpfs /dev/shm'], { stdio: 'ignore' });
  return r.status === 0 && spawnSync('nsenter', ['--version'], { stdio: 'ignore' }).status === 0;
}
const canSandbox = sandboxAvailable();
if (!canSandbox) {
  // Without a private /dev/shm, `gc --yes` would remove other suites' abandoned segments.
  console.warn('cli.test.ts: unshare/nsenter unavailable (needs CAP_SYS_ADMIN or user namespaces): gc tests skipped');
}
const itSandboxed = canSandbox ? it : it.skip;

async function sandbox(): Promise<Sandbox> {
  const holder = start('unshare', ['-m', '--propagation', 'private', 'sh', '-c', 'mount -t tmpfs -o size=32m tmpfs /dev/shm && echo ready && exec sleep 3600']);
  await until('the sandbox', () => holder.stdout.includes('ready'), 10_000, holder);
  return { pid: holder.pid };
}

/** Starts a process on the host, or (same pid, nsenter execs it) inside the sandbox. */
function startIn(ns: Sandbox | undefined, command: string, args: readonly string[]): Proc {
  return ns === undefined ? start(command, args) : start('nsenter', ['-t', String(ns.pid), '-m', '--', command, ...args]);
}

interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  pid: number;
}

async function cli(args: readonly string[], ns?: Sandbox, timeoutMs = 20_000): Promise<CliResult> {
  const p = startIn(ns, process.execPath, [cliPath, ...args]);
  const timer = setTimeout(() => p.child.kill('SIGKILL'), timeoutMs);
  const { code, signal } = await p.closed;
  clearTimeout(timer);
  return { code, signal, stdout: p.stdout, stderr: p.stderr, pid: p.pid };
}

async function cliJson<T>(args: readonly string[], ns?: Sandbox): Promise<{ r: CliResult; value: T }> {
  const r = await cli([...args, '--json'], ns);
  let value: T;
  try {
    value = JSON.parse(r.stdout) as T;
  } catch {
    throw new Error(`sage-queue ${args.join(' ')} --json: not JSON (exit ${r.code})\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  }
  return { r, value };
}

/** Starts test/fixtures/cli-owner.cjs and waits until its messages are in the queue. */
async function owner(name: string, count: number, after: 'stay' | 'release', ns?: Sandbox): Promise<Proc> {
  const p = startIn(ns, process.execPath, [ownerFixture, name, String(count), after]);
  await until(`owner of ${name}`, () => p.stdout.includes('ready ') || !alive(p), 10_000, p);
  expect(p.stdout, p.stderr).toContain('ready ');
  return p;
}

/** An owner that puts `count` messages and is then SIGKILLed: its queue is abandoned. */
async function killedOwner(name: string, count: number, ns?: Sandbox): Promise<number> {
  const p = await owner(name, count, 'stay', ns);
  p.child.kill('SIGKILL');
  const { signal } = await p.closed;
  expect(signal).toBe('SIGKILL');
  return p.pid;
}

// ------------------------------------------------------------------------------------------------
// Output parsing

/** Rows of a table printed by lib/cli/format.ts (columns are separated by two or more spaces). */
function parseTable(text: string): Array<Record<string, string>> {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  const header = (lines[0] ?? '').split(/ {2,}/);
  return lines.slice(1).map((line) => {
    const cells = line.split(/ {2,}/);
    return Object.fromEntries(header.map((h, i) => [h, cells[i] ?? '']));
  });
}

const PROCS = 'PROCESSES (pid(roles))';

function lsRow(stdout: string, name: string): Record<string, string> | undefined {
  expect(stdout.split('\n')[0]).toMatch(/^NAME +DEPTH +BYTES +CAPACITY +STATE +AGE +PROCESSES/);
  return parseTable(stdout).find((r) => r.NAME === name);
}

/** `stat` human output: the key/value block, then the processes table. */
function parseStat(stdout: string): { fields: Record<string, string>; processes: Array<Record<string, string>> } {
  const [head = '', procs = ''] = stdout.split('\n\n');
  const fields: Record<string, string> = {};
  for (const line of head.split('\n')) {
    const m = /^(.+?) {2,}(.*)$/.exec(line);
    if (m) fields[m[1] as string] = m[2] as string;
  }
  return { fields, processes: procs.startsWith('SLOT') ? parseTable(procs) : [] };
}

interface ProcessView {
  slot: number;
  pid: number;
  roles: string[];
  alive: boolean;
}
interface QueueView {
  name: string;
  stats: (Record<string, unknown> & { depth: number; enqueued: number; dequeued: number; capacity: number; processes: ProcessView[] }) | null;
  error: { code: string; message: string } | null;
  ageMs: number | null;
  alive: number;
  dead: number;
}

function oneStderrLine(r: CliResult): string {
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  expect(lines, r.stderr).toHaveLength(1);
  expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  return lines[0] as string;
}

// ------------------------------------------------------------------------------------------------
// Cleanup

const handles: SageQueue[] = [];
function track<T>(q: SageQueue<T>): SageQueue<T> {
  handles.push(q as SageQueue);
  return q;
}

function ourSegments(): string[] {
  return readdirSync('/dev/shm').filter((f) => f.startsWith(`sageq.${prefix}`));
}

afterEach(async () => {
  // Every child (queue owners, CLI runs, `stat --watch`, sandbox holders and what runs inside).
  const procs = [...children];
  children.clear();
  for (const p of procs) if (alive(p)) p.child.kill('SIGKILL');
  await Promise.all(procs.map((p) => p.closed));
  for (const q of handles.splice(0)) q.release();
  // Host segments, including those of SIGKILLed owners (a sandbox's tmpfs goes with its namespace).
  // (A queue's structure table, sageq.<name>@<nonce>.structs, goes with it.)
  for (const file of ourSegments()) if (!file.includes('@')) SageQueue.destroy(file.slice('sageq.'.length));
});

afterAll(() => {
  expect(ourSegments()).toEqual([]);
});

// ------------------------------------------------------------------------------------------------

describe('sage-queue ls', () => {
  it('lists a live queue with its depth, capacity, state open and the owner pid(roles), in the table and in --json', async () => {
    const name = uniq('live');
    const q = track(SageQueue.create(name, { capacity: 65536 }));
    for (let i = 0; i < 3; i++) q.put({ i });

    const human = await cli(['ls']);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stderr).toBe('');
    expect(lsRow(human.stdout, name)).toMatchObject({ DEPTH: '3', CAPACITY: '64 KiB', STATE: 'open', [PROCS]: `${process.pid}(creator+producer)` });

    const { r, value } = await cliJson<QueueView[]>(['ls']);
    expect(r.code).toBe(0);
    const view = value.find((v) => v.name === name);
    expect(view).toMatchObject({ name, error: null, alive: 1, dead: 0 });
    expect(view?.stats).toMatchObject({ name, depth: 3, enqueued: 3, dequeued: 0, capacity: 65536, closed: false, codec: 'records', codecName: 'records' });
    expect(view?.stats?.processes).toEqual([expect.objectContaining({ pid: process.pid, roles: ['creator', 'producer'], alive: true })]);
  });

  it('marks the pid of a SIGKILLed owner DEAD and its queue abandoned (ls and stat, human and --json), without reaping it', async () => {
    const name = uniq('dead');
    const deadPid = await killedOwner(name, 4);

    const human = await cli(['ls']);
    expect(human.code, human.stderr).toBe(0);
    expect(lsRow(human.stdout, name)).toMatchObject({ DEPTH: '4', CAPACITY: '64 KiB', STATE: 'abandoned', [PROCS]: `${deadPid}(creator+producer,DEAD)` });

    const { value } = await cliJson<QueueView[]>(['ls']);
    const view = value.find((v) => v.name === name);
    expect(view).toMatchObject({ alive: 0, dead: 1, error: null });
    expect(view?.stats).toMatchObject({ depth: 4, enqueued: 4, dequeued: 0 });
    expect(view?.stats?.processes).toEqual([expect.objectContaining({ pid: deadPid, roles: ['creator', 'producer'], alive: false })]);

    const stat = await cli(['stat', name]);
    expect(stat.code, stat.stderr).toBe(0);
    const s = parseStat(stat.stdout);
    expect(s.fields.state).toBe('abandoned');
    expect(s.fields.depth).toMatch(/^4 messages/);
    expect(s.processes).toEqual([expect.objectContaining({ PID: String(deadPid), ROLES: 'creator,producer', ALIVE: 'DEAD' })]);

    const { value: again } = await cliJson<QueueView>(['stat', name]);
    expect(again.stats?.processes).toEqual([expect.objectContaining({ pid: deadPid, alive: false })]);
    expect(again.stats?.slotsReaped).toBe(0); // looking at a dead queue does not touch it
  });

  it('never shows the CLI itself as an attached process, and ls/stat/gc --dry-run leave the process table and counters unchanged', async () => {
    const name = uniq('observed');
    const q = track(SageQueue.create(name, { capacity: 65536 }));
    q.put('one');
    q.put('two');
    expect(q.get()).toBe('one');
    const before = q.stats();

    const runs = [await cliJson<QueueView[]>(['ls']), await cliJson<QueueView>(['stat', name]), await cliJson<unknown>(['gc', '--dry-run'])];
    for (const { r } of runs) expect(r.code, r.stderr).toBe(0);
    const lsView = runs[0]?.value as QueueView[];
    const statView = runs[1]?.value as QueueView;
    for (const v of [lsView.find((x) => x.name === name), statView]) {
      expect(v?.stats?.processes.map((p) => p.pid)).toEqual([process.pid]);
    }
    const cliPids = new Set(runs.map(({ r }) => r.pid));
    for (const v of lsView) for (const p of v.stats?.processes ?? []) expect(cliPids.has(p.pid)).toBe(false);
    expect(q.stats()).toEqual(before);
  });
});

describe('sage-queue stat', () => {
  it('prints depth, enqueued, dequeued, codec and the processes table; --json has exactly the numbers of SageQueue#stats()', async () => {
    const name = uniq('stat');
    const q = track(SageQueue.create<{ n: number }>(name, { capacity: 65536, maxsize: 100, codec: 'msgpack' }));
    for (let n = 0; n < 7; n++) q.put({ n });
    expect(q.get()).toEqual({ n: 0 });
    expect(q.get()).toEqual({ n: 1 });

    const human = await cli(['stat', name]);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stderr).toBe('');
    const { fields, processes } = parseStat(human.stdout);
    expect(fields).toMatchObject({ name, state: 'open', codec: 'msgpack', enqueued: '7', dequeued: '2' });
    expect(fields.depth).toMatch(/^5 messages, \d+ B/);
    expect(fields.capacity).toMatch(/^64 KiB, .*at most 100 messages$/);
    expect(processes).toEqual([{ SLOT: expect.any(String), PID: String(process.pid), ROLES: 'creator,producer,consumer', ALIVE: 'yes', ATTACHED: expect.any(String), WAITING: '0' }]);

    const { r, value } = await cliJson<QueueView>(['stat', name]);
    expect(r.code, r.stderr).toBe(0);
    expect(value).toMatchObject({ name, error: null, alive: 1, dead: 0 });
    // --json names the codec (codec: its name, codecId: the number in the segment)
    expect(value.stats).toEqual({ ...q.stats(), codec: 'msgpack', codecId: q.stats().codec });
    expect(value.stats).toMatchObject({ depth: 5, enqueued: 7, dequeued: 2, maxsize: 100, codec: 'msgpack', codecName: 'msgpack' });
  });

  it('stat --watch --interval 100 prints a fresh snapshot every interval until killed, without attaching (human form)', async () => {
    const name = uniq('watch');
    const q = track(SageQueue.create(name, { capacity: 65536 }));
    q.put(1);
    const watch = start(process.execPath, [cliPath, 'stat', name, '--watch', '--interval', '100']);
    const snapshots = (): Array<ReturnType<typeof parseStat>> =>
      watch.stdout
        .split(/^(?=name {2,})/m)
        .filter((chunk) => chunk.startsWith('name') && chunk.includes('\nSLOT'))
        .map(parseStat);
    await until('a first snapshot', () => snapshots().length >= 1, 10_000, watch);
    expect(snapshots()[0]?.fields.depth).toMatch(/^1 messages/);
    expect(q.stats().processes.map((p) => p.pid)).toEqual([process.pid]); // the watcher is not attached
    q.put(2);
    q.put(3);
    await until('a snapshot with the new depth', () => snapshots().some((s) => /^3 messages/.test(s.fields.depth ?? '')), 10_000, watch);
    expect(snapshots().length).toBeGreaterThanOrEqual(2);
    expect(snapshots().at(-1)?.fields.enqueued).toBe('3');
    expect(watch.stdout).not.toContain('\x1b'); // no screen clearing when stdout is not a terminal
    expect(alive(watch)).toBe(true);
    watch.child.kill('SIGTERM');
    expect((await watch.closed).signal).toBe('SIGTERM');
  });

  it('stat --watch --json --interval 100 prints one JSON document per interval with the current numbers', async () => {
    const name = uniq('watchjson');
    const q = track(SageQueue.create(name, { capacity: 65536 }));
    q.put('a');
    const watch = start(process.execPath, [cliPath, 'stat', name, '--watch', '--json', '--interval', '100']);
    const docs = (): QueueView[] =>
      watch.stdout
        .split(/^(?=\{)/m)
        .filter((chunk) => /^\}\s*$/m.test(chunk))
        .map((chunk) => JSON.parse(chunk) as QueueView);
    await until('a first document', () => docs().length >= 1, 10_000, watch);
    expect(docs()[0]?.stats).toMatchObject({ name, depth: 1, enqueued: 1 });
    q.put('b');
    q.put('c');
    await until('a document with the new depth', () => docs().some((d) => d.stats?.depth === 3), 10_000, watch);
    expect(docs().length).toBeGreaterThanOrEqual(2);
    expect(docs().at(-1)?.stats).toMatchObject({ depth: 3, enqueued: 3, dequeued: 0 });
    for (const d of docs()) expect(d.stats?.processes.map((p) => p.pid)).toEqual([process.pid]);
    watch.child.kill('SIGTERM');
    expect((await watch.closed).signal).toBe('SIGTERM');
  });

  it('stat of a missing queue exits 1: one line on stderr (human), a JSON error on stdout and nothing on stderr (--json)', async () => {
    const name = uniq('missing');
    const r = await cli(['stat', name]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(oneStderrLine(r)).toBe(`sage-queue: no queue named "${name}"`);
    const j = await cli(['stat', name, '--json']);
    expect(j.code).toBe(1);
    expect(j.stderr).toBe('');
    expect(JSON.parse(j.stdout)).toEqual({ error: { code: 'ERR_QUEUE_NOT_FOUND', message: `no queue named "${name}"`, exitCode: 1 } });
  });
});

describe('sage-queue rm', () => {
  it('removes queues (exit 0, "removed NAME"), after which ls no longer shows them (human and --json)', async () => {
    const a = uniq('rm-a');
    const b = uniq('rm-b');
    const c = uniq('rm-c');
    for (const n of [a, b, c]) SageQueue.create(n, { capacity: 4096 }).release();

    const human = await cli(['rm', a, b]);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toBe(`removed ${a}\nremoved ${b}\n`);
    expect(human.stderr).toBe('');
    const ls = await cli(['ls']);
    expect(lsRow(ls.stdout, a)).toBeUndefined();
    expect(lsRow(ls.stdout, b)).toBeUndefined();
    expect(lsRow(ls.stdout, c)).toBeDefined();

    const { r, value } = await cliJson<unknown>(['rm', c]);
    expect(r.code, r.stderr).toBe(0);
    expect(value).toEqual([{ name: c, removed: true }]);
    const { value: after } = await cliJson<QueueView[]>(['ls']);
    expect(after.map((v) => v.name).filter((n) => n.startsWith(prefix))).toEqual([]);
    expect(ourSegments()).toEqual([]);
  });

  it('rm of a missing queue prints one clear line on stderr (not stdout) and exits 1', async () => {
    const name = uniq('rm-missing');
    const r = await cli(['rm', name]);
    expect(r.code).toBe(1);
    expect(oneStderrLine(r)).toBe(`sage-queue: no queue named "${name}"`);
    expect(r.stdout).toBe('');
  });

  it('rm --json reports removed:false with ERR_QUEUE_NOT_FOUND for a missing name, still removes the others, and exits 1', async () => {
    const present = uniq('rm-present');
    const missing = uniq('rm-absent');
    SageQueue.create(present, { capacity: 4096 }).release();
    const { r, value } = await cliJson<unknown>(['rm', present, missing]);
    expect(r.code).toBe(1);
    expect(value).toEqual([
      { name: present, removed: true },
      { name: missing, removed: false, code: 'ERR_QUEUE_NOT_FOUND', message: `no queue named "${missing}"` },
    ]);
    expect(existsSync(`/dev/shm/sageq.${present}`)).toBe(false);
  });
});

describe('sage-queue gc (in a private /dev/shm)', () => {
  /** A live queue (owner running), an abandoned one (owner SIGKILLed), an idle one (no process). */
  async function scene(ns: Sandbox): Promise<{ live: string; livePid: number; dead: string; deadPid: number; idle: string }> {
    const live = uniq('live');
    const dead = uniq('dead');
    const idle = uniq('idle');
    const liveOwner = await owner(live, 2, 'stay', ns);
    const deadPid = await killedOwner(dead, 5, ns);
    const idleOwner = await owner(idle, 3, 'release', ns);
    expect((await idleOwner.closed).code).toBe(0);
    const { value } = await cliJson<QueueView[]>(['ls'], ns);
    expect(value.map((v) => [v.name, v.alive, v.dead, v.stats?.processes.length])).toEqual([
      [dead, 0, 1, 1],
      [idle, 0, 0, 0],
      [live, 1, 0, 1],
    ]);
    return { live, livePid: liveOwner.pid, dead, deadPid, idle };
  }

  async function names(ns: Sandbox): Promise<string[]> {
    return (await cliJson<QueueView[]>(['ls'], ns)).value.map((v) => v.name);
  }

  itSandboxed('gc --dry-run lists the abandoned queue and neither the live nor the idle one (human and --json), and removes nothing', async () => {
    const ns = await sandbox();
    const { live, dead, deadPid, idle } = await scene(ns);

    const human = await cli(['gc', '--dry-run'], ns);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toBe(`would remove:\n  ${dead} (5 messages; processes ${deadPid}(creator+producer,DEAD))\n`);

    const { r, value } = await cliJson<unknown>(['gc', '--dry-run'], ns);
    expect(r.code, r.stderr).toBe(0);
    expect(value).toEqual({ removed: [], candidates: [dead], temps: [] });
    expect(await names(ns)).toEqual([dead, idle, live]);
  });

  itSandboxed('gc without --yes, when stdin is not a terminal, refuses with exit 2 and one line on stderr, removing nothing', async () => {
    const ns = await sandbox();
    const { live, dead, idle } = await scene(ns);
    for (const args of [['gc'], ['gc', '--include-idle']]) {
      const r = await cli(args, ns); // stdin is /dev/null
      expect(r.code, `${args.join(' ')}: ${r.stdout}`).toBe(2);
      expect(oneStderrLine(r)).toMatch(/--yes/);
      expect(r.stdout).toBe('');
    }
    const j = await cli(['gc', '--json'], ns); // --json: the refusal is a JSON error on stdout
    expect(j.code).toBe(2);
    expect(j.stderr).toBe('');
    expect(JSON.parse(j.stdout)).toEqual({ error: { code: 'ERR_CONFIRMATION_REQUIRED', message: expect.stringMatching(/--yes/), exitCode: 2 } });
    expect(await names(ns)).toEqual([dead, idle, live]);
  });

  itSandboxed('gc without --yes, when stdin is not a terminal, is a usage error (exit 2) even when there is nothing to collect', async () => {
    const ns = await sandbox();
    await owner(uniq('live'), 1, 'stay', ns);
    const r = await cli(['gc'], ns);
    expect(r.code, `stdout: ${r.stdout}`).toBe(2);
    expect(oneStderrLine(r)).toMatch(/--yes/);
  });

  itSandboxed('gc --yes removes only the abandoned queue (human and --json); the live and the idle queue stay', async () => {
    const ns = await sandbox();
    const { live, livePid, dead, idle } = await scene(ns);

    const human = await cli(['gc', '--yes'], ns);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toBe(`removed ${dead}\n`);
    expect(await names(ns)).toEqual([idle, live]);

    const dead2 = uniq('dead');
    await killedOwner(dead2, 1, ns);
    const { r, value } = await cliJson<unknown>(['gc', '--yes'], ns);
    expect(r.code, r.stderr).toBe(0);
    expect(value).toEqual({ removed: [dead2], failed: [], temps: [] });
    const { value: after } = await cliJson<QueueView[]>(['ls'], ns);
    expect(after.map((v) => v.name)).toEqual([idle, live]);
    expect(after.find((v) => v.name === live)?.stats?.processes).toEqual([expect.objectContaining({ pid: livePid, alive: true })]);
  });

  itSandboxed('--include-idle also collects queues no process is attached to, never a live one (--dry-run and --yes, human and --json)', async () => {
    const ns = await sandbox();
    const { live, dead, deadPid, idle } = await scene(ns);

    const dry = await cli(['gc', '--dry-run', '--include-idle'], ns);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toBe(`would remove:\n  ${dead} (5 messages; processes ${deadPid}(creator+producer,DEAD))\n  ${idle} (3 messages; no process attached)\n`);
    const { value: dryJson } = await cliJson<unknown>(['gc', '--dry-run', '--include-idle'], ns);
    expect(dryJson).toEqual({ removed: [], candidates: [dead, idle], temps: [] });

    const human = await cli(['gc', '--yes', '--include-idle'], ns);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toBe(`removed ${dead}\nremoved ${idle}\n`);
    expect(await names(ns)).toEqual([live]);

    const idle2 = uniq('idle');
    expect((await (await owner(idle2, 1, 'release', ns)).closed).code).toBe(0);
    const { r, value } = await cliJson<unknown>(['gc', '--yes', '--include-idle'], ns);
    expect(r.code, r.stderr).toBe(0);
    expect(value).toEqual({ removed: [idle2], failed: [], temps: [] });
    expect(await names(ns)).toEqual([live]);
  });

  /**
   * A creator between shm_open() and storing "initialised": it holds flock(LOCK_EX) on the
   * segment (native/core/segment.cpp), which is what tells a slow creator from a dead one. This
   * process does exactly that (and nothing more) until it is killed.
   */
  async function creatorInProgress(ns: Sandbox, name: string): Promise<Proc> {
    const p = startIn(ns, 'sh', ['-c', `exec 9>/dev/shm/sageq.${name} && flock 9 && echo locked && exec sleep 3600`]);
    await until('the creator to lock its segment', () => p.stdout.includes('locked') || !alive(p), 10_000, p);
    expect(p.stdout, p.stderr).toContain('locked');
    return p;
  }

  itSandboxed('gc collects a segment whose creator died while creating it (never initialised, lock released)', async () => {
    const ns = await sandbox();
    const name = uniq('halfmade');
    const creator = await creatorInProgress(ns, name);
    creator.child.kill('SIGKILL');
    await creator.closed;

    const { value: view } = await cliJson<QueueView>(['stat', name], ns);
    expect(view.error?.code).toBe('ERR_QUEUE_NOT_INITIALISED');
    const { value: dry } = await cliJson<unknown>(['gc', '--dry-run'], ns);
    expect(dry).toEqual({ removed: [], candidates: [name], temps: [] });
    const human = await cli(['gc', '--yes'], ns);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toBe(`removed ${name}\n`);
    expect(await names(ns)).toEqual([]);
  });

  itSandboxed('gc never removes a segment whose creator is alive and still creating it', async () => {
    const ns = await sandbox();
    const name = uniq('creating');
    await creatorInProgress(ns, name);

    const { value: dry } = await cliJson<{ candidates: string[] }>(['gc', '--dry-run'], ns);
    expect(dry.candidates).not.toContain(name);
    const r = await cli(['gc', '--yes', '--include-idle'], ns);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).not.toContain(name);
    expect(await names(ns)).toEqual([name]);
  });
});

describe('sage-queue usage errors', () => {
  const long = 'q'.repeat(10_000);
  const names: Array<[string, string]> = [['../x', '../x'], ['a/b', 'a/b'], ['10k characters', long]];
  const cases: Array<[string, string, boolean, string]> = [];
  for (const command of ['stat', 'rm']) for (const [label, bad] of names) for (const json of [false, true]) cases.push([command, label, json, bad]);

  it.each(cases)('%s with the invalid name %s (--json: %s): exit 2, one short line (on stderr; --json: a JSON error on stdout), no stack trace', async (command, _label, json, bad) => {
    const r = await cli(json ? [command, bad, '--json'] : [command, bad]);
    expect(r.code).toBe(2);
    if (json) {
      expect(r.stderr).toBe('');
      const { error } = JSON.parse(r.stdout) as { error: { code: string; message: string; exitCode: number } };
      expect(error).toMatchObject({ code: 'ERR_INVALID_QUEUE_NAME', exitCode: 2 });
      expect(error.message).toMatch(/^invalid queue name /);
      expect(error.message.length).toBeLessThan(300); // the 10k-character name is not echoed whole
      return;
    }
    expect(r.stdout).toBe('');
    const line = oneStderrLine(r);
    expect(line).toMatch(/^sage-queue: invalid queue name /);
    expect(line.length).toBeLessThan(300); // the 10k-character name is not echoed whole
  });

  it.each([['frob'], ['ls', '--bogus'], ['stat', 'x', '--bogus'], ['rm', '--bogus', 'x'], ['gc', '--frob'], ['stat'], ['rm'], ['stat', 'x', '--interval', '10']])(
    'sage-queue %s … (unknown command or option, missing argument, bad value) exits 2 without a stack trace',
    async (...args: string[]) => {
      const r = await cli(args);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).not.toMatch(/\n\s+at /);
      expect(r.stderr.length).toBeGreaterThan(0);
    },
  );

  it('--help exits 0 and lists every command', async () => {
    const r = await cli(['--help']);
    expect(r.code, r.stderr).toBe(0);
    for (const c of ['ls', 'stat', 'rm', 'gc', 'demo', 'bench']) expect(r.stdout).toMatch(new RegExp(`^\\s+${c}\\b`, 'm'));
  });

  it.each(['ls', 'stat', 'rm', 'gc', 'demo', 'bench'])('%s --help exits 0 and mentions the command', async (command) => {
    const r = await cli([command, '--help']);
    expect(r.code, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`\\b${command}\\b`));
  });
});

describe('sage-queue demo', () => {
  it('demo -- --messages 2000 --json runs the demo: exit 0, its JSON verification is ok, and its queues are gone', async () => {
    const r = await cli(['demo', '--', '--messages', '2000', '--json'], undefined, 60_000);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as {
      ok: boolean;
      sage: { verification: Record<string, unknown>; queues: Array<{ name: string }> };
      processSend: { verification: { ok: boolean } };
    };
    expect(out.ok).toBe(true);
    expect(out.sage.verification).toMatchObject({ sent: 2000, received: 2000, delivered: 2000, dupes: 0, outOfOrder: 0, ok: true });
    expect(out.processSend.verification.ok).toBe(true);
    expect(out.sage.queues.length).toBeGreaterThan(0);
    for (const q of out.sage.queues) expect(existsSync(`/dev/shm/sageq.${q.name}`)).toBe(false);
  });

  it("demo passes the demo's exit code and error line through (a bad flag gives exit 2)", async () => {
    const r = await cli(['demo', '--', '--messages', 'lots']);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe('demo: --messages must be an integer >= 1 (got "lots")');
  });
});
