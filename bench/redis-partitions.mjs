#!/usr/bin/env node
// PartitionedRedisQueue throughput against Redis Clusters of 1, 2 and 3 masters (no replicas),
// each started here on free loopback ports (slots assigned with CLUSTER ADDSLOTSRANGE, nodes
// joined with CLUSTER MEET), stopped by pid and its directory removed at the end.
//
//   import { benchRedisPartitions } from './bench/redis-partitions.mjs'; const rows = await benchRedisPartitions({ quick: true });
//   node bench/redis-partitions.mjs [--quick] [--json results.json]
//
// The same workload on each cluster: a queue of 12 partitions (codec msgpack, as the RedisQueue
// throughput rows); 2 producer processes put `total / 2` small objects each (putManyAsync of
// 512, keyOf over 1000 keys), 2 consumer
// processes (auto ack) take them with getManyAsync(500) until the queue is closed and drained.
// A row: { name, masters, partitions, msgsPerSec } = total / (time from the first put to the last
// get), with where the CPU went: clientUsPerMsg (the 4 Node processes together), masterUsPerMsg
// (each master, INFO cpu) and serverCeilingMsgsPerSec = 1 / the busiest master's CPU per message —
// what the masters could serve with the clients on other machines. Producers and consumers, and
// the Redis nodes, share this machine's CPUs.
import { fork, spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './lib/free-port.mjs';

const require = createRequire(import.meta.url);
const { Redis } = require('ioredis');
const HERE = fileURLToPath(import.meta.url);
const PARTITIONS = 12;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function command(port, ...args) {
  const c = new Redis({ host: '127.0.0.1', port, lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
  c.on('error', () => {});
  try {
    await c.connect();
    return await c.call(...args.map(String));
  } finally {
    c.disconnect();
  }
}

/** Starts `masters` cluster nodes (no replicas) and spreads the 16384 slots over them. */
export async function startCluster(masters) {
  const dir = mkdtempSync(join(tmpdir(), 'sageq-bench-rcluster-'));
  const nodes = [];
  const stop = () => {
    for (const n of nodes) {
      try {
        if (n.child.exitCode === null && n.child.signalCode === null) process.kill(n.child.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  process.on('exit', stop);
  for (let i = 0; i < masters; i++) {
    const port = await freePort();
    const d = join(dir, `n${i}`);
    mkdirSync(d);
    const child = spawn('redis-server', [
      '--port', String(port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-config-file', join(d, 'nodes.conf'),
      '--cluster-node-timeout', '2000', '--cluster-announce-ip', '127.0.0.1', '--dir', d, '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--logfile', join(d, 'redis.log'),
    ], { stdio: 'ignore' });
    nodes.push({ port, child });
  }
  for (const n of nodes) {
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        if ((await command(n.port, 'PING')) === 'PONG') break;
      } catch {
        /* not yet */
      }
      if (Date.now() > deadline) throw new Error(`cluster node ${n.port} did not start`);
      await sleep(20);
    }
  }
  const per = Math.ceil(16384 / masters);
  for (let i = 0; i < masters; i++) {
    await command(nodes[i].port, 'CLUSTER', 'ADDSLOTSRANGE', i * per, Math.min(16383, (i + 1) * per - 1));
    if (i > 0) await command(nodes[i].port, 'CLUSTER', 'MEET', '127.0.0.1', nodes[0].port);
  }
  const deadline = Date.now() + 20_000;
  for (;;) {
    const infos = await Promise.all(nodes.map((n) => command(n.port, 'CLUSTER', 'INFO')));
    if (infos.every((i) => /cluster_state:ok/.test(i) && new RegExp(`cluster_known_nodes:${masters}\\b`).test(i))) break;
    if (Date.now() > deadline) throw new Error('the bench cluster did not reach cluster_state:ok');
    await sleep(50);
  }
  return { url: `redis+cluster://${nodes.map((n) => `127.0.0.1:${n.port}`).join(',')}`, ports: nodes.map((n) => n.port), stop };
}

/** Forks a producer or consumer of this file; resolves with its final report. */
function child(role, env) {
  return new Promise((resolve, reject) => {
    const proc = fork(HERE, ['--child', role], { env: { ...process.env, ...env }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let report;
    proc.on('message', (m) => {
      if (m.type === 'error') reject(new Error(`${role}: ${m.message}`));
      else report = m;
    });
    proc.on('exit', (code) => (code === 0 && report ? resolve(report) : reject(new Error(`${role} exited with ${code}`))));
  });
}

async function runChild(role) {
  const { PartitionedRedisQueue } = require('../dist/index.js');
  const options = { url: process.env.BENCH_URL, name: process.env.BENCH_NAME, partitions: PARTITIONS, leaseMs: 3000, codec: 'msgpack', keyOf: (x) => x.key };
  const q = new PartitionedRedisQueue(options);
  if (role === 'producer') {
    const count = Number(process.env.BENCH_COUNT);
    const base = Number(process.env.BENCH_BASE);
    let sent = 0;
    const start = Date.now();
    while (sent < count) {
      const n = Math.min(512, count - sent);
      await q.putManyAsync(Array.from({ length: n }, (_, i) => ({ key: `k${(base + sent + i) % 1000}`, n: base + sent + i, pad: 'x'.repeat(32) })));
      sent += n;
    }
    const cpu = process.cpuUsage();
    process.send({ type: 'done', sent, start, end: Date.now(), cpuUs: cpu.user + cpu.system });
  } else {
    let got = 0;
    let last = 0;
    for (;;) {
      try {
        const items = await q.getManyAsync(500, { timeoutMs: 1000 });
        got += items.length;
        last = Date.now();
      } catch (e) {
        if (e.code === 'ERR_QUEUE_EMPTY') continue;
        if (e.code === 'ERR_QUEUE_CLOSED') break;
        throw e;
      }
    }
    const cpu = process.cpuUsage();
    process.send({ type: 'done', got, last, cpuUs: cpu.user + cpu.system });
  }
  await q.release();
}

/** CPU seconds (user + sys) each node has used so far (INFO cpu). */
async function serverCpu(ports) {
  return Promise.all(ports.map(async (port) => {
    const info = await command(port, 'INFO', 'cpu');
    const f = (k) => Number(new RegExp(`${k}:([0-9.]+)`).exec(info)?.[1] ?? 0);
    return f('used_cpu_user') + f('used_cpu_sys');
  }));
}

/** One cluster size: the rows' msgs/s, and where the CPU went (the clients, each master). */
async function measure(masters, total) {
  const cluster = await startCluster(masters);
  try {
    const { PartitionedRedisQueue } = require('../dist/index.js');
    const name = `bench${masters}`;
    const env = { BENCH_URL: cluster.url, BENCH_NAME: name };
    const consumers = [child('consumer', env), child('consumer', env)];
    await sleep(1500); // both consumers joined and hold 6 partitions each
    const cpu0 = await serverCpu(cluster.ports);
    const t0 = Date.now();
    const producers = [0, 1].map((i) => child('producer', { ...env, BENCH_COUNT: String(total / 2), BENCH_BASE: String(i * (total / 2)) }));
    const made = await Promise.all(producers);
    const closer = new PartitionedRedisQueue({ url: cluster.url, name, partitions: PARTITIONS, codec: 'msgpack' });
    await closer.close();
    await closer.release();
    const reports = await Promise.all(consumers);
    const got = reports.reduce((a, r) => a + r.got, 0);
    if (got !== total) throw new Error(`received ${got} of ${total}`);
    // The consumers notice the close within a block slice: end at the last item received, not at their exit.
    const end = Math.max(...reports.map((r) => r.last));
    const cpu1 = await serverCpu(cluster.ports);
    // Per master: its CPU per message moved. The busiest master bounds what the cluster could serve
    // if the clients were elsewhere (one core per master): 1 / its CPU per message.
    const masterUsPerMsg = cpu1.map((c, i) => ((c - cpu0[i]) * 1e6) / total);
    const busiest = Math.max(...masterUsPerMsg);
    const clientUsPerMsg = [...made, ...reports].reduce((a, r) => a + r.cpuUs, 0) / total;
    return {
      name: `PartitionedRedisQueue ${PARTITIONS} partitions, ${masters} master${masters > 1 ? 's' : ''}`, masters, partitions: PARTITIONS,
      msgsPerSec: total / ((end - t0) / 1000), masterUsPerMsg, serverCeilingMsgsPerSec: 1e6 / busiest, clientUsPerMsg,
    };
  } finally {
    cluster.stop();
  }
}

export async function benchRedisPartitions({ quick = false } = {}) {
  const total = quick ? 40_000 : 120_000;
  const rows = [];
  for (const masters of [1, 2, 3]) rows.push(await measure(masters, total));
  return rows;
}

if (process.argv[1] === HERE) {
  const i = process.argv.indexOf('--child');
  if (i >= 0) {
    runChild(process.argv[i + 1]).then(
      () => process.exit(0),
      (e) => {
        process.send({ type: 'error', message: String(e?.stack ?? e) });
        process.exit(1);
      },
    );
  } else {
    const quick = process.argv.includes('--quick');
    const j = process.argv.indexOf('--json');
    const rows = await benchRedisPartitions({ quick });
    for (const r of rows) {
      console.log(
        `${r.name}: ${Math.round(r.msgsPerSec).toLocaleString('en-US')} msg/s; CPU µs/msg: clients ${r.clientUsPerMsg.toFixed(1)}, ` +
          `masters ${r.masterUsPerMsg.map((x) => x.toFixed(2)).join(' / ')} → the busiest master alone could serve ${Math.round(r.serverCeilingMsgsPerSec).toLocaleString('en-US')} msg/s`,
      );
    }
    if (j >= 0) writeFileSync(process.argv[j + 1], JSON.stringify({ rows }, null, 2));
  }
}
