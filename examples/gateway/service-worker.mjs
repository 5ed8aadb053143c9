#!/usr/bin/env node
// A service worker of the example gateway. Started by the gateway (a ServicePool per service):
// it takes batches from its own priority lanes (most urgent first, with aging) and puts one reply
// per message on the pool's reply queue. `body.work_ms` (capped at 1000) simulates slow work.
// With GATEWAY_IPC=1 it is the process.send twin used by the benchmark: batches arrive over IPC.
import { joinGatewayService } from 'sage-queue';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function answer(m, service, instance) {
  return { conn: m.conn, msgId: m.msgId, id: m.id, service, instance, body: { echo: m.body ?? null, priority: m.priority, by: instance } };
}

if (process.env.GATEWAY_IPC === '1') {
  const { service, index } = JSON.parse(process.env.GATEWAY_IPC_ASSIGNMENT);
  const instance = `${service}-${index}`;
  process.on('message', (batch) => process.send(batch.map((m) => answer(m, service, instance))));
  process.on('disconnect', () => process.exit(0));
} else {
  const worker = joinGatewayService();
  try {
    for await (const batch of worker.queue.batches({ batchSize: 256, signal: worker.signal })) {
      const replies = [];
      for (const m of batch) {
        const work = Number(m.body?.work_ms);
        if (work > 0) {
          await sleep(Math.min(work, 1000));
          await worker.replies.putAsync(answer(m, worker.service, worker.instanceId)); // at once, in order
        } else {
          replies.push(answer(m, worker.service, worker.instanceId));
        }
      }
      if (replies.length > 0) worker.replies.putMany(replies);
    }
  } catch (e) {
    if (!worker.signal.aborted) throw e; // the gateway went away: just end
  } finally {
    worker.release();
  }
}
