#!/usr/bin/env node
// Where the demo primary's CPU per packet goes (issue #14's "primary ≤ 600 ns per routed packet,
// reply included"). In ONE process, hot caches, no other process: each stage of the demo's
// primary loop timed on its own over the demo's shapes (a Packet { s, t, p: 64 B Buffer } keyed
// by one of 1000 keys, hash strategy, 2 worker queues; replies { k, s, t, c, w }), plus the floors
// under them (msgpackr packing the payload alone, the ring call with bytes already encoded). The
// stages add up to what the primary pays per packet when nothing else runs; the demo itself pays
// more (wake-ups, cache misses, GC under 3 processes on 2 cores): its own figure is printed by
// `npm run demo`.
//
//   node bench/primary.mjs [--json] [--rounds N]
//   import { benchPrimary, primaryTable } from './primary.mjs'
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const { SageQueue, BaseRouter, Packet } = require('../dist/index.js');

const BATCH = 256;
const KEYS = 1000;
const TARGET_NS = 600;

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

/**
 * ns per item of `fn(i)` (which handles BATCH items), median of `rounds` rounds of `iters` calls;
 * `reset` runs between calls, untimed. An fn that returns a promise is awaited (a synchronous one
 * is not: an await would add a microtask to what is measured).
 */
async function timeIt(fn, { rounds, iters, reset }) {
  for (let w = 0; w < Math.min(iters, 200); w++) {
    const out = fn(w);
    if (out instanceof Promise) await out;
    reset?.();
  }
  const per = [];
  for (let r = 0; r < rounds; r++) {
    let ms = 0;
    for (let i = 0; i < iters; i++) {
      const a = performance.now();
      const out = fn(i);
      if (out instanceof Promise) await out;
      ms += performance.now() - a;
      reset?.();
    }
    per.push((ms * 1e6) / (iters * BATCH));
  }
  return median(per);
}

