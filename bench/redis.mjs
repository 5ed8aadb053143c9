#!/usr/bin/env node
// Redis benchmark, one run against one redis-server (started here on a free loopback port, no
// persistence, stopped by pid at the end): what the server alone does (redis-benchmark -P 32), the
// ceilings a Node client reaches with raw ioredis pipelines (XADD + XREADGROUP COUNT + XACK, and
// LPUSH + BLMPOP COUNT), RedisQueue batched and single calls, a RedisWorkerPool's round trips
// (2 worker processes), and ping-pong latency.
//
//   import { benchRedis } from './bench/redis.mjs'; const rows = await benchRedis({ quick: true });
//   node bench/redis.mjs [--quick] [--only REGEX] [--batch N] [--server] [--json results.json]
//
// Each row: { name, msgsPerSec, p50us, p99us, commandsPerBatch? }. Throughput rows report the
// end-to-end latency of each message (put → get, through Redis) and the commands ioredis sent per
// batch of 256 messages (both sides); ping-pong rows report the round trip. Figures are the median
// of several runs (1 with quick).
import { fork, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import * as v8 from 'node:v8';
import { commandStats, redisBenchmark, serverCpuUs, serverTime } from './lib/redis-stats.mjs';
import { freePort } from './lib/free-port.mjs';

const require = createRequire(import.meta.url);
const { Redis } = require('ioredis');
const { Packet, RedisQueue, RedisWorkerPool } = require('../dist/index.js');

const PAD = 'x'.repeat(48);
const HERE_DIR = dirname(fileURLToPath(import.meta.url));

async function startRedis() {
  const dir = mkdtempSync(join(tmpdir(), 'sageq-bench-redis-'));
  const port = await freePort();
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--logfile', join(dir, 'redis.log')],
    { stdio: 'ignore' },
  );
  const kill = () => {
    try {
      if (child.exitCode === null) process.kill(child.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  };
  process.on('exit', kill);
  const deadline = Date.now() + 10_000;
  for (;;) {
    const c = new Redis({ host: '127.0.0.1', port, lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, enableReadyCheck: false });
    c.on('error', () => {});
    try {
      await c.connect();
      if ((await c.ping()) === 'PONG') break;
    } catch {
      /* not yet */
    } finally {
      c.disconnect();
    }
    if (child.exitCode !== null || Date.now() > deadline) throw new Error('redis-server did not start');
    await new Promise((r) => setTimeout(r, 20));
  }
  const stop = async () => {
    process.off('exit', kill);
    if (child.exitCode === null && child.signalCode === null) {
      process.kill(child.pid, 'SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
    rmSync(dir, { recursive: true, force: true });
  };
  return { url: `redis://127.0.0.1:${port}`, port, stop };
}

function percentile(sorted, p) {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

function summarize(name, count, ms, latenciesUs) {
  const sorted = Float64Array.from(latenciesUs).sort();
  return { name, msgsPerSec: Math.round((count * 1000) / ms), p50us: Math.round(percentile(sorted, 0.5)), p99us: Math.round(percentile(sorted, 0.99)) };
}

function median(rows) {
  const by = (k) => [...rows].sort((a, b) => a[k] - b[k])[Math.floor(rows.length / 2)][k];
  const row = { name: rows[0].name, msgsPerSec: by('msgsPerSec'), p50us: by('p50us'), p99us: by('p99us') };
  if (rows[0].commandsPerBatch !== undefined) row.commandsPerBatch = by('commandsPerBatch');
  return row;
}

let streamNo = 0;
const newStream = () => `{bench-${process.pid}-${++streamNo}}`;

// Every throughput row encodes and decodes its messages with the same codec (msgpack unless the
// row says otherwise), so raw pipelines and RedisQueue are compared like for like.
const { statelessCodecByName } = require('../dist/queue/codecs.js');
const msgpack = statelessCodecByName('msgpack');

// Commands ioredis sends (pipelined and auto-pipelined ones included: they all go through
// Redis#sendCommand), so a row can report commands per batch.
let commandsSent = 0;
const sendCommand = Redis.prototype.sendCommand;
Redis.prototype.sendCommand = function countedSendCommand(...args) {
  commandsSent++;
  return sendCommand.apply(this, args);
};

// ------------------------------------------------------------------------------------------------

/**
 * A producer that keeps up to `depth` sends of `chunk` messages in flight (pipelined, never
 * awaiting one before issuing the next) while at most `window` messages ahead of the consumer
 * (so the latencies are those of the path, not of an ever-growing backlog), and a consumer loop;
 * returns the row, with the commands sent per `chunk` messages.
 */
async function flow(name, n, { window, chunk, depth = 4 }, send, receive) {
  const lat = [];
  let issued = 0;
  let got = 0;
  let inflight = 0;
  let failure;
  let parked = [];
  const kick = () => {
    const w = parked;
    parked = [];
    for (const r of w) r();
  };
  const park = () => new Promise((r) => parked.push(r));
  const commandsBefore = commandsSent;
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  const produce = (async () => {
    while (issued < n && failure === undefined) {
      if (issued - got >= window || inflight >= depth) {
        await park();
        continue;
      }
      const from = issued;
      const to = Math.min(n, issued + chunk);
      issued = to;
      inflight++;
      send(from, to).then(
        (k) => {
          if (k !== to - from) failure ??= new Error(`${name}: sent ${k} of ${to - from}`);
          inflight--;
          kick();
        },
        (e) => {
          failure ??= e;
          inflight--;
          kick();
        },
      );
    }
    while (inflight > 0) await park();
  })();
  while (got < n && failure === undefined) {
    got += await receive(n - got, lat);
    kick();
  }
  const ms = performance.now() - started;
  await produce;
  const cpu = process.cpuUsage(cpuBefore);
  if (failure !== undefined) throw failure;
  return {
    ...summarize(name, n, ms, lat),
    commandsPerBatch: Number((((commandsSent - commandsBefore) * chunk) / n).toFixed(1)),
    clientCpuUs: Number(((cpu.user + cpu.system) / n).toFixed(2)),
  };
}

const FLOW = (batch) => ({ window: batch * 8, chunk: batch, depth: 4 });
const message = (i) => msgpack.encode({ t: performance.now(), i, pad: PAD });

/**
 * The stream ceiling of a Node client: XADD pipelined (one per message); XREADGROUP COUNT
 * `batch` BLOCK with the previous batch's XACK (and XDEL) in the same pipeline, so a batch costs
 * the consumer one round trip.
 */
async function rawStreams(url, n, batch, del) {
  const producer = new Redis(url);
  const consumer = new Redis(url);
  const key = `bench-rawx-${process.pid}-${++streamNo}`;
  await producer.xgroup('CREATE', key, 'g', '0', 'MKSTREAM');
  let toAck = [];
  const row = await flow(
    `ioredis XADD pipelined + XREADGROUP COUNT ${batch} + XACK${del ? '+XDEL' : ''} (raw pipeline)`,
    n,
    FLOW(batch),
    async (from, to) => {
      const p = producer.pipeline();
      for (let k = from; k < to; k++) p.xadd(key, '*', 'm', message(k));
      await p.exec();
      return to - from;
    },
    async (left, lat) => {
      const p = consumer.pipeline();
      if (toAck.length > 0) {
        p.xack(key, 'g', ...toAck);
        if (del) p.xdel(key, ...toAck);
      }
      p.xreadgroupBuffer('GROUP', 'g', 'c', 'COUNT', Math.min(batch, left), 'BLOCK', 1000, 'STREAMS', key, '>');
      const results = await p.exec();
      for (const [err] of results) if (err) throw err;
      const reply = results[results.length - 1][1];
      toAck = [];
      if (reply === null) return 0;
      const entries = reply[0][1];
      const now = performance.now();
      for (const [id, fields] of entries) {
        lat.push((now - msgpack.decode(fields[1]).t) * 1000);
        toAck.push(id);
      }
      return entries.length;
    },
  );
  if (toAck.length > 0) await consumer.xack(key, 'g', ...toAck);
  await producer.del(key);
  producer.disconnect();
  consumer.disconnect();
  return row;
}

/** The list ceiling: one variadic LPUSH per chunk (pipelined), BLMPOP COUNT `batch` (one call per batch). */
async function rawLists(url, n, batch) {
  const producer = new Redis(url);
  const consumer = new Redis(url);
  const key = `bench-rawl-${process.pid}-${++streamNo}`;
  const row = await flow(
    `ioredis LPUSH pipelined + BLMPOP COUNT ${batch} (raw pipeline)`,
    n,
    FLOW(batch),
    async (from, to) => {
      const values = [];
      for (let k = from; k < to; k++) values.push(message(k));
      await producer.lpush(key, ...values);
      return to - from;
    },
    async (left, lat) => {
      const reply = await consumer.callBuffer('BLMPOP', 1, 1, key, 'RIGHT', 'COUNT', Math.min(batch, left));
      if (reply === null) return 0;
      const now = performance.now();
      for (const v of reply[1]) lat.push((now - msgpack.decode(v).t) * 1000);
      return reply[1].length;
    },
  );
  await producer.del(key);
  producer.disconnect();
  consumer.disconnect();
  return row;
}

/** RedisQueue putManyAsync / getManyAsync batches. */
async function queueBatches(url, n, batch, ackMode, codec = 'msgpack') {
  const stream = newStream();
  const producer = new RedisQueue({ url, stream, codec });
  const consumer = new RedisQueue({ url, stream, ackMode });
  const acks = [];
  const row = await flow(
    `RedisQueue putManyAsync/getManyAsync x${batch} (${ackMode} ack, ${codec})`,
    n,
    FLOW(batch),
    async (from, to) => {
      const items = [];
      for (let k = from; k < to; k++) items.push({ t: performance.now(), i: k, pad: PAD });
      return producer.putManyAsync(items);
    },
    async (left, lat) => {
      const items = await consumer.getManyAsync(Math.min(batch, left), { timeoutMs: 10_000 });
      const now = performance.now();
      for (const it of items) lat.push((now - (ackMode === 'explicit' ? it.value.t : it.t)) * 1000);
      if (ackMode === 'explicit') acks.push(consumer.ackMany(items)); // settled while the next batch is read
      return items.length;
    },
  );
  await Promise.all(acks);
  await consumer.destroy();
  await Promise.all([producer.release(), consumer.release()]);
  return row;
}

/**
 * RedisWorkerPool round trips: this process routes keyed jobs (routeMany of `batch`) into a pool
 * of 4 partitions, 2 worker processes (bench/lib/redis-pool-worker.cjs) take them in batches,
 * answer each batch with one reply put and ack it; this process reads the replies. msgs/s are
 * jobs answered; latency is route → reply read. The client CPU is this (primary) process's only.
 */
async function poolRoundTrips(url, n, batch) {
  const pool = new RedisWorkerPool({ url, name: `bench-pool-${process.pid}-${++streamNo}`, partitions: 4, replies: true });
  const workers = [0, 1].map(() => fork(join(HERE_DIR, 'lib', 'redis-pool-worker.cjs'), [], {
    env: { ...process.env, SAGE_REDIS_POOL: JSON.stringify(pool.descriptor) }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  }));
  try {
    await pool.ready({ workers: 2, timeoutMs: 20_000 });
    const row = await flow(
      `RedisWorkerPool round trip x${batch} (routeMany → 2 worker processes → replies, msgpack)`,
      n,
      FLOW(batch),
      async (from, to) => {
        const packets = [];
        for (let k = from; k < to; k++) packets.push(new Packet({ t: performance.now(), i: k, pad: PAD }, { partitionKey: k % 1000 }));
        const r = await pool.routeMany(packets);
        return r.delivered;
      },
      async (left, lat) => {
        const items = await pool.replies.getManyAsync(Math.min(1000, left), { timeoutMs: 10_000 });
        const now = performance.now();
        for (const it of items) lat.push((now - it.t) * 1000);
        return items.length;
      },
    );
    delete row.commandsPerBatch; // the workers' commands are not counted here
    return row;
  } finally {
    await pool.close({ timeoutMs: 5000 });
    for (const w of workers) if (w.exitCode === null) w.kill('SIGKILL');
  }
}

/** RedisQueue single putAsync / getAsync calls, `window` of each in flight. */
async function queueSingles(url, n, window) {
  const stream = newStream();
  const producer = new RedisQueue({ url, stream });
  const consumer = new RedisQueue({ url, stream });
  const lat = [];
  const started = performance.now();
  let sent = 0;
  let got = 0;
  let taken = 0;
  let wake = [];
  const putter = async () => {
    while (sent < n) {
      // at most 4 windows ahead of the consumers, so latency is the path's, not a backlog's
      while (sent - got >= window * 4) await new Promise((r) => wake.push(r));
      const i = sent++;
      await producer.putAsync({ t: performance.now(), i, pad: PAD });
    }
  };
  const getter = async () => {
    while (taken < n) {
      taken++;
      const m = await consumer.getAsync({ timeoutMs: 10_000 });
      lat.push((performance.now() - m.t) * 1000);
      got++;
      if (wake.length > 0) {
        const w = wake;
        wake = [];
        for (const r of w) r();
      }
    }
  };
  await Promise.all([...Array.from({ length: window }, putter), ...Array.from({ length: window }, getter)]);
  const ms = performance.now() - started;
  await consumer.destroy();
  await Promise.all([producer.release(), consumer.release()]);
  return summarize(`RedisQueue putAsync/getAsync single calls (${window} in flight)`, n, ms, lat);
}

/** One message bounces between two queues; the echo side runs in this process on its own handles. */
async function queuePingPong(url, rounds) {
  const ping = newStream();
  const pong = newStream();
  const a = { out: new RedisQueue({ url, stream: ping }), in: new RedisQueue({ url, stream: pong }) };
  const b = { in: new RedisQueue({ url, stream: ping }), out: new RedisQueue({ url, stream: pong }) };
  const echo = (async () => {
    for (let i = 0; i < rounds + 20; i++) await b.out.putAsync(await b.in.getAsync({ timeoutMs: 10_000 }));
  })();
  const lat = [];
  for (let i = 0; i < rounds + 20; i++) {
    const t = performance.now();
    await a.out.putAsync(i);
    await a.in.getAsync({ timeoutMs: 10_000 });
    if (i >= 20) lat.push((performance.now() - t) * 1000); // 20 warm-up rounds
  }
  await echo;
  const total = lat.reduce((x, y) => x + y, 0);
  const row = summarize('RedisQueue ping-pong round trip (putAsync → getAsync, 2 queues)', rounds, total / 1000, lat);
  await Promise.all([a.out.destroy(), a.in.destroy()]);
  await Promise.all([a.out, a.in, b.in, b.out].map((q) => q.release()));
  return row;
}

async function rawPingPong(url, rounds) {
  const clients = Array.from({ length: 4 }, () => new Redis(url));
  const [aOut, aIn, bIn, bOut] = clients;
  const ping = `bench-ping-${process.pid}-${++streamNo}`;
  const pong = `bench-pong-${process.pid}-${streamNo}`;
  const echo = (async () => {
    for (let i = 0; i < rounds + 20; i++) {
      const [, v] = await bIn.brpopBuffer(ping, 10);
      await bOut.lpush(pong, v);
    }
  })();
  const lat = [];
  for (let i = 0; i < rounds + 20; i++) {
    const t = performance.now();
    await aOut.lpush(ping, v8.serialize(i));
    const [, v] = await aIn.brpopBuffer(pong, 10);
    v8.deserialize(v);
    if (i >= 20) lat.push((performance.now() - t) * 1000);
  }
  await echo;
  for (const c of clients) c.disconnect();
  const total = lat.reduce((x, y) => x + y, 0);
  return summarize('ioredis LPUSH/BRPOP ping-pong round trip (baseline)', rounds, total / 1000, lat);
}

/**
 * Runs every measurement (quick: fewer messages, one run each; otherwise the median of 3 runs)
 * whose name matches `only` (a RegExp or string, default all) and returns the rows. Starts and
 * stops its own redis-server.
 */
export async function benchRedis({ quick = false, only = null, batch = 256 } = {}) {
  const n = quick ? 30_000 : 100_000;
  const singles = quick ? 10_000 : 50_000;
  const rounds = quick ? 300 : 2000;
  const runs = quick ? 1 : 3;
  const filter = only === null ? null : new RegExp(only);
  const redis = await startRedis();
  const B = batch;
  const rows = [];
  const stats = new Redis(redis.url);
  const measure = async (name, fn) => {
    if (filter !== null && !filter.test(name)) return;
    const got = [];
    for (let r = 0; r < runs; r++) {
      const before = await commandStats(stats);
      const cpuBefore = await serverCpuUs(stats);
      const row = await fn();
      if (row.commandsPerBatch !== undefined) {
        row.serverCpuUs = Number((((await serverCpuUs(stats)) - cpuBefore) / n).toFixed(2));
        row.server = serverTime(before, await commandStats(stats), n);
      }
      got.push(row);
    }
    const row = median(got);
    row.server = got[0].server;
    if (got[0].clientCpuUs !== undefined) {
      const mid = (k) => got.map((g) => g[k]).sort((a, b) => a - b)[Math.floor(got.length / 2)];
      row.clientCpuUs = mid('clientCpuUs');
      row.serverCpuUs = mid('serverCpuUs');
    }
    rows.push(row);
  };
  try {
    if (filter === null || filter.test('redis-benchmark')) rows.push(...redisBenchmark(redis.port, quick ? 100_000 : 300_000));
    await measure('ioredis XADD XREADGROUP XACK', () => rawStreams(redis.url, n, B, false));
    await measure('ioredis XADD XREADGROUP XACK+XDEL', () => rawStreams(redis.url, n, B, true));
    await measure('ioredis LPUSH BLMPOP', () => rawLists(redis.url, n, B));
    await measure('RedisQueue auto msgpack', () => queueBatches(redis.url, n, B, 'auto'));
    await measure('RedisQueue explicit msgpack', () => queueBatches(redis.url, n, B, 'explicit'));
    await measure('RedisQueue auto v8', () => queueBatches(redis.url, n, B, 'auto', 'v8'));
    await measure('RedisQueue singles', () => queueSingles(redis.url, singles, 64));
    await measure('RedisWorkerPool round trip', () => poolRoundTrips(redis.url, n, B));
    await measure('ioredis ping-pong', () => rawPingPong(redis.url, rounds));
    await measure('RedisQueue ping-pong', () => queuePingPong(redis.url, rounds));
    return rows;
  } finally {
    stats.disconnect();
    await redis.stop();
  }
}

/** The best raw ioredis pipeline of a run: the ceiling RedisQueue's throughput rows are compared with. */
export function bestRawPipeline(rows) {
  return rows.filter((r) => r.name.endsWith('(raw pipeline)')).sort((a, b) => b.msgsPerSec - a.msgsPerSec)[0];
}

/** Ratio column: throughput vs the best raw pipeline, ping-pong p50 vs raw ioredis ping-pong. */
export function redisRatio(rows, r) {
  if (r.name.includes('ping-pong')) {
    const base = rows.find((x) => x.name.startsWith('ioredis LPUSH/BRPOP ping-pong'));
    return base ? `${(base.p50us / r.p50us).toFixed(2)}x speed` : '';
  }
  const base = bestRawPipeline(rows);
  return base ? `${(r.msgsPerSec / base.msgsPerSec).toFixed(2)}x` : '';
}

function printTable(rows) {
  console.log(`machine: ${cpus().length} cores, ${cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version}`);
  const header = ['vs best raw', 'msgs/s', 'p50 µs', 'p99 µs', 'cmds/batch', 'node cpu µs/msg', 'redis cpu µs/msg', 'benchmark'];
  const opt = (v) => (v === undefined ? '' : String(v));
  const lines = rows.map((r) => [redisRatio(rows, r), String(r.msgsPerSec), String(r.p50us), String(r.p99us), opt(r.commandsPerBatch), opt(r.clientCpuUs), opt(r.serverCpuUs), r.name]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  const fmt = (cols) => cols.map((c, i) => (i < 7 ? c.padStart(widths[i]) : c)).join('  ');
  console.log(fmt(header));
  for (const l of lines) console.log(fmt(l));
  if (process.argv.includes('--server')) {
    console.log('\nserver time per message, by command (µs/msg, calls per 1000 msgs; commands run inside scripts are counted under their own name too):');
    for (const r of rows) {
      if (r.server === undefined) continue;
      const parts = Object.entries(r.server).sort((a, b) => b[1].usPerMsg - a[1].usPerMsg).map(([c, v]) => `${c} ${v.usPerMsg}µs/${v.callsPer1k}`);
      console.log(`  ${r.name}: ${parts.join(', ')}`);
    }
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const quick = process.argv.includes('--quick');
  const jsonAt = process.argv.indexOf('--json');
  const onlyAt = process.argv.indexOf('--only');
  const batchAt = process.argv.indexOf('--batch');
  const rows = await benchRedis({ quick, only: onlyAt > 0 ? process.argv[onlyAt + 1] : null, batch: batchAt > 0 ? Number(process.argv[batchAt + 1]) : 256 });
  printTable(rows);
  if (jsonAt > 0 && process.argv[jsonAt + 1]) {
    const out = { machine: { cores: cpus().length, cpu: cpus()[0]?.model, node: process.version }, quick, rows };
    writeFileSync(process.argv[jsonAt + 1], `${JSON.stringify(out, null, 2)}\n`);
  }
}
