// Runs one case: starts its processes (pinned: producer/client on CPU 0, consumer/server on
// CPU 1), waits until both are set up, says GO, collects their RESULT lines. Everything a case
// creates -- processes, queue segments, socket files -- is tracked here and removed by
// cleanupSync(), which run.mjs also calls on exit, SIGINT and SIGTERM.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

import { ringBenchArgs } from '../transports/cpp-ring.mjs';

const CHILD = fileURLToPath(new URL('../child.mjs', import.meta.url));
const PRODUCER_CPU = 0;
const CONSUMER_CPU = 1;

export class Runner {
  /**
   * @param {object} o
   * @param {string|null} o.taskset  path of taskset, or null to run unpinned
   * @param {string|null} o.ringBench  path of the ring_bench binary, or null (C++ rows skipped)
   * @param {typeof import('../../dist/index.mjs').SageQueue} o.SageQueue
   */
  constructor({ taskset, ringBench, SageQueue }) {
    this.taskset = taskset;
    this.ringBench = ringBench;
    this.SageQueue = SageQueue;
    this.prefix = `bench-${process.pid}-`;
    this.counter = 0;
    this.children = new Set(); // ChildProcess objects still running
    this.peerPids = new Set(); // grandchildren (process.send peers), by pid
    this.queueNames = new Set();
    this.sockDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sage-bench-'));
  }

  get pinned() {
    return this.taskset !== null;
  }

