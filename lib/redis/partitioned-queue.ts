/**
 * PartitionedRedisQueue (queue type "redis_partitioned"): one logical queue over N Redis Streams
 * (partitions), each with its own hash tag `{<name>:<i>}`, so on a Redis Cluster the partitions
 * spread over the masters and throughput grows with them.
 *
 * - A put goes to the partition the router's consistent-hash ring (HashRing over stableHash, as
 *   the `hash` strategy uses) gives its key: the `key` put option, else `keyOf(item)`, else the
 *   partitions in rotation. One key always lands in one partition, so per-key order holds.
 * - Every partition is a RedisQueue: maxsize, close markers, idempotent scripts, explicit acks,
 *   XAUTOCLAIM of idle entries and dead letters all work per partition as documented for
 *   RedisQueue.
 * - Consumers in a group share the partitions (partition-leases.ts): each partition is read by
 *   one consumer at a time; a joining consumer gets its fair share (a holder gives a partition
 *   back once the messages it handed out from it are settled), a dead one's partitions are taken
 *   over once its lease expires (`leaseMs`), its unsettled entries claimed by the new holder and
 *   handed out before newer ones (partition-reader.ts).
 */
import { DescriptorError, InvalidArgumentTypeError, InvalidArgumentValueError, QueueReleasedError } from '../errors';
import { QueueDescriptor } from '../queue/descriptor';
import { releaseResolved } from '../queue/registry';
import { drainUntilClosed } from '../queue/skeleton';
import { HashRing, stableHash } from '../router/hashing';
import type { PartitionKey } from '../router/hashing';
import { checkInteger, checkKnownKeys, checkOptions } from '../validate';
import {
  PARTITIONED_QUEUE_TYPE, createPartitionedRedisQueueDescriptor, partitionOptionsFromDescriptor, partitionStream, resolvePartitionOptions,
} from './partition-options';
import type { PartitionSettings, PartitionedPutOptions, PartitionedRedisQueueOptions } from './partition-options';
import { PARTITION_READ_MAX, PartitionConsumer } from './partition-reader';
import type { PartitionChange, PartitionConsumerStats } from './partition-reader';
import type { PartitionHandle, PartitionedRedisMessage } from './partition-handout';
import type { RedisBatchOptions } from './queue-options';
import { RedisQueue } from './redis-queue';
import type { RedisQueueStats } from './queue-scripts';

/** Counts over every partition, with each partition's own, and this handle's consumer view. */
export interface PartitionedRedisQueueStats extends RedisQueueStats {
  partitions: RedisQueueStats[];
  consumer: PartitionConsumerStats;
}

const PUT_KEYS = ['key', 'partition', 'timeoutMs', 'signal'] as const;

class PartitionedRedisQueueImpl<T = unknown, Out = T> {
  readonly name: string;
  readonly partitions: number;
  readonly group: string;
  readonly consumer: string;
  readonly ackMode: 'auto' | 'explicit';
  readonly leaseMs: number;
  readonly queueId: string | undefined;
  readonly #s: PartitionSettings;
  readonly #ring: HashRing<number>;
  readonly #producers: Array<RedisQueue<unknown, unknown> | undefined>;
  readonly #reader: PartitionConsumer;
  #rotation = 0;
  #released = false;
  #closing: Promise<void> | undefined;

  constructor(options: PartitionedRedisQueueOptions<T> | QueueDescriptor) {
    let s: PartitionSettings;
    if (options instanceof QueueDescriptor) {
      try {
        s = resolvePartitionOptions(partitionOptionsFromDescriptor(options));
      } catch (e) {
        if (e instanceof DescriptorError) throw e;
        throw new DescriptorError(`a "${PARTITIONED_QUEUE_TYPE}" descriptor has invalid metadata: ${(e as Error).message}`);
      }
    } else {
      s = resolvePartitionOptions(options);
    }
    this.#s = s;
    this.name = s.name;
    this.partitions = s.partitions;
    this.group = s.group;
    this.consumer = s.consumer;
    this.ackMode = s.ackMode;
    this.leaseMs = s.leaseMs;
    this.queueId = s.queueId;
    this.#ring = new HashRing(Array.from({ length: s.partitions }, (_, i) => i), (i) => `p${i}`);
    this.#producers = new Array<RedisQueue<unknown, unknown> | undefined>(s.partitions).fill(undefined);
    this.#reader = new PartitionConsumer(s, (p) => this.#openPartition(p, 'explicit') as PartitionHandle, () => this.#allDrained());
  }

  /** The URL without its password. */
  get url(): string {
    return this.#s.url;
  }

  /** The stream key of partition `i`. */
  streamOf(partition: number): string {
    return partitionStream(this.name, checkInteger(partition, 'partition', 0, this.partitions - 1));
  }

