#!/usr/bin/env node
// Router benchmark: (1) routing decisions per strategy, in-process, against 8 sink queues that
// accept at once: route() (awaited one by one), routeMany() per packet (batches of 256 and 1024)
// and pick() (the decision alone). Two sinks: one with the synchronous non-blocking put route()'s
// fast path uses (putNowait and putMany, as a SageQueue has), one with putAsync only (a remote
// queue type's shape: route()'s per-packet path). (2) End-to-end packets per second from one
// producer through a hash router to 2 consumer processes over SageQueue (routeMany: one putMany
// per target), beside the same pipeline over process.send (the children are picked by the same
// hash). Run alone (`node bench/router.mjs [--quick] [--dist=DIR]`) or through bench/run.mjs,
// which calls benchRouter(). Every route() configuration runs once untimed before the timed
// pass (steady state). --dist times another build of the package (e.g. an older one, for a
// before/after comparison; it needs SAGE_QUEUE_NATIVE_ADDON when DIR/.. has no native build).
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import * as path from 'node:path';

const require = createRequire(import.meta.url);
const distArg = process.argv.find((a) => a.startsWith('--dist='));
const dist = distArg === undefined ? '../dist' : path.resolve(distArg.slice('--dist='.length));
const { BaseRouter, Packet, SageQueue, stableHash } = require(path.join(dist, 'index.js'));

const STRATEGIES = ['round_robin', 'hash', 'consistent_hash', 'load_balance', 'broadcast'];
/** Targets of issue #14: these strategies' route() decisions at ≤ 250 ns each (sync sink). */
const TARGET_NS = 250;
const TARGETED = ['round_robin', 'hash', 'consistent_hash'];

