#!/usr/bin/env node
// Kill-9 torture of SageQueue (issue 6). P producer and C consumer processes share one queue; a
// controller SIGKILLs random processes at random moments (starting a replacement each time, with
// a new id), SIGSTOPs/SIGCONTs others, and makes the consumers stop consuming now and then
// (backpressure). At the end everything drains and the logs are checked (see analyze.mjs):
// nothing corrupted, nothing twice, per-producer order per consumer, every committed message
// delivered or lost only by a consumer that died holding it (matched against stats().lostInRead),
// progress resuming after every kill within a bounded time, producer memory bounded.
//
//   node test/torture/run.mjs --minutes N     long run; regenerates docs/reliability.md
//   node test/torture/run.mjs --quick         < 60 s (npm test); writes to a temp dir only
//   node test/torture/run.mjs --ack [--quick]  explicit-ack queue: consumers (consumer-ack.mjs) ack,
//                                              ackMany or nack what they got, and are killed holding
//                                              leases; checked per message by analyze-ack.mjs (0 lost,
//                                              redelivered only if not acked). No report unless --report.
// Options: --seconds N, --producers P, --consumers C, --capacity BYTES, --seed N,
//   --json FILE (figures and checks), --report FILE (markdown), --fuzz-seconds N (run
//   scripts/fuzz.sh first and include it), --fuzz-summary FILE, --keep (keep the logs), --quiet.
// Exit code: 0 when every check passed, 1 when one failed, 2 on a harness error.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

import { QueueEmptyError, QueueFullError, SageQueue } from '../../dist/index.mjs';
import { analyze } from './analyze.mjs';
import { CONTROLLER_ID, makeMessage, nowUs, verify } from './message.mjs';
import { renderReport } from './report.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
// Test hooks of the core (set_test_hook) a replacement may park at, to be killed right there.
const HOOKS = {
  producer: ['after-claim', 'mid-copy', 'before-commit', 'in-prod-lock'],
  consumer: ['after-take', 'mid-read', 'in-cons-lock'],
};
const HOOK_PROBABILITY = 0.25;
/** --ack: the lease length; far above the longest SIGSTOP, so no lease expires in a run. */
const ACK_TIMEOUT_MS = 10_000;
const REPO = path.resolve(HERE, '..', '..');
// Replacements arm the core's test hooks: every child (and this controller) loads the hooks-enabled
// addon (`npm run build:test-addon`; SAGE_QUEUE_NATIVE_ADDON, inherited by the children).
process.env.SAGE_QUEUE_NATIVE_ADDON = createRequire(import.meta.url)('../fixtures/test-addon.cjs').testAddonPath();

// ------------------------------------------------------------------------------------------------
// Options

function parseArgs(argv) {
  const o = {
    quick: false, ack: false, seconds: undefined, producers: 3, consumers: 2, capacity: 256 * 1024, seed: undefined,
    json: undefined, report: undefined, fuzzSeconds: 0, fuzzSummary: undefined, keep: false, quiet: false,
  };
  const num = (i) => {
    const v = Number(argv[i + 1]);
    if (!Number.isFinite(v) || v < 0) throw new Error(`${argv[i]} needs a number >= 0, got ${JSON.stringify(argv[i + 1])}`);
    return v;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    switch (a) {
      case '--quick': o.quick = true; break;
      case '--ack': o.ack = true; break;
      case '--minutes': o.seconds = num(i) * 60; i++; break;
      case '--seconds': o.seconds = num(i); i++; break;
      case '--producers': o.producers = Math.max(1, Math.floor(num(i))); i++; break;
      case '--consumers': o.consumers = Math.max(1, Math.floor(num(i))); i++; break;
      case '--capacity': o.capacity = Math.floor(num(i)); i++; break;
      case '--seed': o.seed = Math.floor(num(i)); i++; break;
      case '--json': o.json = argv[++i]; break;
      case '--report': o.report = argv[++i]; break;
      case '--fuzz-seconds': o.fuzzSeconds = num(i); i++; break;
      case '--fuzz-summary': o.fuzzSummary = argv[++i]; break;
      case '--keep': o.keep = true; break;
      case '--quiet': o.quiet = true; break;
      case '--help':
        process.stdout.write(`${readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1).filter((l, i, all) => all.slice(0, i + 1).every((x) => x.startsWith('//'))).map((l) => l.replace(/^\/\/ ?/, '')).join('\n')}\n`);
        process.exit(0);
        break;
      default: throw new Error(`unknown option ${a} (see --help)`);
    }
  }
  if (o.seconds === undefined) o.seconds = o.quick ? 22 : 180;
  o.seed ??= randomBytes(4).readUInt32LE(0);
  // The quick run (npm test) never touches the committed report.
  // Nor does an explicit-ack run (docs/reliability.md holds the auto-ack run's figures).
  if (o.report === undefined) o.report = o.quick || o.ack ? undefined : path.join(REPO, 'docs', 'reliability.md');
  return o;
}

