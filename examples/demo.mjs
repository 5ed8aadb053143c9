#!/usr/bin/env node
// The sage-queue demo: a keyed pipeline from this (primary) process through a hash router
// (BaseRouter, batch dispatch with routeMany) to a WorkerPool of one worker process per core
// over SageQueues, with replies on a shared reply queue, end-to-end latency and a verification that every packet
// was delivered exactly once in per-key order. Then the same pipeline over process.send, and the
// ratio. At most --window packets are in flight (sent, reply not yet back) in both transports, so
// latency measures the pipeline rather than an unbounded backlog.
// Flags: --messages N --workers N --payload BYTES --codec records|msgpack|v8|json --keys N --window N --json
// --ack: at-least-once (WorkerPool ack: true): a worker acks each batch once answered. With
// --kill-worker, worker 0 SIGKILLs itself a third of the way through its share, right after
// answering a batch and before acking it (the worst moment); its replacement gets the jobs it had
// not acked, and the verification counts every duplicate and checks that each one is a job the
// killed worker answered but had not acked.
// It also reports the primary's CPU time per packet (user + system, from process.cpuUsage(), over
// the whole run: building the packet, routing it, putting it, and taking and checking its reply).
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import cliProgress from 'cli-progress';
import { Packet, WorkerPool, joinWorkerPool } from 'sage-queue';