/** An AsyncQueueLike that accepts everything at once (and reports a load): putAsync only. */
export function asyncSink(load) {
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

/** The same sink with the synchronous non-blocking puts a SageQueue has (putNowait, putMany). */
export function syncSink(load) {
  const s = asyncSink(load);
  s.putNowait = function putNowait() {
    this.count++;
  };
  s.putMany = function putMany(items) {
    this.count += items.length;
    return items.length;
  };
  return s;
}

export const SINKS = { sync: syncSink, async: asyncSink };

/** A router over 8 sinks of one kind, and 1024 keyed packets to route. */
export function sinkRouter(strategy, sinkKind) {
  const router = new BaseRouter({ strategy, trace: false });
  for (let i = 0; i < 8; i++) router.addConnection({ broadcastIndex: 0, parallelIndex: i, targetName: `t${i}`, targetHandle: SINKS[sinkKind](i / 10) });
  const packets = Array.from({ length: 1024 }, (_, i) => new Packet(i, { partitionKey: `key-${i}` }));
  return { router, packets };
}

const WINDOWS = 5;
/** At least this many chunks of warm-up (the optimizing compiler needs calls, not time). */
const WARM_CHUNKS = 200;

/** Median and best of the windows' rates (ops/s). */
function summarize(rates) {
  const sorted = [...rates].sort((a, b) => a - b);
  return { median: sorted[Math.floor(sorted.length / 2)], best: sorted[sorted.length - 1] };
}

/**
 * Operations per second of `chunk` (an async function doing `perChunk` operations): after a
 * warm-up of ms/2 and WARM_CHUNKS chunks, WINDOWS windows of ms/WINDOWS each; the median and the best window (on a busy
 * machine the best is the closer to the code's own cost: a window can only lose time to others).
 */
async function rate(ms, perChunk, chunk) {
  const warm = performance.now() + ms / 2;
  for (let c = 0; c < WARM_CHUNKS || performance.now() < warm; c++) await chunk();
  const rates = [];
  for (let w = 0; w < WINDOWS; w++) {
    let n = 0;
    const t0 = performance.now();
    let t = t0;
    while (t - t0 < ms / WINDOWS) {
      await chunk();
      n += perChunk;
      t = performance.now();
    }
    rates.push(n / ((t - t0) / 1000));
  }
  return summarize(rates);
}

/** The same for a synchronous chunk. */
function rateSync(ms, perChunk, chunk) {
  const warm = performance.now() + ms / 2;
  for (let c = 0; c < WARM_CHUNKS || performance.now() < warm; c++) chunk();
  const rates = [];
  for (let w = 0; w < WINDOWS; w++) {
    let n = 0;
    const t0 = performance.now();
    let t = t0;
    while (t - t0 < ms / WINDOWS) {
      chunk();
      n += perChunk;
      t = performance.now();
    }
    rates.push(n / ((t - t0) / 1000));
  }
  return summarize(rates);
}

async function routeRate(strategy, sinkKind, ms) {
  const { router, packets } = sinkRouter(strategy, sinkKind);
  let n = 0;
  const r = await rate(ms, 256, async () => {
    for (let i = 0; i < 256; i++) await router.route(packets[(n + i) & 1023]);
    n += 256;
  });
  return {
    name: `route() ${strategy}, ${sinkKind} sink`, strategy, sink: sinkKind, decisionsPerSec: r.median, nsPerDecision: 1e9 / r.median,
    bestDecisionsPerSec: r.best, bestNsPerDecision: 1e9 / r.best, routeP50Us: router.stats().routeLatencyMs.p50 * 1000,
  };
}

async function routeManyRate(strategy, sinkKind, batch, ms) {
  const { router, packets } = sinkRouter(strategy, sinkKind);
  const batches = Array.from({ length: 1024 / batch }, (_, i) => packets.slice(i * batch, (i + 1) * batch));
  let n = 0;
  const r = await rate(ms, batch, async () => {
    const report = await router.routeMany(batches[n++ % batches.length]);
    if (!report.ok) throw new Error('routeMany failed');
  });
  return {
    name: `routeMany(${batch}) ${strategy}, ${sinkKind} sink`, strategy, sink: sinkKind, batch, packetsPerSec: r.median, nsPerPacket: 1e9 / r.median,
    bestNsPerPacket: 1e9 / r.best,
  };
}

function pickRate(strategy, ms) {
  const { router, packets } = sinkRouter(strategy, 'sync');
  if (typeof router.pick !== 'function') return undefined; // a build from before pick()
  let n = 0;
  let picked = 0;
  const r = rateSync(ms, 256, () => {
    for (let i = 0; i < 256; i++) picked += router.pick(packets[(n + i) & 1023]) === undefined ? 0 : 1;
    n += 256;
  });
  if (picked !== n) throw new Error('pick() found no target');
  return { name: `pick() ${strategy}`, strategy, picksPerSec: r.median, nsPerPick: 1e9 / r.median, bestNsPerPick: 1e9 / r.best };
}

/** The in-process figures: route() per strategy and sink, routeMany() per batch size, pick(). */
export async function benchDecisions({ quick = false } = {}) {
  const ms = quick ? 150 : 600;
  const decisions = [];
  const batches = [];
  const picks = [];
  // Steady state: every configuration runs once before any is timed, so no figure includes the
  // optimizing compiler re-specialising shared code (route(), the selector) for the next strategy.
  for (const sinkKind of ['sync', 'async']) for (const s of STRATEGIES) await routeRate(s, sinkKind, quick ? 20 : 60);
  for (const sinkKind of ['sync', 'async']) for (const s of STRATEGIES) decisions.push(await routeRate(s, sinkKind, ms));
  for (const sinkKind of ['sync', 'async']) {
    for (const batch of [256, 1024]) for (const s of STRATEGIES) batches.push(await routeManyRate(s, sinkKind, batch, ms));
  }
  for (const s of STRATEGIES.filter((x) => x !== 'broadcast')) {
    const p = pickRate(s, ms);
    if (p !== undefined) picks.push(p);
  }
  const targets = TARGETED.map((strategy) => {
    const d = decisions.find((x) => x.strategy === strategy && x.sink === 'sync');
    return { strategy, nsPerDecision: d.nsPerDecision, bestNsPerDecision: d.bestNsPerDecision, met: d.nsPerDecision <= TARGET_NS, bestMet: d.bestNsPerDecision <= TARGET_NS };
  });
  return { decisions, batches, picks, targets };
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
  const inProcess = await benchDecisions({ quick });
  const packets = quick ? 50_000 : 300_000;
  const sage = await endToEndSage(packets);
  const ipc = await endToEndIpc(Math.round(packets / 3));
  return { ...inProcess, endToEnd: [sage, ipc], ratio: sage.packetsPerSec / ipc.packetsPerSec };
}

function fmt(n) {
  return Math.round(n).toLocaleString('en-US');
}

/** The in-process tables (Markdown lines). */
export function decisionTables(r) {
  const lines = [
    `Median of ${WINDOWS} windows (best window in brackets).`, '',
    '| route() (in-process, 8 sink targets) | sink | decisions/s | ns/decision | route() p50 µs |', '|---|---|---:|---:|---:|',
  ];
  for (const d of r.decisions) {
    lines.push(`| ${d.strategy} | ${d.sink} | ${fmt(d.decisionsPerSec)} | ${d.nsPerDecision.toFixed(0)} (${d.bestNsPerDecision.toFixed(0)}) | ${d.routeP50Us.toFixed(2)} |`);
  }
  lines.push('', '| routeMany() (in-process, 8 sink targets) | sink | batch | ns/packet | packets/s |', '|---|---|---:|---:|---:|');
  for (const b of r.batches) lines.push(`| ${b.strategy} | ${b.sink} | ${b.batch} | ${b.nsPerPacket.toFixed(0)} (${b.bestNsPerPacket.toFixed(0)}) | ${fmt(b.packetsPerSec)} |`);
  if (r.picks.length > 0) {
    lines.push('', '| pick() (the decision alone) | ns/pick | picks/s |', '|---|---:|---:|');
    for (const p of r.picks) lines.push(`| ${p.strategy} | ${p.nsPerPick.toFixed(0)} (${p.bestNsPerPick.toFixed(0)}) | ${fmt(p.picksPerSec)} |`);
  }
  lines.push('');
  for (const t of r.targets) {
    const verdict = t.met ? 'met' : t.bestMet ? 'met in the best window only' : 'NOT met';
    lines.push(`target: route() ${t.strategy} ≤ ${TARGET_NS} ns/decision, sync sink: ${verdict} (median ${t.nsPerDecision.toFixed(0)} ns = ${(1e3 / t.nsPerDecision).toFixed(2)} M/s, best ${t.bestNsPerDecision.toFixed(0)} ns)`);
  }
  const hash = r.decisions.find((d) => d.strategy === 'hash' && d.sink === 'sync');
  lines.push(`target: route() hash ≥ 3 M decisions/s, sync sink: ${hash.decisionsPerSec >= 3e6 ? 'met' : hash.bestDecisionsPerSec >= 3e6 ? 'met in the best window only' : 'NOT met'} (median ${(hash.decisionsPerSec / 1e6).toFixed(2)} M/s, best ${(hash.bestDecisionsPerSec / 1e6).toFixed(2)} M/s)`);
  return lines;
}

if (process.argv[2] === '--child') {
  if (process.argv[3] === 'sage') await sageConsumer(process.argv[4]);
  else ipcConsumer();
} else if (process.argv[1] === self) {
  const quick = process.argv.includes('--quick');
  if (process.argv.includes('--decisions-only')) {
    console.log(decisionTables(await benchDecisions({ quick })).join('\n'));
  } else {
    const r = await benchRouter({ quick });
    console.log(decisionTables(r).join('\n'));
    console.log('\n| end to end (1 producer → 2 consumer processes) | packets/s |\n|---|---:|');
    for (const e of r.endToEnd) console.log(`| ${e.name} | ${fmt(e.packetsPerSec)} |`);
    console.log(`\nSageQueue pipeline ÷ process.send pipeline: ${r.ratio.toFixed(1)}x`);
  }
}
