/**
 * A real Redis Cluster for tests: `masters` masters and one replica each, every node a
 * redis-server on free loopback ports (client port and cluster-bus port both chosen free, so the
 * bus is never port + 10000 past 65535), in one temporary directory. `redis-cli --cluster create`
 * assigns the slots; start() resolves once every node reports cluster_state:ok and knows every
 * other node.
 *
 * Every node is stopped by its pid and the directory removed by stop(), and every node still
 * running is SIGKILLed when the test process exits (a failing test file leaves nothing behind).
 * kill9() crashes one node; waitForFailover() waits until its replica has taken its slots.
 * migrateSlot() moves one slot between masters by hand (SETSLOT IMPORTING/MIGRATING, MIGRATE of
 * the keys, SETSLOT NODE), with pauses the test chooses, so clients meet ASK and MOVED.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';

import { exited, freePort, keepAtExit, killAtExit, removeAtExit, terminate } from './redis-server';

const LOOPBACK = '127.0.0.1';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface ClusterNodeInfo {
  id: string;
  port: number;
  role: 'master' | 'replica';
  /** The master's id, for a replica. */
  masterId: string | undefined;
  failed: boolean;
  /** Slot ranges [from, to] this master serves. */
  slots: Array<[number, number]>;
}

export class ClusterNodeProcess {
  readonly port: number;
  readonly busPort: number;
  readonly dir: string;
  child: ChildProcess | undefined;

  constructor(port: number, busPort: number, dir: string) {
    this.port = port;
    this.busPort = busPort;
    this.dir = dir;
  }

  get running(): boolean {
    const c = this.child;
    return c !== undefined && c.exitCode === null && c.signalCode === null;
  }

  get address(): string {
    return `${LOOPBACK}:${this.port}`;
  }

  log(): string {
    try {
      return readFileSync(join(this.dir, 'redis.log'), 'utf8');
    } catch {
      return '';
    }
  }

  /** A plain (non-cluster) client of this node alone. */
  client(): Redis {
    const c = new Redis({ host: LOOPBACK, port: this.port, maxRetriesPerRequest: 1, retryStrategy: () => null, lazyConnect: false });
    c.on('error', () => undefined);
    return c;
  }

  /** One command on this node with a short-lived connection. */
  async command<R = unknown>(...args: Array<string | number>): Promise<R> {
    const c = this.client();
    try {
      return (await c.call(String(args[0]), ...args.slice(1).map(String))) as R;
    } finally {
      c.disconnect();
    }
  }
}

export interface RedisClusterOptions {
  /** Masters (each gets one replica). Default 3. */
  masters?: number;
  /** cluster-node-timeout: how long a silent master takes to be marked failed. Default 1000 ms. */
  nodeTimeoutMs?: number;
  /** Extra redis-server arguments for every node. */
  args?: string[];
}

export class RedisCluster {
  readonly dir: string;
  readonly nodes: ClusterNodeProcess[] = [];
  readonly #options: Required<RedisClusterOptions>;
  readonly #watchdogs: ChildProcess[] = [];

  private constructor(options: Required<RedisClusterOptions>) {
    this.#options = options;
    this.dir = mkdtempSync(join(tmpdir(), 'sageq-rcluster-'));
    removeAtExit(this.dir);
  }

