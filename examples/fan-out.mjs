#!/usr/bin/env node
// Fan-out with hash partitioning: the primary routes keyed packets to N workers over SageQueues;
// every key lands on exactly one worker, and each worker reports what it saw.
import { fileURLToPath } from 'node:url';
import { WorkerPool, joinWorkerPool } from 'sage-queue';

if (process.env.SAGE_QUEUE_POOL) {
  // Worker: consume this worker's packets until the primary closes the pool.
  const worker = joinWorkerPool();
  const counts = {};
  for await (const packet of worker.packets()) counts[packet.partitionKey] = (counts[packet.partitionKey] ?? 0) + 1;
  await worker.replies.putAsync({ worker: worker.index, counts });
  worker.release();
} else {
  const pool = new WorkerPool({ script: fileURLToPath(import.meta.url), workers: 3, replies: true, router: { strategy: 'hash' } });
  await pool.ready();
  for (let i = 0; i < 3000; i++) {
    const report = await pool.route({ n: i }, `user-${i % 30}`);
    if (!report.ok) throw new Error(`packet ${i} was not delivered: ${JSON.stringify(report.deliveries)}`);
  }
  const closing = pool.close(); // workers drain their queues, answer, and exit
  const owners = new Map();
  for (let w = 0; w < pool.size; w++) {
    const { worker, counts } = await pool.replies.getAsync({ timeoutMs: 10_000 });
    for (const [key, n] of Object.entries(counts)) {
      if (owners.has(key)) throw new Error(`key ${key} reached two workers`);
      owners.set(key, worker);
      if (n !== 100) throw new Error(`key ${key}: ${n} packets, expected 100`);
    }
    console.log(`worker ${worker}: ${Object.keys(counts).length} keys, ${Object.values(counts).reduce((a, b) => a + b, 0)} packets`);
  }
  await closing;
  console.log(`30 keys over ${pool.size} workers, each key on exactly one worker`);
}
