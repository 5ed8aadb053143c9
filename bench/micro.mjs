#!/usr/bin/env node
// `npm run bench:micro`: in-process micro-benchmarks with benchmark.js (ops/s ± relative margin
// of error): each codec's encode and decode of the small object the `npm run bench` rows send.
// `records` is bound to a structure table in a temporary directory, as a SageQueue binds it to
// /dev/shm/sageq.<name>@<nonce>.structs. Then the router's decisions: route() per strategy over
// 8 sink targets (bench/router.mjs's sinks: one with the synchronous putNowait a SageQueue has,
// one with putAsync only), 256 routes awaited one by one per operation, and pick() alone.
// Prints Markdown tables; with --json, JSON on stdout.
//
// Packet section: `new Packet(payload, { partitionKey })`, and a keyed packet (payload: the same
// small object) through `records` and `msgpack` in its compact wire form (the codec extension:
// encode(packet), decode → a Packet) against its toJSON() object form (encode(packet.toJSON()),
// decode + Packet.from), untraced and with one hop (tracing: the traceId travels too).
//
//   node bench/micro.mjs [--json] [--quick]
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

import { makeObject } from './lib/consume.mjs';
import { sinkRouter } from './router.mjs';

const require = createRequire(import.meta.url);
const Benchmark = require('benchmark');
const { codecByName } = require('../dist/queue/codecs.js');
const { openRecordCodec } = require('../dist/queue/record-codec.js');
const { Packet } = require('../dist/index.js');

const asJson = process.argv.includes('--json');
const quick = process.argv.includes('--quick');
const dir = mkdtempSync(path.join(tmpdir(), 'sageq-micro-'));

function run() {
  const codecs = ['json', 'v8', 'msgpack'].map((n) => codecByName(n));
  const records = openRecordCodec(path.join(dir, 'table.structs'), 0o600);
  codecs.push(records);
  const suite = new Benchmark.Suite();
  const sizes = {};
  let seq = 0;
  for (const c of codecs) {
    const sample = c.encode(makeObject(1));
    sizes[c.name] = sample.length;
    const bytes = Buffer.from(sample);
    const opts = quick ? { maxTime: 0.3, minSamples: 5 } : { maxTime: 1.5 };
    suite.add(`${c.name} encode`, () => c.encode(makeObject(seq++)), opts);
    suite.add(`${c.name} decode`, () => c.decode(bytes), opts);
  }
  const rows = [];
  suite.on('cycle', (e) => {
    const b = e.target;
    const [codec, op] = b.name.split(' ');
    rows.push({ codec, op, opsPerSec: b.hz, nsPerOp: 1e9 / b.hz, rme: b.stats.rme, samples: b.stats.sample.length, bytes: sizes[codec] });
    if (!asJson) process.stderr.write(`${String(b)}\n`);
  });
  suite.run({ async: false });
  records.close();
  return rows;
}

function runPackets() {
  const opts = quick ? { maxTime: 0.3, minSamples: 5 } : { maxTime: 1.5 };
  const keys = Array.from({ length: 1024 }, (_, i) => `user-${i}`);
  const records = openRecordCodec(path.join(dir, 'packets.structs'), 0o600);
  const codecs = [records, codecByName('msgpack')];
  const suite = new Benchmark.Suite();
  const rows = [];
  let seq = 0;
  suite.add('Packet construct', () => new Packet(makeObject(seq), { partitionKey: keys[seq++ & 1023] }), { ...opts, meta: { codec: '-', form: '-', op: 'construct' } });
  // Fresh packets for every row: toJSON() makes the traceId, which the compact form then carries.
  const sample = (tracing) =>
    keys.map((k, i) => (tracing === 'traced' ? new Packet(makeObject(i), { partitionKey: k }).withHop('ingest', 'worker-3') : new Packet(makeObject(i), { partitionKey: k })));
  for (const c of codecs) {
    for (const tracing of ['untraced', 'traced']) {
      const forms = { compact: (p) => c.encode(p), toJSON: (p) => c.encode(p.toJSON()) };
      for (const [form, encode] of Object.entries(forms)) {
        const packets = sample(tracing);
        const bytes = packets.map((p) => Buffer.from(encode(p)));
        const decode = form === 'compact' ? (b) => c.decode(b) : (b) => Packet.from(c.decode(b));
        if (!(decode(bytes[0]) instanceof Packet)) throw new Error(`${c.name} ${form}: decode did not give a Packet`);
        const size = bytes[0].length;
        let i = 0;
        let j = 0;
        suite.add(`${c.name} ${tracing} ${form} encode`, () => encode(packets[i++ & 1023]), { ...opts, meta: { codec: c.name, tracing, form, op: 'encode', bytes: size } });
        suite.add(`${c.name} ${tracing} ${form} decode`, () => decode(bytes[j++ & 1023]), { ...opts, meta: { codec: c.name, tracing, form, op: 'decode', bytes: size } });
      }
    }
  }
  suite.on('cycle', (e) => {
    const b = e.target;
    rows.push({ name: b.name, ...b.meta, opsPerSec: b.hz, nsPerOp: 1e9 / b.hz, rme: b.stats.rme, samples: b.stats.sample.length });
    if (!asJson) process.stderr.write(`${String(b)}\n`);
  });
  suite.run({ async: false });
  records.close();
  return rows;
}

