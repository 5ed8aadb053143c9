/**
 * A real redis-server for tests: started on a free loopback port with a temporary directory,
 * stopped by its pid. `kill9()` + `restart()` simulate a crash and a restart on the same port
 * (with `appendonly`, the data comes back from the AOF). Every server started here is also killed
 * when the test process exits, so a failing test file cannot leave one behind.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';

export interface RedisServerOptions {
  /** --appendonly yes. Default false (no persistence at all). */
  appendonly?: boolean;
  /** --appendfsync. Default 'always' when appendonly. */
  appendfsync?: 'always' | 'everysec' | 'no';
  /** Extra command-line arguments, e.g. ['--requirepass', 'x']. */
  args?: string[];
}

const LOOPBACK = '127.0.0.1';
const live = new Set<ChildProcess>();
const liveDirs = new Set<string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of live) {
      if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
        try {
          process.kill(child.pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
    }
    for (const dir of liveDirs) rmSync(dir, { recursive: true, force: true });
  });
}

/** SIGKILLs `child` when this test process exits, unless it has exited by then. */
export function killAtExit(child: ChildProcess): void {
  installExitHook();
  live.add(child);
  child.once('exit', () => live.delete(child));
}

/** Removes `dir` when this test process exits, unless keepAtExit(dir) says it is gone already. */
export function removeAtExit(dir: string): void {
  installExitHook();
  liveDirs.add(dir);
}

export function keepAtExit(dir: string): void {
  liveDirs.delete(dir);
}

/** A port the kernel says is free on the loopback interface right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, LOOPBACK, () => {
      const address = srv.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Resolves once `child` has exited (at once if it already has). */
export function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** Stops a server process: SIGTERM, SIGKILL if it is still running 3 s later; resolves on exit. */
export async function terminate(child: ChildProcess): Promise<void> {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const signal = (sig: NodeJS.Signals): void => {
    try {
      if (child.pid !== undefined) process.kill(child.pid, sig);
    } catch {
      /* gone */
    }
  };
  signal('SIGTERM');
  const timer = setTimeout(() => signal('SIGKILL'), 3000);
  await exited(child);
  clearTimeout(timer);
}

export class RedisServer {
  readonly dir: string;
  port = 0;
  #child: ChildProcess | undefined;
  readonly #options: RedisServerOptions;

  private constructor(options: RedisServerOptions) {
    this.#options = options;
    this.dir = mkdtempSync(join(tmpdir(), 'sageq-redis-'));
  }

  /** Starts a server on a free loopback port (tries a few ports if one is taken meanwhile). */
  static async start(options: RedisServerOptions = {}): Promise<RedisServer> {
    const server = new RedisServer(options);
    let lastError: unknown;
    for (let attempt = 0; attempt < 5; attempt++) {
      server.port = await freePort();
      try {
        await server.#spawn();
        return server;
      } catch (e) {
        lastError = e;
        await server.#killChild();
      }
    }
    rmSync(server.dir, { recursive: true, force: true });
    throw lastError;
  }

  get url(): string {
    return `redis://${LOOPBACK}:${this.port}`;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  get running(): boolean {
    const c = this.#child;
    return c !== undefined && c.exitCode === null && c.signalCode === null;
  }

  #args(): string[] {
    const o = this.#options;
    const args = [
      '--port', String(this.port), '--bind', LOOPBACK, '--protected-mode', 'yes', '--dir', this.dir, '--save', '',
      '--daemonize', 'no', '--logfile', join(this.dir, 'redis.log'), '--databases', '1',
    ];
    if (o.appendonly) args.push('--appendonly', 'yes', '--appendfsync', o.appendfsync ?? 'always');
    else args.push('--appendonly', 'no');
    return [...args, ...(o.args ?? [])];
  }

  async #spawn(): Promise<void> {
    const child = spawn('redis-server', this.#args(), { stdio: 'ignore' });
    this.#child = child;
    killAtExit(child);
    await this.#waitReady(child);
  }

  async #waitReady(child: ChildProcess): Promise<void> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`redis-server exited at start: ${this.log().slice(-500)}`);
      // No ready check (ioredis would sleep a second while the AOF loads): PING answers LOADING
      // until the data set is loaded, then PONG.
      const client = new Redis({
        host: LOOPBACK, port: this.port, lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, connectTimeout: 500, enableReadyCheck: false,
      });
      client.on('error', () => undefined);
      try {
        await client.connect();
        const reply = await client.ping().catch((e: Error) => e.message);
        if (reply === 'PONG' || /NOAUTH/.test(String(reply))) return;
      } catch {
        /* not yet */
      } finally {
        client.disconnect();
      }
      if (Date.now() > deadline) throw new Error(`redis-server did not become ready on port ${this.port}: ${this.log().slice(-500)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  log(): string {
    try {
      return readFileSync(join(this.dir, 'redis.log'), 'utf8');
    } catch {
      return '';
    }
  }

  async #killChild(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.#child;
    if (child?.pid === undefined) return;
    if (child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(child.pid, signal);
      } catch {
        /* gone */
      }
    }
    await exited(child);
  }

  /** SIGKILL, like a crash: nothing is flushed beyond what appendfsync already wrote. */
  async kill9(): Promise<void> {
    await this.#killChild('SIGKILL');
  }

  /** Starts again on the same port and directory (after kill9 or stop). */
  async restart(): Promise<void> {
    if (this.running) throw new Error('redis-server is still running');
    await this.#spawn();
  }

  /** A plain ioredis client for checks from the test. */
  client(): Redis {
    const c = new Redis({ host: LOOPBACK, port: this.port, maxRetriesPerRequest: 1 });
    c.on('error', () => undefined);
    return c;
  }

  /** Stops the server by pid (SIGTERM, then SIGKILL after 3 s) and removes its directory. */
  async stop(): Promise<void> {
    if (this.#child !== undefined) await terminate(this.#child);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