const { values: flags } = parseArgs({
  options: {
    messages: { type: 'string', default: '1000000' },
    workers: { type: 'string', default: String(Math.max(2, availableParallelism())) },
    payload: { type: 'string', default: '64' },
    codec: { type: 'string', default: 'records' },
    window: { type: 'string', default: '8192' },
    keys: { type: 'string', default: '1000' },
    batch: { type: 'string', default: '256' },
    json: { type: 'boolean', default: false },
    ack: { type: 'boolean', default: false },
    'kill-worker': { type: 'boolean', default: false },
    'skip-baseline': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});

if (flags.help) {
  console.log(`usage: npm run demo -- [--messages N] [--workers N] [--payload BYTES] [--codec records|msgpack|v8|json]
                        [--keys N] [--batch N] [--window N] [--json] [--skip-baseline] [--ack [--kill-worker]]`);
  process.exit(0);
}

function positiveInt(name, min = 1) {
  const n = Number(flags[name]);
  if (!Number.isSafeInteger(n) || n < min) {
    console.error(`demo: --${name} must be an integer >= ${min} (got ${JSON.stringify(flags[name])})`);
    process.exit(2);
  }
  return n;
}

const config = {
  messages: positiveInt('messages'),
  workers: positiveInt('workers'),
  payload: positiveInt('payload', 0),
  keys: positiveInt('keys'),
  batch: positiveInt('batch'),
  window: positiveInt('window'),
  codec: flags.codec,
  ack: flags.ack,
  killWorker: flags['kill-worker'],
};
if (config.killWorker && !config.ack) {
  console.error('demo: --kill-worker needs --ack (without acks the killed worker loses the batch it held)');
  process.exit(2);
}
if (!['records', 'msgpack', 'v8', 'json'].includes(config.codec)) {
  console.error(`demo: --codec must be records, msgpack, v8 or json (got ${JSON.stringify(config.codec)})`);
  process.exit(2);
}

const now = () => performance.timeOrigin + performance.now(); // ms, comparable across processes
const log = (...args) => {
  if (!flags.json) console.log(...args);
};

/** FNV-1a over the key's decimal text: stable across processes (no per-process salt). */
function partition(key, n) {
  let h = 0x811c9dc5;
  const s = String(key);
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return (h >>> 0) % n;
}

function percentile(sorted, p) {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** Checks exactly-once and per-key order: replies of each key must come back as 0,1,2,... */
function makeVerifier() {
  const nextSeq = new Map();
  let dupes = 0;
  let outOfOrder = 0;
  let received = 0;
  return {
    see(key, seq) {
      received++;
      const expected = nextSeq.get(key) ?? 0;
      if (seq === expected) nextSeq.set(key, expected + 1);
      else if (seq < expected) dupes++;
      else outOfOrder++;
    },
    result(sent) {
      let delivered = 0;
      for (const n of nextSeq.values()) delivered += n;
      return { sent, received, delivered, dupes, outOfOrder, ok: delivered === sent && received === sent && dupes === 0 && outOfOrder === 0 };
    },
  };
}

/**
 * At-least-once check (--ack): every packet answered at least once; each duplicate answer must be
 * of a job first answered by the killed worker (it answered, then died before its ack).
 */
function makeAckVerifier(victimPid) {
  const seen = new Map(); // key -> per seq: pid of the first answer
  let received = 0;
  let dupes = 0;
  let unexplained = 0;
  return {
    see(key, seq, pid) {
      received++;
      let firsts = seen.get(key);
      if (firsts === undefined) seen.set(key, (firsts = []));
      if (firsts[seq] === undefined) firsts[seq] = pid;
      else {
        dupes++;
        if (firsts[seq] !== victimPid()) unexplained++;
      }
    },
    result(sent) {
      let delivered = 0;
      for (const firsts of seen.values()) for (const pid of firsts) if (pid !== undefined) delivered++;
      return { sent, received, delivered, dupes, unexplainedDupes: unexplained, ok: delivered === sent && received === sent + dupes && unexplained === 0 };
    },
  };
}

/**
 * A progress bar on stderr (cli-progress) for one transport, when stderr is a terminal and the
 * output is not --json; update(done) redraws it (throttled by the library), the last one ends it.
 */
function progressBar(label, total, started) {
  if (flags.json || !process.stderr.isTTY) return { update() {} };
  const bar = new cliProgress.SingleBar(
    { format: `${label} [{bar}] {percentage}%  {rate}k pkt/s`, barsize: 30, stream: process.stderr, hideCursor: true, clearOnComplete: false },
    cliProgress.Presets.legacy,
  );
  bar.start(total, 0, { rate: '0' });
  let stopped = false;
  return {
    update(done) {
      if (stopped) return;
      bar.update(done, { rate: (done / ((now() - started) / 1000) / 1000).toFixed(0) });
      if (done >= total) {
        stopped = true;
        bar.stop();
      }
    },
  };
}

// -------------------------------------------------------------------------------------------
// Worker side

async function worker() {
  const mode = process.env.SAGE_DEMO_MODE;
  const work = (p) => {
    // "A little work": a checksum of the payload.
    let s = 0;
    for (let i = 0; i < p.length; i++) s = (s * 31 + p[i]) | 0;
    return s;
  };
  if (mode === 'ipc') {
    process.on('message', (m) => {
      if (m === 'stop') return process.disconnect();
      process.send({ k: m.k, s: m.s, t: m.t, c: work(Buffer.from(m.p, 'base64')) });
    });
    return;
  }
  const worker = joinWorkerPool();
  const max = Math.min(1024, Number(process.env.SAGE_DEMO_BATCH));
  const pid = process.pid;
  // --kill-worker: worker 0 dies once it answered this many packets (its replacement finds the
  // marker file gone and runs normally).
  const killFile = process.env.SAGE_DEMO_KILL_FILE;
  const killAfter = Number(process.env.SAGE_DEMO_KILL_AFTER);
  let answered = 0;
  // One wait, then whatever else is queued (up to max) in one native call; one batch put of the
  // answers (each its own message). Items are Packets (records/msgpack revive them) or revived
  // from their toJSON() form (v8, json).
  for await (const packets of worker.batches({ max })) {
    // (With --ack the batch is acked when the loop asks for the next one: after this put.)
    const answers = packets.map(({ partitionKey, payload }) => ({ k: partitionKey, s: payload.s, t: payload.t, c: work(payload.p), w: pid }));
    worker.replies.putMany(answers); // blocks while the reply queue is full
    answered += answers.length;
    if (killFile && worker.index === 0 && answered >= killAfter) {
      try {
        unlinkSync(killFile); // once: the replacement must not die too
        process.kill(pid, 'SIGKILL'); // answered, not acked
      } catch {
        // the replacement: the marker is gone
      }
    }
  }
  worker.release();
}

// -------------------------------------------------------------------------------------------
// Primary side

async function runSage() {
  let killDir = null;
  const env = { ...process.env, SAGE_DEMO_ROLE: 'worker', SAGE_DEMO_BATCH: String(config.batch) };
  if (config.killWorker) {
    killDir = mkdtempSync(join(tmpdir(), 'sage-demo-'));
    env.SAGE_DEMO_KILL_FILE = join(killDir, 'kill-worker-0');
    env.SAGE_DEMO_KILL_AFTER = String(Math.max(1, Math.floor(config.messages / config.workers / 3)));
    writeFileSync(env.SAGE_DEMO_KILL_FILE, '');
  }
  const pool = new WorkerPool({
    script: fileURLToPath(import.meta.url),
    workers: config.workers,
    name: `demo-${process.pid}`,
    queue: { capacity: 8 << 20, codec: config.codec },
    replies: { capacity: 16 << 20, codec: config.codec },
    router: { strategy: 'hash', sendTimeoutMs: 10_000, trace: false },
    ack: config.ack,
    env,
  });
  let victim = null; // { pid }: worker 0's first process, when --kill-worker made it die
  pool.on('worker-exit', ({ index, pid }) => {
    if (index === 0 && config.killWorker && victim === null) victim = { pid };
  });
  try {
    await pool.ready();
    const payload = Buffer.alloc(config.payload, 7);
    const verifier = config.ack ? makeAckVerifier(() => victim?.pid) : makeVerifier();
    const seqOfKey = new Array(config.keys).fill(0);
    const latencies = new Float64Array(config.messages);
    let received = 0;
    const started = now();
    const cpu0 = process.cpuUsage();
    const bar = progressBar('sage-queue  ', config.messages, started);
    const drain = (block) => {
      const answers = pool.replies.getMany(1024, { block, timeoutMs: block ? 100 : undefined });
      const t = now();
      if (answers.length > 0) lastAnswer = t;
      for (const a of answers) {
        verifier.see(a.k, a.s, a.w);
        if (received < config.messages) latencies[received] = t - a.t;
        received++;
      }
    };
    let lastProgress = 0;
    let lastAnswer = now();
    // Waits for answers in short blocking slices, letting the event loop run in between: the
    // pool's events (a worker's exit, its replacement's start) run on it.
    const drainWait = async () => {
      for (;;) {
        try {
          drain(true);
          return;
        } catch (e) {
          if (e.code !== 'ERR_QUEUE_EMPTY') throw e;
        }
        if (now() - lastAnswer > 10_000) throw new Error('no answer for 10 s');
        await new Promise((r) => setImmediate(r));
      }
    };
    for (let i = 0; i < config.messages; ) {
      while (i - received >= config.window) await drainWait();
      const n = Math.min(config.batch, config.messages - i, config.window - (i - received));
      const packets = new Array(n);
      for (let j = 0; j < n; j++, i++) {
        const key = i % config.keys;
        packets[j] = new Packet({ s: seqOfKey[key]++, t: now(), p: payload }, { partitionKey: key });
      }
      const report = await pool.router.routeMany(packets);
      if (!report.ok) throw new Error(`routing failed: ${JSON.stringify(report.problems.slice(0, 3))}`);
      drain(false);
      if (i - lastProgress >= 20000) {
        lastProgress = i;
        bar.update(received);
      }
    }
    // (--ack: duplicates make `received` count more answers than packets; wait for every packet.)
    const pending = () => (config.ack ? verifier.result(config.messages).delivered : received) < config.messages;
    while (pending()) {
      await drainWait();
      bar.update(Math.min(received, config.messages));
    }
    const elapsed = (now() - started) / 1000;
    const cpu = process.cpuUsage(cpu0);
    bar.update(received);
    if (config.ack) {
      // A worker acks its last batch when it asks for the next: shortly after its answers arrived.
      const acked = () => pool.queues.reduce((n, q) => n + q.stats().leases.acks, 0);
      const until = now() + 5000;
      while (acked() < config.messages && now() < until) await new Promise((r) => setTimeout(r, 5));
    }
    const stats = pool.queues.map((q) => q.stats());
    const routerStats = pool.router.stats();
    const sorted = Array.from(latencies.subarray(0, Math.min(received, config.messages))).sort((a, b) => a - b);
    return {
      transport: 'sage-queue',
      ack: config.ack,
      killed: victim,
      leases: config.ack ? stats.map((s) => s.leases) : null,
      seconds: elapsed,
      packetsPerSecond: config.messages / elapsed,
      primaryCpuNsPerPacket: ((cpu.user + cpu.system) * 1000) / config.messages,
      latencyMs: { p50: percentile(sorted, 50), p99: percentile(sorted, 99) },
      perWorker: routerStats.connections.map((c) => c.counters.delivered),
      router: { strategy: routerStats.strategy, routed: routerStats.routed, delivered: routerStats.delivered, deadLettered: routerStats.deadLettered, failed: routerStats.failed },
      queues: stats.map((s) => ({ name: s.name, enqueued: s.enqueued, dequeued: s.dequeued, wakeCalls: s.wakeCalls, waits: s.waits })),
      verification: verifier.result(config.messages),
    };
  } finally {
    await pool.close();
    if (killDir !== null) rmSync(killDir, { recursive: true, force: true });
  }
}

async function runIpc(messages) {
  const children = Array.from({ length: config.workers }, () =>
    fork(fileURLToPath(import.meta.url), [], { env: { ...process.env, SAGE_DEMO_ROLE: 'worker', SAGE_DEMO_MODE: 'ipc' }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }),
  );
  try {
    const payload = Buffer.alloc(config.payload, 7).toString('base64'); // process.send has no Buffer type
    const verifier = makeVerifier();
    const seqOfKey = new Array(config.keys).fill(0);
    const latencies = new Float64Array(messages);
    let received = 0;
    const started = now();
    const cpu0 = process.cpuUsage();
    const bar = progressBar('process.send', messages, started);
    let windowOpen = null;
    const done = new Promise((resolve) => {
      for (const c of children) {
        c.on('message', (a) => {
          verifier.see(a.k, a.s);
          latencies[received++] = now() - a.t;
          if (received % 20000 === 0) bar.update(received);
          if (windowOpen !== null) windowOpen();
          if (received === messages) resolve();
        });
      }
    });
    for (let i = 0; i < messages; i++) {
      while (i - received >= config.window) await new Promise((r) => (windowOpen = r));
      windowOpen = null;
      const key = i % config.keys;
      children[partition(key, config.workers)].send({ k: key, s: seqOfKey[key]++, t: now(), p: payload });
      if (i % 1000 === 999) await new Promise((r) => setImmediate(r)); // let replies in
    }
    await done;
    const elapsed = (now() - started) / 1000;
    const cpu = process.cpuUsage(cpu0);
    bar.update(received);
    const sorted = Array.from(latencies).sort((a, b) => a - b);
    return {
      transport: 'process.send',
      seconds: elapsed,
      packetsPerSecond: messages / elapsed,
      primaryCpuNsPerPacket: ((cpu.user + cpu.system) * 1000) / messages,
      latencyMs: { p50: percentile(sorted, 50), p99: percentile(sorted, 99) },
      verification: verifier.result(messages),
    };
  } finally {
    for (const c of children) c.send('stop');
    for (const c of children) if (c.exitCode === null) setTimeout(() => c.kill('SIGKILL'), 2000).unref();
  }
}

async function primary() {
  log(`sage-queue demo: ${config.messages.toLocaleString()} keyed packets (${config.keys} keys, ${config.payload} B payload, ${config.codec} codec)`);
  log(`  primary -> hash partition -> ${config.workers} worker processes over SageQueues -> replies\n`);
  const sage = await runSage();
  const baselineCount = Math.min(config.messages, Math.max(10000, Math.round(config.messages / 5)));
  const ipc = flags['skip-baseline'] ? null : await runIpc(baselineCount);
  const ok = sage.verification.ok && (ipc === null || ipc.verification.ok);
  const result = { config, sage, processSend: ipc, ratio: ipc ? sage.packetsPerSecond / ipc.packetsPerSecond : null, ok };
  if (flags.json) {
    console.log(JSON.stringify(result, null, 2));
  } else {
    const fmt = (r) =>
      `${r.transport.padEnd(13)} ${Math.round(r.packetsPerSecond).toLocaleString().padStart(12)} pkt/s   ${Math.round(r.primaryCpuNsPerPacket).toLocaleString().padStart(7)} ns   p50 ${(r.latencyMs.p50 * 1000).toFixed(0).padStart(7)} us   p99 ${(r.latencyMs.p99 * 1000).toFixed(0).padStart(7)} us`;
    log(`\n${'transport'.padEnd(13)} ${'throughput'.padStart(18)}   primary CPU/packet   end-to-end latency (send -> reply)`);
    log(fmt(sage));
    if (ipc) log(`${fmt(ipc)}   (${baselineCount.toLocaleString()} packets)`);
    if (result.ratio) log(`\nsage-queue moved packets ${result.ratio.toFixed(1)}x faster than process.send`);
    log(`\nrouter (${sage.router.strategy}): routed ${sage.router.routed}, delivered ${sage.router.delivered}, dead-lettered ${sage.router.deadLettered}, failed ${sage.router.failed}`);
    log(`per worker: ${sage.perWorker.map((n, i) => `w${i}=${n}`).join('  ')}`);
    for (const q of sage.queues) log(`queue ${q.name}: enqueued ${q.enqueued}, dequeued ${q.dequeued}, wake syscalls ${q.wakeCalls}, sleeps ${q.waits}`);
    const v = sage.verification;
    if (config.ack) {
      if (sage.killed) log(`\nworker 0 (pid ${sage.killed.pid}) was SIGKILLed after answering a batch it had not acked; its replacement took over its queue`);
      const redelivered = sage.leases.reduce((n, l) => n + l.redeliveries, 0);
      log(`leases: ${sage.leases.reduce((n, l) => n + l.acks, 0)} acks, ${redelivered} redeliveries, ${sage.leases.reduce((n, l) => n + l.deadLeases, 0)} leases taken back from a dead worker`);
      log(`\nverification: ${v.ok ? 'OK' : 'FAILED'} — sent ${v.sent}, delivered ${v.delivered} (at least once), ${v.dupes} duplicates, ${v.unexplainedDupes} of them not explained by the kill (jobs answered but not acked)`);
    } else {
      log(`\nverification: ${v.ok ? 'OK' : 'FAILED'} — sent ${v.sent}, delivered ${v.delivered} exactly once, ${v.dupes} duplicates, ${v.outOfOrder} out of per-key order`);
    }
  }
  process.exitCode = ok ? 0 : 1;
}

if (process.env.SAGE_DEMO_ROLE === 'worker') await worker();
else await primary();