const ROUTE_STRATEGIES = ['round_robin', 'hash', 'consistent_hash', 'load_balance', 'broadcast'];
const ROUTES_PER_OP = 256;

/** route() (deferred: 256 awaited routes per operation) per strategy and sink, and pick(). */
async function runRoutes() {
  const suite = new Benchmark.Suite();
  const opts = quick ? { maxTime: 0.3, minSamples: 5 } : { maxTime: 1.5 };
  // Steady state, as in bench/router.mjs: every configuration routes untimed before any is timed.
  for (const sink of ['sync', 'async']) {
    for (const strategy of ROUTE_STRATEGIES) {
      const { router, packets } = sinkRouter(strategy, sink);
      for (let i = 0; i < 20_000; i++) await router.route(packets[i & 1023]);
    }
  }
  for (const sink of ['sync', 'async']) {
    for (const strategy of ROUTE_STRATEGIES) {
      const { router, packets } = sinkRouter(strategy, sink);
      let n = 0;
      suite.add(`route ${strategy} ${sink}`, {
        ...opts,
        defer: true,
        fn: (deferred) => {
          (async () => {
            for (let i = 0; i < ROUTES_PER_OP; i++) await router.route(packets[(n + i) & 1023]);
            n += ROUTES_PER_OP;
            deferred.resolve();
          })();
        },
      });
    }
  }
  for (const strategy of ROUTE_STRATEGIES.filter((s) => s !== 'broadcast')) {
    const { router, packets } = sinkRouter(strategy, 'sync');
    let n = 0;
    suite.add(`pick ${strategy} -`, () => router.pick(packets[n++ & 1023]), opts);
  }
  const rows = [];
  suite.on('cycle', (e) => {
    const b = e.target;
    const [op, strategy, sink] = b.name.split(' ');
    const perOp = op === 'route' ? ROUTES_PER_OP : 1;
    rows.push({ op, strategy, sink: sink === '-' ? null : sink, decisionsPerSec: b.hz * perOp, nsPerDecision: 1e9 / (b.hz * perOp), rme: b.stats.rme, samples: b.stats.sample.length });
    if (!asJson) process.stderr.write(`${String(b)}\n`);
  });
  return new Promise((resolve) => {
    suite.on('complete', () => resolve(rows));
    suite.run({ async: true });
  });
}

function routeTable(rows) {
  const lines = ['| router decision (8 sink targets) | strategy | sink | ns/decision | decisions/s |', '|---|---|---|---:|---:|'];
  for (const r of rows) {
    lines.push(`| ${r.op}() | ${r.strategy} | ${r.sink ?? '–'} | ${r.nsPerDecision.toFixed(0)} ±${r.rme.toFixed(1)}% | ${Math.round(r.decisionsPerSec).toLocaleString('en-US')} |`);
  }
  const hash = rows.find((r) => r.op === 'route' && r.strategy === 'hash' && r.sink === 'sync');
  if (hash !== undefined) lines.push('', `target: route() hash ≥ 3 M decisions/s (sync sink): ${hash.decisionsPerSec >= 3e6 ? 'met' : 'NOT met'} (${(hash.decisionsPerSec / 1e6).toFixed(2)} M/s)`);
  return lines;
}

try {
  const rows = run();
  const packets = runPackets();
  const routes = await runRoutes();
  if (asJson) process.stdout.write(`${JSON.stringify({ tool: 'sage-queue bench/micro.mjs', node: process.version, rows, packets, routes }, null, 2)}\n`);
  else {
    const lines = ['| codec | bytes | encode ns/object | decode ns/object |', '|---|---:|---:|---:|'];
    for (const codec of [...new Set(rows.map((r) => r.codec))]) {
      const e = rows.find((r) => r.codec === codec && r.op === 'encode');
      const d = rows.find((r) => r.codec === codec && r.op === 'decode');
      lines.push(`| ${codec} | ${e.bytes} | ${e.nsPerOp.toFixed(0)} ±${e.rme.toFixed(1)}% | ${d.nsPerOp.toFixed(0)} ±${d.rme.toFixed(1)}% |`);
    }
    const construct = packets.find((r) => r.op === 'construct');
    lines.push('', `Packet construction (new Packet(payload, { partitionKey })): ${construct.nsPerOp.toFixed(0)} ns ±${construct.rme.toFixed(1)}%`, '');
    lines.push('| codec | packet | form | bytes | encode ns/packet | decode ns/packet (to a Packet) |', '|---|---|---|---:|---:|---:|');
    for (const e of packets.filter((r) => r.op === 'encode')) {
      const d = packets.find((r) => r.op === 'decode' && r.codec === e.codec && r.tracing === e.tracing && r.form === e.form);
      lines.push(`| ${e.codec} | ${e.tracing} | ${e.form} | ${e.bytes} | ${e.nsPerOp.toFixed(0)} ±${e.rme.toFixed(1)}% | ${d.nsPerOp.toFixed(0)} ±${d.rme.toFixed(1)}% |`);
    }
    lines.push('', ...routeTable(routes));
    process.stdout.write(`${lines.join('\n')}\n`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