// Small seeded PRNG (mulberry32), so a run's fault schedule can be replayed with --seed.
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function rssKiB(pid) {
  try {
    const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

// ------------------------------------------------------------------------------------------------
// The run

class Torture {
  constructor(o) {
    this.o = o;
    this.rand = prng(o.seed);
    // Producers open the queue in the same ack mode (children inherit the environment).
    if (o.ack) process.env.SAGE_TORTURE_ACK = '1';
    this.dir = mkdtempSync(path.join(os.tmpdir(), 'sage-torture-'));
    this.logs = path.join(this.dir, 'logs');
    this.control = path.join(this.dir, 'control');
    mkdirSync(this.logs);
    mkdirSync(this.control);
    this.name = `torture-${process.pid}-${randomBytes(3).toString('hex')}`;
    this.procs = []; // every child ever started
    this.events = []; // { t, kind: kill|stop|cont|pause|resume|spawn, role, id, ... }
    this.nextId = { producer: 1, consumer: 1 };
    this.rss = []; // { t, role, id, kib }
    this.samples = []; // { t, enqueued, dequeued, depth, usedBytes, spaceWaiters }
    this.pauses = []; // { start, end, maxUsed, spaceWaitersSeen, enqueuedAtLastHalf, enqueuedAtEnd }
    this.harnessErrors = [];
    this.own = { put: 0, got: 0, acked: 0, bad: 0, errors: [] };
  }

  log(msg) {
    if (!this.o.quiet) process.stderr.write(`[torture ${((nowUs() - this.t0) / 1e6).toFixed(1)}s] ${msg}\n`);
  }

  /** For a replacement: now and then a test hook, so it dies at an exact point of the data path. */
  pickHook(role) {
    if (this.rand() >= HOOK_PROBABILITY) return undefined;
    const point = this.pick(HOOKS[role]);
    return `${point}:${20 + Math.floor(this.rand() * 400)}`;
  }

  spawnChild(role, hook) {
    const id = this.nextId[role]++;
    const logFile = path.join(this.logs, `${role}-${id}.log`);
    const script = path.join(HERE, role === 'consumer' && this.o.ack ? 'consumer-ack.mjs' : `${role}.mjs`);
    const args = [script, this.name, String(id), logFile, this.control];
    if (hook) args.push(hook);
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    const p = { role, id, child, pid: child.pid, logFile, started: nowUs(), exited: false, killed: false, stopped: false, code: null, signal: null, stderr: '', planned: false, hook, parked: null };
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d) => {
      const m = /SAGE_HOOK (\S+)/.exec(d);
      if (m && !p.parked) {
        // Parked at the hook point: kill it there, a moment later (or sooner, by a random fault).
        p.parked = m[1];
        this.events.push({ t: nowUs(), kind: 'park', role, id, point: m[1] });
        setTimeout(() => {
          if (!p.exited && !p.killed) this.kill(p);
        }, Math.floor(this.rand() * 30));
        d = d.replace(/SAGE_HOOK \S+\n?/, '');
      }
      if (p.stderr.length < 8000) p.stderr += d;
    });
    child.on('exit', (code, signal) => {
      p.exited = true;
      p.code = code;
      p.signal = signal;
      p.ended = nowUs();
      const expected = p.killed || (p.planned && code === 0);
      if (!expected) {
        this.harnessErrors.push(`${role} ${id} (pid ${p.pid}) exited unexpectedly: code ${code}, signal ${signal}: ${p.stderr.trim().slice(0, 2000)}`);
      }
    });
    child.on('error', (e) => this.harnessErrors.push(`${role} ${id}: spawn failed: ${e.message}`));
    this.procs.push(p);
    this.events.push({ t: nowUs(), kind: 'spawn', role, id });
    return p;
  }

  live(role) {
    return this.procs.filter((p) => !p.exited && !p.killed && (role === undefined || p.role === role));
  }

  pick(list) {
    return list[Math.floor(this.rand() * list.length)];
  }

  kill(p) {
    p.killed = true;
    p.killedAt = nowUs();
    const wasStopped = p.stopped;
    p.child.kill('SIGKILL');
    p.stopped = false;
    this.events.push({ t: nowUs(), kind: 'kill', role: p.role, id: p.id, wasStopped, paused: this.paused, hook: p.parked });
    if (!this.finishing) this.spawnChild(p.role, this.pickHook(p.role)); // the replacement, with a new id
  }

  stop(p, ms) {
    p.stopped = true;
    p.child.kill('SIGSTOP');
    const ev = { t: nowUs(), kind: 'stop', role: p.role, id: p.id, until: null };
    this.events.push(ev);
    setTimeout(() => {
      if (p.exited || p.killed || !p.stopped) return;
      p.child.kill('SIGCONT');
      p.stopped = false;
      this.events.push({ t: nowUs(), kind: 'cont', role: p.role, id: p.id });
    }, ms);
  }

  sample() {
    try {
      const s = this.q.stats();
      const t = nowUs();
      this.samples.push({ t, enqueued: s.enqueued, dequeued: s.dequeued, depth: s.depth, usedBytes: s.usedBytes, spaceWaiters: s.spaceWaiters });
      const pause = this.currentPause;
      if (pause) {
        pause.maxUsed = Math.max(pause.maxUsed, s.usedBytes);
        pause.maxDepth = Math.max(pause.maxDepth, s.depth);
        if (s.spaceWaiters > 0) pause.spaceWaitersSeen = true;
      }
    } catch (e) {
      this.harnessErrors.push(`stats failed: ${e.message}`);
    }
  }

  sampleRss() {
    const t = nowUs();
    for (const p of this.live('producer')) {
      const kib = rssKiB(p.pid);
      if (kib !== undefined) this.rss.push({ t, role: p.role, id: p.id, kib });
    }
  }

  async pausePhase(ms) {
    const pause = { start: nowUs(), end: null, ms, maxUsed: 0, maxDepth: 0, spaceWaitersSeen: false, enqueuedLate: null, enqueuedEnd: null, rssStart: {}, rssEnd: {} };
    for (const p of this.live('producer')) pause.rssStart[p.id] = rssKiB(p.pid);
    this.currentPause = pause;
    this.paused = true;
    writeFileSync(path.join(this.control, 'pause'), '');
    this.events.push({ t: pause.start, kind: 'pause' });
    this.log(`consumers stop consuming for ${ms} ms`);
    await this.faultsFor(ms * 0.6, { noConsumerStops: true });
    pause.enqueuedLate = this.q.stats().enqueued;
    await this.faultsFor(ms * 0.4, { noConsumerStops: true, noKills: true });
    const s = this.q.stats();
    pause.enqueuedEnd = s.enqueued;
    for (const p of this.live('producer')) {
      if (pause.rssStart[p.id] !== undefined) pause.rssEnd[p.id] = rssKiB(p.pid);
    }
    rmSync(path.join(this.control, 'pause'), { force: true });
    pause.end = nowUs();
    this.paused = false;
    this.currentPause = null;
    this.events.push({ t: pause.end, kind: 'resume' });
    this.pauses.push(pause);
  }

  /** Random faults for `ms` milliseconds. */
  async faultsFor(ms, opts = {}) {
    const until = Date.now() + ms;
    const [lo, hi] = this.o.quick ? [15, 120] : [20, 200];
    while (Date.now() < until) {
      await sleep(Math.min(until - Date.now(), lo + this.rand() * (hi - lo)));
      if (Date.now() >= until) break;
      const r = this.rand();
      const victims = this.live();
      if (victims.length === 0) continue; // every child died on its own: reported as a harness error
      if (r < 0.65 && !opts.noKills) {
        this.kill(this.pick(victims));
      } else if (r < 0.9) {
        // SIGSTOP a process for 20-300 ms; always leave one producer and one consumer running.
        const candidates = this.live().filter((p) => !p.stopped && !(opts.noConsumerStops && p.role === 'consumer'));
        const running = (role) => this.live(role).filter((p) => !p.stopped).length;
        const ok = candidates.filter((p) => running(p.role) > 1);
        if (ok.length > 0) this.stop(this.pick(ok), 20 + Math.floor(this.rand() * 280));
      }
    }
  }

  async run() {
    const o = this.o;
    this.t0 = nowUs();
    // Explicit acks: a lease outlives any SIGSTOP here (20-300 ms), so only nacks and deaths redeliver.
    this.q = o.ack
      ? SageQueue.create(this.name, { capacity: o.capacity, codec: 'raw', ackMode: 'explicit', ackTimeoutMs: ACK_TIMEOUT_MS })
      : SageQueue.create(this.name, { capacity: o.capacity, codec: 'raw' });
    this.capacity = this.q.capacity;
    for (let i = 0; i < o.producers; i++) this.spawnChild('producer');
    for (let i = 0; i < o.consumers; i++) this.spawnChild('consumer');
    const sampler = setInterval(() => this.sample(), 20);
    const rssTimer = setInterval(() => this.sampleRss(), 200);
    try {
      // Wait for traffic before the first fault.
      const ready = Date.now() + 20_000;
      while (this.q.stats().dequeued < 100) {
        if (Date.now() > ready) throw new Error('no traffic 20 s after start: the children did not start');
        if (this.harnessErrors.length) throw new Error(this.harnessErrors.join('\n'));
        await sleep(20);
      }
      this.faultStart = nowUs();
      this.log(`faults for ${o.seconds} s: ${o.producers} producers, ${o.consumers} consumers, capacity ${this.capacity} B, seed ${o.seed}`);
      const end = Date.now() + o.seconds * 1000;
      // A backpressure phase every ~8 s (at least one per run), random faults around them.
      const pauseEvery = Math.min(8000, (o.seconds * 1000) / 2);
      let nextPause = Date.now() + pauseEvery / 2;
      while (Date.now() < end) {
        if (Date.now() >= nextPause && end - Date.now() > 2500) {
          await this.pausePhase(1500);
          nextPause = Date.now() + pauseEvery;
          continue;
        }
        await this.faultsFor(Math.min(500, end - Date.now()));
      }
      this.faultEnd = nowUs();
      await this.finish();
    } finally {
      clearInterval(sampler);
      clearInterval(rssTimer);
    }
  }

  async waitExit(list, ms, what) {
    const deadline = Date.now() + ms;
    while (list.some((p) => !p.exited)) {
      if (Date.now() > deadline) {
        for (const p of list.filter((x) => !x.exited)) {
          this.harnessErrors.push(`${p.role} ${p.id} did not ${what} within ${ms} ms`);
          p.killed = true;
          p.child.kill('SIGKILL');
        }
        return;
      }
      await sleep(10);
    }
  }

  async finish() {
    // No more faults (a process that parks at its hook now is still killed, not replaced): let
    // everyone run, then stop the producers, then drain.
    this.finishing = true;
    for (const p of this.live()) {
      if (p.stopped) {
        p.child.kill('SIGCONT');
        p.stopped = false;
        this.events.push({ t: nowUs(), kind: 'cont', role: p.role, id: p.id });
      }
    }
    this.log('stopping producers');
    for (const p of this.live('producer')) p.planned = true;
    writeFileSync(path.join(this.control, 'stop'), '');
    await this.waitExit(this.live('producer'), 15_000, 'stop');
    this.log('draining');
    for (const p of this.live('consumer')) p.planned = true;
    writeFileSync(path.join(this.control, 'drain'), '');
    await this.waitExit(this.live('consumer'), 60_000, 'drain and exit');
    await this.waitExit(this.procs, 5_000, 'exit');
    this.drainedAt = nowUs();
    const before = this.q.stats();
    this.drainStats = before;
    this.depthAfterDrain = before.depth;
    // Fill the ring with the controller's own messages until it is full: the reclaim this forces
    // walks every record the consumers left behind, so records of consumers that died mid-read are
    // all counted in lostInRead. Then take them back and check them.
    // Any other error here is the queue's, not the harness's: it fails a check (with its code).
    let seq = 0;
    for (;;) {
      try {
        this.q.putNowait(makeMessage(CONTROLLER_ID, seq, 1000));
        seq++;
      } catch (e) {
        if (!(e instanceof QueueFullError)) this.own.errors.push(`put: ${e.code ?? ''} ${e.message}`);
        break;
      }
    }
    this.own.put = seq;
    for (;;) {
      let m;
      try {
        m = this.q.getNowait();
      } catch (e) {
        if (!(e instanceof QueueEmptyError)) this.own.errors.push(`get: ${e.code ?? ''} ${e.message}`);
        break;
      }
      this.own.got++;
      const value = this.o.ack ? m.value : m;
      if (verify(value) !== null || value.readUInt32LE(4) !== CONTROLLER_ID) this.own.bad++;
      if (this.o.ack) {
        try {
          m.ack();
          this.own.acked++;
        } catch (e) {
          this.own.errors.push(`ack: ${e.code ?? ''} ${e.message}`);
        }
      }
    }
    this.finalStats = this.q.stats();
  }

  cleanup() {
    for (const p of this.procs) {
      if (!p.exited) {
        try {
          p.child.kill('SIGCONT');
          p.child.kill('SIGKILL');
        } catch {
          // already gone
        }
      }
    }
    try {
      this.q?.release();
    } catch {
      // released
    }
    try {
      SageQueue.destroy(this.name);
    } catch {
      // gone
    }
    if (!this.o.keep) rmSync(this.dir, { recursive: true, force: true });
  }
}

