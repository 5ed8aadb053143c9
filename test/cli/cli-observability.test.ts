/**
 * The `sage-queue` command's exporter and output details, run as real subprocesses:
 * - `sage-queue metrics --port 0` serves /metrics over loopback HTTP for every queue on the
 *   machine (a live one of this process and one whose owner was SIGKILLed), without attaching,
 *   and stops cleanly on SIGTERM; a port in use is a JSON error under --json;
 * - `--version` prints package.json's version;
 * - under `--json` every failure is JSON on stdout ({ error: { code, message, exitCode } });
 * - dead/alive states are highlighted on a terminal (a real pty, via script(1)), and not when
 *   NO_COLOR is set or stdout is a pipe.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';

import { SageQueue } from '../../lib/index';
import { parseProm, series } from '../support/prom-text';

const root = path.resolve(__dirname, '..', '..');
const cliPath = path.join(root, 'dist', 'cli', 'main.js');
const ownerFixture = path.join(__dirname, '..', 'fixtures', 'cli-owner.cjs');
const prefix = `ct-${process.pid}-obs-`;
let counter = 0;
const uniq = (tag: string): string => `${prefix}${tag}-${++counter}`;

interface Proc {
  child: ChildProcess;
  stdout: string;
  stderr: string;
  closed: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const children = new Set<ChildProcess>();
const queues: SageQueue[] = [];

function start(args: readonly string[], env: NodeJS.ProcessEnv = process.env, command = process.execPath): Proc {
  const child = spawn(command, args, { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  const p: Proc = {
    child,
    stdout: '',
    stderr: '',
    closed: new Promise((resolve) => child.once('close', (code, signal) => resolve({ code, signal }))),
  };
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (p.stdout += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (p.stderr += d));
  return p;
}

async function run(args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = start([cliPath, ...args]);
  const timer = setTimeout(() => p.child.kill('SIGKILL'), 20_000);
  const { code } = await p.closed;
  clearTimeout(timer);
  return { code, stdout: p.stdout, stderr: p.stderr };
}

async function until(what: string, check: () => boolean, p?: Proc, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${p ? `\nstdout: ${p.stdout}\nstderr: ${p.stderr}` : ''}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A queue whose only process (test/fixtures/cli-owner.cjs) was SIGKILLed; returns its pid. */
async function deadQueue(name: string, count: number): Promise<number> {
  const p = start([ownerFixture, name, String(count), 'stay']);
  await until(`owner of ${name}`, () => p.stdout.includes('ready '), p);
  p.child.kill('SIGKILL');
  await p.closed;
  return p.child.pid as number;
}

afterEach(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  children.clear();
  for (const q of queues.splice(0)) q.destroy();
  // (A queue's structure table, sageq.<name>@<nonce>.structs, goes with it.)
  for (const f of readdirSync('/dev/shm')) if (f.startsWith(`sageq.${prefix}`) && !f.includes('@')) SageQueue.destroy(f.slice('sageq.'.length));
});

afterAll(() => {
  expect(readdirSync('/dev/shm').filter((f) => f.startsWith(`sageq.${prefix}`))).toEqual([]);
});

describe('sage-queue metrics', () => {
  it('serves /metrics for every queue on the machine over loopback HTTP (live and dead queues), without attaching; SIGTERM stops it with exit 0', async () => {
    const live = uniq('live');
    const q = SageQueue.create(live, { capacity: 1 << 16, codec: 'json' });
    queues.push(q);
    for (let i = 0; i < 4; i++) q.put(i);
    q.get();
    const dead = uniq('dead');
    await deadQueue(dead, 3);

    const exporter = start([cliPath, 'metrics', '--port', '0', '--json']);
    await until('the exporter to listen', () => exporter.stdout.includes('\n'), exporter);
    const { url, port, host } = JSON.parse(exporter.stdout.split('\n')[0] as string) as { url: string; port: number; host: string };
    expect(host).toBe('127.0.0.1');
    expect(port).toBeGreaterThan(0);
    expect(url).toBe(`http://127.0.0.1:${port}/metrics`);

    const res = await fetch(url);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const m = parseProm(await res.text());
    expect(m.get(series('sage_queue_depth', { queue: live }))).toBe(3);
    expect(m.get(series('sage_queue_enqueued_total', { queue: live }))).toBe(4);
    expect(m.get(series('sage_queue_dequeued_total', { queue: live }))).toBe(1);
    expect(m.get(series('sage_queue_liveness', { queue: live, state: 'alive' }))).toBe(1);
    expect(m.get(series('sage_queue_processes', { queue: live, state: 'alive' }))).toBe(1);
    expect(m.get(series('sage_queue_depth', { queue: dead }))).toBe(3);
    expect(m.get(series('sage_queue_liveness', { queue: dead, state: 'dead' }))).toBe(1);
    expect(m.get(series('sage_queue_processes', { queue: dead, state: 'dead' }))).toBe(1);
    expect(m.get(series('sage_queue_processes', { queue: dead, state: 'alive' }))).toBe(0);
    // nothing attached: the queue still lists only this process
    expect(q.stats().processes.map((p) => p.pid)).toEqual([process.pid]);
    // scraped afresh each time
    q.put(99);
    const again = parseProm(await (await fetch(url)).text());
    expect(again.get(series('sage_queue_depth', { queue: live }))).toBe(4);
    expect((await fetch(`http://127.0.0.1:${port}/nope`)).status).toBe(404);

    exporter.child.kill('SIGTERM');
    expect(await exporter.closed).toEqual({ code: 0, signal: null });
    expect(exporter.stderr).toBe('');
  });

  it('a port already in use: exit 1 with a JSON error (ERR_ADDRESS_IN_USE) under --json; a bad port: exit 2 (ERR_INVALID_PORT)', async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const port = (server.address() as AddressInfo).port;
      const r = await run(['metrics', '--port', String(port), '--json']);
      expect(r.code).toBe(1);
      expect(JSON.parse(r.stdout)).toEqual({ error: { code: 'ERR_ADDRESS_IN_USE', message: expect.stringContaining(`127.0.0.1:${port}`), exitCode: 1 } });
    } finally {
      server.close();
    }
    const bad = await run(['metrics', '--port', '70000', '--json']);
    expect(bad.code).toBe(2);
    expect(JSON.parse(bad.stdout)).toMatchObject({ error: { code: 'ERR_INVALID_PORT', exitCode: 2 } });
  });
});