  /** The partition a key's items go to (the same in every process). */
  partitionOf(key: PartitionKey): number {
    return this.#ring.lookup(stableHash(key)) as number;
  }

  #openPartition(p: number, ackMode: 'auto' | 'explicit'): RedisQueue<unknown, unknown> {
    return new RedisQueue<unknown, unknown>({ ...this.#s.base, stream: partitionStream(this.name, p), ackMode });
  }

  #producer(p: number): RedisQueue<unknown, unknown> {
    if (this.#released) throw new QueueReleasedError('this PartitionedRedisQueue was released; open the queue again to use it');
    let q = this.#producers[p];
    if (q === undefined) {
      q = this.#openPartition(p, 'auto');
      this.#producers[p] = q;
    }
    return q;
  }

  #route(item: unknown, key: PartitionKey | undefined, partition: number | undefined): number {
    if (partition !== undefined) return partition;
    const k = key ?? this.#s.keyOf?.(item);
    if (k === undefined) return this.#rotation++ % this.partitions;
    return this.partitionOf(k);
  }

  #parsePut(options: unknown): { key: PartitionKey | undefined; partition: number | undefined; wait: RedisBatchOptions } {
    const o = checkOptions<PartitionedPutOptions>(options);
    checkKnownKeys(o, PUT_KEYS);
    if (o.key !== undefined) stableHash(o.key); // ERR_INVALID_ARG_TYPE for a key that cannot be hashed
    const partition = o.partition === undefined ? undefined : checkInteger(o.partition, 'options.partition', 0, this.partitions - 1);
    if (partition !== undefined && o.key !== undefined) {
      throw new InvalidArgumentValueError('options.key and options.partition exclude each other (a key chooses its partition)', o.partition);
    }
    const wait: RedisBatchOptions = {};
    if (o.timeoutMs !== undefined) wait.timeoutMs = o.timeoutMs;
    if (o.signal !== undefined) wait.signal = o.signal;
    return { key: o.key, partition, wait };
  }

  /**
   * Appends one item to its key's partition (the `key` option, else `keyOf(item)`, else the next
   * partition in rotation), or to the `partition` option's; waits while that partition holds
   * `maxsize` entries.
   */
  putAsync(item: T, options?: PartitionedPutOptions): Promise<void> {
    try {
      const { key, partition, wait } = this.#parsePut(options);
      return this.#producer(this.#route(item, key, partition)).putAsync(item, wait);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * Appends many items, each to its partition (all to `key`'s when given), in order within each
   * partition. Resolves with the count; a failure rejects with the first partition's error and
   * `written`: how many items were appended in all (with several partitions, not a prefix).
   */
  putManyAsync(items: readonly T[], options?: PartitionedPutOptions): Promise<number> {
    try {
      if (!Array.isArray(items)) throw new InvalidArgumentTypeError('items', 'an array', items);
      const { key, partition, wait } = this.#parsePut(options);
      const groups = new Map<number, unknown[]>();
      for (const item of items) {
        const p = this.#route(item, key, partition);
        const g = groups.get(p);
        if (g === undefined) groups.set(p, [item]);
        else g.push(item);
      }
      return Promise.allSettled([...groups].map(([p, g]) => this.#producer(p).putManyAsync(g, wait))).then((results) => {
        let written = 0;
        let failure: unknown;
        for (const r of results) {
          if (r.status === 'fulfilled') written += r.value;
          else {
            failure ??= r.reason;
            const w = (r.reason as { written?: unknown }).written;
            if (typeof w === 'number') written += w;
          }
        }
        if (failure !== undefined) throw Object.assign(failure as object, { written });
        return written;
      });
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Takes one entry from a partition this consumer holds (joins the group on first use). */
  getAsync(options?: RedisBatchOptions): Promise<Out> {
    return this.#reader.get(1, options, 'getAsync').then((items) => items[0] as Out);
  }

  /** Takes up to `max` entries (from one or several held partitions; each partition's in order). */
  getManyAsync(max: number, options?: RedisBatchOptions): Promise<Out[]> {
    try {
      checkInteger(max, 'max', 1, PARTITION_READ_MAX);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#reader.get(max, options, 'getManyAsync') as Promise<Out[]>;
  }

  /** Acknowledges several messages of this queue (explicit mode); one boolean per message. */
  ackMany(messages: readonly PartitionedRedisMessage<unknown>[]): Promise<boolean[]> {
    return this.#reader.ackMany(messages);
  }

  /**
   * `listener` is called synchronously each time this handle starts or stops reading a partition
   * (acquired at a heartbeat; released above its fair share or by release(); lost when its lease
   * could not be renewed in time). Returns the unsubscribe function.
   */
  onPartitions(listener: (change: PartitionChange) => void): () => void {
    return this.#reader.onPartitions(listener);
  }

  /** This handle's consumer view (no Redis call): the partitions it reads, its share, lease changes. */
  consumerStats(): PartitionConsumerStats {
    return this.#reader.stats();
  }

  [Symbol.asyncIterator](): AsyncGenerator<Out, void, undefined> {
    return drainUntilClosed(() => this.getAsync());
  }

  /** Counts from Redis (one script call per partition), summed, with each partition's. */
  async stats(): Promise<PartitionedRedisQueueStats> {
    const parts = await Promise.all(Array.from({ length: this.partitions }, (_, p) => this.#producer(p).stats()));
    const sum = (f: (x: RedisQueueStats) => number): number => parts.reduce((a, x) => a + f(x), 0);
    return {
      length: sum((x) => x.length), pending: sum((x) => x.pending), waiting: sum((x) => x.waiting), deadLetters: sum((x) => x.deadLetters),
      closed: parts.every((x) => x.closed), partitions: parts, consumer: this.#reader.stats(),
    };
  }

  async qsize(): Promise<number> {
    return (await this.stats()).waiting;
  }

  /** Every partition closed, with nothing left to deliver. */
  async #allDrained(): Promise<boolean> {
    const parts = await Promise.all(Array.from({ length: this.partitions }, (_, p) => this.#producer(p).stats()));
    return parts.every((x) => x.closed && x.waiting === 0);
  }

  /** Closes every partition (see RedisQueue.close); gets finish once all are closed and drained. */
  close(): Promise<void> {
    if (this.#released) return Promise.resolve();
    this.#closing ??= (async () => {
      this.#reader.markClosed();
      await Promise.all(Array.from({ length: this.partitions }, (_, p) => this.#producer(p).close()));
    })();
    const closing = this.#closing;
    closing.catch(() => {
      if (this.#closing === closing) this.#closing = undefined;
    });
    return closing;
  }

  /** A descriptor other processes resolve to this queue (no password, no keyOf, no consumer name). */
  toDescriptor(queueId?: string): QueueDescriptor {
    const s = this.#s;
    return createPartitionedRedisQueueDescriptor({
      url: s.url, name: s.name, partitions: s.partitions, group: s.group, maxsize: s.maxsize, codec: s.codec, ackMode: s.ackMode,
      claimIdleMs: s.claimIdleMs, maxDeliveries: s.maxDeliveries, leaseMs: s.leaseMs, queueId: queueId ?? s.queueId,
      ...(s.passwordEnv === 'SAGE_REDIS_PASSWORD' ? {} : { passwordEnv: s.passwordEnv }),
    });
  }

  /**
   * Leaves the group and closes the connections: waiting gets reject QueueReleasedError, entries
   * read and not handed out are given back, this consumer's partitions are freed for the others
   * at once. Explicit messages handed out and not settled are redelivered after `claimIdleMs`.
   */
  async release(): Promise<void> {
    if (this.#released) return;
    await this.#reader.release();
    this.#released = true;
    await Promise.all(this.#producers.map((q) => q?.release()));
    releaseResolved(this);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }

  /** Deletes every partition's stream, close marker and dead-letter stream. */
  async destroy(): Promise<void> {
    await Promise.all(Array.from({ length: this.partitions }, (_, p) => this.#producer(p).destroy()));
  }
}

/**
 * `new PartitionedRedisQueue<T>(options)`: with `ackMode: 'explicit'` the gets return
 * `PartitionedRedisMessage<T>`, otherwise `T` (as RedisQueue).
 */
export interface PartitionedRedisQueueConstructor {
  new <T = unknown>(descriptor: QueueDescriptor): PartitionedRedisQueueImpl<T, T | PartitionedRedisMessage<T>>;
  new <T = unknown>(options: PartitionedRedisQueueOptions<T> & { ackMode: 'explicit' }): PartitionedRedisQueueImpl<T, PartitionedRedisMessage<T>>;
  new <T = unknown>(options: PartitionedRedisQueueOptions<T> & { ackMode?: 'auto' }): PartitionedRedisQueueImpl<T, T>;
  new <T = unknown>(options: PartitionedRedisQueueOptions<T>): PartitionedRedisQueueImpl<T, T | PartitionedRedisMessage<T>>;
  readonly prototype: PartitionedRedisQueueImpl<unknown, unknown>;
}

/** A queue over N Redis Streams (see the file comment). `T` is what you put; `Out` what gets return. */
export type PartitionedRedisQueue<T = unknown, Out = T> = PartitionedRedisQueueImpl<T, Out>;
export const PartitionedRedisQueue: PartitionedRedisQueueConstructor = PartitionedRedisQueueImpl;
Object.defineProperty(PartitionedRedisQueueImpl, 'name', { value: 'PartitionedRedisQueue' });
