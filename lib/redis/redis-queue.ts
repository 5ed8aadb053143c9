/**
 * RedisQueue (queue type "redis"): a queue between processes and machines over a Redis Stream
 * read through a consumer group. Implements AsyncQueueLike only (a remote queue has no
 * synchronous calls).
 *
 * - putAsync / putManyAsync append with XADD inside a Lua script that also checks the close
 *   marker and, with `maxsize`, the stream length: a put waits (polling with backoff) while the
 *   stream holds `maxsize` unacknowledged entries, like every other queue's put.
 * - getAsync / getManyAsync read with XREADGROUP (BLOCK on a connection of its own).
 *   `ackMode: 'auto'` acknowledges an entry (XACK + XDEL) before handing it out: at most once
 *   if the consumer then crashes. `ackMode: 'explicit'` hands out RedisMessage objects to ack(),
 *   nack() or deadLetter(): at least once.
 * - Entries a consumer has held longer than `claimIdleMs` are reclaimed by another (XAUTOCLAIM);
 *   an entry delivered more than `maxDeliveries` times goes to the dead-letter stream.
 * - Every mutating script carries a per-instance sequence number recorded in a session hash, so
 *   a command that ioredis resends after a reconnect is applied once (see docs/redis.md).
 *
 * Key layout (all derived from `stream`; put a Redis Cluster hash tag in the stream name, e.g.
 * `{jobs}`, to keep them in one slot): `<stream>`, `<stream>:closed`, `<stream>:dead` (default
 * dead-letter stream), `<stream>:s:<instance>` (session hash, expires).
 */
import { DescriptorError, InvalidArgumentTypeError, QueueClosedError, QueueReleasedError } from '../errors';
import { QueueDescriptor } from '../queue/descriptor';
import type { AsyncWaitOptions } from '../queue/queue-like';
import { releaseResolved } from '../queue/registry';
import { checkInteger, checkKnownKeys, checkOptions } from '../validate';
import { redisOptionsFromDescriptor } from './descriptor';
import { QueueBackend } from './queue-backend';
import { QueueConsumer, READ_MAX } from './queue-consumer';
import { deadLetterFromRow } from './queue-entries';
import type { DeadLetterEntry } from './queue-entries';
import { ackMessages } from './queue-messages';
import type { RedisMessage } from './queue-messages';
import { checkKeyName, redisDescriptor, resolveQueueOptions } from './queue-options';
import { drainUntilClosed, parseWaitOptions } from '../queue/skeleton';
import type { QueueSettings, RedisAckMode, RedisBatchOptions, RedisQueueOptions } from './queue-options';
import { QueueProducer } from './queue-producer';
import { parseInfoReply } from './queue-scripts';
import type { RedisQueueStats } from './queue-scripts';

/**
 * The class behind RedisQueue (exported under that name below, with constructor signatures that
 * type what gets return from `ackMode`). `T` is what you put; `Out` what gets return: `T` in
 * auto-ack mode, `RedisMessage<T>` in explicit-ack mode.
 */
class RedisQueueImpl<T = unknown, Out = T> {
  readonly stream: string;
  readonly group: string;
  readonly consumer: string;
  readonly maxsize: number;
  readonly ackMode: RedisAckMode;
  readonly claimIdleMs: number;
  readonly maxDeliveries: number;
  readonly deadLetterStream: string;
  readonly queueId: string | undefined;
  readonly #s: QueueSettings;
  readonly #b: QueueBackend;
  readonly #producer: QueueProducer;
  readonly #consumer: QueueConsumer;
  #closing: Promise<void> | undefined;

  constructor(options: RedisQueueOptions | QueueDescriptor) {
    let s: ReturnType<typeof resolveQueueOptions>;
    if (options instanceof QueueDescriptor) {
      try {
        s = resolveQueueOptions(redisOptionsFromDescriptor(options));
      } catch (e) {
        if (e instanceof DescriptorError) throw e;
        throw new DescriptorError(`a "redis" descriptor has invalid metadata: ${(e as Error).message}`);
      }
    } else {
      s = resolveQueueOptions(options);
    }
    this.#s = s;
    this.stream = s.stream;
    this.group = s.group;
    this.consumer = s.consumer;
    this.maxsize = s.maxsize;
    this.ackMode = s.ackMode;
    this.claimIdleMs = s.claimIdleMs;
    this.maxDeliveries = s.maxDeliveries;
    this.deadLetterStream = s.deadLetterStream;
    this.queueId = s.queueId;
    this.#b = new QueueBackend(s);
    this.#producer = new QueueProducer(this.#b);
    this.#consumer = new QueueConsumer(this.#b);
  }

  /** Opens a queue; with `ackMode: 'explicit'` the gets return RedisMessage<T> (the same as `new RedisQueue<T>(options)`). */
  static open<T = unknown>(options: RedisQueueOptions & { ackMode: 'explicit' }): RedisQueueImpl<T, RedisMessage<T>>;
  static open<T = unknown>(options: RedisQueueOptions & { ackMode?: 'auto' }): RedisQueueImpl<T, T>;
  static open<T = unknown>(options: RedisQueueOptions): RedisQueueImpl<T, T | RedisMessage<T>>;
  static open<T = unknown>(options: RedisQueueOptions): RedisQueueImpl<T, T | RedisMessage<T>> {
    return new RedisQueueImpl<T, T | RedisMessage<T>>(options);
  }

