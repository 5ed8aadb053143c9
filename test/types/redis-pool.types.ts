/**
 * Type-level checks of RedisWorkerPool and joinRedisPool (compiled by test/redis/types.test.ts
 * with `tsc --noEmit`, never run): route() takes the pool's payload type, replies are typed by
 * `Out`, a worker's packets carry `In`, events are typed. Each `@ts-expect-error` line must fail
 * to compile.
 */
import { RedisWorkerPool } from '../../lib/redis/redis-pool';
import { joinRedisPool } from '../../lib/redis/pool-worker';
import type { RedisPoolDescriptor } from '../../lib/redis/pool-options';
import type { RouteReport } from '../../lib/router/reports';
import { Packet } from '../../lib/router/packet';

interface Job {
  user: string;
  n: number;
}
interface Answer {
  n: number;
  ok: boolean;
}

type Equal<A, B> = (<X>() => X extends A ? 1 : 2) extends <X>() => X extends B ? 1 : 2 ? true : false;
function assertType<T extends true>(): T | undefined {
  return undefined;
}

export async function checks(url: string): Promise<void> {
  const pool = new RedisWorkerPool<Job, Answer>({ url, name: 'jobs', partitions: 6, replies: { maxsize: 1000 } });
  const report: RouteReport = await pool.route({ user: 'a', n: 1 }, 'a');
  await pool.route(new Packet<Job>({ user: 'b', n: 2 }, { partitionKey: 'b' }));
  await pool.routeMany([new Packet<Job>({ user: 'c', n: 3 })]);
  // @ts-expect-error the payload is a Job
  await pool.route({ user: 'a' }, 'a');
  // @ts-expect-error a key is a string, number, bigint or Uint8Array
  await pool.route({ user: 'a', n: 1 }, { user: 'a' });
  const answer = await pool.replies?.getAsync();
  assertType<Equal<typeof answer, Answer | undefined>>();
  pool.on('worker-exit', (info) => {
    const reason: 'left' | 'lost' = info.reason;
    const pid: number | undefined = info.pid;
    void reason;
    void pid;
  });
  // @ts-expect-error no such event
  pool.on('worker-crashed', () => undefined);
  const descriptor: RedisPoolDescriptor = pool.descriptor;
  // @ts-expect-error unknown pool option
  new RedisWorkerPool<Job>({ url, workers: 3 });

  const worker = joinRedisPool<Job, Answer>(JSON.stringify(descriptor));
  for await (const packet of worker.packets()) {
    const job: Job = packet.payload;
    await worker.replies?.putAsync({ n: job.n, ok: true });
    // @ts-expect-error replies are Answers
    await worker.replies?.putAsync({ n: job.n });
  }
  for await (const batch of worker.batches({ max: 64 })) {
    assertType<Equal<typeof batch, Array<Packet<Job>>>>();
  }
  const owned: number[] = worker.partitions();
  void owned;
  void report;
  await worker.release();
  await pool.close({ timeoutMs: 1000, destroy: false });
}
