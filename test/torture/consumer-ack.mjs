// Torture consumer of an explicit-ack queue (run.mjs --ack). It works in rounds: take a batch
// (one get, or getMany of up to 16), append one "R" line per message to its log (one writeSync for
// the batch, before anything else), verify each message, then settle the batch as the round's plan
// says, appending after each settle call returned: "A" (ack returned), "N" (nack returned) or
// "L" (the settle threw LeaseLostError). Settles go in receive order, one call at a time, so when
// the controller SIGKILLs this process the log says exactly where it was (analyze-ack.mjs):
// messages with an A line were acked; the first message without one was in the settle call in
// flight (with plan ackMany: the whole batch); the ones after it were still held, unacked.
//
// Log lines (numbers separated by spaces):
//   1 <round> <producer> <seq> <deliveries> <plan> <t>   received
//   2 <round> <producer> <seq> <deliveries>              ack returned
//   3 <round> <producer> <seq> <deliveries>              nack returned
//   4 <round> <producer> <seq> <deliveries>              settle threw LeaseLostError
//   BAD <producer> <seq> <reason> <length> <hex>         not intact
// Plans: 0 ack each, 1 ackMany (one native call for the batch), 2 nack some (delay 0-5 ms), ack the rest.
// Half the rounds "work" 0-8 ms before settling, so that SIGKILLs often land while leases are held.
//
//   node consumer-ack.mjs <queue> <consumerId> <logFile> <controlDir> [<hookPoint>:<afterGets>]
// Pause, drain and hooks as in consumer.mjs.
import { closeSync, existsSync, openSync, writeSync } from 'node:fs';
import * as path from 'node:path';

import { LeaseLostError, QueueClosedError, QueueEmptyError, SageQueue } from '../../dist/index.mjs';
import nativeModule from '../../dist/native/index.js';
import { nowUs, peekId, verify } from './message.mjs';

// Line kinds and plans (analyze-ack.mjs reads them with the same numbers).
const REC = 1;
const ACKED = 2;
const NACKED = 3;
const LOST = 4;
const PLAN_EACH = 0;
const PLAN_MANY = 1;
const PLAN_NACK = 2;

const [name, idText, logFile, controlDir, hookSpec] = process.argv.slice(2);
const [hookPoint, hookAfterText] = (hookSpec ?? '').split(':');
const hookAfter = hookSpec ? Number(hookAfterText) : -1;
const id = Number(idText);
const parent = process.ppid;
const pauseFile = path.join(controlDir, 'pause');
const drainFile = path.join(controlDir, 'drain');
const nap = new Int32Array(new SharedArrayBuffer(4));

// Per-process randomness (the fault schedule, not this, is what --seed replays).
let rs = (id * 0x9e3779b9) ^ process.pid;
const rand = () => {
  rs ^= rs << 13;
  rs ^= rs >>> 17;
  rs ^= rs << 5;
  return (rs >>> 0) / 4294967296;
};

const q = SageQueue.open(name, { codec: 'raw', ackMode: 'explicit' });
const fd = openSync(logFile, 'a');
let gets = 0;
let hookArmed = false;
let round = 0;
let lastCheck = 0;
let paused = false;
let draining = false;
let emptySince = 0;

function settleLine(kind, m, p) {
  writeSync(fd, `${kind} ${round} ${p.producer} ${p.seq} ${m.deliveries}\n`);
}

/** Settles one message with op ('ack' | 'nack'), then logs what happened. */
function settleOne(m, p, op) {
  try {
    if (op === 'ack') m.ack();
    else m.nack({ delayMs: Math.floor(rand() * 6) });
  } catch (e) {
    if (!(e instanceof LeaseLostError)) throw e;
    settleLine(LOST, m, p);
    return;
  }
  settleLine(op === 'ack' ? ACKED : NACKED, m, p);
}

for (;;) {
  const now = Date.now();
  if (now - lastCheck >= 10) {
    lastCheck = now;
    if (process.ppid !== parent) process.exit(3); // the controller died: do not linger
    paused = existsSync(pauseFile);
    draining = draining || existsSync(drainFile);
  }
  if (paused) {
    Atomics.wait(nap, 0, 0, 10);
    continue;
  }
  const r = rand();
  const plan = r < 0.3 ? PLAN_MANY : r < 0.4 ? PLAN_NACK : PLAN_EACH;
  const batch = r < 0.55 ? 1 + Math.floor(rand() * 16) : 1;
  let ms;
  try {
    ms = batch === 1 ? [q.get(true, 100)] : q.getMany(batch, { block: true, timeoutMs: 100 });
  } catch (e) {
    if (e instanceof QueueEmptyError) {
      if (draining) {
        emptySince ||= now;
        if (Date.now() - emptySince >= 300) break;
      }
      continue;
    }
    if (e instanceof QueueClosedError) break;
    process.stderr.write(`consumer ${id}: get failed: ${e?.code ?? ''} ${e?.stack ?? e}\n`);
    process.exit(2);
  }
  if (ms.length === 0) continue;
  emptySince = 0;
  round++;
  const t = nowUs();
  const ids = ms.map((m) => peekId(m.value));
  writeSync(fd, ids.map((p, i) => `${REC} ${round} ${p.producer} ${p.seq} ${ms[i].deliveries} ${plan} ${t}\n`).join(''));
  for (let i = 0; i < ms.length; i++) {
    const bad = verify(ms[i].value);
    if (bad !== null) writeSync(fd, `BAD ${ids[i].producer} ${ids[i].seq} ${bad} ${ms[i].value.length} ${ms[i].value.subarray(0, 32).toString('hex')}\n`);
  }
  // "Work" on the batch now and then (0-8 ms): consumers, not producers, are then the bottleneck,
  // and a SIGKILL often finds leases held.
  if (rand() < 0.5) Atomics.wait(nap, 0, 0, rand() * 8);
  try {
    if (plan === PLAN_MANY) {
      const acked = q.ackMany(ms);
      // ackMany does not say which leases were lost when some were: then none is claimed as acked.
      const kind = acked === ms.length ? ACKED : LOST;
      writeSync(fd, ids.map((p, i) => `${kind} ${round} ${p.producer} ${p.seq} ${ms[i].deliveries}\n`).join(''));
    } else {
      for (let i = 0; i < ms.length; i++) {
        settleOne(ms[i], ids[i], plan === PLAN_NACK && rand() < 0.5 ? 'nack' : 'ack');
        if (i + 1 < ms.length && rand() < 0.1) Atomics.wait(nap, 0, 0, rand() * 2);
      }
    }
  } catch (e) {
    process.stderr.write(`consumer ${id}: settle failed: ${e?.code ?? ''} ${e?.stack ?? e}\n`);
    process.exit(2);
  }
  gets += ms.length;
  if (hookAfter >= 0 && !hookArmed && gets >= hookAfter && !draining) {
    hookArmed = true;
    nativeModule.native().setTestHook(hookPoint);
  }
}
closeSync(fd);
q.release();
process.exit(0);
