/**
 * Explicit acks on a SageQueue (`ackMode: 'explicit'`): the SageMessage handed out by gets, the
 * handle's count of unsettled messages (`maxUnacked`), and dead-lettering after `maxDeliveries`.
 *
 * In this mode the native core hands out every message prefixed by its 16-byte lease id
 * (position lo/hi, delivery count, zero) and keeps the record, leased to this handle, until it is
 * settled: ack (done: its space may be reused), nack (deliver it again, optionally after a delay)
 * or inProgress (restart the lease timeout). A lease not settled in time, or held by a process
 * that died, is delivered again with `deliveries + 1` (docs/design.md, "Explicit acks").
 */
import { LeaseLostError, SageQueueError, describe } from '../errors';
import { NativeStatus, SettleOp } from '../native';
import type { NativeQueue } from '../native';
import { checkInteger, checkKnownKeys, checkOptions } from '../validate';
import type { Codec } from './codecs';
import type { AsyncQueueLike } from './queue-like';

/** A message handed out by an explicit-ack SageQueue. Settle it exactly once. */
export interface SageMessage<T = unknown> {
  readonly value: T;
  /** The message's identity in this queue (its ring position): the same on every delivery. */
  readonly id: string;
  /** 1 on first delivery; more when it was nacked, or its lease expired or its consumer died. */
  readonly deliveries: number;
  /** The same as `deliveries` (the name JetStream and BullMQ users look for). */
  readonly deliveryCount: number;
  /** True once this handle settled it (ack, nack, deadLetter) or learnt its lease was lost. */
  readonly settled: boolean;
  /** Done with it: it is never delivered again. Throws LeaseLostError if the lease was lost. */
  ack(): void;
  /** Deliver it again (to any consumer), not before `delayMs` (default 0). Throws LeaseLostError if the lease was lost. */
  nack(options?: NackOptions): void;
  /** Still working on it: restarts its lease timeout (ackTimeoutMs). Throws LeaseLostError if the lease was lost. */
  inProgress(): void;
  /**
   * Sends it to the queue's dead-letter queue (the `deadLetter` option) with `reason`, then acks
   * it. Without a dead-letter queue: rejects with ERR_INVALID_ARG_VALUE and the lease is kept.
   */
  deadLetter(reason?: string): Promise<void>;
}

export interface NackOptions {
  /** Deliver it again no sooner than this (ms, 0 .. 86 400 000). Default 0. */
  delayMs?: number;
}

/** What a dead-letter queue receives. */
export interface SageDeadLetter<T = unknown> {
  /** 'max-deliveries', or the reason given to SageMessage.deadLetter(). */
  reason: string;
  /** The queue it came from. */
  queue: string;
  id: string;
  deliveries: number;
  value: T;
}

/** Per-handle settings of explicit-ack mode. */
export interface LeaseSettings<T> {
  maxUnacked: number;
  maxDeliveries: number;
  deadLetter: AsyncQueueLike<SageDeadLetter> | undefined;
}

/** Returned by LeaseBook.wrap for a message that went to the dead-letter queue instead. */
export const DEAD_LETTERED: unique symbol = Symbol('dead-lettered');

const PREFIX = 16;

function u32(b: Buffer, at: number): number {
  return ((b[at] as number) | ((b[at + 1] as number) << 8) | ((b[at + 2] as number) << 16) | ((b[at + 3] as number) << 24)) >>> 0;
}

export class LeaseBook<T> {
  readonly #name: string;
  readonly #q: () => NativeQueue;
  readonly #codec: Codec;
  readonly #settings: LeaseSettings<T>;
  /** Messages handed out by this handle and not known to be settled. */
  #held = 0;
  /** The position of the last record that could not be decoded (acked already). */
  readonly #undecodable = { lo: -1, hi: -1 };
  /**
   * A settle found a lease lost: that message may or may not still be in #held (a recount at the
   * limit may have dropped it already), so the next room() or held recounts instead of guessing.
   */
  #dirty = false;
  /** Async gets waiting for this handle to settle something (maxUnacked reached). */
  #roomWaiters: Array<() => void> = [];
  /** Dead-letter puts in flight (their leases are held until they complete). */
  readonly #deadLetters = new Set<Promise<void>>();
  /** ackMany's scratch (reused: it runs no user code between filling and reading them). */
  #ids = new Uint32Array(0);
  #statuses = new Uint8Array(0);
  /** ackMany: index in `messages` of each id triple sent. */
  #idx = new Uint32Array(0);

  constructor(name: string, q: () => NativeQueue, codec: Codec, settings: LeaseSettings<T>) {
    this.#name = name;
    this.#q = q;
    this.#codec = codec;
    this.#settings = settings;
  }

