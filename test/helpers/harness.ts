/**
 * Shared helpers of the multi-process tests: forked children driven over IPC (agents, and
 * fixtures that send `{ type }` messages), waits with deadlines, unique queue names, and a cleanup
 * registry that SIGKILLs every child, releases every tracked handle, destroys every segment and
 * unregisters every tracked queue type after each test, whether it passed or not.
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, unlinkSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, afterEach, expect } from 'vitest';
import { SageQueue, unregisterQueueImplementation } from '../../lib/index';
import type { BaseRouter, SageQueueOptions } from '../../lib/index';

export const REPO = path.resolve(__dirname, '..', '..');
export const FIXTURES = path.join(REPO, 'test', 'fixtures');

/** CLOCK_MONOTONIC in milliseconds: the same clock as the children's `t` fields. */
export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `check` until it returns a truthy value; throws with `what` after timeoutMs. */
export async function until<T>(check: () => T | undefined | null | false, what: string, timeoutMs = 10_000, everyMs = 2): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** The reply of the agent's 'putFrames' op. */
export interface PutResult {
  count: number;
  ms: number;
  tDone: number;
}

/** The reply of the agent's 'waitGet' op. */
export interface WaitGetResult {
  t: number;
  value?: unknown;
  error?: { name?: string; code?: string; message: string };
}

export interface ChildError {
  name?: string;
  code?: string;
  message: string;
}

export interface ChildEvent {
  event: string;
  [key: string]: unknown;
}

/** Error thrown for a failed request: carries the child's error code. */
export class ChildRequestError extends Error {
  readonly code: string | undefined;
  readonly childName: string | undefined;
  constructor(op: string, e: ChildError) {
    super(`child op ${op} failed: ${e.name ?? 'Error'} ${e.code ?? ''}: ${e.message}`);
    this.code = e.code;
    this.childName = e.name;
  }
}

// ---------------------------------------------------------------------------------------------
// Cleanup registry

const processes = new Set<ChildProcess>();
const queueNames = new Set<string>();
const handles = new Set<{ release(): void }>();
const queueTypes = new Set<string>();

/** A queue name unique to this test process, destroyed by cleanup(). */
export function queueName(tag = 'q'): string {
  const name = `vt-${process.pid}-${tag}-${randomBytes(4).toString('hex')}`;
  queueNames.add(name);
  return name;
}

/** Releases `q` in cleanup() (a no-op if the test released it already). */
export function track<T extends { release(): void }>(q: T): T {
  handles.add(q);
  return q;
}

/** Unregisters the queue implementation `type` in cleanup(). */
export function trackQueueType(type: string): string {
  queueTypes.add(type);
  return type;
}

function shmPath(name: string): string {
  return `/dev/shm/sageq.${name}`;
}

/** SIGKILLs `child` (continuing it first, in case it is stopped); resolves once it has exited. */
function killChild(child: ChildProcess, timeoutMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGCONT'); // a stopped process must run again to die of anything but SIGKILL; harmless otherwise
    child.kill('SIGKILL');
  });
}

/**
 * SIGKILLs every child still running, releases tracked handles, destroys every named segment,
 * unregisters tracked queue types.
 */
export async function cleanup(): Promise<void> {
  const kids = [...processes];
  processes.clear();
  await Promise.all(kids.map((c) => killChild(c)));
  for (const q of handles) {
    try {
      q.release();
    } catch {
      // already unusable: nothing to release
    }
  }
  handles.clear();
  for (const name of queueNames) {
    try {
      SageQueue.destroy(name);
    } catch {
      // fall through to the direct unlink
    }
    if (existsSync(shmPath(name))) unlinkSync(shmPath(name));
  }
  queueNames.clear();
  for (const t of queueTypes) unregisterQueueImplementation(t);
  queueTypes.clear();
}

/** Removes any segment this test process named (belt and braces for afterAll). */
export function sweepSegments(): string[] {
  const prefix = `sageq.vt-${process.pid}-`;
  const removed: string[] = [];
  for (const f of readdirSync('/dev/shm')) {
    if (f.startsWith(prefix)) {
      unlinkSync(path.join('/dev/shm', f));
      removed.push(f);
    }
  }
  return removed;
}

/**
 * Registers cleanup() after each test of the file and, after the file, checks that no segment
 * this process named is left.
 */
export function useCleanup(): void {
  afterEach(cleanup);
  afterAll(() => {
    expect(sweepSegments()).toEqual([]);
  });
}

// If this test process goes away before cleanup ran, take the children with it.
process.on('exit', () => {
  for (const c of processes) c.kill('SIGKILL');
});

// ---------------------------------------------------------------------------------------------
// Children

export interface SpawnOptions {
  /** Node flags for the child (e.g. ['--expose-gc']). */
  execArgv?: string[];
  /** A label used in error messages. */
  label?: string;
  /** The child's environment (default: this process's). */
  env?: NodeJS.ProcessEnv;
}