// ------------------------------------------------------------------------------------------------
// Fuzz figures (scripts/fuzz.sh writes them; the report quotes the latest)

function fuzzFigures(o) {
  const summary = o.fuzzSummary ?? path.join(REPO, 'native', 'fuzz', 'last-run.json');
  if (o.fuzzSeconds > 0) {
    const r = spawnSync('bash', [path.join(REPO, 'scripts', 'fuzz.sh'), '--seconds', String(o.fuzzSeconds), '--json', summary], {
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    if (r.status !== 0) return { error: `scripts/fuzz.sh exited with ${r.status ?? r.signal}` };
  }
  if (!existsSync(summary)) return null;
  try {
    return JSON.parse(readFileSync(summary, 'utf8'));
  } catch (e) {
    return { error: `cannot read ${summary}: ${e.message}` };
  }
}

// ------------------------------------------------------------------------------------------------

async function main() {
  let o;
  try {
    o = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`torture: ${e.message}\n`);
    process.exit(2);
  }
  const t = new Torture(o);
  const onSignal = (sig) => {
    t.cleanup();
    process.stderr.write(`torture: interrupted by ${sig}; cleaned up\n`);
    process.exit(2);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  process.once('SIGHUP', onSignal);
  let result;
  const started = Date.now();
  try {
    await t.run();
    result = analyze(t);
  } catch (e) {
    t.cleanup();
    process.stderr.write(`torture: harness error: ${e.stack ?? e}\n`);
    process.exit(2);
  }
  t.cleanup();
  result.wallSeconds = (Date.now() - started) / 1000;
  result.mode = o.quick ? 'quick' : 'long';
  result.ackMode = o.ack ? 'explicit' : 'auto';
  result.machine = {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    node: process.version,
    kernel: os.release(),
    memGiB: Math.round(os.totalmem() / 2 ** 30),
  };
  result.date = new Date().toISOString();
  result.queue = t.name;
  result.workDir = t.dir;
  if (!o.quick) result.fuzz = fuzzFigures(o);
  if (o.json) writeFileSync(o.json, `${JSON.stringify(result, null, 2)}\n`);
  if (o.report) writeFileSync(o.report, renderReport(result));
  const failed = result.checks.filter((c) => !c.ok);
  const f = result.figures;
  process.stderr.write(
    `torture: ${f.rounds} fault rounds, ${f.kills} SIGKILLs, ${f.stops} SIGSTOPs, ${f.pauses} backpressure phases; ` +
      `${f.messagesPut} messages put, ${f.delivered} delivered; worst recovery after a kill ${f.worstRecoveryMs.toFixed(1)} ms; ` +
      `${result.checks.length - failed.length}/${result.checks.length} checks passed` +
      (o.report ? `; report ${path.relative(process.cwd(), o.report)}` : '') + '\n',
  );
  for (const c of failed) process.stderr.write(`torture: FAILED ${c.name}: ${c.detail}\n`);
  process.exit(failed.length ? 1 : 0);
}

main();