describe('sage-queue --version and --json errors', () => {
  it('--version and -V print the version of package.json', async () => {
    const version = (JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string }).version;
    for (const flag of ['--version', '-V']) {
      const r = await run([flag]);
      expect(r).toEqual({ code: 0, stdout: `${version}\n`, stderr: '' });
    }
  });

  it.each([
    [['stat', 'no-such-queue-obs'], 1, 'ERR_QUEUE_NOT_FOUND', 'no queue named "no-such-queue-obs"'],
    [['stat', 'bad/name'], 2, 'ERR_INVALID_QUEUE_NAME', 'invalid queue name'],
    [['stat', 'x', '--interval', '5'], 2, 'ERR_INVALID_INTERVAL', '--interval must be an integer >= 50'],
    [['ls', '--bogus'], 2, 'ERR_USAGE', "unknown option '--bogus'"],
    [['nosuchcommand'], 2, 'ERR_USAGE', "unknown command 'nosuchcommand'"],
    [['gc'], 2, 'ERR_CONFIRMATION_REQUIRED', 'gc needs confirmation'],
  ] as const)('%j --json: exit %i, JSON { error: { code: %s } } on stdout, nothing on stderr', async (args, exitCode, code, message) => {
    const r = await run([...args, '--json']);
    expect(r.code).toBe(exitCode);
    expect(r.stderr).toBe('');
    const value = JSON.parse(r.stdout) as { error: { code: string; message: string; exitCode: number } };
    expect(value).toEqual({ error: { code, message: expect.stringContaining(message), exitCode } });
    // without --json the same failure is a plain message on stderr
    const plain = await run(args);
    expect(plain.code).toBe(exitCode);
    expect(plain.stdout).toBe('');
    expect(plain.stderr).toContain(message);
  });
});

/** Runs the CLI on a real terminal (script(1) allocates a pty); returns what the terminal showed. */
function onTty(args: readonly string[], env: NodeJS.ProcessEnv): string {
  const command = [process.execPath, cliPath, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const r = spawnSync('script', ['-q', '-e', '-c', command, '/dev/null'], { cwd: root, env, encoding: 'utf8', timeout: 20_000 });
  if (r.status !== 0) throw new Error(`script exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

const hasScript = spawnSync('script', ['--version'], { stdio: 'ignore' }).status === 0;
const itTty = hasScript ? it : it.skip;

describe('sage-queue highlighting on a terminal', () => {
  const ttyEnv = (): NodeJS.ProcessEnv => {
    const env: NodeJS.ProcessEnv = { ...process.env, TERM: 'xterm-256color' };
    delete env.NO_COLOR;
    delete env.FORCE_COLOR;
    return env;
  };

  itTty('stat of a dead queue on a tty: DEAD and abandoned in red; ls: the live queue open in green, the dead pid in red', async () => {
    const name = uniq('tty-dead');
    const pid = await deadQueue(name, 2);
    const stat = onTty(['stat', name], ttyEnv());
    expect(stat).toContain('\x1b[1;31mDEAD\x1b[0m');
    expect(stat).toContain('\x1b[1;31mabandoned\x1b[0m');
    const live = uniq('tty-live');
    queues.push(SageQueue.create(live, { capacity: 1 << 16 }));
    const ls = onTty(['ls'], ttyEnv());
    const lines = ls.split(/\r?\n/);
    expect(lines.find((l) => l.startsWith(`${live} `))).toContain('\x1b[32mopen\x1b[0m');
    expect(lines.find((l) => l.startsWith(`${name} `))).toContain(`\x1b[1;31m${pid}(creator+producer,DEAD)\x1b[0m`);
  });

  itTty('NO_COLOR on a tty, and a pipe: no escape sequences at all', async () => {
    const name = uniq('tty-plain');
    await deadQueue(name, 1);
    const noColor = onTty(['stat', name], { ...ttyEnv(), NO_COLOR: '1' });
    expect(noColor).toContain('DEAD');
    expect(noColor).not.toContain('\x1b[');
    const piped = await run(['stat', name]);
    expect(piped.stdout).toContain('DEAD');
    expect(piped.stdout).not.toContain('\x1b[');
  });
});
