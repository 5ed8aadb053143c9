#!/usr/bin/env node
// Redis benchmark: RedisQueue throughput (batches and single calls) and ping-pong latency, beside a
// raw ioredis LPUSH/BRPOP baseline measured in the same run against the same redis-server (started
// here on a free loopback port, no persistence, stopped by pid at the end).
//
//   import { benchRedis } from './bench/redis.mjs'; const rows = await benchRedis({ quick: true });
//   node bench/redis.mjs [--quick] [--json results.json]
//
// Each row: { name, msgsPerSec, p50us, p99us }. Throughput rows report the end-to-end latency of
// each message (put → get, through Redis); ping-pong rows report the round trip. Figures are the
// median of several runs (1 with quick).
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import * as v8 from 'node:v8';

const require = createRequire(import.meta.url);
const { Redis } = require('ioredis');
const { RedisQueue } = require('../dist/index.js');

const PAD = 'x'.repeat(48);

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

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
  return { name: rows[0].name, msgsPerSec: by('msgsPerSec'), p50us: by('p50us'), p99us: by('p99us') };
}

let streamNo = 0;
const newStream = () => `{bench-${process.pid}-${++streamNo}}`;

// ------------------------------------------------------------------------------------------------

/**
 * A producer that stays at most `window` messages ahead of the consumer (so the latencies are
 * those of the path, not of an ever-growing backlog), and a consumer; returns the row.
 */
async function flow(name, n, window, send, receive) {
  const lat = [];
  let sent = 0;
  let got = 0;
  let wake = null;
  const started = performance.now();
  const produce = (async () => {
    while (sent < n) {
      while (sent - got >= window) await new Promise((r) => (wake = r));
      sent += await send(sent, Math.min(n, sent + Math.max(1, window >> 2)));
    }
  })();
  while (got < n) {
    got += await receive(n - got, lat);
    if (wake) {
      const w = wake;
      wake = null;
      w();
    }
  }
  const ms = performance.now() - started;
  await produce;
  return summarize(name, n, ms, lat);
}

/** Raw ioredis: variadic LPUSH pipelined on one connection, BRPOP pipelined on another. */
async function rawThroughput(url, n, batch) {
  const producer = new Redis(url);
  const consumer = new Redis(url);
  const key = `bench-raw-${process.pid}-${++streamNo}`;
  const row = await flow(
    `ioredis LPUSH/BRPOP pipelined x${batch} (baseline)`,
    n,
    batch * 4,
    async (from, to) => {
      const p = producer.pipeline();
      for (let i = from; i < to; i += 64) {
        const values = [];
        for (let k = i; k < Math.min(to, i + 64); k++) values.push(v8.serialize({ t: performance.now(), i: k, pad: PAD }));
        p.lpush(key, ...values);
      }
      await p.exec();
      return to - from;
    },
    async (left, lat) => {
      const p = consumer.pipeline();
      const want = Math.min(batch, left);
      for (let k = 0; k < want; k++) p.brpopBuffer(key, 1);
      let got = 0;
      const results = await p.exec();
      const now = performance.now();
      for (const [err, reply] of results) {
        if (err || reply === null) continue;
        lat.push((now - v8.deserialize(reply[1]).t) * 1000);
        got++;
      }
      return got;
    },
  );
  await producer.del(key);
  producer.disconnect();
  consumer.disconnect();
  return row;
}

/**
 * The stream ceiling: XADD pipelined (one per message), XREADGROUP COUNT `batch` (BLOCK on its
 * own connection) and one variadic XACK per batch, v8 codec like RedisQueue's default.
 */
async function rawStreams(url, n, batch, del) {
  const producer = new Redis(url);
  const consumer = new Redis(url);
  const key = `bench-rawx-${process.pid}-${++streamNo}`;
  await producer.xgroup('CREATE', key, 'g', '0', 'MKSTREAM');
  const row = await flow(
    `ioredis XADD pipelined + XREADGROUP COUNT ${batch} + XACK${del ? '+XDEL' : ''} (ceiling)`,
    n,
    batch * 4,
    async (from, to) => {
      const p = producer.pipeline();
      for (let k = from; k < to; k++) p.xadd(key, '*', 'v', v8.serialize({ t: performance.now(), i: k, pad: PAD }));
      await p.exec();
      return to - from;
    },
    async (left, lat) => {
      const reply = await consumer.xreadgroupBuffer('GROUP', 'g', 'c', 'COUNT', Math.min(batch, left), 'BLOCK', 1000, 'STREAMS', key, '>');
      if (reply === null) return 0;
      const entries = reply[0][1];
      const now = performance.now();
      const ids = [];
      for (const [id, fields] of entries) {
        lat.push((now - v8.deserialize(fields[1]).t) * 1000);
        ids.push(id);
      }
      if (del) {
        const p = consumer.pipeline();
        p.xack(key, 'g', ...ids);
        p.xdel(key, ...ids);
        await p.exec();
      } else {
        await consumer.xack(key, 'g', ...ids);
      }
      return entries.length;
    },
  );
  await producer.del(key);
  producer.disconnect();
  consumer.disconnect();
  return row;
}

/** The list ceiling: variadic LPUSH pipelined, BLMPOP COUNT `batch` (one call per batch). */
async function rawLists(url, n, batch) {
  const producer = new Redis(url);
  const consumer = new Redis(url);
  const key = `bench-rawl-${process.pid}-${++streamNo}`;
  const row = await flow(
    `ioredis LPUSH pipelined + BLMPOP COUNT ${batch} (ceiling)`,
    n,
    batch * 4,
    async (from, to) => {
      const values = [];
      for (let k = from; k < to; k++) values.push(v8.serialize({ t: performance.now(), i: k, pad: PAD }));
      await producer.lpush(key, ...values);
      return to - from;
    },
    async (left, lat) => {
      const reply = await consumer.callBuffer('BLMPOP', 1, 1, key, 'RIGHT', 'COUNT', Math.min(batch, left));
      if (reply === null) return 0;
      const now = performance.now();
      for (const v of reply[1]) lat.push((now - v8.deserialize(v).t) * 1000);
      return reply[1].length;
    },
  );
  producer.disconnect();
  consumer.disconnect();
  return row;
}