  /** Starts the nodes, creates the cluster, and waits for cluster_state:ok everywhere. */
  static async start(options: RedisClusterOptions = {}): Promise<RedisCluster> {
    const cluster = new RedisCluster({ masters: options.masters ?? 3, nodeTimeoutMs: options.nodeTimeoutMs ?? 1000, args: options.args ?? [] });
    try {
      const count = cluster.#options.masters * 2;
      const used = new Set<number>();
      for (let i = 0; i < count; i++) {
        let port = await freePort();
        while (used.has(port)) port = await freePort();
        used.add(port);
        let bus = await freePort();
        while (used.has(bus)) bus = await freePort();
        used.add(bus);
        const dir = join(cluster.dir, `n${i}`);
        mkdirSync(dir);
        cluster.nodes.push(new ClusterNodeProcess(port, bus, dir));
      }
      await Promise.all(cluster.nodes.map((n) => cluster.#spawn(n)));
      const create = spawnSync(
        'redis-cli',
        ['--cluster', 'create', ...cluster.nodes.map((n) => n.address), '--cluster-replicas', '1', '--cluster-yes'],
        { encoding: 'utf8', timeout: 30_000 },
      );
      if (create.status !== 0) throw new Error(`redis-cli --cluster create failed: ${create.stdout}\n${create.stderr}`);
      cluster.#startWatchdog();
      await cluster.waitOk(20_000);
      return cluster;
    } catch (e) {
      await cluster.stop();
      throw e;
    }
  }

  /**
   * A detached shell that SIGKILLs the nodes and removes the directory if this process dies
   * without stop() (vitest ends its forks with a signal, which skips 'exit' handlers).
   */
  #startWatchdog(nodes: ClusterNodeProcess[] = this.nodes): void {
    const pids = nodes.map((n) => n.child?.pid).filter((p): p is number => p !== undefined);
    const script = `while kill -0 ${process.pid} 2>/dev/null; do sleep 0.5; done; kill -9 ${pids.join(' ')} 2>/dev/null; rm -rf '${this.dir}'`;
    const dog = spawn('sh', ['-c', script], { stdio: 'ignore', detached: true });
    dog.unref();
    this.#watchdogs.push(dog);
    killAtExit(dog);
  }

  /** `redis+cluster://` URL naming every node (the form RedisQueue and the route store accept). */
  get url(): string {
    return `redis+cluster://${this.nodes.map((n) => n.address).join(',')}`;
  }

  async #spawn(node: ClusterNodeProcess): Promise<void> {
    const args = [
      '--port', String(node.port), '--cluster-port', String(node.busPort), '--bind', LOOPBACK, '--protected-mode', 'yes',
      '--cluster-enabled', 'yes', '--cluster-config-file', join(node.dir, 'nodes.conf'),
      '--cluster-node-timeout', String(this.#options.nodeTimeoutMs), '--dir', node.dir, '--save', '', '--appendonly', 'no',
      '--daemonize', 'no', '--logfile', join(node.dir, 'redis.log'),
      // Replicas sync at once (the default waits 5 s for more replicas to share a transfer), and
      // a replica may take over however long it was cut off (the default refuses after ~10 node
      // timeouts without its master, e.g. one that never finished its first sync).
      '--repl-diskless-sync-delay', '0', '--cluster-replica-validity-factor', '0', ...this.#options.args,
    ];
    const child = spawn('redis-server', args, { stdio: 'ignore' });
    node.child = child;
    killAtExit(child);
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (!node.running) throw new Error(`redis-server (cluster node ${node.port}) exited at start: ${node.log().slice(-500)}`);
      try {
        if ((await node.command('PING')) === 'PONG') return;
      } catch {
        /* not yet */
      }
      if (Date.now() > deadline) throw new Error(`cluster node ${node.port} did not start: ${node.log().slice(-500)}`);
      await sleep(20);
    }
  }

