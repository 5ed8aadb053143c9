// process.send between a parent and the child it forked (the IPC channel only exists between
// them), with serialization 'json' or 'advanced'. bench/run.mjs starts the parent (producer or
// ping client, on CPU 0); the parent forks the peer through `taskset -c 1` when pinning.
//
// With 'json', a Buffer arrives as { type: 'Buffer', data: [...] } (Buffer#toJSON): that decoded
// value is what user code gets. With 'advanced' it arrives as a Buffer.
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { announceReady, reportAndExit, usageSince, usageSnapshot, waitForGo } from '../lib/child-io.mjs';
import { consumerFor, latencySummary, makeBytes, makeObject, makeWindow, tally } from '../lib/consume.mjs';

const CHILD = fileURLToPath(new URL('../child.mjs', import.meta.url));

/** Forks the peer role, pinned like the other consumers; resolves once it says it is ready. */
function forkPeer(role, cfg) {
  const opts = {
    serialization: cfg.serialization,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  };
  if (cfg.peerCpu !== undefined && cfg.taskset) {
    opts.execPath = cfg.taskset;
    opts.execArgv = ['-c', String(cfg.peerCpu), process.execPath];
  }
  const child = fork(CHILD, ['process-send', role, JSON.stringify(cfg)], opts);
  // If this process dies, the peer sees its channel close and exits (see peer roles).
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`process.send peer exited early (${code})`)));
    child.once('message', (m) => {
      if (m === 'ready') resolve(child);
      else reject(new Error(`unexpected first message from peer: ${JSON.stringify(m)}`));
    });
  });
}

function waitResult(child) {
  return new Promise((resolve, reject) => {
    child.removeAllListeners('exit');
    child.once('exit', (code) => reject(new Error(`process.send peer exited before reporting (${code})`)));
    child.on('message', (m) => {
      if (m !== null && typeof m === 'object' && m.result) resolve(m.result);
    });
  });
}

export async function streamProducer(cfg) {
  const child = await forkPeer('stream-peer', cfg);
  announceReady({ peerPid: child.pid });
  await waitForGo();
  const result = waitResult(child);
  const usage = usageSnapshot();
  const stopAt = performance.now() + cfg.warmMs + cfg.ms;
  let seq = 0;
  let sent = 0;
  const obj = cfg.payload === 'obj';
  const { buf, seq: stamp } = makeBytes(obj ? 4 : cfg.size);
  const next = () => {
    if (obj) return makeObject(seq++);
    stamp[0] = seq++;
    return buf; // serialised at send(), so the Buffer can be restamped right after
  };
  for (;;) {
    for (let i = 0; i < 64; i++) {
      sent++;
      if (!child.send(next())) {
        // Backlog over Node's threshold: send one more and wait until it is written.
        sent++;
        await new Promise((resolve) => child.send(next(), resolve));
      }
    }
    if (performance.now() >= stopAt) break;
  }
  child.send('END');
  const producer = usageSince(usage, sent);
  const r = await result;
  child.disconnect();
  reportAndExit({ sent, producer, ...r });
}

export async function streamPeer(cfg) {
  const consume = consumerFor(cfg.payload, cfg.serialization === 'json');
  const win = makeWindow(cfg.warmMs);
  let total = 0;
  let usage = null;
  process.on('disconnect', () => process.exit(0));
  process.on('message', (m) => {
    if (usage === null) usage = usageSnapshot();
    if (m === 'END') {
      process.send({ result: { ...win.finish(total), ...tally(), consumer: usageSince(usage, total) } });
      return;
    }
    consume(m);
    if ((++total & 63) === 0) win.check(total);
  });
  process.send('ready');
}

export async function pingClient(cfg) {
  const child = await forkPeer('ping-peer', cfg);
  const { buf, seq: stamp } = makeBytes(cfg.size);
  const json = cfg.serialization === 'json';
  const samples = new Float64Array(1 << 20);
  let n = 0;
  let bad = 0;
  let seq = 0;
  let t0 = 0;
  let warmEnd = 0;
  let stopAt = 0;
  const send = () => {
    stamp[0] = seq;
    t0 = performance.now();
    child.send(buf);
  };
  announceReady({ peerPid: child.pid });
  await waitForGo();
  child.on('message', (m) => {
    const t1 = performance.now();
    const d = json ? m.data : m;
    if ((d[0] | (d[1] << 8) | (d[2] << 16) | (d[3] << 24)) >>> 0 !== seq) bad++;
    seq++;
    if (t0 >= warmEnd) samples[n++] = (t1 - t0) * 1000;
    if (t1 >= stopAt || n === samples.length) {
      child.removeAllListeners('exit');
      child.disconnect();
      reportAndExit({ ...latencySummary(samples, n), outOfOrder: bad });
      return;
    }
    send();
  });
  warmEnd = performance.now() + cfg.warmMs;
  stopAt = warmEnd + cfg.ms;
  send();
}

export async function pingPeer() {
  process.on('disconnect', () => process.exit(0));
  process.on('message', (m) => process.send(m));
  process.send('ready');
}
