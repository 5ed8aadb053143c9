/** The worker side of a WorkerPool: attach to the queues the primary created for this worker. */
import { QueueDescriptor } from '../queue/descriptor';
import { InvalidArgumentTypeError, MaxUnackedError, QueueClosedError, SageQueueError } from '../errors';
import { resolveDescriptor } from '../queue/registry';
import { isStopSignal } from '../router/base-router';
import { Packet } from '../router/packet';
import type { PacketWire } from '../router/packet';
import { giveBack } from '../queue/sage-leases';
import type { SageMessage } from '../queue/sage-leases';
import type { SageQueue } from '../queue/sage-queue';
import { checkInteger, checkKnownKeys, checkOptions } from '../validate';
import { POOL_ENV, READY_MESSAGE } from './pool-env';
import type { PoolAssignment } from './pool-env';

export interface PoolWorker<T = unknown, R = unknown> {
  /** This worker's index in the pool (0-based; a replacement gets the index it replaces). */
  readonly index: number;
  /** The queue the primary's router feeds for this worker. */
  readonly inbound: SageQueue<PacketWire<T> | Packet<T>>;
  /** The pool's shared reply queue, if the primary created one. */
  readonly replies: SageQueue<R> | null;
  /**
   * Packets until the primary closes the queue, sends a stop signal, or goes away. Through the
   * default `records` codec (and `msgpack`) the queue itself yields Packet instances.
   *
   * In a pool with `ack` (at least once; `acks` is true): a packet is acked when the loop asks for
   * the next one, i.e. when the loop body handling it finished. A body that throws (or a loop left
   * with `break`) leaves the packet unacked: it is given back at once and delivered again; a
   * worker killed mid-job has it delivered again to its replacement.
   */
  packets(): AsyncGenerator<Packet<T>, void, undefined>;
  /** True in a pool with `ack`: packets and batches are acked once handled (see packets()). */
  readonly acks: boolean;
  /**
   * The same packets in batches: waits (without blocking the event loop) for at least one, then
   * takes whatever else is already queued, up to `max` (default 256), with one native call.
   * Ends like packets(). Trade-off: a batch is in this process's memory once yielded, so a
   * worker killed mid-batch loses the rest of that batch (packets() loses at most one). In a
   * pool with `ack`, nothing is lost: a batch is acked (one native call) when the loop asks for
   * the next one, and a worker killed mid-batch has the whole batch delivered again.
   */
  batches(options?: WorkerBatchOptions): AsyncGenerator<Array<Packet<T>>, void, undefined>;
  /**
   * Aborted when the primary goes away (its IPC channel closes). The queues are released then,
   * so pending calls on them reject with QueueReleasedError and the worker can exit.
   */
  readonly signal: AbortSignal;
  /** Detaches from the queues (they live on for the primary and a replacement). */
  release(): void;
}

export interface WorkerBatchOptions {
  /** The most packets per batch, 1..1024. Default 256. */
  max?: number;
}

/** A queued item as a Packet (a records/msgpack queue revives Packets itself; json/v8 give the toJSON form). */
function toPacket<T>(item: PacketWire<T> | Packet<T>): Packet<T> {
  return item instanceof Packet ? item : Packet.from(item);
}

/**
 * Attaches to the queues named in the SAGE_QUEUE_POOL environment variable (set by
 * WorkerPool) and tells the primary it is ready. Throws if this process was not started by a pool.
 */
