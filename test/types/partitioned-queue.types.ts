/**
 * Type-level checks of PartitionedRedisQueue (compiled by test/redis/types.test.ts with
 * `tsc --noEmit`, never run): what gets return follows `ackMode`, `keyOf` is typed by the item,
 * and the put key is a PartitionKey. Each `@ts-expect-error` line must fail to compile.
 */
import { PartitionedRedisQueue } from '../../lib/redis/partitioned-queue';
import type { PartitionedRedisMessage } from '../../lib/redis/partition-handout';
import type { RedisAckMode } from '../../lib/redis/queue-options';

interface Job {
  user: string;
  n: number;
}

type Equal<A, B> = (<X>() => X extends A ? 1 : 2) extends <X>() => X extends B ? 1 : 2 ? true : false;
function assertType<T extends true>(): T | undefined {
  return undefined;
}

export async function checks(url: string, mode: RedisAckMode): Promise<void> {
  const explicit = new PartitionedRedisQueue<Job>({ url, name: 'jobs', partitions: 4, ackMode: 'explicit', keyOf: (job) => job.user });
  const m: PartitionedRedisMessage<Job> = await explicit.getAsync();
  const partition: number = m.partition;
  await m.ack();
  assertType<Equal<Awaited<ReturnType<typeof explicit.getManyAsync>>, PartitionedRedisMessage<Job>[]>>();
  await explicit.ackMany([m]);
  // @ts-expect-error a message is not a Job
  const notAJob: Job = await explicit.getAsync();

  const auto = new PartitionedRedisQueue<Job>({ url, name: 'jobs', partitions: 4 });
  const job: Job = await auto.getAsync();
  assertType<Equal<Awaited<ReturnType<typeof auto.getAsync>>, Job>>();
  await auto.putAsync(job, { key: job.user });
  await auto.putAsync(job, { key: 42n });
  await auto.putManyAsync([job], { key: new Uint8Array([1]) });
  // @ts-expect-error a key is a string, number, bigint or Uint8Array
  await auto.putAsync(job, { key: { user: 'x' } });
  // @ts-expect-error keyOf receives the item type
  new PartitionedRedisQueue<Job>({ url, name: 'jobs', partitions: 4, keyOf: (job: number) => job });

  const either = new PartitionedRedisQueue<Job>({ url, name: 'jobs', partitions: 4, ackMode: mode });
  assertType<Equal<Awaited<ReturnType<typeof either.getAsync>>, Job | PartitionedRedisMessage<Job>>>();
  void partition;
  void notAJob;
}