type Pending = { resolve: (v: unknown) => void; reject: (e: unknown) => void; op: string };

/**
 * A forked child (default: test/fixtures/agent.cjs) with IPC ('advanced' serialization, so
 * Buffers, typed arrays and Dates survive). Collects stdout/stderr and events.
 */
export class Child {
  readonly proc: ChildProcess;
  readonly label: string;
  stdout = '';
  stderr = '';
  readonly events: ChildEvent[] = [];
  exitInfo: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  #nextId = 1;
  readonly #pending = new Map<number, Pending>();
  readonly #watchers = new Set<() => void>();

  constructor(script = 'agent.cjs', options: SpawnOptions = {}) {
    this.label = options.label ?? script;
    this.proc = fork(path.join(FIXTURES, script), [], {
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      serialization: 'advanced',
      execArgv: options.execArgv ?? [],
      cwd: REPO,
      env: options.env ?? process.env,
    });
    processes.add(this.proc);
    this.proc.stdout?.setEncoding('utf8');
    this.proc.stderr?.setEncoding('utf8');
    this.proc.stdout?.on('data', (d: string) => {
      this.stdout += d;
      this.#notify();
    });
    this.proc.stderr?.on('data', (d: string) => {
      this.stderr += d;
      this.#notify();
    });
    this.proc.on('message', (m: unknown) => this.#onMessage(m));
    this.proc.on('error', () => undefined); // e.g. EPIPE on a send to a dead child
    this.exited = new Promise((resolve) => {
      this.proc.on('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        for (const p of this.#pending.values()) {
          p.reject(new Error(`${this.label} (pid ${this.pid}) exited (code ${code}, signal ${signal}) during ${p.op}; stderr: ${this.stderr.slice(-2000)}`));
        }
        this.#pending.clear();
        this.#notify();
        resolve({ code, signal });
      });
    });
  }

  get pid(): number {
    return this.proc.pid as number;
  }

  get alive(): boolean {
    return this.exitInfo === null;
  }

  #onMessage(m: unknown): void {
    const msg = m as { id?: number; ok?: boolean; result?: unknown; error?: ChildError; event?: string };
    if (typeof msg.id === 'number') {
      const p = this.#pending.get(msg.id);
      if (p) {
        this.#pending.delete(msg.id);
        if (msg.ok) p.resolve(msg.result);
        else p.reject(new ChildRequestError(p.op, msg.error ?? { message: 'unknown error' }));
      }
    } else if (typeof msg.event === 'string') {
      this.events.push(msg as ChildEvent);
    }
    this.#notify();
  }

  #notify(): void {
    for (const w of [...this.#watchers]) w();
  }

  /**
   * Sends a request; the promise settles with the reply. Ignoring it is safe (a request that
   * never returns, e.g. one parked at a test hook, does not cause an unhandled rejection).
   */
  request<T = unknown>(op: string, args: Record<string, unknown> = {}): Promise<T> {
    const id = this.#nextId++;
    const p = new Promise<T>((resolve, reject) => {
      if (!this.alive) {
        reject(new Error(`${this.label} is not running (op ${op})`));
        return;
      }
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject, op });
      this.proc.send({ id, op, ...args });
    });
    p.catch(() => undefined);
    return p;
  }

  /** A request with a deadline. */
  call<T = unknown>(op: string, args: Record<string, unknown> = {}, timeoutMs = 15_000): Promise<T> {
    return this.#deadline(this.request<T>(op, args), timeoutMs, `reply to ${op}`);
  }

  #deadline<T>(p: Promise<T>, timeoutMs: number, what: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`${this.label} (pid ${this.pid}): timed out after ${timeoutMs} ms waiting for ${what}; stderr: ${this.stderr.slice(-2000)}`)),
        timeoutMs,
      );
    });
    return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
  }

  /** Resolves once `check()` is truthy (re-checked on every message, output and exit). */
  waitFor<T>(check: () => T | undefined | null | false, what: string, timeoutMs = 15_000): Promise<T> {
    const p = new Promise<T>((resolve, reject) => {
      const watcher = (): void => {
        let v: T | undefined | null | false;
        try {
          v = check();
        } catch (e) {
          this.#watchers.delete(watcher);
          reject(e);
          return;
        }
        if (v) {
          this.#watchers.delete(watcher);
          resolve(v);
        } else if (!this.alive) {
          this.#watchers.delete(watcher);
          reject(new Error(`${this.label} (pid ${this.pid}) exited (${JSON.stringify(this.exitInfo)}) before ${what}; stderr: ${this.stderr.slice(-2000)}`));
        }
      };
      this.#watchers.add(watcher);
      watcher();
    });
    p.catch(() => undefined);
    return this.#deadline(p, timeoutMs, what);
  }

  /** The first event named `name` (from `from` on) that satisfies `match`. */
  waitEvent(name: string, match: (e: ChildEvent) => boolean = () => true, timeoutMs = 15_000, from = 0): Promise<ChildEvent> {
    return this.waitFor(() => this.events.slice(from).find((e) => e.event === name && match(e)), `event ${name}`, timeoutMs);
  }

  /** Events named `name`. */
  eventsNamed(name: string): ChildEvent[] {
    return this.events.filter((e) => e.event === name);
  }

  /** Waits for `text` on the child's stderr. */
  waitStderr(text: string, timeoutMs = 15_000): Promise<true> {
    return this.waitFor(() => this.stderr.includes(text) || undefined, `stderr ${JSON.stringify(text)}`, timeoutMs) as Promise<true>;
  }

  /** Waits for the 'ready' event the agent sends once it has loaded the package. */
  ready(timeoutMs = 20_000): Promise<ChildEvent> {
    return this.waitEvent('ready', () => true, timeoutMs);
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (!this.alive) return;
    try {
      process.kill(this.pid, signal);
    } catch {
      // already gone
    }
  }

  waitExit(timeoutMs = 15_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    return this.#deadline(this.exited, timeoutMs, 'exit');
  }
}

