#!/usr/bin/env node
// Router benchmark: (1) routing decisions per second per strategy, in-process, against sink
// queues that accept at once; (2) end-to-end packets per second from one producer through a hash
// router to 2 consumer processes over SageQueue (routeMany: one putMany per target), beside the
// same pipeline over process.send (the children are picked by the same hash). Run alone
// (`node bench/router.mjs [--quick]`) or through bench/run.mjs, which calls benchRouter().
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { BaseRouter, Packet, SageQueue, stableHash } = require('../dist/index.js');

const STRATEGIES = ['round_robin', 'hash', 'consistent_hash', 'load_balance', 'broadcast'];

/** An AsyncQueueLike that accepts everything at once (and reports a load), to time the router alone. */
function sink(load) {
  return {
    count: 0,
    async putAsync() {
      this.count++;
    },
    async getAsync() {
      throw new Error('sink');
    },
    close() {},
    bufferLoad: () => load,
    [Symbol.asyncIterator]() {
      return { next: async () => ({ done: true, value: undefined }) };
    },
  };
}

async function decisionsPerSecond(strategy, ms) {
  const router = new BaseRouter({ strategy, trace: false });
  for (let i = 0; i < 8; i++) router.addConnection({ broadcastIndex: 0, parallelIndex: i, targetName: `t${i}`, targetHandle: sink(i / 10) });
  const packets = Array.from({ length: 1024 }, (_, i) => new Packet(i, { partitionKey: `key-${i}` }));
  let n = 0;
  const end = performance.now() + ms;
  while (performance.now() < end) {
    for (let i = 0; i < 256; i++) await router.route(packets[(n + i) & 1023]);
    n += 256;
  }
  const elapsed = ms / 1000;
  return { name: `route() ${strategy}`, decisionsPerSec: n / elapsed, routeP50Us: router.stats().routeLatencyMs.p50 * 1000 };
}

// ---------------------------------------------------------------------------------------------
// End to end: children

async function sageConsumer(name) {
  const q = SageQueue.open(name);
  let n = 0;
  for (;;) {
    let batch;
    try {
      batch = q.getMany(512, { timeoutMs: 30_000 });
    } catch (e) {
      if (e.code === 'ERR_QUEUE_CLOSED') break;
      throw e;
    }
    for (const p of batch) n += p.payload.i >= 0 ? 1 : 0;
  }
  process.send({ received: n });
  q.release();
}

function ipcConsumer() {
  let n = 0;
  process.on('message', (m) => {
    if (m === 'end') {
      process.send({ received: n });
      process.disconnect();
      return;
    }
    n += m.payload.i >= 0 ? 1 : 0;
  });
}

const self = fileURLToPath(import.meta.url);
const received = (child) => new Promise((resolve) => child.once('message', (m) => resolve(m.received)));

async function endToEndSage(packets) {
  const names = [0, 1].map((i) => `bench-router-${process.pid}-${i}`);
  const queues = names.map((n) => SageQueue.create(n, { capacity: 8 << 20, codec: 'msgpack' }));
  const children = names.map((n) => fork(self, ['--child', 'sage', n], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
  try {
    const router = new BaseRouter({ strategy: 'hash', trace: false, sendTimeoutMs: 30_000 });
    queues.forEach((q, i) => router.addConnection({ broadcastIndex: 0, parallelIndex: i, targetName: `c${i}`, targetHandle: q }));
    const counts = children.map(received);
    const t0 = performance.now();
    for (let i = 0; i < packets; i += 1024) {
      const batch = [];
      for (let j = i; j < Math.min(packets, i + 1024); j++) batch.push(new Packet({ i: j }, { partitionKey: j % 1000 }));
      const report = await router.routeMany(batch);
      if (!report.ok) throw new Error('routing failed');
    }
    for (const q of queues) q.close();
    const got = (await Promise.all(counts)).reduce((a, b) => a + b, 0);
    const seconds = (performance.now() - t0) / 1000;
    if (got !== packets) throw new Error(`sage pipeline lost packets: ${got}/${packets}`);
    return { name: 'hash router → 2 processes, SageQueue (routeMany)', packetsPerSec: packets / seconds };
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    for (const q of queues) q.destroy();
  }
}

async function endToEndIpc(packets) {
  const children = [0, 1].map(() => fork(self, ['--child', 'ipc'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
  try {
    const counts = children.map(received);
    const t0 = performance.now();
    for (let i = 0; i < packets; i++) {
      const key = i % 1000;
      const ok = children[stableHash(key) % 2].send(new Packet({ i }, { partitionKey: key }).toJSON());
      if (!ok || i % 1000 === 999) await new Promise((r) => setImmediate(r));
    }
    for (const c of children) c.send('end');
    const got = (await Promise.all(counts)).reduce((a, b) => a + b, 0);
    const seconds = (performance.now() - t0) / 1000;
    if (got !== packets) throw new Error(`process.send pipeline lost packets: ${got}/${packets}`);
    return { name: 'hash partition → 2 processes, process.send', packetsPerSec: packets / seconds };
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  }
}

/** All router figures, with the end-to-end ratio. */
export async function benchRouter({ quick = false } = {}) {
  const ms = quick ? 150 : 600;
  const decisions = [];
  for (const s of STRATEGIES) decisions.push(await decisionsPerSecond(s, ms));
  const packets = quick ? 50_000 : 300_000;
  const sage = await endToEndSage(packets);
  const ipc = await endToEndIpc(Math.round(packets / 3));
  return { decisions, endToEnd: [sage, ipc], ratio: sage.packetsPerSec / ipc.packetsPerSec };
}

function fmt(n) {
  return Math.round(n).toLocaleString('en-US');
}

if (process.argv[2] === '--child') {
  if (process.argv[3] === 'sage') await sageConsumer(process.argv[4]);
  else ipcConsumer();
} else if (process.argv[1] === self) {
  const r = await benchRouter({ quick: process.argv.includes('--quick') });
  console.log('| routing (in-process, 8 sink targets) | decisions/s | route() p50 µs |\n|---|---:|---:|');
  for (const d of r.decisions) console.log(`| ${d.name} | ${fmt(d.decisionsPerSec)} | ${d.routeP50Us.toFixed(2)} |`);
  console.log('\n| end to end (1 producer → 2 consumer processes) | packets/s |\n|---|---:|');
  for (const e of r.endToEnd) console.log(`| ${e.name} | ${fmt(e.packetsPerSec)} |`);
  console.log(`\nSageQueue pipeline ÷ process.send pipeline: ${r.ratio.toFixed(1)}x`);
}