  /** Waits until every running node says cluster_state:ok, knows every node, and all slots are served. */
  async waitOk(timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    for (;;) {
      const running = this.nodes.filter((n) => n.running);
      try {
        const infos = await Promise.all(running.map((n) => n.command<string>('CLUSTER', 'INFO')));
        const ok = infos.every((info) => /cluster_state:ok/.test(info) && /cluster_slots_ok:16384/.test(info) && new RegExp(`cluster_known_nodes:${this.nodes.length}\\b`).test(info));
        if (ok) {
          // Every running node agrees on who serves each master's slots.
          const views = await Promise.all(running.map((n) => this.topology(n)));
          const key = (v: ClusterNodeInfo[]): string => v.filter((x) => x.role === 'master' && x.slots.length > 0 && !x.failed).map((x) => `${x.id}:${JSON.stringify(x.slots)}`).sort().join('|');
          if (views.every((v) => key(v) === key(views[0] as ClusterNodeInfo[]))) {
            // Every replica has finished its sync with its master.
            const repl = await Promise.all(running.map((n) => n.command<string>('INFO', 'replication')));
            if (repl.every((r) => !/role:slave/.test(r) || /master_link_status:up/.test(r))) return;
            last = 'a replica has not finished its first sync';
          } else {
            last = 'nodes disagree on the slot map';
          }
        } else {
          last = infos.join('\n---\n').slice(0, 800);
        }
      } catch (e) {
        last = String(e);
      }
      if (Date.now() > deadline) throw new Error(`the cluster did not reach cluster_state:ok: ${last}`);
      await sleep(50);
    }
  }

  /** CLUSTER NODES as seen by `from` (default: the first running node). */
  async topology(from?: ClusterNodeProcess): Promise<ClusterNodeInfo[]> {
    const node = from ?? this.nodes.find((n) => n.running);
    if (node === undefined) throw new Error('no cluster node is running');
    const text = await node.command<string>('CLUSTER', 'NODES');
    return text.trim().split('\n').map((line) => {
      const parts = line.split(' ');
      const flags = (parts[2] as string).split(',');
      const slots: Array<[number, number]> = [];
      for (const s of parts.slice(8)) {
        if (s.startsWith('[')) continue; // a slot being imported or migrated
        const [a, b] = s.split('-');
        slots.push([Number(a), Number(b ?? a)]);
      }
      return {
        id: parts[0] as string,
        port: Number(/:(\d+)@/.exec(parts[1] as string)?.[1]),
        role: flags.includes('master') ? 'master' : 'replica',
        masterId: parts[3] === '-' ? undefined : parts[3],
        failed: flags.includes('fail') || flags.includes('fail?'),
        slots,
      } satisfies ClusterNodeInfo;
    });
  }

  node(port: number): ClusterNodeProcess {
    const n = this.nodes.find((x) => x.port === port);
    if (n === undefined) throw new Error(`no cluster node on port ${port}`);
    return n;
  }

  /** The hash slot of a key (CLUSTER KEYSLOT). */
  async slotOf(key: string): Promise<number> {
    const node = this.nodes.find((n) => n.running) as ClusterNodeProcess;
    return Number(await node.command('CLUSTER', 'KEYSLOT', key));
  }

  /**
   * The master serving `slot` now (by its own word: the running master whose CLUSTER NODES
   * "myself" line lists the slot), and its replica.
   */
  async ownerOf(slot: number): Promise<{ master: ClusterNodeProcess; masterId: string; replica: ClusterNodeProcess | undefined }> {
    let m: ClusterNodeInfo | undefined;
    let topo: ClusterNodeInfo[] = [];
    for (const n of this.nodes.filter((x) => x.running)) {
      const view = await this.topology(n).catch(() => []);
      const self = view.find((x) => x.port === n.port);
      if (self?.role === 'master' && self.slots.some(([a, b]) => slot >= a && slot <= b)) {
        m = self;
        topo = view;
        break;
      }
    }
    if (m === undefined) throw new Error(`no master serves slot ${slot}`);
    const r = topo.find((x) => x.role === 'replica' && x.masterId === m.id && !x.failed);
    return { master: this.node(m.port), masterId: m.id, replica: r === undefined ? undefined : this.node(r.port) };
  }

  /** SIGKILL one node. */
  async kill9(node: ClusterNodeProcess): Promise<void> {
    const child = node.child;
    if (child?.pid === undefined || !node.running) return;
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
    await exited(child);
  }

