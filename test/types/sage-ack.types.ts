/**
 * Type-level checks of SageQueue's explicit-ack mode (compiled by test/queue/sage-ack-types.test.ts
 * with `tsc --noEmit`, never run): what gets return follows `ackMode`. Each assignment compiles
 * only with the right type; each `@ts-expect-error` line must fail to compile.
 */
import { LeaseLostError, MaxUnackedError, SageQueue, SageQueueError } from '../../lib/index';
import type { SageAckQueue, SageDeadLetter, SageMessage, SageQueueErrorCode, SageQueueStats, WorkerPoolOptions } from '../../lib/index';

interface Job {
  id: number;
}

/** Compiles only when A and B are the same type. */
type Equal<A, B> = (<X>() => X extends A ? 1 : 2) extends <X>() => X extends B ? 1 : 2 ? true : false;
function assertType<T extends true>(): T | undefined {
  return undefined;
}

export async function checks(): Promise<void> {
  // explicit acks: gets return messages, puts take jobs
  const explicit = SageQueue.create<Job>('jobs', { ackMode: 'explicit', ackTimeoutMs: 5000, maxDeliveries: 3, maxUnacked: 10 });
  assertType<Equal<typeof explicit, SageAckQueue<Job>>>();
  const m: SageMessage<Job> = explicit.get();
  const id: number = m.value.id;
  const deliveries: number = m.deliveries;
  assertType<Equal<ReturnType<typeof m.ack>, void>>();
  m.nack({ delayMs: 100 });
  m.inProgress();
  await m.deadLetter('bad');
  assertType<Equal<Awaited<ReturnType<typeof explicit.getAsync>>, SageMessage<Job>>>();
  assertType<Equal<ReturnType<typeof explicit.getMany>, SageMessage<Job>[]>>();
  for await (const each of explicit) assertType<Equal<typeof each, SageMessage<Job>>>();
  const acked: number = explicit.ackMany(explicit.getMany(10));
  explicit.put({ id: id + deliveries + acked });
  // @ts-expect-error puts take a Job, not a message
  explicit.put(m);
  // @ts-expect-error a message is not a Job
  const notAJob: Job = explicit.get();
  const opened = SageQueue.open<Job>('jobs', { ackMode: 'explicit' });
  assertType<Equal<ReturnType<typeof opened.getNowait>, SageMessage<Job>>>();
  const typed = new SageQueue<Job, SageMessage<Job>>('jobs', { ackMode: 'explicit' });
  assertType<Equal<ReturnType<typeof typed.get>, SageMessage<Job>>>();

  // auto mode (default): gets return the values
  const auto = SageQueue.create<Job>('plain');
  const job: Job = auto.get();
  assertType<Equal<ReturnType<typeof auto.getMany>, Job[]>>();
  assertType<Equal<Awaited<ReturnType<typeof auto.getAsync>>, Job>>();
  // @ts-expect-error explicit-only options need ackMode: 'explicit'
  SageQueue.create<Job>('plain2', { maxUnacked: 5 });
  // @ts-expect-error an unknown ack mode
  SageQueue.create<Job>('plain3', { ackMode: 'sometimes' });

  // dead letters and stats
  const dlq = SageQueue.create<SageDeadLetter>('dead');
  SageQueue.create<Job>('jobs2', { ackMode: 'explicit', deadLetter: dlq });
  const stats: SageQueueStats = explicit.stats();
  const redeliveries: number | undefined = stats.leases?.redeliveries;

  // errors
  try {
    m.ack();
  } catch (e) {
    if (e instanceof LeaseLostError) assertType<Equal<typeof e.messageId, string>>();
    if (e instanceof MaxUnackedError) assertType<Equal<typeof e.maxUnacked, number>>();
    if (e instanceof SageQueueError) {
      const code: SageQueueErrorCode = e.code;
      const lost: SageQueueErrorCode = 'ERR_QUEUE_LEASE_LOST';
      void [code, lost];
    }
  }
  const poolOptions: WorkerPoolOptions = { script: 'w.js', ack: { ackTimeoutMs: 1000, maxDeliveries: 3 } };
  void [notAJob, job, redeliveries, poolOptions];
}
