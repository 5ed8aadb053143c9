/**
 * The consumer side of a PartitionedRedisQueue handle: it joins the group's leases on its first
 * get (partition-leases.ts), reads the partitions it holds, and hands entries to its getters.
 *
 * - Each held partition is read through a RedisQueue of its stream in explicit-ack mode, only
 *   while getters wait and only while the leases are certainly held (see `validUntil`): one
 *   blocking read per partition at a time, in slices of `blockSliceMs`.
 * - Entries read wait in a local buffer (in partition order) for the oldest getter. In auto mode
 *   they are acknowledged (one ackMany per partition) just before they are handed out, so an
 *   entry held in the buffer is never lost: it is still pending in Redis for this consumer.
 *   In explicit mode getters receive PartitionedRedisMessage (the partition's message, plus its
 *   partition number).
 * - Before the first read of a partition it just took, it claims every entry still pending there
 *   for a consumer of the group that is not a live member (one that died, left, or could not
 *   renew its membership): those are handed out first, in stream order (sageqTakeover).
 * - A partition above this consumer's fair share is given back: its read stops, the entries
 *   buffered from it are nacked, then — once every message handed out from it is settled, or
 *   after claimIdleMs, or at release() — its lease is deleted (the heartbeat keeps renewing it
 *   meanwhile). A partition whose lease was lost (the heartbeat could not renew it in time) stops
 *   at once, its buffered entries nacked.
 *   A partition's RedisQueue is released once nothing handed out from it awaits a settle.
 */
import { WaiterList } from '../queue/async-waiters';
import { InvalidArgumentTypeError, QueueClosedError, QueueEmptyError, QueueReleasedError } from '../errors';
import { parseWaitOptions } from '../queue/skeleton';
import { RedisBackendError } from './connection';
import { PartitionLeases } from './partition-leases';
import type { LeaseView } from './partition-leases';
import type { PartitionSettings } from './partition-options';
import type { RedisMessage } from './queue-messages';
import { HandOut } from './partition-handout';
import type { Held, Part, PartitionHandle, PartitionedRedisMessage } from './partition-handout';

/** Most entries one get takes (as RedisQueue). */
export const PARTITION_READ_MAX = 1000;

/** Counts of this consumer's lease changes. */
export interface PartitionConsumerStats {
  /** Partitions this consumer reads now. */
  owned: number[];
  /** Its fair share at the last heartbeat, and the live members then. */
  share: number;
  members: number;
  /** Partitions taken (on join, after another consumer left or died), given back (above the share), lost (lease not renewed in time). */
  acquired: number;
  released: number;
  lost: number;
  /** Entries claimed from departed consumers on taking a partition (redelivered here first), and those of them dead-lettered instead (over maxDeliveries). */
  takenOver: number;
  takeoverDeadLettered: number;
}

/** A partition this consumer started or stopped reading. */
export interface PartitionChange {
  partition: number;
  /** True: it reads the partition from now on. False: it stopped reading it (given back, lost, or released). */
  owned: boolean;
  reason: 'acquired' | 'released' | 'lost';
}

