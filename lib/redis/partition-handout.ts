/**
 * Handing out what a PartitionedRedisQueue consumer read: in explicit mode each partition's
 * RedisMessage is wrapped as a PartitionedRedisMessage (its settle is counted, so the partition's
 * RedisQueue is released only once nothing handed out from it awaits one); in auto mode the
 * entries are acknowledged (one ackMany per partition) just before they are handed out.
 */
import { InvalidArgumentTypeError } from '../errors';
import { RedisBackendError } from './connection';
import type { RedisMessage } from './queue-messages';
import type { RedisQueue } from './redis-queue';

/** An entry handed out in explicit-ack mode, with the partition it came from. */
export interface PartitionedRedisMessage<T = unknown> extends RedisMessage<T> {
  readonly partition: number;
}

/** A partition's RedisQueue, opened in explicit-ack mode. */
export type PartitionHandle = RedisQueue<unknown, RedisMessage<unknown>>;

export interface Held {
  partition: number;
  msg: RedisMessage<unknown>;
  /** An auto-mode ack of it whose outcome is unknown: it may be acknowledged already. */
  retryAck: boolean;
}

export interface Part {
  readonly index: number;
  handle: PartitionHandle | undefined;
  owned: boolean;
  leaving: boolean;
  drained: boolean;
  loop: Promise<void> | undefined;
  abort: AbortController | undefined;
  /** Entries being handed out, or handed out in explicit mode and not settled yet. */
  outstanding: number;
  /** Just acquired: departed consumers' pending entries are to be claimed before the first read. */
  takeover: boolean;
  /** A drop waiting for `outstanding` to reach 0 before it gives the lease back. */
  onIdle: (() => void) | undefined;
}

/** Hands entries out (see the file comment); the consumer owns the buffer and the partitions. */
export class HandOut {
  readonly #explicit: boolean;
  readonly #handle: (part: Part) => PartitionHandle;
  readonly #parts: readonly Part[];
  readonly #putBack: (held: Held[]) => void;
  readonly #retire: (part: Part) => void;
  readonly #inner = new WeakMap<object, { part: Part; msg: RedisMessage<unknown>; settled: boolean }>();

  constructor(explicit: boolean, parts: readonly Part[], handle: (part: Part) => PartitionHandle, putBack: (held: Held[]) => void, retire: (part: Part) => void) {
    this.#explicit = explicit;
    this.#parts = parts;
    this.#handle = handle;
    this.#putBack = putBack;
    this.#retire = retire;
  }

  /**
   * Explicit mode: wraps the messages. Auto mode: acknowledges them (one ackMany per partition)
   * and keeps those this consumer still held; entries whose ack failed go back to the buffer's
   * front (the error is thrown when nothing could be handed out).
   */
  async handOut(batch: Held[]): Promise<unknown[]> {
    if (this.#explicit) return batch.map((h) => this.#wrap(this.#parts[h.partition] as Part, h.msg));
    const groups = new Map<number, Held[]>();
    for (const h of batch) {
      const g = groups.get(h.partition);
      if (g === undefined) groups.set(h.partition, [h]);
      else g.push(h);
    }
    const kept = new Set<Held>();
    const failed: Held[] = [];
    let failure: unknown;
    await Promise.all(
      [...groups].map(async ([p, held]) => {
        const part = this.#parts[p] as Part;
        try {
          const flags = await this.#handle(part).ackMany(held.map((h) => h.msg));
          // false: no longer pending for this consumer. After an ack with an unknown outcome that
          // is (almost always) because that ack went through: the entry is ours alone.
          held.forEach((h, i) => {
            if (flags[i] === true || h.retryAck) kept.add(h);
          });
        } catch (e) {
          failure ??= e;
          const maybe = e instanceof RedisBackendError && e.maybeApplied;
          for (const h of held) {
            if (maybe) h.retryAck = true;
            failed.push(h);
          }
        } finally {
          part.outstanding -= held.length;
        }
      }),
    );
    if (failed.length > 0) this.#putBack(batch.filter((h) => failed.includes(h)));
    for (const p of groups.keys()) this.#retire(this.#parts[p] as Part);
    const items = batch.filter((h) => kept.has(h)).map((h) => h.msg.value);
    if (items.length === 0 && failure !== undefined) throw failure;
    return items;
  }

  #wrap(part: Part, msg: RedisMessage<unknown>): PartitionedRedisMessage<unknown> {
    const state = { part, msg, settled: false };
    const done = (ok: boolean): boolean => {
      this.#settled(state);
      return ok;
    };
    const wrapped: PartitionedRedisMessage<unknown> = Object.freeze({
      value: msg.value,
      id: msg.id,
      deliveries: msg.deliveries,
      partition: part.index,
      ack: () => msg.ack().then(done),
      nack: () => msg.nack().then(done),
      deadLetter: (reason?: string) => msg.deadLetter(reason).then(done),
    });
    this.#inner.set(wrapped, state);
    return wrapped;
  }

  #settled(state: { part: Part; settled: boolean }): void {
    if (state.settled) return;
    state.settled = true;
    state.part.outstanding--;
    this.#retire(state.part);
  }

  /** Acknowledges messages of this queue: one ackMany per partition; one boolean per message. */
  async ackMany(messages: readonly PartitionedRedisMessage<unknown>[]): Promise<boolean[]> {
    if (!Array.isArray(messages)) throw new InvalidArgumentTypeError('messages', 'an array of PartitionedRedisMessage', messages);
    const states = messages.map((m, i) => {
      const st = m !== null && typeof m === 'object' ? this.#inner.get(m) : undefined;
      if (st === undefined) throw new InvalidArgumentTypeError(`messages[${i}]`, 'a message handed out by this PartitionedRedisQueue', m);
      return st;
    });
    const out: boolean[] = new Array<boolean>(messages.length).fill(false);
    const byPart = new Map<Part, number[]>();
    states.forEach((st, i) => byPart.set(st.part, [...(byPart.get(st.part) ?? []), i]));
    await Promise.all(
      [...byPart].map(async ([part, idx]) => {
        const handle = part.handle;
        if (handle === undefined) return;
        const flags = await handle.ackMany(idx.map((i) => (states[i] as { msg: RedisMessage<unknown> }).msg));
        idx.forEach((i, k) => {
          out[i] = flags[k] === true;
          this.#settled(states[i] as { part: Part; settled: boolean });
        });
      }),
    );
    return out;
  }
}
