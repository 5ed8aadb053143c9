/**
 * Type-level checks of WorkerPool, the router's events and the error codes (compiled by
 * test/cluster/types.test.ts with `tsc --noEmit`, never run). Each assignment compiles only with
 * the right type; each `@ts-expect-error` line must fail to compile (tsc reports an unused
 * directive otherwise), so none of these can pass with `any`.
 */
import { BaseRouter, Packet, SageQueueError, WorkerPool, collectMetrics, joinWorkerPool } from '../../lib/index';
import type {
  DeadLetterEvent, EjectEvent, RetryEvent, RouteManyReport, RouteReport, SageQueue, SageQueueErrorCode, WorkerCrashLoopInfo, WorkerExitInfo,
} from '../../lib/index';

interface Job {
  id: number;
}
interface Answer {
  id: number;
  result: string;
}

/** Compiles only when A and B are the same type. */
type Equal<A, B> = (<X>() => X extends A ? 1 : 2) extends <X>() => X extends B ? 1 : 2 ? true : false;
function assertType<T extends true>(): T | undefined {
  return undefined;
}

export async function poolChecks(): Promise<void> {
  const pool = new WorkerPool<Job, Answer>({ script: 'worker.js' });
  // route() takes the payload type
  const report: RouteReport = await pool.route({ id: 1 }, 'key');
  void report;
  // @ts-expect-error a string is not a Job
  await pool.route('not a job');
  // @ts-expect-error a Job has no name
  await pool.route({ name: 'x' });
  // routeMany() takes Packets of the payload type
  const many: RouteManyReport = await pool.routeMany([new Packet<Job>({ id: 1 }, { partitionKey: 'k' })]);
  void many;
  // @ts-expect-error a Packet<string> is not a Packet<Job>
  await pool.routeMany([new Packet<string>('x')]);
  // replies carry Out
  assertType<Equal<typeof pool.replies, SageQueue<Answer> | null>>();
  const answer = await pool.replies?.getAsync();
  const result: string | undefined = answer?.result;
  void result;
  // @ts-expect-error result is a string
  const wrong: number | undefined = answer?.result;
  void wrong;
  // ready takes { timeoutMs, signal }
  await pool.ready({ timeoutMs: 1000, signal: AbortSignal.timeout(10) });
  // @ts-expect-error unknown option
  await pool.ready({ timeout: 5 });

  // on / once / off are typed for every event
  pool.on('worker-exit', (info) => {
    assertType<Equal<typeof info, WorkerExitInfo>>();
    const code: number | null = info.code;
    void code;
  });
  pool.once('worker-crash-loop', (info) => {
    assertType<Equal<typeof info, WorkerCrashLoopInfo>>();
    // @ts-expect-error restarts is a number (with `any` this would compile)
    const restarts: string = info.restarts;
    void restarts;
  });
  const onExit = (info: WorkerExitInfo): void => void info;
  pool.off('worker-exit', onExit);
  // @ts-expect-error worker-exit listeners get WorkerExitInfo, not a string
  pool.off('worker-exit', (info: string) => void info);
  // @ts-expect-error no such event
  pool.once('worker-exploded', () => undefined);
  pool.once('error', (e) => {
    const message: string = e.message;
    void message;
  });

  // Symbol.asyncDispose
  await pool[Symbol.asyncDispose]();
  // an untyped pool takes anything
  const loose = new WorkerPool({ script: 'worker.js' });
  await loose.route('anything');
  await loose.route({ any: 'thing' });
}

export async function workerChecks(): Promise<void> {
  const worker = joinWorkerPool<Job, Answer>();
  // batches() yields arrays of Packet<Job>
  for await (const batch of worker.batches({ max: 64 })) {
    assertType<Equal<typeof batch, Array<Packet<Job>>>>();
    const id: number = (batch[0] as Packet<Job>).payload.id;
    void id;
  }
  // @ts-expect-error unknown option
  worker.batches({ size: 5 });
  // @ts-expect-error max is a number
  worker.batches({ max: '5' });
}

export function routerChecks(router: BaseRouter): void {
  router.on('retry', (e) => {
    assertType<Equal<typeof e, RetryEvent>>();
    const delay: number = e.delayMs;
    void delay;
  });
  router.once('eject', (e) => {
    assertType<Equal<typeof e, EjectEvent>>();
  });
  router.on('dead-letter', (e) => {
    assertType<Equal<typeof e, DeadLetterEvent>>();
    // @ts-expect-error fault is 'item' | 'target'
    const fault: 'other' = e.fault;
    void fault;
  });
  // @ts-expect-error no such router event
  router.on('retried', () => undefined);
}

export function errorCodeChecks(e: unknown): string {
  if (e instanceof SageQueueError) {
    assertType<Equal<typeof e.code, SageQueueErrorCode>>();
    // @ts-expect-error a misspelt code is not in the union
    if (e.code === 'ERR_QUEUE_EMTPY') return 'never';
    switch (e.code) {
      case 'ERR_QUEUE_EMPTY':
      case 'ERR_POOL_NOT_READY':
      case 'ERR_REDIS_TIMEOUT':
        return e.code;
      default:
        return 'other';
    }
  }
  return 'not ours';
}

export function metricsChecks(registry: import('prom-client').Registry, pool: WorkerPool<Job, Answer>, router: BaseRouter, q: SageQueue<Job>): void {
  const collector = collectMetrics(registry, { pools: [pool], routers: [router], queues: [q] });
  collector.add({ queues: 'host' });
  // @ts-expect-error queues are SageQueues or 'host'
  collector.add({ queues: 'all' });
  collector.close();
}