export async function benchPrimary({ rounds = 5, iters = 400 } = {}) {
  const tag = `bench-primary-${process.pid}`;
  const queues = [0, 1].map((i) => SageQueue.create(`${tag}-${i}`, { capacity: 16 << 20, codec: 'records' }));
  const replies = SageQueue.create(`${tag}-r`, { capacity: 16 << 20, codec: 'records' });
  const rawQ = SageQueue.create(`${tag}-raw`, { capacity: 16 << 20, codec: 'raw' });
  const router = new BaseRouter({ strategy: 'hash', name: 'primary', trace: false, sendTimeoutMs: 10_000 });
  queues.forEach((q, i) => router.addConnection({ broadcastIndex: 0, parallelIndex: i, targetName: `w${i}`, targetHandle: q, targetType: 'sage_queue' }));
  const drain = () => {
    for (const q of queues) while (q.getRawBatch(4096, { block: false }).count > 0);
  };
  try {
    const payload = Buffer.alloc(64, 7);
    const seq = new Array(KEYS).fill(0);
    let n = 0;
    const makeBatch = () => {
      const out = new Array(BATCH);
      for (let j = 0; j < BATCH; j++, n++) {
        const key = n % KEYS;
        out[j] = new Packet({ s: seq[key]++, t: performance.now(), p: payload }, { partitionKey: key });
      }
      return out;
    };
    const opts = { rounds, iters };
    const pool = Array.from({ length: 64 }, makeBatch); // prepared batches for the stages after building
    const batchOf = (i) => pool[i & 63];
    const rows = [];
    const row = (stage, ns, note) => rows.push({ stage, ns: Math.round(ns), note });

    row('build: new Packet + clock read', await timeIt(() => makeBatch(), opts), "the demo's own work, counted in its primary CPU");
    row('route decision: router.pick (hash)', await timeIt((i) => {
      const b = batchOf(i);
      for (let j = 0; j < BATCH; j++) router.pick(b[j]);
    }, opts), 'strategy + murmur3 of the key + target');
    // The payload alone (no Packet envelope) through the same records codec and ring.
    const payloads = pool.map((b) => b.map((p) => p.payload));
    row('payload alone: putMany(payload objects), records', await timeIt((i) => queues[1].putMany(payloads[i & 63]), { ...opts, reset: drain }), 'what the object costs without the envelope (msgpackr + ring)');
    const encoded = batchOf(0).map((p) => Buffer.alloc(44 + 64, p.payload.s & 0xff)); // a packet's size on the records wire
    row('ring floor: putMany of encoded bytes (raw)', await timeIt(() => rawQ.putMany(encoded), { ...opts, reset: () => rawQ.getRawBatch(4096, { block: false }) }), 'native call + copy into the ring');
    row('putMany(packets), records codec', await timeIt((i) => queues[0].putMany(batchOf(i)), { ...opts, reset: drain }), 'envelope + payload encoded into msgpackr buffers, gathered by the ring');
    row('routeMany(packets) end to end', await timeIt((i) => router.routeMany(batchOf(i)), { ...opts, reset: drain }), 'decision + grouping + putMany per target + report');
    // Replies as the workers write them; the primary takes and checks them.
    const answers = batchOf(0).map((p) => ({ k: p.partitionKey, s: p.payload.s, t: p.payload.t, c: 12345, w: 4242 }));
    let sink = 0;
    row('reply: getMany + decode { k, s, t, c, w }', await timeIt(() => {
      for (const a of replies.getMany(BATCH, { block: false })) sink += a.s;
    }, { ...opts, reset: () => replies.putMany(answers) }), 'records decode per message');
    replies.putMany(answers);
    row('reply floor: getRawBatch (no decode)', await timeIt(() => {
      sink += replies.getRawBatch(BATCH, { block: false }).count;
    }, { ...opts, reset: () => replies.putMany(answers) }), 'native call + copy out');
    if (sink < 0) console.log(sink);

    // The worker's side of each packet, for the pipeline's CPU budget: take and decode a batch of
    // packets, build and put the replies (the demo's worker loop without its checksum).
    const filled = () => queues[0].putMany(batchOf(n++));
    row('worker: getMany + decode packets', await timeIt(() => {
      for (const p of queues[0].getMany(BATCH, { block: false })) sink += p.payload.s;
    }, { ...opts, reset: filled }), 'records decode of envelope + payload');
    drain();
    const workerReplies = batchOf(1);
    row('worker: build replies + putMany', await timeIt(() => {
      replies.putMany(workerReplies.map(({ partitionKey, payload }) => ({ k: partitionKey, s: payload.s, t: payload.t, c: 1, w: 4242 })));
    }, { ...opts, reset: () => replies.getRawBatch(4096, { block: false }) }), 'reply objects encoded into the ring');

    const get = (prefix) => rows.find((r) => r.stage.startsWith(prefix)).ns;
    const workerNs = get('worker: getMany') + get('worker: build');
    const total = get('build') + get('routeMany') + get('reply: getMany');
    return { rows, totalNs: total, workerNs, cores: availableParallelism(), targetNs: TARGET_NS, floorNs: get('build') + get('route decision') + get('payload alone') + get('reply floor') };
  } finally {
    for (const q of [...queues, replies, rawQ]) {
      q.close();
      SageQueue.destroy(q.name);
    }
  }
}

export function primaryTable(result) {
  const lines = ['| Stage (per packet, one process, hot) | ns | What it is |', '|---|---:|---|'];
  for (const r of result.rows) lines.push(`| ${r.stage} | ${r.ns} | ${r.note} |`);
  lines.push(`| **primary total: build + routeMany + reply** | **${result.totalNs}** | target ${result.targetNs} ns |`);
  lines.push(`| floors alone: build + decision + payload alone + ring out | ${result.floorNs} | no envelope, no grouping, no reply decode |`);
  const pipeline = result.totalNs + result.workerNs;
  lines.push(`| **pipeline: primary + worker per packet** | **${pipeline}** | at most ${Math.round((result.cores * 1e9) / pipeline / 1000).toLocaleString('en-US')} k packets/s on ${result.cores} cores with no wake-up, cache miss or other process |`);
  return lines;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const at = args.indexOf('--rounds');
  const result = await benchPrimary({ rounds: at >= 0 ? Number(args[at + 1]) : 5 });
  if (args.includes('--json')) console.log(JSON.stringify(result, null, 2));
  else console.log(primaryTable(result).join('\n'));
}
