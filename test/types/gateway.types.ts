/**
 * Type-level checks of the gateway API (compiled by test/gateway/types.test.ts with
 * `tsc --noEmit`, never run). Each assignment compiles only with the right type; each
 * `@ts-expect-error` line must fail to compile (tsc reports an unused directive otherwise), so
 * none of these can pass with `any`.
 */
import {
  GatewayError, InstanceRegistry, MessageDispatcher, MessagePriority, PriorityMessageQueue, RouteTable, ServiceInstance, ServicePool, ServiceRouter,
  UnifiedMessageHandler, joinGatewayService,
} from '../../lib/index';
import type {
  BusinessMessage, DispatchStats, EnqueueOutcome, GatewayConnection, GatewayErrorCode, GatewayReply, GatewayServiceWorker, PriorityQueueDescriptor,
  PriorityQueueStats, RouteDecision, SageQueue,
} from '../../lib/index';

interface Job {
  user: string;
  n: number;
}

/** Compiles only when A and B are the same type. */
type Equal<A, B> = (<X>() => X extends A ? 1 : 2) extends <X>() => X extends B ? 1 : 2 ? true : false;
function assertType<T extends true>(): T | undefined {
  return undefined;
}

export async function priorityQueueChecks(): Promise<void> {
  const q = new PriorityMessageQueue<Job>({ capacity: 100, backpressure: { highWatermark: 0.8, lowWatermark: 0.6, mode: 'reject' } });
  const outcome: 'enqueued' | 'duplicate' = await q.enqueue({ user: 'a', n: 1 }, MessagePriority.HIGH, { id: 'a:1' });
  void outcome;
  // @ts-expect-error the message type is Job
  await q.enqueue({ user: 'a' }, MessagePriority.LOW);
  // @ts-expect-error a priority is a MessagePriority, not any number
  q.tryEnqueue({ user: 'a', n: 1 }, 7);
  const outcomes = await q.enqueueMany([{ message: { user: 'b', n: 2 }, priority: MessagePriority.LOW, id: 'b:2' }]);
  assertType<Equal<typeof outcomes, EnqueueOutcome[]>>();
  const batch = await q.dequeueBatch({ batchSize: 10, timeoutMs: 5 });
  assertType<Equal<typeof batch, Job[]>>();
  const sync = q.dequeueBatchSync({ batchSize: 10, timeoutMs: 5 });
  assertType<Equal<typeof sync, Job[]>>();
  // @ts-expect-error a synchronous wait takes no AbortSignal (signals interrupt it instead)
  q.dequeueBatchSync({ signal: new AbortController().signal });
  const taken: Job[] = q.takeBatch(5);
  void taken;
  for await (const b of q.batches({ batchSize: 4 })) {
    assertType<Equal<typeof b, Job[]>>();
  }
  const stats: PriorityQueueStats = q.stats();
  const depth: number = stats.levels.CRITICAL + stats.size + stats.enqueue_count;
  void depth;
  const ratio: number = q.usageRatio;
  const throttling: boolean = q.isThrottling;
  void ratio;
  void throttling;

  const shared = PriorityMessageQueue.create<Job>('lanes', { capacity: 1000 });
  const d: PriorityQueueDescriptor | null = shared.descriptor;
  if (d !== null) {
    const attached = PriorityMessageQueue.attach<Job>(d, { spinUs: 0 });
    assertType<Equal<Awaited<ReturnType<typeof attached.dequeueBatch>>, Job[]>>();
  }
}

export function routingChecks(): void {
  const table = new RouteTable([[1000, 1999, 'logic'], { start: 9000, end: 9999, service: 'gateway' }]);
  const owner: string | undefined = table.lookup(1500);
  void owner;
  const registry = new InstanceRegistry({ healthCheckIntervalMs: 1000, healthCheck: (i: ServiceInstance) => i.port > 0 });
  registry.register(new ServiceInstance('logic', 'logic-0', '127.0.0.1', 7000));
  const router = new ServiceRouter({ table, registry });
  const decision: RouteDecision = router.route(1500, 'user-1');
  if (decision.kind === 'BUSINESS') {
    const id: string = decision.instance.instanceId;
    void id;
  } else {
    // @ts-expect-error a GATEWAY decision has no instance
    void decision.instance;
  }
  const code: GatewayErrorCode = 'ERR_UNKNOWN_ROUTE';
  const e = new GatewayError(code, 'no route');
  assertType<Equal<typeof e.code, GatewayErrorCode>>();
}

export function handlerAndDispatchChecks(router: ServiceRouter): void {
  const dispatcher = new MessageDispatcher<{ frame: string | Buffer; m: BusinessMessage }>({
    batchSize: 100,
    timeoutMs: 10,
    process: async (destination: string, batch) => {
      assertType<Equal<typeof batch, Array<{ frame: string | Buffer; m: BusinessMessage }>>>();
      void destination;
    },
  });
  const handler = new UnifiedMessageHandler({
    router,
    verifyAuth: (token) => (token === 'ok' ? 'alice' : false),
    // the checked message, the instance chosen, the connection, and the frame as received
    dispatch: (m, instance, connection, frame) => {
      assertType<Equal<typeof m, BusinessMessage>>();
      assertType<Equal<typeof instance, ServiceInstance>>();
      assertType<Equal<typeof connection, GatewayConnection>>();
      assertType<Equal<typeof frame, string | Buffer>>();
      const msgId: string | number = m.msgId;
      void msgId;
      return dispatcher.dispatch(instance.instanceId, { frame, m });
    },
  });
  const c: GatewayConnection = { id: 'c1', principal: null, send: (r: GatewayReply) => void r };
  void handler.handle(c, Buffer.from('{}'), false);
  // @ts-expect-error a reply needs a known type
  c.send({ type: 'nope' });
  const s: DispatchStats = dispatcher.stats();
  void s.success_rate;
}

export function servicePoolChecks(registry: InstanceRegistry): void {
  const pool = new ServicePool({ service: 'logic', script: 'worker.mjs', workers: 2, registry, replies: { codec: 'raw', capacity: 1 << 20 } });
  // @ts-expect-error the reply queue's options are capacity, codec, maxMessageSize and spinUs
  new ServicePool({ service: 'logic', script: 'worker.mjs', registry, replies: { mode: 'shared' } });
  const lanes: PriorityMessageQueue = pool.queueOf(0);
  const replies: SageQueue = pool.replies;
  void lanes;
  void replies;
  const worker: GatewayServiceWorker<Job, Buffer> = joinGatewayService<Job, Buffer>();
  assertType<Equal<ReturnType<typeof worker.queue.dequeueBatchSync>, Job[]>>();
  const put: number = worker.replies.putMany([Buffer.from('x')]);
  void put;
}
