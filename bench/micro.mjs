#!/usr/bin/env node
// `npm run bench:micro`: in-process micro-benchmarks with benchmark.js (ops/s ± relative margin
// of error): each codec's encode and decode of the small object the `npm run bench` rows send.
// `records` is bound to a structure table in a temporary directory, as a SageQueue binds it to
// /dev/shm/sageq.<name>@<nonce>.structs. Prints a Markdown table; with --json, JSON on stdout.
//
//   node bench/micro.mjs [--json] [--quick]
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

import { makeObject } from './lib/consume.mjs';

const require = createRequire(import.meta.url);
const Benchmark = require('benchmark');
const { codecByName } = require('../dist/queue/codecs.js');
const { openRecordCodec } = require('../dist/queue/record-codec.js');

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

try {
  const rows = run();
  if (asJson) process.stdout.write(`${JSON.stringify({ tool: 'sage-queue bench/micro.mjs', node: process.version, rows }, null, 2)}\n`);
  else {
    const lines = ['| codec | bytes | encode ns/object | decode ns/object |', '|---|---:|---:|---:|'];
    for (const codec of [...new Set(rows.map((r) => r.codec))]) {
      const e = rows.find((r) => r.codec === codec && r.op === 'encode');
      const d = rows.find((r) => r.codec === codec && r.op === 'decode');
      lines.push(`| ${codec} | ${e.bytes} | ${e.nsPerOp.toFixed(0)} ±${e.rme.toFixed(1)}% | ${d.nsPerOp.toFixed(0)} ±${d.rme.toFixed(1)}% |`);
    }
    process.stdout.write(`${lines.join('\n')}\n`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
