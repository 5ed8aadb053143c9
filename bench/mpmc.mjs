#!/usr/bin/env node
// MPMC scaling: P producer processes and C consumer processes on ONE SageQueue, beside the same
// number of processes on P independent queues (producer i → queue i → consumer i). Raw 64 B
// messages, putMany batches of 256, getMany(1024). Every process is a fresh `node`; none is
// pinned (there are more processes than cores in the larger rows: the machine's core count is
// printed so a reader can tell which rows are CPU-bound). Each round: producers send for a fixed
// time after a common start, the queue(s) are then closed, consumers drain and report; the rate
// is messages consumed ÷ (start → last consumer done). Every consumed message is checked (its
// first 4 bytes are the producer's sequence number; a consumer of one producer's queue checks
// the order, a shared queue's consumer checks each producer's sequence rises).
// Run alone (`node bench/mpmc.mjs [--quick] [--rounds N]`) or through bench/run.mjs.
import { fork } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { SageQueue } = require('../dist/index.js');

const self = fileURLToPath(import.meta.url);
const SHAPES = [
  [1, 1],
  [2, 2],
  [4, 4],
];
const SIZE = 64;
const BATCH = 256;

// ---------------------------------------------------------------------------------------------
// Children: `--child producer <queue> <id> <ms>` / `--child consumer <queue>`

async function producer(name, id, ms) {
  const q = SageQueue.open(name);
  const batch = Array.from({ length: BATCH }, () => Buffer.alloc(SIZE, 1));
  process.send({ ready: true });
  await new Promise((resolve) => process.once('message', resolve)); // go
  let seq = 0;
  const end = performance.now() + ms;
  while (performance.now() < end) {
    for (const b of batch) {
      b.writeUInt32LE(seq++, 0);
      b[4] = id;
    }
    q.putMany(batch);
  }
  process.send({ sent: seq });
  q.release();
}

async function consumer(name) {
  const q = SageQueue.open(name);
  process.send({ ready: true });
  const next = new Map(); // producer id → next expected sequence number (order per producer)
  let n = 0;
  let disorder = 0;
  for (;;) {
    let batch;
    try {
      batch = q.getRawBatch(1024, { timeoutMs: 60_000 });
    } catch (e) {
      if (e.code === 'ERR_QUEUE_CLOSED') break;
      throw e;
    }
    const { buffer, offsets, count } = batch;
    for (let i = 0; i < count; i++) {
      const at = offsets[i];
      const seq = buffer.readUInt32LE(at);
      const id = buffer[at + 4];
      const want = next.get(id) ?? 0;
      if (seq < want) disorder++;
      next.set(id, seq + 1);
    }
    n += count;
  }
  process.send({ received: n, disorder });
  q.release();
}

// ---------------------------------------------------------------------------------------------
// Primary

const message = (child, key) =>
  new Promise((resolve, reject) => {
    const onMessage = (m) => {
      if (m && key in m) {
        child.off('message', onMessage);
        child.off('exit', onExit);
        resolve(m);
      }
    };
    const onExit = (code) => reject(new Error(`a ${key === 'ready' ? 'starting' : 'running'} child exited (code ${code})`));
    child.on('message', onMessage);
    child.once('exit', onExit);
  });

/** One case: `queues` queues; producer i and consumer i use queue i % queues. */
async function runCase(producers, consumers, queuesCount, ms) {
  const tag = `bench-mpmc-${process.pid}-${Date.now().toString(36)}`;
  const queues = Array.from({ length: queuesCount }, (_, i) => SageQueue.create(`${tag}-${i}`, { capacity: 4 << 20, codec: 'raw' }));
  const children = [];
  try {
    const spawn = (args) => {
      const c = fork(self, ['--child', ...args], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      children.push(c);
      return c;
    };
    const cons = Array.from({ length: consumers }, (_, i) => spawn(['consumer', queues[i % queuesCount].name]));
    const prods = Array.from({ length: producers }, (_, i) => spawn(['producer', queues[i % queuesCount].name, String(i), String(ms)]));
    await Promise.all([...cons, ...prods].map((c) => message(c, 'ready')));
    const results = cons.map((c) => message(c, 'received'));
    const sentP = prods.map((c) => message(c, 'sent'));
    const t0 = performance.now();
    for (const p of prods) p.send('go');
    const sent = (await Promise.all(sentP)).reduce((a, m) => a + m.sent, 0);
    for (const q of queues) q.close();
    const got = await Promise.all(results);
    const seconds = (performance.now() - t0) / 1000;
    const received = got.reduce((a, m) => a + m.received, 0);
    const disorder = got.reduce((a, m) => a + m.disorder, 0);
    if (received !== sent) throw new Error(`mpmc ${producers}x${consumers}/${queuesCount}q: sent ${sent}, received ${received}`);
    if (disorder !== 0) throw new Error(`mpmc ${producers}x${consumers}/${queuesCount}q: ${disorder} messages out of per-producer order`);
    return received / seconds;
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    for (const q of queues) q.destroy();
  }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** The scaling table: per shape, one shared queue vs independent queues (medians over rounds). */
export async function benchMpmc({ quick = false, rounds = quick ? 1 : 3 } = {}) {
  const ms = quick ? 200 : 700;
  const rows = [];
  for (const [p, c] of SHAPES) {
    const shared = [];
    const independent = [];
    for (let r = 0; r < rounds; r++) {
      shared.push(await runCase(p, c, 1, ms));
      independent.push(await runCase(p, c, p, ms));
    }
    rows.push({ producers: p, consumers: c, processes: p + c, shared: median(shared), independent: median(independent), rounds });
  }
  return { cores: availableParallelism(), messageBytes: SIZE, batch: BATCH, rows };
}

export function mpmcTable(result) {
  const fmt = (n) => Math.round(n).toLocaleString('en-US');
  const lines = [
    `MPMC scaling (raw ${result.messageBytes} B, putMany ${result.batch} / getRawBatch 1024; ${result.cores} logical CPU(s), processes not pinned; rows with more processes than CPUs are CPU-bound)`,
    '',
    '| producers × consumers | processes | one shared queue msg/s | independent queues msg/s | shared ÷ independent |',
    '|---|---:|---:|---:|---:|',
  ];
  for (const r of result.rows) {
    lines.push(`| ${r.producers} × ${r.consumers} | ${r.processes} | ${fmt(r.shared)} | ${fmt(r.independent)} (${r.producers} queues) | ${(r.shared / r.independent).toFixed(2)} |`);
  }
  return lines;
}

if (process.argv[2] === '--child') {
  if (process.argv[3] === 'producer') await producer(process.argv[4], Number(process.argv[5]), Number(process.argv[6]));
  else await consumer(process.argv[4]);
} else if (process.argv[1] === self) {
  const i = process.argv.indexOf('--rounds');
  const quick = process.argv.includes('--quick');
  const result = await benchMpmc({ quick, ...(i > 0 ? { rounds: Number(process.argv[i + 1]) } : {}) });
  console.log(mpmcTable(result).join('\n'));
}
