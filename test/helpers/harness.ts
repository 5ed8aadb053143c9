/**
 * Shared helpers of the multi-process tests: forked children driven over IPC, waits with
 * deadlines, unique queue names, and a cleanup registry that SIGKILLs every child and destroys
 * every segment after each test, whether it passed or not.
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, unlinkSync } from 'node:fs';
import * as path from 'node:path';
import { SageQueue } from '../../lib/index';

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

const children = new Set<Child>();
const queueNames = new Set<string>();
const handles = new Set<{ release(): void }>();

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

function shmPath(name: string): string {
  return `/dev/shm/sageq.${name}`;
}

/** SIGKILLs every child still running, releases tracked handles, destroys every named segment. */
export async function cleanup(): Promise<void> {
  const kids = [...children];
  children.clear();
  for (const c of kids) c.kill('SIGKILL');
  await Promise.all(kids.map((c) => c.waitExit(10_000).catch(() => undefined)));
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

// If this test process goes away before cleanup ran, take the children with it.
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

// ---------------------------------------------------------------------------------------------
// Children

export interface SpawnOptions {
  /** Node flags for the child (e.g. ['--expose-gc']). */
  execArgv?: string[];
  /** A label used in error messages. */
  label?: string;
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
    });
    children.add(this);
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
