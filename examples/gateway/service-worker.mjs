#!/usr/bin/env node
// A service worker of the example gateway. Started by the gateway (a ServicePool per service):
// it takes batches from its own priority lanes (most urgent first, with aging) and puts one reply
// per message on the pool's reply queue. `body.work_ms` (capped at 1000) simulates slow work.
// With GATEWAY_IPC=1 it is the process.send twin used by the benchmark: batches arrive over IPC.
import { InterruptedError, QueueClosedError, joinGatewayService } from 'sage-queue';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A job is [connection number, priority, the client's frame (UTF-8 bytes, or text over IPC)];
// the reply is the frame the client gets, which the gateway forwards as it is.
const decoder = new TextDecoder();
const parse = (job) => JSON.parse(typeof job[2] === 'string' ? job[2] : decoder.decode(job[2]));
const answer = (m, priority, service, instance) =>
  JSON.stringify({ type: 'reply', id: m.id, msgId: m.msgId, service, instance, body: { echo: m.body ?? null, priority, by: instance } });

/** The reply as the gateway's SageQueue reply queue carries it: connection number (u32 LE), frame. */
function replyBytes(job, frame) {
  const out = Buffer.allocUnsafe(4 + Buffer.byteLength(frame));
  out.writeUInt32LE(job[0], 0);
  out.write(frame, 4);
  return out;
}

if (process.env.GATEWAY_IPC === '1') {
  const { service, index } = JSON.parse(process.env.GATEWAY_IPC_ASSIGNMENT);
  const instance = `${service}-${index}`;
  process.on('message', (batch) => process.send(batch.map((job) => [job[0], answer(parse(job), job[1], service, instance)])));
  process.on('disconnect', () => process.exit(0));
} else {
  // A blocking wait on this worker's lanes (dequeueBatchSync): the gateway's doorbell wakes this
  // thread directly; an async wait would cross a notifier thread and an event-loop wake. One turn
  // of the event loop after each wait lets IPC (the pool's messages), timers and signals run.
  // spinUs 0: batches come milliseconds apart, so polling before sleeping would only burn CPU.
  const worker = joinGatewayService(process.env, { spinUs: 0 });
  const turn = () => new Promise((r) => setImmediate(r));
  try {
    while (!worker.signal.aborted) {
      let batch;
      try {
        batch = worker.queue.dequeueBatchSync({ batchSize: 256, timeoutMs: 100 });
      } catch (e) {
        if (e instanceof QueueClosedError) break; // the gateway closed the lanes and they are drained
        if (!(e instanceof InterruptedError)) throw e;
        batch = []; // a signal: its listener runs in the turn below
      }
      const replies = [];
      for (const job of batch) {
        const m = parse(job);
        const frame = answer(m, job[1], worker.service, worker.instanceId);
        const work = Number(m.body?.work_ms);
        if (work > 0) {
          await sleep(Math.min(work, 1000));
          await worker.replies.putAsync(replyBytes(job, frame)); // at once, in order
        } else {
          replies.push(replyBytes(job, frame));
        }
      }
      if (replies.length > 0) worker.replies.putMany(replies);
      await turn();
    }
  } catch (e) {
    if (!worker.signal.aborted) throw e; // the gateway went away: just end
  } finally {
    worker.release();
  }
}
