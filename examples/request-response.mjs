#!/usr/bin/env node
// Request/response: the primary sends requests to a pool of workers; workers answer on the
// pool's shared reply queue, and the primary matches answers to requests by id.
import { fileURLToPath } from 'node:url';
import { WorkerPool, joinWorkerPool } from 'sage-queue';

if (process.env.SAGE_QUEUE_POOL) {
  const worker = joinWorkerPool();
  for await (const { payload } of worker.packets()) {
    await worker.replies.putAsync({ id: payload.id, result: payload.n * payload.n, worker: worker.index });
  }
  worker.release();
} else {
  const pool = new WorkerPool({ script: fileURLToPath(import.meta.url), workers: 2, replies: true, router: { strategy: 'round_robin' } });
  await pool.ready();
  const pending = new Map();
  let answered = 0;
  const answers = (async () => {
    while (pending.size > 0 || answered < 1000) {
      const { id, result } = await pool.replies.getAsync({ timeoutMs: 10_000 });
      pending.get(id)(result);
      pending.delete(id);
      answered++;
    }
  })();
  const request = (n, id) => new Promise((resolve) => {
    pending.set(id, resolve);
    pool.route({ id, n });
  });
  const results = await Promise.all(Array.from({ length: 1000 }, (_, i) => request(i, i)));
  await answers;
  const wrong = results.filter((r, i) => r !== i * i).length;
  console.log(`1000 requests answered by ${pool.size} workers, ${wrong} wrong`);
  await pool.close();
  if (wrong > 0) process.exitCode = 1;
}
