/**
 * The worker side of a RedisWorkerPool, in any process that reaches Redis: joinRedisPool() opens
 * the pool's inbound PartitionedRedisQueue as a consumer (explicit acks) and its reply queue, and
 * hands out Packets. Each job is acknowledged once handled — packets(): when the loop asks for
 * the next one; batches(): the whole batch when the loop asks for the next batch — so a worker
 * that dies mid-job has its unacknowledged jobs delivered again to the worker that takes its
 * partitions over, before that partition's newer jobs.
 */
import { InvalidArgumentTypeError, QueueClosedError } from '../errors';
import { QueueDescriptor } from '../queue/descriptor';
import { Packet } from '../router/packet';
import type { PacketWire } from '../router/packet';
import { checkInteger, checkKnownKeys, checkOptions } from '../validate';
import { PartitionedRedisQueue } from './partitioned-queue';
import type { PartitionedRedisMessage } from './partition-handout';
import { partitionOptionsFromDescriptor } from './partition-options';
import type { PartitionChange } from './partition-reader';
import { REDIS_POOL_ENV, parsePoolDescriptor } from './pool-options';
import type { RedisPoolDescriptor } from './pool-options';
import { RedisQueue } from './redis-queue';
import { redisOptionsFromDescriptor } from './descriptor';

export interface RedisPoolWorker<T = unknown, R = unknown> {
  /** The pool's name. */
  readonly pool: string;
  /** This worker's consumer name in the group (default `<host>:<pid>:<random>`). */
  readonly consumer: string;
  /** The pool's inbound queue, as this worker's consumer handle (explicit acks). */
  readonly inbound: PartitionedRedisQueue<Packet<T>, PartitionedRedisMessage<Packet<T>>>;
  /** The pool's reply queue, if the primary created one. */
  readonly replies: RedisQueue<R> | null;
  /**
   * Packets until the pool is closed and drained (or release() is called). A packet is
   * acknowledged when the loop asks for the next one, i.e. once the loop body handling it
   * finished; a body that throws, or a loop left with `break`, gives it back (delivered again).
   */
  packets(): AsyncGenerator<Packet<T>, void, undefined>;
  /**
   * The same in batches of up to `max` (default 256) packets: the batch is acknowledged (one call
   * per partition) when the loop asks for the next batch; a body that throws gives the batch back.
   */
  batches(options?: { max?: number }): AsyncGenerator<Array<Packet<T>>, void, undefined>;
  /** The partitions this worker reads now. */
  partitions(): number[];
  /** Calls `listener` when this worker starts or stops reading a partition; returns the unsubscribe. */
  onPartitions(listener: (change: PartitionChange) => void): () => void;
  /** Aborted by release(). */
  readonly signal: AbortSignal;
  /**
   * Leaves the pool: the loops end, jobs read and not handed out are given back, this worker's
   * partitions are freed for the others at once (and the jobs it held unacknowledged are taken
   * over by their next reader), connections close.
   */
  release(): Promise<void>;
}

export interface JoinRedisPoolOptions {
  /** This worker's consumer name (unique in the pool). Default `<host>:<pid>:<random>`. */
  consumer?: string;
  /** The Redis password (else the `passwordEnv` the descriptor names, default SAGE_REDIS_PASSWORD). */
  password?: string;
}

/**
 * An acknowledgement that could not be sent (Redis unreachable past its timeouts, the worker
 * released) leaves the job pending: it is delivered again (after `claimIdleMs`, or at once to the
 * partition's next reader), which at-least-once allows. The loop goes on; its next get reports
 * an outage that lasts.
 */
function ignoreAckFailure(): boolean[] {
  return [];
}

/** A stored packet as a Packet (msgpack revives Packets itself; json/v8 give the toJSON form). */
function toPacket<T>(item: Packet<T> | PacketWire<T>): Packet<T> {
  return item instanceof Packet ? item : Packet.from(item);
}