export function joinWorkerPool<T = unknown, R = unknown>(env: NodeJS.ProcessEnv = process.env): PoolWorker<T, R> {
  if (env === null || typeof env !== 'object') throw new InvalidArgumentTypeError('env', 'an environment object', env);
  const text = env[POOL_ENV];
  if (text === undefined) {
    throw new SageQueueError('ERR_NOT_A_POOL_WORKER', `this process was not started by a WorkerPool (${POOL_ENV} is not set)`);
  }
  let assignment: PoolAssignment;
  try {
    assignment = JSON.parse(text) as PoolAssignment;
  } catch {
    throw new SageQueueError('ERR_NOT_A_POOL_WORKER', `${POOL_ENV} is not valid JSON`);
  }
  const inbound = resolveDescriptor(QueueDescriptor.fromDict(assignment.inbound)) as unknown as SageQueue<PacketWire<T> | Packet<T>>;
  const replies = assignment.replies === null ? null : (resolveDescriptor(QueueDescriptor.fromDict(assignment.replies)) as unknown as SageQueue<R>);
  // When the primary goes away (its IPC channel closes), packets() ends instead of waiting forever.
  // (A 'disconnect' listener keeps the IPC channel, and so the process, alive: it is removed as
  // soon as the packets end or the worker releases.)
  const primaryGone = new AbortController();
  const onDisconnect = (): void => {
    primaryGone.abort(new SageQueueError('ERR_PRIMARY_GONE', 'the pool primary disconnected'));
    // Unblock whatever the worker awaits (a put on a full reply queue, say): nobody will answer.
    inbound.release();
    replies?.release();
  };
  const stopWatching = (): void => {
    process.off('disconnect', onDisconnect);
  };
  if (typeof process.send === 'function') {
    process.send({ type: READY_MESSAGE, index: assignment.index, pid: process.pid });
    process.once('disconnect', onDisconnect);
  }

  async function* batchesOf(max: number): AsyncGenerator<Array<Packet<T>>, void, undefined> {
    try {
      for (;;) {
        let first: PacketWire<T> | Packet<T>;
        try {
          first = await inbound.getAsync({ signal: primaryGone.signal });
        } catch (e) {
          if (e instanceof QueueClosedError) return;
          throw e;
        }
        let rest: Array<PacketWire<T> | Packet<T>> = [];
        let failure: unknown;
        try {
          if (max > 1) rest = inbound.getMany(max - 1, { block: false });
        } catch (e) {
          // Closed and drained: `first` was the last. Another error: `first` is still handed
          // out before the error is thrown.
          if (!(e instanceof QueueClosedError)) failure = e;
        }
        const batch: Array<Packet<T>> = [];
        for (const item of rest.length === 0 ? [first] : [first, ...rest]) {
          if (isStopSignal(item)) {
            if (batch.length > 0) yield batch;
            return;
          }
          batch.push(Packet.from(item as PacketWire<T>));
        }
        yield batch;
        if (failure !== undefined) throw failure;
      }
    } catch (e) {
      if (primaryGone.signal.aborted) return; // the primary is gone: the stream simply ends
      throw e;
    } finally {
      stopWatching();
    }
  }

  const explicit = inbound.ackMode === 'explicit';
  // In ack mode the queue hands out SageMessages; these generators settle them (see packets()).
  const leased = inbound as unknown as SageQueue<PacketWire<T> | Packet<T>, SageMessage<PacketWire<T> | Packet<T>>>;

  async function* ackedPackets(): AsyncGenerator<Packet<T>, void, undefined> {
    let held: SageMessage<PacketWire<T> | Packet<T>> | undefined;
    try {
      for await (const m of leased.iterate({ signal: primaryGone.signal, batchSize: 1 })) {
        if (isStopSignal(m.value)) {
          m.ack();
          return;
        }
        held = m;
        yield toPacket(m.value);
        // The loop asked for the next one: the body that handled this packet finished.
        held = undefined;
        m.ack();
      }
    } catch (e) {
      if (primaryGone.signal.aborted) return;
      throw e;
    } finally {
      stopWatching();
      giveBack(held === undefined ? [] : [held]);
    }
  }

  async function* ackedBatches(max: number): AsyncGenerator<Array<Packet<T>>, void, undefined> {
    let held: Array<SageMessage<PacketWire<T> | Packet<T>>> = [];
    try {
      for (;;) {
        let first: SageMessage<PacketWire<T> | Packet<T>>;
        try {
          first = await leased.getAsync({ signal: primaryGone.signal });
        } catch (e) {
          if (e instanceof QueueClosedError) return;
          throw e;
        }
        held = [first];
        if (max > 1) {
          try {
            held.push(...leased.getMany(max - 1, { block: false })); // within maxUnacked (MaxUnackedError at it)
          } catch (e) {
            if (!(e instanceof QueueClosedError) && !(e instanceof MaxUnackedError)) throw e;
          }
        }
        const stop = held.findIndex((m) => isStopSignal(m.value));
        const jobs = stop < 0 ? held : held.slice(0, stop);
        if (stop >= 0) {
          // Everything after the stop signal is given back for whoever comes next.
          giveBack(held.slice(stop + 1));
          held[stop]?.ack();
          held = jobs;
        }
        if (jobs.length > 0) {
          yield jobs.map((m) => toPacket(m.value));
          leased.ackMany(jobs); // the loop asked for the next batch: this one is handled
        }
        held = [];
        if (stop >= 0) return;
      }
    } catch (e) {
      if (primaryGone.signal.aborted) return;
      throw e;
    } finally {
      stopWatching();
      giveBack(held);
    }
  }

  return {
    index: assignment.index,
    acks: explicit,
    inbound,
    replies,
    signal: primaryGone.signal,
    async *packets() {
      if (explicit) {
        yield* ackedPackets();
        return;
      }
      try {
        // One at a time (batchSize 1): a worker killed mid-job loses at most the packet in hand;
        // batches() is the batched way, with its documented trade-off.
        for await (const item of inbound.iterate({ signal: primaryGone.signal, batchSize: 1 })) {
          if (isStopSignal(item)) return;
          // A records or msgpack queue hands over Packets (revived by the codec extension, see
          // router/packet-wire.ts): they pass through as they are. A json or v8 queue hands over
          // the toJSON() object, which Packet.from revives.
          yield item instanceof Packet ? item : Packet.from(item as PacketWire<T>);
        }
      } catch (e) {
        if (primaryGone.signal.aborted) return; // the primary is gone: the stream simply ends
        throw e;
      } finally {
        stopWatching();
      }
    },
    batches(options?: WorkerBatchOptions) {
      // Validated at the call, not at the first next().
      const o = checkOptions<WorkerBatchOptions>(options);
      checkKnownKeys(o, ['max']);
      const max = o.max === undefined ? 256 : checkInteger(o.max, 'options.max', 1, 1024);
      return explicit ? ackedBatches(max) : batchesOf(max);
    },
    release() {
      stopWatching();
      inbound.release();
      replies?.release();
    },
  };
}