interface GetRequest {
  max: number;
  deadline: number | undefined;
  signal: AbortSignal | undefined;
  what: string;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class PartitionConsumer {
  readonly #s: PartitionSettings;
  readonly #open: (partition: number) => PartitionHandle;
  readonly #allDrained: () => Promise<boolean>;
  readonly #leases: PartitionLeases;
  readonly #parts: Part[];
  readonly #getters = new WaiterList<unknown[], GetRequest>();
  readonly #out: HandOut;
  #want = 0;
  #buffer: Held[] = [];
  #serving = false;
  #released = false;
  #closedSeen = false;
  #finished = false;
  #fatal: unknown;
  #lastUnavailable: RedisBackendError | undefined;
  #checking: Promise<void> | undefined;
  #lastCheck = 0;
  #counts = { acquired: 0, released: 0, lost: 0, takenOver: 0, takeoverDeadLettered: 0 };
  readonly #listeners = new Set<(change: PartitionChange) => void>();

  constructor(settings: PartitionSettings, open: (partition: number) => PartitionHandle, allDrained: () => Promise<boolean>) {
    this.#s = settings;
    this.#open = open;
    this.#allDrained = allDrained;
    this.#parts = Array.from({ length: settings.partitions }, (_, index) => ({
      index, handle: undefined, owned: false, leaving: false, drained: false, loop: undefined, abort: undefined, outstanding: 0, takeover: false, onIdle: undefined,
    }));
    this.#out = new HandOut(settings.ackMode === 'explicit', this.#parts, (part) => this.#handle(part), (held) => {
      this.#buffer = [...held, ...this.#buffer];
    }, (part) => this.#maybeRetire(part));
    this.#leases = new PartitionLeases(settings, (v) => this.#onBeat(v), (e) => this.#onLeaseError(e));
  }

  /** close() was called on this handle: gets finish once every partition is closed and drained. */
  markClosed(): void {
    this.#closedSeen = true;
    void this.#checkFinished(true);
  }

  /** Calls `listener` synchronously each time this consumer starts or stops reading a partition; returns the unsubscribe. */
  onPartitions(listener: (change: PartitionChange) => void): () => void {
    if (typeof listener !== 'function') throw new InvalidArgumentTypeError('listener', 'a function', listener);
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Sets a partition's owned flag and tells the listeners. */
  #setOwned(part: Part, owned: boolean, reason: PartitionChange['reason']): void {
    part.owned = owned;
    for (const l of [...this.#listeners]) {
      try {
        l({ partition: part.index, owned, reason });
      } catch {
        /* a listener's error is not the queue's */
      }
    }
  }

  stats(): PartitionConsumerStats {
    const v = this.#leases.last;
    return { owned: this.#ownedNow(), share: v?.share ?? 0, members: v?.members ?? 0, ...this.#counts };
  }

  #ownedNow(): number[] {
    return this.#parts.filter((p) => p.owned).map((p) => p.index);
  }

  /** getAsync / getManyAsync: up to `max` entries, at least one. */
  get(max: number, options: unknown, what: string): Promise<unknown[]> {
    let req: GetRequest;
    let timeoutMs: number | undefined;
    try {
      const wait = parseWaitOptions(options);
      if (wait.signal?.aborted) throw wait.signal.reason;
      this.#checkUsable();
      timeoutMs = wait.timeoutMs;
      req = { max, deadline: timeoutMs === undefined ? undefined : Date.now() + timeoutMs, signal: wait.signal, what };
    } catch (e) {
      return Promise.reject(e);
    }
    if (this.#finished) return Promise.reject(new QueueClosedError('the queue is closed and drained'));
    if (timeoutMs === 0) return this.#getNow(req);
    return this.#enqueue(req, timeoutMs);
  }

  #checkUsable(): void {
    if (this.#released) throw new QueueReleasedError('this PartitionedRedisQueue was released; open the queue again to use it');
    if (this.#fatal !== undefined) throw this.#fatal;
  }

  #enqueue(req: GetRequest, timeoutMs: number | undefined): Promise<unknown[]> {
    this.#want += req.max;
    const p = this.#getters.wait(req, {
      timeoutMs,
      signal: req.signal,
      onTimeout: () => this.#unreachable() ?? new QueueEmptyError(`${req.what} timed out after ${timeoutMs} ms: the queue is still empty`, true),
    });
    const done = (): void => {
      this.#want -= req.max;
    };
    p.then(done, done);
    this.#leases.start().catch(() => undefined);
    void this.#serve();
    this.#wake();
    return p;
  }

  /** A get whose wait ended while Redis could not be reached reports that, not an empty queue. */
  #unreachable(): RedisBackendError | undefined {
    const e = this.#lastUnavailable;
    this.#lastUnavailable = undefined;
    return e;
  }

  /** timeoutMs 0: one non-blocking read of each held partition (after joining), then hand out. */
  async #getNow(req: GetRequest): Promise<unknown[]> {
    await this.#leases.start();
    for (const part of this.#parts) {
      if (this.#buffer.length >= req.max) break;
      if (!part.owned || part.leaving || part.drained || !this.#leases.valid(0)) continue;
      try {
        if (part.takeover) await this.#takeOver(part);
        const msgs = await this.#handle(part).getManyAsync(Math.min(PARTITION_READ_MAX, req.max - this.#buffer.length), { timeoutMs: 0 });
        for (const msg of msgs) this.#buffer.push({ partition: part.index, msg, retryAck: false });
      } catch (e) {
        if (e instanceof QueueClosedError) {
          part.drained = true;
          this.#closedSeen = true;
        } else if (!(e instanceof QueueEmptyError)) throw e;
      }
    }
    if (this.#buffer.length === 0) {
      if (this.#closedSeen) await this.#checkFinished(true);
      if (this.#finished) throw new QueueClosedError('the queue is closed and drained');
      throw new QueueEmptyError(`${req.what} timed out after 0 ms: the queue is empty`, true);
    }
    const batch = this.#take(req.max);
    const items = await this.#out.handOut(batch);
    return items.length > 0 ? items : this.#getNow(req);
  }

  /** The next `max` buffered entries, counted as outstanding on their partitions. */
  #take(max: number): Held[] {
    const batch = this.#buffer.splice(0, max);
    for (const h of batch) (this.#parts[h.partition] as Part).outstanding++;
    return batch;
  }

  /** Hands buffered entries to the oldest getters, one at a time. */
  async #serve(): Promise<void> {
    if (this.#serving) return;
    this.#serving = true;
    try {
      while (this.#getters.size > 0 && this.#buffer.length > 0 && !this.#released) {
        const waiter = this.#getters.shift();
        if (waiter === undefined) break;
        const batch = this.#take(waiter.payload.max);
        let items: unknown[];
        try {
          items = await this.#out.handOut(batch);
        } catch (e) {
          waiter.reject(e);
          continue;
        }
        if (items.length > 0) {
          waiter.resolve(items);
        } else {
          // Every entry turned out to be another consumer's: wait again.
          const req = waiter.payload;
          const remaining = req.deadline === undefined ? undefined : Math.max(1, req.deadline - Date.now());
          this.#enqueue(req, remaining).then(waiter.resolve, waiter.reject);
        }
      }
    } finally {
      this.#serving = false;
    }
    if (this.#getters.size > 0 && this.#buffer.length > 0 && !this.#released) setImmediate(() => void this.#serve());
    this.#wake();
  }


  /** Acknowledges messages of this queue: one ackMany per partition; one boolean per message. */
  ackMany(messages: readonly PartitionedRedisMessage<unknown>[]): Promise<boolean[]> {
    return this.#out.ackMany(messages);
  }

  #handle(part: Part): PartitionHandle {
    part.handle ??= this.#open(part.index);
    return part.handle;
  }

  /** Starts a read of every held partition that has none running, while getters want more than is buffered. */
  #wake(): void {
    if (this.#released || this.#want - this.#buffer.length <= 0) return;
    for (const part of this.#parts) {
      if (part.owned && !part.leaving && !part.drained && part.loop === undefined) {
        part.loop = this.#readLoop(part).finally(() => {
          part.loop = undefined;
          this.#maybeRetire(part);
        });
      }
    }
  }

  async #readLoop(part: Part): Promise<void> {
    const s = this.#s;
    while (part.owned && !part.leaving && !part.drained && !this.#released && this.#want - this.#buffer.length > 0) {
      if (!this.#leases.valid(s.sliceMs + 100)) {
        await sleep(Math.min(50, s.heartbeatMs));
        continue;
      }
      const abort = new AbortController();
      part.abort = abort;
      let msgs: Array<RedisMessage<unknown>>;
      try {
        if (part.takeover) await this.#takeOver(part);
        msgs = await this.#handle(part).getManyAsync(Math.max(1, Math.min(PARTITION_READ_MAX, this.#want - this.#buffer.length)), { timeoutMs: s.sliceMs, signal: abort.signal });
      } catch (e) {
        if (abort.signal.aborted || this.#released || e instanceof QueueReleasedError) return;
        if (e instanceof QueueEmptyError) continue;
        if (e instanceof QueueClosedError) {
          part.drained = true;
          this.#closedSeen = true;
          void this.#checkFinished(true);
          return;
        }
        if (e instanceof RedisBackendError && e.code === 'ERR_REDIS_UNAVAILABLE') {
          this.#lastUnavailable = e;
        } else {
          this.#getters.rejectAll(() => e);
        }
        await sleep(100);
        continue;
      } finally {
        part.abort = undefined;
      }
      if (!part.owned) {
        // The lease was lost while the read was in flight: give the entries back.
        await Promise.all(msgs.map((m) => m.nack().catch(() => false)));
        return;
      }
      for (const msg of msgs) this.#buffer.push({ partition: part.index, msg, retryAck: false });
      void this.#serve();
    }
  }

  /** Applies what a heartbeat found: partitions lost, taken, and above the share. */
  #onBeat(view: LeaseView): void {
    if (this.#released) return;
    this.#lastUnavailable = undefined;
    const owned = new Set(view.owned);
    for (const part of this.#parts) {
      if (part.owned && !part.leaving && !owned.has(part.index)) {
        this.#setOwned(part, false, 'lost');
        this.#counts.lost++;
        part.abort?.abort();
        void this.#giveBack(part);
      }
    }
    for (const p of view.owned) {
      const part = this.#parts[p] as Part;
      if (!part.owned && !part.leaving) {
        part.drained = false;
        part.takeover = true;
        this.#setOwned(part, true, 'acquired');
        this.#counts.acquired++;
      }
    }
    const reading = view.owned.filter((p) => !(this.#parts[p] as Part).leaving);
    for (const p of reading.slice(view.share)) void this.#drop(this.#parts[p] as Part);
    this.#wake();
    if (this.#getters.size > 0 && (this.#closedSeen || reading.length === 0)) void this.#checkFinished(false);
  }

  #onLeaseError(e: unknown): void {
    if (e instanceof RedisBackendError && e.code === 'ERR_REDIS_UNAVAILABLE') {
      this.#lastUnavailable = e;
    } else if ((e as { code?: unknown }).code === 'ERR_PARTITIONS_MISMATCH') {
      this.#fatal = e;
      this.#getters.rejectAll(() => e);
    }
  }

  /** Gives back a partition above the share: stop reading it, nack what was buffered from it, delete its lease. */
  async #drop(part: Part): Promise<void> {
    part.leaving = true;
    try {
      part.abort?.abort();
      await part.loop;
      this.#setOwned(part, false, 'released');
      await this.#giveBack(part);
      this.#counts.released++;
      await this.#settledOrTimeout(part);
      if (!this.#released) await this.#leases.beat([part.index]).catch(() => undefined);
    } finally {
      part.leaving = false;
      this.#maybeRetire(part);
    }
  }

  /**
   * Claims the entries departed consumers left pending in a partition just taken; both read
   * paths await it before their first read of the partition (a run concurrent with another
   * claims nothing: the first one's entries are already this consumer's and in its buffer first).
   * Failed: tried again before the next read. The live members are those of the latest heartbeat.
   */
  async #takeOver(part: Part): Promise<void> {
    const live = this.#leases.last?.live;
    if (live === undefined) return; // (cannot happen: a partition is owned only after a heartbeat)
    const r = await this.#handle(part).takeOverDeparted(live);
    part.takeover = false;
    this.#counts.takenOver += r.taken;
    this.#counts.takeoverDeadLettered += r.deadLettered;
  }

  /**
   * A partition being given back: waits until nothing handed out from it awaits a settle, so its
   * next holder cannot hand out newer entries of a key while older ones are processed here —
   * at most claimIdleMs (then those entries are reclaimable anyway), cut short by release().
   */
  async #settledOrTimeout(part: Part): Promise<void> {
    if (part.outstanding === 0 || this.#released) return;
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      part.onIdle = resolve;
      timer = setTimeout(resolve, this.#s.claimIdleMs);
    });
    clearTimeout(timer);
    part.onIdle = undefined;
  }

  /** Nacks the buffered entries of a partition this consumer stops reading. */
  async #giveBack(part: Part): Promise<void> {
    const mine = this.#buffer.filter((h) => h.partition === part.index);
    if (mine.length === 0) return;
    this.#buffer = this.#buffer.filter((h) => h.partition !== part.index);
    await Promise.all(mine.map((h) => h.msg.nack().catch(() => false)));
  }

  /** Releases a partition's RedisQueue once it is not read and nothing from it awaits a settle. */
  #maybeRetire(part: Part): void {
    if (part.outstanding === 0) part.onIdle?.();
    if (part.owned || part.leaving || part.loop !== undefined || part.outstanding > 0 || part.handle === undefined) return;
    if (this.#buffer.some((h) => h.partition === part.index)) return;
    const h = part.handle;
    part.handle = undefined;
    void h.release();
  }

  /**
   * After a close: gets finish (QueueClosedError) once every partition this consumer reads is
   * drained and every partition of the queue is closed with nothing left to deliver.
   */
  #checkFinished(force: boolean): Promise<void> {
    if (this.#finished || this.#released) return Promise.resolve();
    if (this.#parts.some((p) => p.owned && !p.drained)) return Promise.resolve();
    if (!force && Date.now() - this.#lastCheck < this.#s.sliceMs) return Promise.resolve();
    this.#checking ??= (async () => {
      try {
        this.#lastCheck = Date.now();
        if (await this.#allDrained()) {
          this.#finished = true;
          this.#getters.rejectAll(() => new QueueClosedError('the queue is closed and drained'));
        }
      } catch {
        /* Redis unreachable: checked again at the next heartbeat */
      } finally {
        this.#checking = undefined;
      }
    })();
    return this.#checking;
  }

  /**
   * Leaves the group: waiting gets reject QueueReleasedError, reads stop, buffered entries are
   * nacked, the leases are deleted (the others take the partitions at their next heartbeat), and
   * the partitions' RedisQueues are released. Messages handed out and not settled stay pending
   * for this consumer, which is no longer a member: each partition's next holder claims them on
   * taking it (redelivered first, `deliveries` + 1).
   */
  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    this.#getters.rejectAll(() => new QueueReleasedError('this PartitionedRedisQueue was released while the get waited'));
    for (const p of this.#parts) {
      p.abort?.abort();
      p.onIdle?.(); // a drop waiting for its messages' settles gives its lease back below
    }
    await Promise.all(this.#parts.map((p) => p.loop));
    const held = this.#buffer.splice(0);
    await Promise.all(held.map((h) => h.msg.nack().catch(() => false)));
    const owned = this.#ownedNow();
    for (const p of owned) this.#setOwned(this.#parts[p] as Part, false, 'released');
    await this.#leases.leave([...owned, ...this.#parts.filter((p) => p.leaving).map((p) => p.index)]);
    await Promise.all(this.#parts.map((p) => p.handle?.release()));
  }
}
