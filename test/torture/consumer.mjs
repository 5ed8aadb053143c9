// Torture consumer: takes one message per get, and FIRST appends "<producer> <seq> <t>" to its log
// with writeSync (before checking it, so a SIGKILL between the get and the log loses at most that
// one message), then verifies it and appends "BAD ..." if it is not intact.
//
//   node consumer.mjs <queue> <consumerId> <logFile> <controlDir> [<hookPoint>:<afterGets>]
// While <controlDir>/pause exists it stops consuming (stays attached: backpressure on the
// producers). Once <controlDir>/drain exists it exits (code 0) when the queue stays empty 300 ms.
// With a hook (after-take, mid-read, in-cons-lock), after that many gets it arms the core's test
// hook: the next get parks there and the controller SIGKILLs it at exactly that point.
import { closeSync, existsSync, openSync, writeSync } from 'node:fs';
import * as path from 'node:path';

import { QueueClosedError, QueueEmptyError, SageQueue } from '../../dist/index.mjs';
import nativeModule from '../../dist/native/index.js';
import { nowUs, peekId, verify } from './message.mjs';

const [name, idText, logFile, controlDir, hookSpec] = process.argv.slice(2);
const [hookPoint, hookAfterText] = (hookSpec ?? '').split(':');
const hookAfter = hookSpec ? Number(hookAfterText) : -1;
let got = 0;
const id = Number(idText);
const parent = process.ppid;
const pauseFile = path.join(controlDir, 'pause');
const drainFile = path.join(controlDir, 'drain');
const nap = new Int32Array(new SharedArrayBuffer(4));

const q = SageQueue.open(name, { codec: 'raw' });
const fd = openSync(logFile, 'a');
let lastCheck = 0;
let paused = false;
let draining = false;
let emptySince = 0;
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
  let m;
  try {
    m = q.get(true, 100);
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
  emptySince = 0;
  const { producer, seq } = peekId(m);
  writeSync(fd, `${producer} ${seq} ${nowUs()}\n`);
  const bad = verify(m);
  if (bad !== null) writeSync(fd, `BAD ${producer} ${seq} ${bad} ${m.length} ${m.subarray(0, 32).toString('hex')}\n`);
  if (++got === hookAfter && !draining) nativeModule.native().setTestHook(hookPoint);
}
closeSync(fd);
q.release();
process.exit(0);
