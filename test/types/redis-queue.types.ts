/**
 * Type-level checks of RedisQueue (compiled by test/redis/types.test.ts with `tsc --noEmit`,
 * never run): what gets return follows `ackMode`. Each assignment compiles only with the right
 * type; each `@ts-expect-error` line must fail to compile (tsc reports an unused directive
 * otherwise).
 */
import { RedisQueue } from '../../lib/redis/redis-queue';
import type { RedisAckMode } from '../../lib/redis/queue-options';
import type { RedisMessage } from '../../lib/redis/queue-messages';

interface Job {
  id: number;
}

/** Compiles only when A and B are the same type. */
type Equal<A, B> = (<X>() => X extends A ? 1 : 2) extends <X>() => X extends B ? 1 : 2 ? true : false;
function assertType<T extends true>(): T | undefined {
  return undefined;
}

export async function checks(url: string, mode: RedisAckMode): Promise<void> {
  // explicit ack: gets return messages
  const explicit = new RedisQueue<Job>({ url, stream: '{jobs}', ackMode: 'explicit' });
  const message: RedisMessage<Job> = await explicit.getAsync();
  const id: number = message.value.id;
  await message.ack();
  assertType<Equal<Awaited<ReturnType<typeof explicit.getAsync>>, RedisMessage<Job>>>();
  assertType<Equal<Awaited<ReturnType<typeof explicit.getManyAsync>>, RedisMessage<Job>[]>>();
  // @ts-expect-error a message is not a Job
  const notAJob: Job = await explicit.getAsync();
  await explicit.putAsync({ id });
  // @ts-expect-error puts take a Job, not a message
  await explicit.putAsync(message);

  // auto ack (default and explicit 'auto'): gets return the values
  const auto = new RedisQueue<Job>({ url, stream: '{jobs}' });
  const job: Job = await auto.getAsync();
  assertType<Equal<Awaited<ReturnType<typeof auto.getAsync>>, Job>>();
  const autoNamed = new RedisQueue<Job>({ url, stream: '{jobs}', ackMode: 'auto' });
  assertType<Equal<Awaited<ReturnType<typeof autoNamed.getAsync>>, Job>>();
  // @ts-expect-error an auto-ack get returns the value, which has no ack()
  await (await auto.getAsync()).ack();

  // ackMode known only at run time: either
  const either = new RedisQueue<Job>({ url, stream: '{jobs}', ackMode: mode });
  assertType<Equal<Awaited<ReturnType<typeof either.getAsync>>, Job | RedisMessage<Job>>>();
  // @ts-expect-error it may be a message
  const maybe: Job = await either.getAsync();

  // RedisQueue.open types the same way
  const opened = RedisQueue.open<Job>({ url, stream: '{jobs}', ackMode: 'explicit' });
  assertType<Equal<Awaited<ReturnType<typeof opened.getAsync>>, RedisMessage<Job>>>();

  // the type RedisQueue<T, Out> names a handle
  const handle: RedisQueue<Job, RedisMessage<Job>> = explicit;
  // @ts-expect-error an explicit-ack handle is not an auto-ack one
  const wrong: RedisQueue<Job, Job> = explicit;
  const x: unknown = handle;
  if (x instanceof RedisQueue) await x.release();

  // @ts-expect-error ackMode takes only 'auto' or 'explicit'
  new RedisQueue<Job>({ url, stream: '{jobs}', ackMode: 'sometimes' });
  void [job, notAJob, maybe, wrong];
}