  /** Runs one case once; resolves with its figures, rejects on failure or timeout. */
  async run(c) {
    const timeoutMs = c.warmMs + c.ms + 20000;
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
    });
    const procs = [];
    const work = this.#run(c, procs);
    work.catch(() => {}); // after a timeout nobody awaits it any more
    try {
      return await Promise.race([work, timeout]);
    } finally {
      clearTimeout(timer);
      // Children exit by themselves right after reporting; a straggler is killed.
      await Promise.race([Promise.all(procs.map((p) => exited(p))), sleep(2000)]);
      for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
      await Promise.all(procs.map((p) => exited(p)));
      for (const p of procs) if (p.peerPid !== undefined) this.#killPeer(p.peerPid);
      this.#removeCaseFiles(c);
    }
  }

  async #run(c, procs) {
    const n = ++this.counter;
    switch (c.transport) {
      case 'sage': {
        const name = `${this.prefix}${n}`;
        c._names = c.kind === 'ping' ? [`${name}.a`, `${name}.b`] : [name];
        for (const qn of c._names) {
          this.queueNames.add(qn);
          // c.ack: the stream's queue, or the ping's job queue (.a), has explicit acks; replies (.b) do not.
          const explicit = c.ack === true && !qn.endsWith('.b');
          this.SageQueue.create(qn, explicit ? { codec: c.codec, ackMode: 'explicit' } : { codec: c.codec }).release();
        }
        const cfg = { name, size: c.size, payload: c.payload, mode: c.mode, batch: c.batch, getMax: c.getMax, warmMs: c.warmMs, ms: c.ms, spinUs: c.spinUs, api: c.api, ack: c.ack === true };
        const [a, b] = c.kind === 'ping' ? ['ping-client', 'ping-server'] : ['stream-producer', 'stream-consumer'];
        const consumer = this.#spawnNode(CONSUMER_CPU, 'sage', b, cfg, procs);
        const producer = this.#spawnNode(PRODUCER_CPU, 'sage', a, cfg, procs);
        await Promise.all([consumer.ready, producer.ready]);
        consumer.go();
        producer.go();
        const [ra, rb] = await Promise.all([producer.result, consumer.result]);
        return c.kind === 'ping' ? { ...ra, echoed: rb.echoed } : { ...rb, sent: ra.sent, producer: ra.producer };
      }
      case 'unix-socket': {
        const sockPath = path.join(this.sockDir, `s${n}.sock`);
        c._sock = sockPath;
        const cfg = { path: sockPath, size: c.size, mode: c.mode, warmMs: c.warmMs, ms: c.ms };
        const [a, b] = c.kind === 'ping' ? ['ping-client', 'ping-server'] : ['stream-producer', 'stream-consumer'];
        const consumer = this.#spawnNode(CONSUMER_CPU, 'unix-socket', b, cfg, procs);
        await consumer.ready; // listening
        const producer = this.#spawnNode(PRODUCER_CPU, 'unix-socket', a, cfg, procs);
        await producer.ready; // connected
        consumer.go();
        producer.go();
        const [ra, rb] = await Promise.all([producer.result, consumer.result]);
        return c.kind === 'ping' ? { ...ra, echoed: rb.echoed } : { ...rb, sent: ra.sent, producer: ra.producer };
      }
      case 'process-send': {
        const cfg = { serialization: c.serialization, size: c.size, payload: c.payload, warmMs: c.warmMs, ms: c.ms, taskset: this.taskset, peerCpu: this.pinned ? CONSUMER_CPU : undefined };
        const role = c.kind === 'ping' ? 'ping-client' : 'stream-producer';
        const parent = this.#spawnNode(PRODUCER_CPU, 'process-send', role, cfg, procs);
        const info = await parent.ready;
        if (typeof info.peerPid === 'number') {
          parent.proc.peerPid = info.peerPid;
          this.peerPids.add(info.peerPid);
        }
        parent.go();
        return await parent.result;
      }
      case 'cpp': {
        if (this.ringBench === null) throw new Error('ring_bench is not available (no g++?)');
        const name = `${this.prefix}${n}`;
        c._names = c.kind === 'ping' ? [`${name}.a`, `${name}.b`] : [name];
        for (const qn of c._names) this.queueNames.add(qn);
        return await this.#runRingBench(ringBenchArgs(c, name, this.pinned), procs);
      }
      default:
        throw new Error(`unknown transport ${c.transport}`);
    }
  }

  #spawnNode(cpu, transport, role, cfg, procs) {
    const args = [CHILD, transport, role, JSON.stringify(cfg)];
    const proc = this.pinned
      ? spawn(this.taskset, ['-c', String(cpu), process.execPath, ...args], { stdio: ['pipe', 'pipe', 'inherit'] })
      : spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'inherit'] });
    this.#track(proc, procs);
    proc.stdin.on('error', () => {}); // a child that exits early must not crash the runner
    const waiting = new Map(); // tag -> { resolve, reject }
    const seen = new Map();
    const expect = (tag) =>
      new Promise((resolve, reject) => {
        if (seen.has(tag)) resolve(seen.get(tag));
        else waiting.set(tag, { resolve, reject });
      });
    let buf = '';
    proc.stdout.setEncoding('utf8');
    proc.stdout.on('data', (chunk) => {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const m = /^(READY|RESULT) (.*)$/.exec(line);
        if (!m) {
          process.stderr.write(`  [${transport} ${role}] ${line}\n`);
          continue;
        }
        let value;
        try {
          value = JSON.parse(m[2]);
        } catch {
          waiting.get(m[1])?.reject(new Error(`${transport} ${role}: unreadable ${m[1]} line`));
          continue;
        }
        seen.set(m[1], value);
        waiting.get(m[1])?.resolve(value);
      }
    });
    const ready = expect('READY');
    const result = expect('RESULT');
    proc.on('exit', (code, signal) => {
      const err = new Error(`${transport} ${role} exited (${signal ?? code}) before reporting`);
      for (const [tag, w] of waiting) if (!seen.has(tag)) w.reject(err);
    });
    // Keep unhandled-rejection noise away: the awaiting code sees these rejections.
    ready.catch(() => {});
    result.catch(() => {});
    return { proc, ready, result, go: () => proc.stdin.write('GO\n') };
  }

  #runRingBench(args, procs) {
    return new Promise((resolve, reject) => {
      const proc = spawn(this.ringBench, args, { stdio: ['ignore', 'pipe', 'inherit'] });
      this.#track(proc, procs);
      let out = '';
      proc.stdout.setEncoding('utf8');
      proc.stdout.on('data', (d) => (out += d));
      proc.on('error', reject);
      proc.on('exit', (code, signal) => {
        const line = out.trim().split('\n').pop() ?? '';
        let parsed = null;
        try {
          parsed = JSON.parse(line);
        } catch {
          // reported below
        }
        if (parsed === null) reject(new Error(`ring_bench exited (${signal ?? code}) without a result`));
        else if (code !== 0) reject(new Error(`ring_bench exited with ${code}: ${line}`));
        else resolve(parsed);
      });
    });
  }

  #track(proc, procs) {
    procs.push(proc);
    this.children.add(proc);
    proc.on('exit', () => this.children.delete(proc));
  }

  #killPeer(pid) {
    // The peer exits by itself when its parent's channel closes; this is the backstop.
    try {
      process.kill(pid, 0);
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
    this.peerPids.delete(pid);
  }

  #removeCaseFiles(c) {
    for (const qn of c._names ?? []) {
      this.#destroyQueue(qn);
      this.queueNames.delete(qn);
    }
    if (c._sock) fs.rmSync(c._sock, { force: true });
    delete c._names;
    delete c._sock;
  }

  #destroyQueue(name) {
    try {
      this.SageQueue.destroy(name);
    } catch {
      // already gone, or never created
    }
  }

  /** Kills every process this runner started and removes every file it created. Synchronous. */
  cleanupSync() {
    for (const p of this.children) {
      try {
        p.kill('SIGKILL');
      } catch {
        // gone
      }
    }
    for (const pid of this.peerPids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    this.peerPids.clear();
    for (const qn of this.queueNames) this.#destroyQueue(qn);
    this.queueNames.clear();
    // Segments of ours that a crashed child may have created under another name.
    try {
      for (const qn of this.SageQueue.list()) if (qn.startsWith(this.prefix)) this.#destroyQueue(qn);
    } catch {
      // listing is best effort
    }
    fs.rmSync(this.sockDir, { recursive: true, force: true });
  }

  /** Names of leftover segments and processes, for the final check. */
  leftovers() {
    const segs = this.SageQueue.list().filter((qn) => qn.startsWith(this.prefix));
    return { segments: segs, processes: [...this.children].map((p) => p.pid), socketDir: fs.existsSync(this.sockDir) };
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms).unref());

function exited(p) {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => p.once('exit', resolve));
}