/** Forks an agent child and waits until it has loaded the package. */
export async function spawnAgent(label: string, options: SpawnOptions = {}): Promise<Child> {
  const c = new Child('agent.cjs', { ...options, label });
  await c.ready();
  return c;
}

/** Forks several agents at once. */
export function spawnAgents(labels: string[], options: SpawnOptions = {}): Promise<Child[]> {
  return Promise.all(labels.map((l) => spawnAgent(l, options)));
}

/** True if a process with this pid exists (and is not a zombie of ours that was reaped). */
export function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Fixtures that speak in `{ type, ... }` messages (test/fixtures/router-*.cjs)

export interface ChildMessage {
  type: string;
  [key: string]: unknown;
}

/**
 * A forked fixture whose `{ type, ... }` messages are buffered, so none is missed between awaits.
 * Killed by cleanup().
 */
export class FixtureChild {
  readonly proc: ChildProcess;
  readonly #inbox: ChildMessage[] = [];
  readonly #waiting: Array<() => void> = [];
  #exit: string | null = null;
  readonly #exitCode: Promise<number | null>;

  constructor(readonly file: string, args: string[] = []) {
    this.proc = fork(path.join(FIXTURES, file), args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    processes.add(this.proc);
    this.proc.on('message', (m: ChildMessage) => {
      this.#inbox.push(m);
      for (const w of this.#waiting.splice(0)) w();
    });
    this.#exitCode = new Promise((resolve) => {
      this.proc.once('exit', (code, signal) => {
        this.#exit = `exited (${code ?? signal})`;
        for (const w of this.#waiting.splice(0)) w();
        resolve(code);
      });
    });
  }

  /** Takes the first buffered message of `type`, waiting for it; throws on an 'error' message, exit or timeout. */
  async next(type: string, timeoutMs = 20_000): Promise<ChildMessage> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.#inbox.findIndex((m) => m.type === type || m.type === 'error');
      if (i >= 0) {
        const [m] = this.#inbox.splice(i, 1) as [ChildMessage];
        if (m.type === 'error') throw new Error(`${this.file} failed: ${String(m.code)} ${String(m.message)}`);
        return m;
      }
      if (this.#exit !== null) throw new Error(`${this.file} ${this.#exit} before sending '${type}'`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${this.file}: no '${type}' message within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiting.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Resolves with the exit code once the process has exited. */
  exitCode(): Promise<number | null> {
    return this.#exitCode;
  }
}

/**
 * One SageQueue per entry of `delaysMs` (named after `tag` and its index), each drained by its own
 * router-consumer.cjs fixture tagged c<i> that sleeps delaysMs[i] ms per message; resolves once
 * every consumer has attached. cleanup() kills the consumers and destroys the queues.
 */
export async function startConsumers(
  tag: string,
  delaysMs: number[],
  options: SageQueueOptions,
): Promise<{ queues: SageQueue<unknown>[]; consumers: FixtureChild[] }> {
  const names = delaysMs.map((_, i) => queueName(`${tag}${i}`));
  const queues = names.map((n) => track(SageQueue.create<unknown>(n, options)));
  const consumers = names.map((n, i) => new FixtureChild('router-consumer.cjs', [n, String(delaysMs[i]), `c${i}`]));
  await Promise.all(consumers.map((c) => c.next('ready')));
  return { queues, consumers };
}

/**
 * Sends the stop signal through `router` (no send may fail), then resolves with the seqs each
 * consumer of startConsumers() took, in the order taken, once every one has said 'done'.
 */
export async function stopConsumers(router: BaseRouter, consumers: FixtureChild[], stopTimeoutMs: number, doneTimeoutMs: number): Promise<number[][]> {
  const stop = await router.sendStopSignal('end', { timeoutMs: stopTimeoutMs });
  expect(stop.failed).toEqual([]);
  const done = await Promise.all(consumers.map((c) => c.next('done', doneTimeoutMs)));
  return done.map((d) => d.seqs as number[]);
}
