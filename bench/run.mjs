#!/usr/bin/env node
// `npm run bench`: SageQueue between two processes beside process.send, a Unix socket and the
// same ring driven from C++ alone, all measured in the same run, interleaved, pinned one process
// per core. Prints the machine, the targets (same-round ratios), throughput and ping-pong
// latency as Markdown tables, and writes bench/results/latest.json (+ a timestamped copy).
//
//   node bench/run.mjs [--runs N] [--quick] [--only REGEX] [--no-pin] [--build] [--ms N] [--warm-ms N]
//                      [--wait-idle SECONDS]
//
// See docs/benchmarks.md for what every row means.
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { buildCases, INFO_RATIOS, TARGETS } from './lib/cases.mjs';
import { describeMachine, loadLine, machineLines, sampleBackgroundLoad, which } from './lib/machine.mjs';
import { checkRun, evaluateRatios, fmtRate, fmtUs, renderTables, summarizeCase } from './lib/report.mjs';
import { Runner } from './lib/runner.mjs';
import { buildRingBench } from './transports/cpp-ring.mjs';
import { benchRouter } from './router.mjs';
import { benchMpmc, mpmcTable } from './mpmc.mjs';
import { benchPrimary, primaryTable } from './primary.mjs';
import { benchRedis, redisRatio } from './redis.mjs';
import { benchRedisPartitions } from './redis-partitions.mjs';
import { benchGateway, gatewayTable } from './gateway.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const RESULTS = path.join(ROOT, 'bench/results');

function parseArgs(argv) {
  const o = { runs: 3, quick: false, only: null, pin: true, build: false, ms: null, warmMs: null, waitIdle: 0, router: true, redis: true, gateway: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const num = () => {
      const v = Number(argv[++i]);
      if (!Number.isInteger(v) || v < 1) throw new Error(`${a} needs a positive integer`);
      return v;
    };
    if (a === '--runs') o.runs = num();
    else if (a === '--quick') o.quick = true;
    else if (a === '--only') o.only = new RegExp(argv[++i] ?? '');
    else if (a === '--no-pin') o.pin = false;
    else if (a === '--build') o.build = true;
    else if (a === '--ms') o.ms = num();
    else if (a === '--warm-ms') o.warmMs = num();
    else if (a === '--wait-idle') o.waitIdle = num();
    else if (a === '--no-router') o.router = false;
    else if (a === '--no-redis') o.redis = false;
    else if (a === '--no-gateway') o.gateway = false;
    else if (a === '--help' || a === '-h') {
      console.log('usage: node bench/run.mjs [--runs N] [--quick] [--only REGEX] [--no-pin] [--build] [--ms N] [--warm-ms N] [--wait-idle SECONDS] [--no-router] [--no-redis] [--no-gateway]');
      process.exit(0);
    } else throw new Error(`unknown argument ${a} (try --help)`);
  }
  if (o.quick && !argv.includes('--runs')) o.runs = 1;
  return o;
}

const log = (msg) => process.stderr.write(`${msg}\n`);

function newest(dir, exts) {
  let t = 0;
  for (const f of fs.readdirSync(dir)) {
    if (exts.some((e) => f.endsWith(e))) t = Math.max(t, fs.statSync(path.join(dir, f)).mtimeMs);
  }
  return t;
}

/** The benchmark measures dist/ and build/Release: say so when they are missing or older than their sources. */
function checkBuild(opts) {
  if (opts.build) {
    log('building: npm run build:ts; node-gyp build');
    execFileSync('npm', ['run', '-s', 'build:ts'], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
    execFileSync('npx', ['node-gyp', 'build'], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, npm_config_nodedir: process.env.npm_config_nodedir ?? '/usr' } });
  }
  const dist = path.join(ROOT, 'dist/index.mjs');
  const addon = path.join(ROOT, 'build/Release/sage_queue.node');
  if (!fs.existsSync(dist)) throw new Error('dist/ is missing: run `npm run build:ts` (or pass --build)');
  if (!fs.existsSync(addon)) throw new Error('build/Release/sage_queue.node is missing: run `npx node-gyp build` (or pass --build)');
  const warnings = [];
  if (fs.statSync(path.join(ROOT, 'dist/queue/sage-queue.js')).mtimeMs < newest(path.join(ROOT, 'lib'), ['.ts'])) {
    warnings.push('dist/ is older than lib/: the figures are for the last build (npm run build:ts, or --build)');
  }
  const nativeSrc = Math.max(newest(path.join(ROOT, 'native/core'), ['.cpp', '.h']), newest(path.join(ROOT, 'native/binding'), ['.cpp', '.h']));
  if (fs.statSync(addon).mtimeMs < nativeSrc) {
    warnings.push('build/Release/sage_queue.node is older than native/: the figures are for the last build (npx node-gyp build, or --build)');
  }
  return warnings;
}

