'use strict';
// A RedisWorkerPool worker for bench/redis.mjs's pool row: joins from SAGE_REDIS_POOL (the built
// package) and answers each batch of jobs with one reply put, echoing each job's `t` and `i`.
const path = require('node:path');
const { joinRedisPool } = require(path.join(__dirname, '..', '..', 'dist', 'index.js'));

const worker = joinRedisPool();
(async () => {
  process.send({ type: 'ready' });
  for await (const batch of worker.batches({ max: 512 })) {
    await worker.replies.putManyAsync(batch.map((p) => ({ t: p.payload.t, i: p.payload.i })));
  }
  await worker.release();
  process.disconnect();
})().catch((e) => {
  process.send({ type: 'error', message: String(e && e.stack ? e.stack : e) });
  process.exit(1);
});