  /** The connection URL without its password. */
  get url(): string {
    return this.#s.url;
  }

  /** True once close() was called here or the close marker was seen. */
  get closed(): boolean {
    return this.#b.closed;
  }

  /** A descriptor other processes can resolve to this stream (the password is not in it). */
  toDescriptor(queueId?: string): QueueDescriptor {
    const id = queueId ?? this.queueId;
    return redisDescriptor({
      url: this.#s.url,
      stream: this.stream,
      group: this.group,
      queueId: id === undefined ? undefined : checkKeyName(id, 'queueId'),
      maxsize: this.maxsize,
      codec: this.#s.codec.name,
      ackMode: this.ackMode,
      claimIdleMs: this.claimIdleMs,
      maxDeliveries: this.maxDeliveries,
      deadLetterStream: this.deadLetterStream,
      passwordEnv: undefined,
    });
  }

  // ----------------------------------------------------------------------------------------------
  // Producing (queue-producer.ts)

  /**
   * Appends one item; waits while the stream holds `maxsize` unacknowledged entries (up to
   * timeoutMs: QueueFullError). ERR_REDIS_UNAVAILABLE when Redis could not be reached in time.
   */
  putAsync(item: T, options?: AsyncWaitOptions): Promise<void> {
    try {
      const wait = parseWaitOptions(options);
      if (wait.signal?.aborted) throw wait.signal.reason;
      this.#producer.checkWritable();
      const bytes = this.#s.codec.encode(item);
      return this.#producer.put([bytes], wait, 'putAsync').then(() => undefined);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * Appends many items in order (encoded first: an item that cannot be encoded fails the call
   * with nothing appended). Resolves with the count; on timeout rejects QueueFullError with
   * `written` (how many were appended).
   */
  putManyAsync(items: readonly T[], options?: RedisBatchOptions): Promise<number> {
    try {
      if (!Array.isArray(items)) throw new InvalidArgumentTypeError('items', 'an array', items);
      const wait = parseWaitOptions(options);
      if (wait.signal?.aborted) throw wait.signal.reason;
      this.#producer.checkWritable();
      const payloads = items.map((item) => this.#s.codec.encode(item));
      return this.#producer.put(payloads, wait, 'putManyAsync');
    } catch (e) {
      return Promise.reject(e);
    }
  }

  // ----------------------------------------------------------------------------------------------
  // Consuming (queue-consumer.ts, queue-messages.ts)

  /**
   * Takes one entry, waiting while the queue is empty (up to timeoutMs: QueueEmptyError;
   * ERR_REDIS_UNAVAILABLE when Redis could not be reached in time).
   */
  getAsync(options?: AsyncWaitOptions): Promise<Out> {
    return this.#consumer.get(1, options, 'getAsync').then((items) => items[0] as Out);
  }

  /**
   * Takes up to `max` entries: resolves as soon as at least one is there (waiting up to
   * timeoutMs; QueueEmptyError on timeout). QueueClosedError once closed and drained.
   */
  getManyAsync(max: number, options?: RedisBatchOptions): Promise<Out[]> {
    try {
      checkInteger(max, 'max', 1, READ_MAX);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#consumer.get(max, options, 'getManyAsync') as Promise<Out[]>;
  }

  /** Acknowledges several messages of this queue with one call; returns one boolean per message. */
  ackMany(messages: readonly RedisMessage<unknown>[]): Promise<boolean[]> {
    return ackMessages(this.#b, messages);
  }

  /**
   * For PartitionedRedisQueue (not part of RedisQueue's API): claims the entries pending for
   * consumers of the group that are neither this handle's consumer nor in `live`, and hands them
   * out before any newer entry (see queue-consumer.ts `takeOver`).
   * @internal
   */
  takeOverDeparted(live: readonly string[]): Promise<{ taken: number; deadLettered: number }> {
    try {
      this.#b.checkNotReleased();
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#consumer.takeOver(live);
  }

  /** Yields entries until the queue is closed and drained. */
  [Symbol.asyncIterator](): AsyncGenerator<Out, void, undefined> {
    return drainUntilClosed(() => this.getAsync());
  }

  // ----------------------------------------------------------------------------------------------
  // Counts, dead letters

  /** Counts from Redis (one script call). */
  async stats(): Promise<RedisQueueStats> {
    const s = this.#s;
    const stats = parseInfoReply(await this.#b.script<unknown>('sageqInfo', [s.stream, s.closedKey, s.deadLetterStream], [s.group]));
    if (stats.closed) this.#b.closedSeen = true;
    return stats;
  }

  /** Entries not yet delivered to any consumer. */
  async qsize(): Promise<number> {
    return (await this.stats()).waiting;
  }

  /** True when no entry waits for delivery. */
  async empty(): Promise<boolean> {
    return (await this.qsize()) === 0;
  }

  /** The oldest entries of the dead-letter stream (not removed). */
  async deadLetters(options?: { count?: number }): Promise<DeadLetterEntry[]> {
    const o = checkOptions<{ count?: number }>(options);
    checkKnownKeys(o, ['count']);
    const count = o.count === undefined ? 100 : checkInteger(o.count, 'options.count', 1, 100_000);
    const rows = (await this.#b.call('cmd', 'XRANGE', (c) => c.xrangeBuffer(this.deadLetterStream, '-', '+', 'COUNT', count))) as Array<[Buffer, Buffer[]]>;
    return rows.map(deadLetterFromRow);
  }

  // ----------------------------------------------------------------------------------------------
  // Lifetime

  /**
   * Closes the queue for every process: sets the close marker (puts everywhere are refused,
   * gets drain what is left then reject QueueClosedError), wakes blocked readers. Idempotent;
   * if Redis cannot be reached the promise rejects and a later close() tries again.
   */
  close(): Promise<void> {
    if (this.#b.released) return Promise.resolve();
    if (this.#closing !== undefined) return this.#closing;
    this.#b.closedLocal = true;
    this.#producer.rejectWaiting(() => new QueueClosedError('the queue was closed while this put waited for room'));
    const closing = (async () => {
      await this.#b.call('cmd', 'SET closed', (c) => c.set(this.#s.closedKey, '1'));
      await this.#b.unblockReaders(this.#s.blockPrefix);
      void this.#consumer.pump();
    })();
    this.#closing = closing;
    closing.catch(() => {
      if (this.#closing === closing) this.#closing = undefined;
    });
    return closing;
  }

  /**
   * Releases this handle: pending calls reject QueueReleasedError, entries read ahead are given
   * back (made reclaimable at once), the consumer leaves the group when it holds nothing, the
   * connections close. The queue itself (stream, other handles) is untouched.
   */
  async release(): Promise<void> {
    if (this.#b.released) return;
    await this.#consumer.quiesce();
    if (this.#b.released) return;
    const buffered = this.#consumer.takeBuffered();
    if (this.#b.commandConnected) {
      try {
        if (buffered.length > 0) await this.#b.settle('nack', buffered, '');
        if (this.#b.blockingRead) await this.#b.unblockReaders(this.#s.blockName);
        await this.#b.call('cmd', 'XGROUP DELCONSUMER', (c) =>
          c.eval(
            "local p = redis.pcall('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) if type(p) == 'table' and not p.err and #p == 0 then redis.pcall('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2]) end return 1",
            1, this.stream, this.group, this.consumer,
          ),
          Math.min(this.#s.commandTimeoutMs, 1000), Date.now() + 200,
        );
      } catch {
        /* best effort */
      }
    }
    this.#b.released = true;
    this.#consumer.rejectAll(() => new QueueReleasedError('this RedisQueue was released while the get waited'));
    this.#producer.rejectAll(() => new QueueReleasedError());
    await this.#b.shutdown();
    releaseResolved(this);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }

  /** Deletes the stream, its close marker and its dead-letter stream (every handle's view). */
  async destroy(): Promise<void> {
    await this.#b.call('cmd', 'DEL', (c) => c.del(this.stream, this.#s.closedKey, this.deadLetterStream));
    this.#b.groupReady = false;
  }
}

// ------------------------------------------------------------------------------------------------
// The public constructor: what gets return follows `ackMode`

/**
 * `new RedisQueue<T>(options)`: with `ackMode: 'explicit'` the gets return `RedisMessage<T>`,
 * otherwise `T`. When `ackMode` is only known at run time (a RedisAckMode variable) they return
 * `T | RedisMessage<T>`. `new RedisQueue<T, Out>(options)` names what gets return yourself.
 *
 * The overloads return different types, so RedisQueue cannot be a base class (`extends
 * RedisQueue` fails to compile); wrap it instead.
 */
export interface RedisQueueConstructor {
  /** Opens the queue a "redis" descriptor names (its metadata says which ackMode). */
  new <T = unknown>(descriptor: QueueDescriptor): RedisQueueImpl<T, T | RedisMessage<T>>;
  new <T = unknown>(options: RedisQueueOptions & { ackMode: 'explicit' }): RedisQueueImpl<T, RedisMessage<T>>;
  new <T = unknown>(options: RedisQueueOptions & { ackMode?: 'auto' }): RedisQueueImpl<T, T>;
  new <T = unknown>(options: RedisQueueOptions): RedisQueueImpl<T, T | RedisMessage<T>>;
  new <T, Out>(options: RedisQueueOptions): RedisQueueImpl<T, Out>;
  readonly prototype: RedisQueueImpl<unknown, unknown>;
  open: typeof RedisQueueImpl.open;
}

/** A queue over a Redis Stream (see the file comment). `T` is what you put; `Out` what gets return. */
export type RedisQueue<T = unknown, Out = T> = RedisQueueImpl<T, Out>;
export const RedisQueue: RedisQueueConstructor = RedisQueueImpl;
Object.defineProperty(RedisQueueImpl, 'name', { value: 'RedisQueue' });