/**
 * Joins the pool described by `descriptor` (RedisWorkerPool#descriptor, as JSON text or object;
 * default: the SAGE_REDIS_POOL environment variable). The worker takes its share of the
 * partitions on its first read.
 */
export function joinRedisPool<T = unknown, R = unknown>(descriptor?: string | RedisPoolDescriptor, options?: JoinRedisPoolOptions): RedisPoolWorker<T, R> {
  const o = checkOptions<JoinRedisPoolOptions>(options);
  checkKnownKeys(o, ['consumer', 'password']);
  if (o.password !== undefined && typeof o.password !== 'string') throw new InvalidArgumentTypeError('options.password', 'a string', '(hidden)');
  let source: unknown = descriptor;
  if (source === undefined) {
    source = process.env[REDIS_POOL_ENV];
    if (source === undefined) throw new InvalidArgumentTypeError('descriptor', `a RedisWorkerPool descriptor (or the ${REDIS_POOL_ENV} environment variable)`, undefined);
  }
  const d = parsePoolDescriptor(source);
  const inboundOptions = partitionOptionsFromDescriptor(QueueDescriptor.fromDict(d.inbound));
  const inbound = new PartitionedRedisQueue<Packet<T>>({
    ...inboundOptions, ackMode: 'explicit',
    ...(o.consumer === undefined ? {} : { consumer: o.consumer }),
    ...(o.password === undefined ? {} : { password: o.password }),
  });
  let replies: RedisQueue<R> | null = null;
  if (d.replies !== null) {
    const r = redisOptionsFromDescriptor(QueueDescriptor.fromDict(d.replies));
    replies = new RedisQueue<R>({ ...r, ackMode: 'auto', ...(o.password === undefined ? {} : { password: o.password }) });
  }
  const stop = new AbortController();
  type Msg = PartitionedRedisMessage<Packet<T>>;

  const giveBack = async (held: readonly Msg[]): Promise<void> => {
    await Promise.all(held.map((m) => m.nack().catch(() => false)));
  };

  async function* batchesOf(max: number): AsyncGenerator<Array<Packet<T>>, void, undefined> {
    let held: Msg[] = [];
    try {
      for (;;) {
        try {
          held = await inbound.getManyAsync(max, { signal: stop.signal });
        } catch (e) {
          if (e instanceof QueueClosedError || stop.signal.aborted) return;
          throw e;
        }
        yield held.map((m) => toPacket(m.value));
        // The loop asked for the next batch: this one is handled.
        const done = held;
        held = [];
        await inbound.ackMany(done).catch(ignoreAckFailure);
      }
    } finally {
      if (held.length > 0) await giveBack(held);
    }
  }

  async function* packetsOf(): AsyncGenerator<Packet<T>, void, undefined> {
    let held: Msg | undefined;
    try {
      for (;;) {
        try {
          held = await inbound.getAsync({ signal: stop.signal });
        } catch (e) {
          if (e instanceof QueueClosedError || stop.signal.aborted) return;
          throw e;
        }
        yield toPacket(held.value);
        const done = held;
        held = undefined;
        await done.ack().catch(ignoreAckFailure);
      }
    } finally {
      if (held !== undefined) await giveBack([held]);
    }
  }

  let released: Promise<void> | undefined;
  return {
    pool: d.name,
    consumer: inbound.consumer,
    inbound,
    replies,
    signal: stop.signal,
    packets: () => packetsOf(),
    batches(opts?: { max?: number }) {
      const b = checkOptions<{ max?: number }>(opts);
      checkKnownKeys(b, ['max']);
      return batchesOf(b.max === undefined ? 256 : checkInteger(b.max, 'options.max', 1, 1000));
    },
    partitions: () => inbound.consumerStats().owned,
    onPartitions: (listener) => inbound.onPartitions(listener),
    release() {
      released ??= (async () => {
        stop.abort(new QueueClosedError('the worker left the pool'));
        await inbound.release();
        await replies?.release();
      })();
      return released;
    },
  };
}