  /**
   * Starts a stopped node again on its port with its nodes.conf: it rejoins the cluster (a dead
   * master whose slots were taken over comes back as a replica of its successor). Resolves when
   * every node reports cluster_state:ok and every replica has synced.
   */
  async restart(node: ClusterNodeProcess): Promise<void> {
    if (node.running) throw new Error(`cluster node ${node.port} is still running`);
    await this.#spawn(node);
    this.#startWatchdog([node]);
    await this.waitOk(20_000);
  }

  /** Waits until `slot` is served by a master other than `deadPort`, and the survivors agree (cluster_state:ok). */
  async waitForFailover(slot: number, deadPort: number, timeoutMs = 20_000): Promise<ClusterNodeProcess> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const { master } = await this.ownerOf(slot);
        if (master.port !== deadPort && master.running) {
          await this.#waitSurvivorsOk(Math.max(1000, deadline - Date.now()));
          return master;
        }
      } catch {
        /* not yet */
      }
      if (Date.now() > deadline) throw new Error(`no replica took slot ${slot} over from port ${deadPort} within ${timeoutMs} ms`);
      await sleep(100);
    }
  }

  async #waitSurvivorsOk(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const infos = await Promise.all(this.nodes.filter((n) => n.running).map((n) => n.command<string>('CLUSTER', 'INFO').catch(() => '')));
      if (infos.every((i) => /cluster_state:ok/.test(i))) return;
      if (Date.now() > deadline) throw new Error('the surviving nodes did not report cluster_state:ok');
      await sleep(50);
    }
  }

  /**
   * Moves `slot` from its master to `to`, by hand: IMPORTING on the target, MIGRATING on the
   * source, then the keys one MIGRATE at a time with `pauseMs` between them (clients meet ASK and
   * TRYAGAIN meanwhile), then SETSLOT NODE everywhere (clients then meet MOVED).
   */
  async migrateSlot(slot: number, to: ClusterNodeProcess, pauseMs = 0): Promise<{ keys: number }> {
    const topo = await this.topology();
    const src = topo.find((x) => x.role === 'master' && x.slots.some(([a, b]) => slot >= a && slot <= b));
    const dst = topo.find((x) => x.port === to.port);
    if (src === undefined || dst === undefined || dst.role !== 'master') throw new Error('migrateSlot: unknown source or target master');
    const source = this.node(src.port);
    await to.command('CLUSTER', 'SETSLOT', slot, 'IMPORTING', src.id);
    await source.command('CLUSTER', 'SETSLOT', slot, 'MIGRATING', dst.id);
    let moved = 0;
    for (;;) {
      const keys = await source.command<string[]>('CLUSTER', 'GETKEYSINSLOT', slot, 1);
      if (keys.length === 0) break;
      if (pauseMs > 0) await sleep(pauseMs);
      await source.command('MIGRATE', LOOPBACK, to.port, '', 0, 5000, 'KEYS', ...keys);
      moved += keys.length;
    }
    if (pauseMs > 0) await sleep(pauseMs);
    await to.command('CLUSTER', 'SETSLOT', slot, 'NODE', dst.id);
    await source.command('CLUSTER', 'SETSLOT', slot, 'NODE', dst.id);
    for (const m of topo.filter((x) => x.role === 'master' && x.id !== src.id && x.id !== dst.id)) {
      await this.node(m.port).command('CLUSTER', 'SETSLOT', slot, 'NODE', dst.id).catch(() => undefined);
    }
    return { keys: moved };
  }

  /** Stops every node by pid (SIGTERM, then SIGKILL after 3 s) and removes the directory. */
  async stop(): Promise<void> {
    await Promise.all(
      this.nodes.map(async (n) => {
        if (n.child !== undefined && n.running) await terminate(n.child);
      }),
    );
    for (const dog of this.#watchdogs) {
      if (dog.pid === undefined || dog.exitCode !== null || dog.signalCode !== null) continue;
      try {
        process.kill(dog.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
    keepAtExit(this.dir);
  }
}
