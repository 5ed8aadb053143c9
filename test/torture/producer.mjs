// Torture producer: puts (id, seq, checksum) messages as fast as the queue takes them, and appends
// each seq to its log with writeSync only AFTER put returned. So every logged seq was committed;
// at most one more (the put in flight when it was SIGKILLed) may have been committed unlogged.
//
//   node producer.mjs <queue> <producerId> <logFile> <controlDir> [<hookPoint>:<afterPuts>]
// Stops (exit 0) when <controlDir>/stop exists. With a hook, after that many puts it arms the
// core's test hook (after-claim, mid-copy, before-commit, in-prod-lock): the next put parks there,
// says "SAGE_HOOK <point>" on stderr, and the controller SIGKILLs it at exactly that point.
import { closeSync, existsSync, openSync, writeSync } from 'node:fs';
import * as path from 'node:path';

import { QueueFullError, SageQueue } from '../../dist/index.mjs';
import nativeModule from '../../dist/native/index.js';
import { makeMessage, nowUs } from './message.mjs';

const [name, idText, logFile, controlDir, hookSpec] = process.argv.slice(2);
const [hookPoint, hookAfterText] = (hookSpec ?? '').split(':');
const hookAfter = hookSpec ? Number(hookAfterText) : -1;
const id = Number(idText);
const parent = process.ppid;
const stopFile = path.join(controlDir, 'stop');

// run.mjs --ack: an explicit-ack queue, opened as one.
const q = SageQueue.open(name, process.env.SAGE_TORTURE_ACK === '1' ? { codec: 'raw', ackMode: 'explicit' } : { codec: 'raw' });
const fd = openSync(logFile, 'a');
let seq = 0;
let lastCheck = 0;
for (;;) {
  const now = Date.now();
  if (now - lastCheck >= 20) {
    lastCheck = now;
    if (existsSync(stopFile)) break;
    if (process.ppid !== parent) process.exit(3); // the controller died: do not linger
  }
  const msg = makeMessage(id, seq);
  try {
    q.put(msg, true, 100);
  } catch (e) {
    if (e instanceof QueueFullError && e.timedOut) continue; // still full: look at the stop file, then retry the same seq
    process.stderr.write(`producer ${id}: put of seq ${seq} failed: ${e?.code ?? ''} ${e?.stack ?? e}\n`);
    process.exit(2);
  }
  writeSync(fd, `${seq} ${nowUs()}\n`);
  seq++;
  if (seq === hookAfter) nativeModule.native().setTestHook(hookPoint);
}
closeSync(fd);
q.release();
process.exit(0);
