#!/usr/bin/env node
// Compares two bench result files mechanically: every case's median and every target's ratio,
// old -> new, with the change in percent. Exit code 1 when a target that was met is now missed.
//
//   node bench/compare.mjs OLD.json [NEW.json]      (NEW defaults to bench/results/latest.json)
//   node bench/compare.mjs OLD.json NEW.json --threshold 15   (flag changes beyond ±15%, default 20)
//
// Same-machine, same-load comparisons only: these machines drift by up to 2x between runs, which
// is why the targets are ratios measured within one run.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
let threshold = 20;
const files = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--threshold') threshold = Number(args[++i]);
  else files.push(args[i]);
}
if (files.length < 1 || files.length > 2 || !Number.isFinite(threshold)) {
  console.error('usage: node bench/compare.mjs OLD.json [NEW.json] [--threshold PERCENT]');
  process.exit(2);
}
const load = (f) => JSON.parse(fs.readFileSync(f, 'utf8'));
const oldDoc = load(files[0]);
const newDoc = load(files[1] ?? path.join(here, 'results/latest.json'));

const pct = (a, b) => (a && b ? ((b - a) / a) * 100 : null);
const fmt = (v, digits = 3) => (v === null || v === undefined ? '—' : Number(v).toPrecision(digits));
const flag = (p, higherIsBetter) => {
  if (p === null || Math.abs(p) < threshold) return '';
  return (p > 0) === higherIsBetter ? ' (better)' : ' (WORSE)';
};

console.log(`old: ${oldDoc.startedAt} ${oldDoc.machine?.git?.commit ?? ''}  (${oldDoc.machine?.cpuModel}, ${oldDoc.settings?.rounds} rounds)`);
console.log(`new: ${newDoc.startedAt} ${newDoc.machine?.git?.commit ?? ''}  (${newDoc.machine?.cpuModel}, ${newDoc.settings?.rounds} rounds)`);
if (oldDoc.machine?.cpuModel !== newDoc.machine?.cpuModel) console.log('warning: different CPU models');
console.log('');

let regressions = 0;
console.log('Targets');
for (const t of newDoc.targets ?? []) {
  const o = (oldDoc.targets ?? []).find((x) => x.key === t.key);
  const wasMet = o?.met;
  const lost = wasMet === true && t.met === false;
  if (lost) regressions++;
  console.log(`  ${t.label}: ${fmt(o?.measured)} -> ${fmt(t.measured)} (want ${t.want}) ${t.met ? 'met' : 'MISSED'}${lost ? '  <- was met' : ''}`);
}
console.log('');
console.log('Cases (median)');
for (const [id, c] of Object.entries(newDoc.cases ?? {})) {
  const o = oldDoc.cases?.[id];
  if (!o) {
    console.log(`  ${id}: new case`);
    continue;
  }
  if (c.params.kind === 'stream') {
    const a = o.summary.msgsPerSec?.median;
    const b = c.summary.msgsPerSec?.median;
    const p = pct(a, b);
    console.log(`  ${id}: ${fmt(a)} -> ${fmt(b)} msgs/s${p === null ? '' : ` (${p >= 0 ? '+' : ''}${p.toFixed(0)}%)`}${flag(p, true)}`);
  } else {
    const a = o.summary.p50Us?.median;
    const b = c.summary.p50Us?.median;
    const p = pct(a, b);
    console.log(`  ${id}: p50 ${fmt(a)} -> ${fmt(b)} µs${p === null ? '' : ` (${p >= 0 ? '+' : ''}${p.toFixed(0)}%)`}${flag(p, false)}`);
  }
}
process.exitCode = regressions > 0 ? 1 : 0;