function timing(opts) {
  const t = opts.quick
    ? { warmMs: 40, ms: 150, pingWarmMs: 30, pingMs: 120 }
    : { warmMs: 150, ms: 600, pingWarmMs: 100, pingMs: 500 };
  if (opts.ms) t.ms = t.pingMs = opts.ms;
  if (opts.warmMs) t.warmMs = t.pingWarmMs = opts.warmMs;
  return t;
}

function progressLine(c, r) {
  if (!r.ok) return `FAILED: ${r.error}`;
  if (c.kind === 'stream') {
    const w = typeof r.wakeCalls === 'number' && r.dequeued ? `, ${(r.wakeCalls / r.dequeued).toFixed(4)} wakes/msg` : '';
    return `${fmtRate(r.msgsPerSec)} msgs/s${w}`;
  }
  return `p50 ${fmtUs(r.p50Us)} µs, p99 ${fmtUs(r.p99Us)} µs (${r.samples} round trips)`;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const warnings = checkBuild(opts);
  const { SageQueue } = await import(pathToFileURL(path.join(ROOT, 'dist/index.mjs')).href);

  const machine = describeMachine();
  const taskset = which('taskset');
  const cpusOk = (machine.allowedCpus ?? []).includes(0) && (machine.allowedCpus ?? []).includes(1);
  const pin = opts.pin && taskset !== null && cpusOk;
  const placement = pin
    ? `producer/client pinned to CPU 0, consumer/server to CPU 1 (${taskset})`
    : `not pinned (${!opts.pin ? '--no-pin' : taskset === null ? 'taskset not found; install util-linux' : 'CPUs 0 and 1 are not both available'})`;
  if (!pin) warnings.push(`processes are ${placement}: figures are not comparable with pinned runs`);

  const t = timing(opts);
  let cases = buildCases(t);
  if (opts.only) cases = cases.filter((c) => opts.only.test(c.id));
  if (cases.length === 0) throw new Error('--only matched no case');

  const runner = new Runner({ taskset: pin ? taskset : null, ringBench: null, SageQueue });
  const compilers = new Set();
  let cleaned = false;
  const cleanup = () => {
    if (cleaned) return;
    cleaned = true;
    for (const p of compilers) if (p.exitCode === null) p.kill('SIGKILL');
    runner.cleanupSync();
  };
  cleanupOnError = cleanup;
  process.on('exit', cleanup);
  for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]]) {
    process.on(sig, () => {
      log(`\n${sig}: stopping, cleaning up`);
      cleanup();
      process.exit(code);
    });
  }

  if (cases.some((c) => c.transport === 'cpp')) {
    try {
      runner.ringBench = await buildRingBench(ROOT, log, (p) => {
        compilers.add(p);
        p.on('exit', () => compilers.delete(p));
      });
    } catch (e) {
      warnings.push(`C++ ring rows skipped: could not build ring_bench (${e.message.split('\n')[0]})`);
    }
  }

  if (opts.waitIdle > 0) {
    // A shared machine: wait (up to --wait-idle seconds) for 3 quiet seconds in a row.
    const until = Date.now() + opts.waitIdle * 1000;
    let quiet = 0;
    while (quiet < 3 && Date.now() < until) {
      const s = await sampleBackgroundLoad(1000);
      quiet = s.busyPercent !== null && s.busyPercent < 10 ? quiet + 1 : 0;
    }
    log(quiet >= 3 ? 'machine idle: starting' : `machine still busy after ${opts.waitIdle} s: starting anyway`);
  }
  const measureStarted = Date.now();
  const waitedS = Math.round((measureStarted - started) / 1000);
  const loadBefore = await sampleBackgroundLoad(opts.quick ? 200 : 500);
  if (loadBefore.busyPercent !== null && loadBefore.busyPercent > 10) {
    warnings.push(`the machine was ${loadBefore.busyPercent}% busy before the run: expect noisy figures`);
  }
  const header = [
    `sage-queue benchmark — ${new Date(measureStarted).toISOString()}`,
    ...machineLines(machine, placement),
    `Method:    ${opts.runs} round(s), every case once per round, interleaved; streams: ${t.warmMs} ms warm-up + ${t.ms} ms measured; ping-pong: ${t.pingWarmMs} ms + ${t.pingMs} ms${opts.quick ? ' (--quick: a smoke run, not for comparison)' : ''}`,
  ];
  for (const line of header) log(line);
  for (const w of warnings) log(`warning: ${w}`);
  log('');

  const results = {}; // id -> runs[]
  for (const c of cases) results[c.id] = [];
  for (let round = 0; round < opts.runs; round++) {
    for (const c of cases) {
      let r;
      try {
        r = { ...(await runner.run(c)), ok: true };
        const bad = checkRun(c, r);
        if (bad) r = { ...r, ok: false, error: bad };
      } catch (e) {
        r = { ok: false, error: e.message };
      }
      r.round = round + 1;
      results[c.id].push(r);
      log(`[${round + 1}/${opts.runs}] ${c.id.padEnd(40)} ${progressLine(c, r)}`);
    }
  }

  const loadAfter = await sampleBackgroundLoad(opts.quick ? 200 : 500);
  header.push(loadLine(loadBefore, loadAfter));
  const doc = {
    schema: 1,
    tool: 'sage-queue bench/run.mjs',
    startedAt: new Date(measureStarted).toISOString(),
    durationS: 0,
    machine,
    placement: { pinned: pin, description: placement },
    backgroundLoad: { before: loadBefore, after: loadAfter },
    settings: { rounds: opts.runs, quick: opts.quick, ...t, only: opts.only ? String(opts.only) : null },
    warnings,
    targets: evaluateRatios(TARGETS.filter((x) => !opts.only || inCases(x, results)), results, opts.runs),
    infoRatios: evaluateRatios(INFO_RATIOS.filter((x) => !opts.only || inCases(x, results)), results, opts.runs),
    cases: {},
  };
  for (const c of cases) {
    const { _names, _sock, ...params } = c;
    doc.cases[c.id] = { params, summary: summarizeCase(c, results[c.id]), runs: results[c.id] };
  }
  cleanup();

  // The router and the cross-machine (Redis) queue, after the transport cases (not with --only).
  const extra = [];
  if (!opts.only && opts.router) {
    log('router: decisions per strategy, then hash router -> 2 processes over SageQueue vs process.send');
    doc.router = await benchRouter({ quick: opts.quick });
    extra.push('', '### Router', '', '| routing (in-process, 8 sink targets) | decisions/s | route() p50 µs |', '|---|---:|---:|');
    for (const d of doc.router.decisions) extra.push(`| ${d.name} | ${Math.round(d.decisionsPerSec).toLocaleString('en-US')} | ${d.routeP50Us.toFixed(2)} |`);
    extra.push('', '| end to end: 1 producer → 2 consumer processes | packets/s |', '|---|---:|');
    for (const e of doc.router.endToEnd) extra.push(`| ${e.name} | ${Math.round(e.packetsPerSec).toLocaleString('en-US')} |`);
    extra.push('', `SageQueue pipeline ÷ process.send pipeline: **${doc.router.ratio.toFixed(1)}×**`);
  }
  if (!opts.only && opts.router) {
    log('primary: where the demo primary\'s CPU per packet goes, stage by stage (one process)');
    doc.primary = await benchPrimary({ rounds: opts.quick ? 3 : 5, iters: opts.quick ? 150 : 400 });
    extra.push('', '### The demo primary, per packet', '', ...primaryTable(doc.primary));
  }
  if (!opts.only) {
    log('mpmc: 1x1, 2x2, 4x4 producers x consumers on one queue beside as many independent queues');
    try {
      doc.mpmc = await benchMpmc({ quick: opts.quick, rounds: opts.runs });
      extra.push('', '### MPMC scaling', '', ...mpmcTable(doc.mpmc));
    } catch (e) {
      warnings.push(`mpmc rows failed: ${e.message}`);
    }
  }
  if (!opts.only && opts.redis) {
    if (spawnSync('redis-server', ['--version']).status !== 0) {
      warnings.push('redis-server is not installed: the Redis rows were skipped (apt-get install redis-server)');
    } else {
      log('redis: redis-benchmark, raw ioredis pipelines and RedisQueue (its own redis-server on loopback)');
      doc.redis = await benchRedis({ quick: opts.quick });
      extra.push(
        '',
        '### Leaving the machine: Redis',
        '',
        '| benchmark | msgs/s | vs best raw pipeline | p50 µs | p99 µs | commands / 256 msgs | node CPU µs/msg | redis CPU µs/msg |',
        '|---|---:|---:|---:|---:|---:|---:|---:|',
      );
      for (const r of doc.redis) {
        const opt = (v) => (v === undefined ? '' : String(v));
        extra.push(`| ${r.name} | ${Math.round(r.msgsPerSec).toLocaleString('en-US')} | ${redisRatio(doc.redis, r).replace('x', '×')} | ${r.p50us} | ${r.p99us} | ${opt(r.commandsPerBatch)} | ${opt(r.clientCpuUs)} | ${opt(r.serverCpuUs)} |`);
      }
      log('redis: PartitionedRedisQueue vs number of Cluster masters (1, 2, 3; clusters started here)');
      try {
        doc.redisPartitions = await benchRedisPartitions({ quick: opts.quick });
        extra.push(
          '', '### PartitionedRedisQueue vs Cluster masters (2 producer + 2 consumer processes)', '',
          '| benchmark | msgs/s | clients CPU µs/msg | each master CPU µs/msg | busiest master alone could serve (msg/s) |', '|---|---:|---:|---:|---:|',
        );
        for (const r of doc.redisPartitions) {
          extra.push(`| ${r.name} | ${Math.round(r.msgsPerSec).toLocaleString('en-US')} | ${r.clientUsPerMsg.toFixed(1)} | ${r.masterUsPerMsg.map((x) => x.toFixed(2)).join(' / ')} | ${Math.round(r.serverCeilingMsgsPerSec).toLocaleString('en-US')} |`);
        }
      } catch (e) {
        warnings.push(`partitioned Redis rows failed: ${e.message}`);
      }
    }
  }
  if (!opts.only) {
    // The in-process codec micro-benchmarks (npm run bench:micro), summarised.
    log('micro: each codec encoding and decoding the small object (benchmark.js)');
    const micro = spawnSync(process.execPath, [path.join(ROOT, 'bench/micro.mjs'), '--json', ...(opts.quick ? ['--quick'] : [])], { encoding: 'utf8' });
    if (micro.status === 0) {
      doc.micro = JSON.parse(micro.stdout).rows;
      extra.push('', '### Codecs in one process (benchmark.js, small object; npm run bench:micro)', '', '| codec | bytes | encode ns/object | decode ns/object |', '|---|---:|---:|---:|');
      for (const codec of [...new Set(doc.micro.map((r) => r.codec))]) {
        const e = doc.micro.find((r) => r.codec === codec && r.op === 'encode');
        const d = doc.micro.find((r) => r.codec === codec && r.op === 'decode');
        extra.push(`| ${codec} | ${e.bytes} | ${e.nsPerOp.toFixed(0)} ±${e.rme.toFixed(1)}% | ${d.nsPerOp.toFixed(0)} ±${d.rme.toFixed(1)}% |`);
      }
    } else warnings.push(`codec micro-benchmarks failed: ${(micro.stderr || '').split('\n')[0]}`);
  }
  if (!opts.only && opts.gateway) {
    log('gateway: priority queue in-process, priority lanes vs one SageQueue, route table, example gateway vs its process.send twin');
    try {
      doc.gateway = await benchGateway({ quick: opts.quick });
      extra.push(...gatewayTable(doc.gateway));
    } catch (e) {
      warnings.push(`gateway rows failed: ${e.message}`);
    }
  }
  doc.durationS = Math.round((Date.now() - measureStarted) / 100) / 10;
  doc.waitedForIdleS = waitedS;
  const left = runner.leftovers();
  if (left.segments.length || left.processes.length || left.socketDir) {
    warnings.push(`cleanup incomplete: ${JSON.stringify(left)}`);
  }

  const lines = ['', ...header.map((l) => (l.startsWith('sage-queue') ? `## ${l}` : `    ${l}`)), '', ...renderTables(doc), ...extra, ''];
  for (const w of warnings) lines.push(`warning: ${w}`);
  lines.push(`Total time: ${doc.durationS} s${opts.waitIdle > 0 ? ` (after ${waitedS} s of start-up and waiting for an idle machine)` : ''}`);
  process.stdout.write(`${lines.join('\n')}\n`);

  // latest.json always holds the last full run: a --quick (smoke) or --only run writes only its
  // own timestamped "-quick" / "-partial" file.
  fs.mkdirSync(RESULTS, { recursive: true });
  const json = `${JSON.stringify(doc, null, 2)}\n`;
  const stamp = `${doc.startedAt.replace(/[:.]/g, '-')}${opts.only ? '-partial' : opts.quick ? '-quick' : ''}`;
  fs.writeFileSync(path.join(RESULTS, `${stamp}.json`), json);
  const full = !opts.only && !opts.quick;
  if (full) fs.writeFileSync(path.join(RESULTS, 'latest.json'), json);
  log(`wrote ${full ? 'bench/results/latest.json and ' : ''}bench/results/${stamp}.json`);

  const failed = Object.values(doc.cases).some((v) => v.summary.errors);
  process.exitCode = failed ? 1 : 0;
}

function inCases(def, results) {
  const ids = def.value ? [def.value.id] : [def.num.id, def.den.id];
  return ids.every((id) => id in results);
}

let cleanupOnError = () => {};

main().catch((e) => {
  log(`bench failed: ${e.stack ?? e}`);
  cleanupOnError();
  process.exit(2);
});