  get held(): number {
    if (this.#dirty) this.#recount();
    return this.#held;
  }

  get maxUnacked(): number {
    return this.#settings.maxUnacked;
  }

  /** True when wrap() may return DEAD_LETTERED (the queue has a dead-letter queue). */
  get deadLettering(): boolean {
    return this.#settings.deadLetter !== undefined;
  }

  /**
   * How many more messages this handle may take now (≥ 1, or 0 at maxUnacked). At the limit it
   * recounts from the segment first: leases that expired and were taken back no longer count.
   */
  room(): number {
    if (this.#dirty) this.#recount();
    const free = this.#settings.maxUnacked - this.#held;
    if (free > 0) return free;
    this.#recount();
    return Math.max(0, this.#settings.maxUnacked - this.#held);
  }

  /**
   * Recounts from the segment (leases that expired and were taken back no longer count). Only
   * ever lowers the count: records this handle took but has not handed out yet count natively.
   */
  #recount(): void {
    let n: number;
    try {
      n = this.#q().heldLeases(0);
    } catch {
      return; // released: nothing to recount
    }
    if (n < 0) return; // the consumer lock was busy: still dirty, recounted next time
    if (n < this.#held) this.#held = n;
    this.#dirty = false;
  }

  /** Resolves when this handle settles a message (or after `pollMs`, to recount expired leases). */
  waitForRoom(pollMs: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.#roomWaiters = this.#roomWaiters.filter((w) => w !== done);
        resolve();
      }, pollMs);
      const done = (): void => {
        clearTimeout(timer);
        resolve();
      };
      this.#roomWaiters.push(done);
    });
  }

  /** wrap() under the name SlabReader.decodeBatch calls. */
  decode(raw: Buffer): SageMessage<T> | typeof DEAD_LETTERED {
    return this.wrap(raw);
  }

  /** The message for a raw record (prefix + payload), or DEAD_LETTERED when it was sent to the dead-letter queue. */
  wrap(raw: Buffer): SageMessage<T> | typeof DEAD_LETTERED {
    return this.decodeAt(raw, 0, raw.length);
  }

  /**
   * wrap() of the record at [off, off + len) of `slab`, read in place: SlabReader.decodeBatch
   * calls it so that a batch makes one view per message (the value's), not two.
   */
  decodeAt(slab: Buffer, off: number, len: number): SageMessage<T> | typeof DEAD_LETTERED {
    // The prefix is little-endian u32s (lo, hi, deliveries, 0); read inline (per message, hot).
    const lo = u32(slab, off);
    const hi = u32(slab, off + 4);
    const deliveries = u32(slab, off + 8);
    let value: T;
    try {
      const codec = this.#codec;
      value = (codec.decodeAt === undefined ? codec.decode(slab.subarray(off + PREFIX, off + len)) : codec.decodeAt(slab, off + PREFIX, Math.max(0, len - PREFIX))) as T;
    } catch (e) {
      // A record this queue's codec cannot decode is consumed, as in auto mode (the error carries
      // its bytes): redelivering it could only fail again, at every consumer. (A batch that met it
      // after other messages hands those out first and decodes it again on the next call: it is
      // acked once.)
      if (this.#undecodable.lo !== lo || this.#undecodable.hi !== hi) {
        this.#undecodable.lo = lo;
        this.#undecodable.hi = hi;
        this.#q().settle(lo, hi, deliveries, SettleOp.Ack, 0);
      }
      throw e;
    }
    this.#held++;
    const message = new LeasedMessage<T>(this, lo, hi, deliveries, value);
    const dlq = this.#settings.deadLetter;
    if (dlq !== undefined && deliveries > this.#settings.maxDeliveries) {
      this.#track(message.deadLetter('max-deliveries').catch(() => undefined));
      return DEAD_LETTERED;
    }
    return message;
  }

  /** Settles one message; throws LeaseLostError when this handle no longer holds its lease. */
  settle(m: LeasedMessage<T>, op: SettleOp, delayMs: number): void {
    const rc = this.#q().settle(m.lo, m.hi, m.deliveries, op, delayMs);
    if (rc === 0) {
      if (op !== SettleOp.Extend) this.#release();
      return;
    }
    if (-rc === NativeStatus.LeaseLost) {
      this.#lost();
      throw new LeaseLostError(m.id, m.deliveries, 'its lease is no longer held by this handle (settled already, or it expired and was taken back for redelivery)');
    }
    throw new SageQueueError('ERR_INVALID_ARG_VALUE', `cannot settle message ${m.id} on queue ${this.#name}: status ${-rc}`);
  }

  /** Acks many messages with one native call; returns how many were acked (the others' leases were lost). */
  ackMany(messages: readonly SageMessage<T>[]): number {
    if (this.#idx.length < messages.length) {
      this.#ids = new Uint32Array(messages.length * 3);
      this.#statuses = new Uint8Array(messages.length);
      this.#idx = new Uint32Array(messages.length);
    }
    const ids = this.#ids;
    const idx = this.#idx;
    let k = 0;
    for (let i = 0; i < messages.length; i++) {
      const m = messages[i];
      if (!(m instanceof LeasedMessage) || m.book !== this) {
        throw new SageQueueError('ERR_INVALID_ARG_VALUE', `messages[${i}] is not a message this handle handed out: ${describe(m)}`);
      }
      if (m.settled) continue;
      ids[3 * k] = m.lo;
      ids[3 * k + 1] = m.hi;
      ids[3 * k + 2] = m.deliveries;
      idx[k++] = i;
    }
    if (k === 0) return 0;
    const statuses = this.#statuses;
    const ok = this.#q().settleMany(ids, k, SettleOp.Ack, statuses);
    let released = 0;
    let lost = false;
    for (let j = 0; j < k; j++) {
      const s = statuses[j] as number;
      if (s === 0 || s === NativeStatus.LeaseLost) {
        (messages[idx[j] as number] as LeasedMessage<T>).markSettled();
        if (s === 0) released++;
        else lost = true;
      }
    }
    if (lost) this.#lost();
    this.#release(released);
    return ok;
  }

  /** Puts the dead-letter entry, then acks; on a failed put the message is nacked (delivered again later). */
  async deadLetter(m: LeasedMessage<T>, reason: string): Promise<void> {
    const dlq = this.#settings.deadLetter;
    if (dlq === undefined) {
      throw new SageQueueError('ERR_INVALID_ARG_VALUE', `queue ${this.#name} has no dead-letter queue (options.deadLetter)`);
    }
    const entry: SageDeadLetter<T> = { reason, queue: this.#name, id: m.id, deliveries: m.deliveries, value: m.value };
    try {
      await dlq.putAsync(entry);
    } catch (e) {
      try {
        m.nack();
      } catch {
        // lost meanwhile: nothing to give back
      }
      throw e;
    }
    m.ack();
  }

  /** Waits for dead-letter puts in flight (release waits for them). */
  async drain(): Promise<void> {
    while (this.#deadLetters.size > 0) await Promise.allSettled([...this.#deadLetters]);
  }

  #track(p: Promise<void>): void {
    this.#deadLetters.add(p);
    void p.finally(() => this.#deadLetters.delete(p));
  }

  #lost(): void {
    this.#dirty = true;
    this.#wakeWaiters(); // they recount
  }

  #release(n = 1): void {
    if (n === 0) return;
    this.#held = Math.max(0, this.#held - n);
    this.#wakeWaiters();
  }

  #wakeWaiters(): void {
    const waiters = this.#roomWaiters;
    if (waiters.length > 0) {
      this.#roomWaiters = [];
      for (const w of waiters) w();
    }
  }
}