/** redis-benchmark of the same server: XADD and LPUSH of 64 B values, 32 pipelined, 50 clients. */
function redisBenchmark(port, n) {
  const value = 'x'.repeat(64);
  const rows = [];
  for (const [name, args] of [
    ['redis-benchmark XADD 64 B -P 32 (server ceiling)', ['XADD', `rb-${process.pid}`, 'MAXLEN', '~', '100000', '*', 'v', value]],
    ['redis-benchmark LPUSH 64 B -P 32 (server ceiling)', ['-t', 'lpush', '-d', '64']],
  ]) {
    const r = spawnSync('redis-benchmark', ['-p', String(port), '-P', '32', '-q', '-n', String(n), ...args], { encoding: 'utf8', timeout: 60_000 });
    const found = [...String(r.stdout).matchAll(/([\d.]+) requests per second/g)].pop();
    rows.push({ name, msgsPerSec: found ? Math.round(Number(found[1])) : 0, p50us: 0, p99us: 0 });
  }
  return rows;
}

/** RedisQueue putManyAsync / getManyAsync batches. */
async function queueBatches(url, n, batch, ackMode) {
  const stream = newStream();
  const producer = new RedisQueue({ url, stream });
  const consumer = new RedisQueue({ url, stream, ackMode });
  const row = await flow(
    `RedisQueue putManyAsync/getManyAsync x${batch} (${ackMode} ack)`,
    n,
    batch * 4,
    async (from, to) => {
      const items = [];
      for (let k = from; k < to; k++) items.push({ t: performance.now(), i: k, pad: PAD });
      return producer.putManyAsync(items);
    },
    async (left, lat) => {
      const items = await consumer.getManyAsync(Math.min(batch, left), { timeoutMs: 10_000 });
      const now = performance.now();
      for (const it of items) lat.push((now - (ackMode === 'explicit' ? it.value.t : it.t)) * 1000);
      if (ackMode === 'explicit') await consumer.ackMany(items);
      return items.length;
    },
  );
  await consumer.destroy();
  await Promise.all([producer.release(), consumer.release()]);
  return row;
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
 * and returns the rows. Starts and stops its own redis-server.
 */
export async function benchRedis({ quick = false } = {}) {
  const n = quick ? 20_000 : 100_000;
  const singles = quick ? 10_000 : 50_000;
  const rounds = quick ? 300 : 2000;
  const runs = quick ? 1 : 3;
  const redis = await startRedis();
  try {
    const measure = async (fn) => {
      const rows = [];
      for (let r = 0; r < runs; r++) rows.push(await fn());
      return median(rows);
    };
    const rows = [];
    rows.push(...redisBenchmark(redis.port, quick ? 100_000 : 300_000));
    rows.push(await measure(() => rawStreams(redis.url, n, 256, false)));
    rows.push(await measure(() => rawStreams(redis.url, n, 256, true)));
    rows.push(await measure(() => rawLists(redis.url, n, 256)));
    rows.push(await measure(() => rawThroughput(redis.url, n, 256)));
    rows.push(await measure(() => queueBatches(redis.url, n, 256, 'auto')));
    rows.push(await measure(() => queueBatches(redis.url, n, 256, 'explicit')));
    rows.push(await measure(() => queueSingles(redis.url, singles, 64)));
    rows.push(await measure(() => rawPingPong(redis.url, rounds)));
    rows.push(await measure(() => queuePingPong(redis.url, rounds)));
    return rows;
  } finally {
    await redis.stop();
  }
}

function printTable(rows) {
  // Throughput rows are compared with the best raw ioredis pipeline of this run (the ceiling a
  // Node client reaches); redis-benchmark rows show what the server alone does.
  const baseT = rows.filter((r) => r.name.startsWith('ioredis') && !r.name.includes('ping-pong')).sort((a, b) => b.msgsPerSec - a.msgsPerSec)[0];
  const baseL = rows.find((r) => r.name.startsWith('ioredis LPUSH/BRPOP ping-pong'));
  console.log(`machine: ${cpus().length} cores, ${cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version}`);
  const header = ['vs baseline', 'msgs/s', 'p50 µs', 'p99 µs', 'benchmark'];
  const lines = rows.map((r) => {
    const base = r.name.includes('ping-pong') ? baseL : baseT;
    const ratio = base ? (r.name.includes('ping-pong') ? `${(base.p50us / r.p50us).toFixed(2)}x speed` : `${(r.msgsPerSec / base.msgsPerSec).toFixed(2)}x`) : '';
    return [ratio, String(r.msgsPerSec), String(r.p50us), String(r.p99us), r.name];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  const fmt = (cols) => cols.map((c, i) => (i < 4 ? c.padStart(widths[i]) : c)).join('  ');
  console.log(fmt(header));
  for (const l of lines) console.log(fmt(l));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const quick = process.argv.includes('--quick');
  const jsonAt = process.argv.indexOf('--json');
  const rows = await benchRedis({ quick });
  printTable(rows);
  if (jsonAt > 0 && process.argv[jsonAt + 1]) {
    const out = { machine: { cores: cpus().length, cpu: cpus()[0]?.model, node: process.version }, quick, rows };
    writeFileSync(process.argv[jsonAt + 1], `${JSON.stringify(out, null, 2)}\n`);
  }
}