class LeasedMessage<T> implements SageMessage<T> {
  readonly book: LeaseBook<T>;
  readonly lo: number;
  readonly hi: number;
  readonly deliveries: number;
  readonly value: T;
  #settled = false;
  /** The id string, made on first use (most consumers never read it). */
  #id: string | undefined = undefined;

  constructor(book: LeaseBook<T>, lo: number, hi: number, deliveries: number, value: T) {
    this.book = book;
    this.lo = lo;
    this.hi = hi;
    this.deliveries = deliveries;
    this.value = value;
  }

  get id(): string {
    if (this.#id === undefined) {
      const { lo, hi } = this;
      this.#id = hi < 0x200000 ? String(hi * 0x1_0000_0000 + lo) : ((BigInt(hi) << 32n) | BigInt(lo)).toString();
    }
    return this.#id;
  }

  get deliveryCount(): number {
    return this.deliveries;
  }

  get settled(): boolean {
    return this.#settled;
  }

  markSettled(): void {
    this.#settled = true;
  }

  ack(): void {
    this.#settle(SettleOp.Ack, 0);
  }

  nack(options?: NackOptions): void {
    const opts = checkOptions<NackOptions>(options);
    checkKnownKeys(opts, ['delayMs']);
    const delay = opts.delayMs === undefined ? 0 : checkInteger(opts.delayMs, 'options.delayMs', 0, 86_400_000);
    this.#settle(SettleOp.Nack, delay);
  }

  inProgress(): void {
    this.#settle(SettleOp.Extend, 0);
  }

  deadLetter(reason = 'dead-lettered by the consumer'): Promise<void> {
    return this.book.deadLetter(this, String(reason));
  }

  #settle(op: SettleOp, delayMs: number): void {
    if (this.#settled) {
      throw new LeaseLostError(this.id, this.deliveries, 'this handle settled it already');
    }
    try {
      this.book.settle(this, op, delayMs);
    } catch (e) {
      if (e instanceof LeaseLostError) this.#settled = true;
      throw e;
    }
    if (op !== SettleOp.Extend) this.#settled = true;
  }

  toString(): string {
    return `SageMessage(${this.id}, delivery ${this.deliveries})`;
  }
}

/** Nacks messages taken but not handled (delivered again at once); a lease lost meanwhile is being redelivered anyway. */
export function giveBack(messages: ReadonlyArray<SageMessage<unknown>>): void {
  for (const m of messages) {
    if (m.settled) continue;
    try {
      m.nack();
    } catch {
      // its lease was lost: it is being delivered again anyway (or the handle was released)
    }
  }
}
