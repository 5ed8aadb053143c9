/**
 * The consumer side of a RedisQueue handle: gets wait in a FIFO of getters; one pump at a time
 * fills a read-ahead buffer (reclaiming idle entries from other consumers first when due, then
 * non-blocking reads that also watch the close marker, then XREADGROUP BLOCK in slices) and
 * hands entries to the oldest getters. Entries are decoded (undecodable ones are dead-lettered
 * and fail the get with SerializationError) and, in auto-ack mode, acknowledged before they are
 * handed out; in explicit mode they are handed out as RedisMessage.
 *
 * `takeOver` (PartitionedRedisQueue only) puts entries claimed from departed consumers at the
 * front of the buffer.
 *
 * A get whose timeout passes while Redis cannot be reached rejects RedisBackendError
 * ERR_REDIS_UNAVAILABLE, not QueueEmptyError.
 */
import { WaiterList } from '../queue/async-waiters';
import { QueueClosedError, QueueEmptyError, SerializationError } from '../errors';
import { RedisBackendError } from './connection';
import type { QueueBackend } from './queue-backend';
import { decodeEntry } from './queue-entries';
import type { RawEntry } from './queue-entries';
import { makeMessage } from './queue-messages';
import { parseWaitOptions } from '../queue/skeleton';
import type { WaitOptions as Wait } from '../queue/skeleton';
import { compareStreamIds, parseReadReply, parseReclaimReply, parseTakeoverReply } from './queue-scripts';

/** ioredis has it at run time (every command has a Buffer-reply twin); its typings lack it. */
interface XReadGroupBuffer {
  xreadgroupBuffer(...args: Array<string | number>): Promise<unknown>;
}

const ASCII: readonly string[] = Array.from({ length: 128 }, (_, i) => String.fromCharCode(i));

/** The entries of an XREADGROUP reply (Buffer replies; deleted entries, listed without fields, skipped). */
function entriesOf(reply: unknown, now: number): RawEntry[] {
  const entries: RawEntry[] = [];
  if (reply === null || reply === undefined) return entries;
  for (const [, list] of reply as Array<[Buffer, Array<[Buffer, Buffer[] | null]>]>) {
    for (const [id, fields] of list) {
      if (!Array.isArray(fields) || fields.length < 2) continue;
      const f = fields[0] as Buffer;
      // Ids are ASCII; a one-letter field (every RedisQueue entry's) comes from a table, not a decode.
      const field = f.length === 1 ? ASCII[f[0] as number] ?? f.toString() : f.toString();
      entries.push({ id: id.toString('latin1'), deliveries: 1, field, value: fields[1] as Buffer, readAt: now });
    }
  }
  return entries;
}

/** Most entries one get (or one read) takes. */
export const READ_MAX = 1000;

interface GetRequest {
  max: number;
  deadline: number | undefined;
  signal: AbortSignal | undefined;
}

export class QueueConsumer {
  readonly #b: QueueBackend;
  readonly #getters = new WaiterList<unknown[], GetRequest>();
  #want = 0;
  #buffer: RawEntry[] = [];
  #pumping = false;
  #claimCursor = '0-0';
  #nextClaimAt = 0;
  #closedCheckedAt = 0;
  #unconfirmed: { seq: number; entries: RawEntry[] } | undefined;
  #confirming: Promise<void> | undefined;
  /** The last read filled its count: more entries are likely waiting (read again without blocking). */
  #more = false;
  /** A non-blocking read issued while the previous batch is settled and handed out (read-ahead). */
  #ahead: Promise<void> | undefined;
  /** Auto ack: a read failed after it may have been applied; re-read this consumer's pending entries. */
  #recover = false;

  constructor(backend: QueueBackend) {
    this.#b = backend;
  }

  /** A nack makes an entry reclaimable at once: reclaim on the next pass. */
  readonly #onNack = (): void => {
    this.#nextClaimAt = 0;
    if (this.#getters.size > 0) void this.pump();
  };

  /** release(): waits for a read-ahead in flight, so what it read is in the buffer. */
  async quiesce(): Promise<void> {
    await this.#ahead;
  }

  /** release(): the ids read ahead and not handed out (given back by the caller); the buffer is emptied. */
  takeBuffered(): string[] {
    const ids = this.#buffer.map((e) => e.id);
    this.#buffer = [];
    return ids;
  }

  /** release(): every waiting get rejects. */
  rejectAll(makeError: () => Error): void {
    this.#getters.rejectAll(makeError);
  }

  /** getAsync / getManyAsync: up to `max` entries, at least one. */
  get(max: number, options: unknown, what: string): Promise<unknown[]> {
    let wait: Wait;
    try {
      wait = parseWaitOptions(options);
      if (wait.signal?.aborted) throw wait.signal.reason;
      this.#b.checkNotReleased();
    } catch (e) {
      return Promise.reject(e);
    }
    if (wait.timeoutMs === 0) return this.#getNow(max, what);
    const deadline = wait.timeoutMs === undefined ? undefined : Date.now() + wait.timeoutMs;
    return this.#enqueueGetter({ max, deadline, signal: wait.signal }, what, wait.timeoutMs);
  }

  #enqueueGetter(req: GetRequest, what: string, timeoutMs: number | undefined): Promise<unknown[]> {
    this.#want += req.max;
    const p = this.#getters.wait(req, {
      timeoutMs,
      signal: req.signal,
      // A get that could not reach Redis during its wait reports that, not an empty queue.
      onTimeout: () => this.#b.unreachable(what) ?? new QueueEmptyError(`${what} timed out after ${timeoutMs} ms: the queue is still empty`, true),
    });
    const done = (): void => {
      this.#want -= req.max;
    };
    p.then(done, done);
    void this.pump();
    return p;
  }

  /** timeoutMs 0: one non-blocking attempt (buffer, reclaim when due, read). */
  async #getNow(max: number, what: string): Promise<unknown[]> {
    await this.#ahead;
    await this.#confirmAck();
    if (this.#buffer.length === 0) {
      if (Date.now() >= this.#nextClaimAt || this.#b.closed) await this.#reclaim(max);
      if (this.#buffer.length === 0) {
        const closed = await this.#readNow(max);
        if (this.#buffer.length === 0) {
          if (closed || this.#b.closedLocal) throw new QueueClosedError('the queue is closed and drained');
          throw new QueueEmptyError(`${what} timed out after 0 ms: the queue is empty`, true);
        }
      }
    }
    const batch = this.#buffer.splice(0, max);
    const out = await this.#prepare(batch);
    if (out.failure !== undefined) throw out.failure;
    if (out.items.length === 0) return this.#getNow(max, what);
    return out.items;
  }

  /** Reads for waiting getters, one loop at a time. */
  async pump(): Promise<void> {
    if (this.#pumping) return;
    this.#pumping = true;
    const s = this.#b.settings;
    try {
      while (this.#getters.size > 0 && !this.#b.released) {
        await this.#ahead;
        await this.#confirmAck();
        if (this.#recover) await this.#recoverPending();
        this.#dropStale();
        const want = Math.max(1, Math.min(READ_MAX, this.#want));
        if (this.#buffer.length > 0) {
          // Auto ack, the last read was full and this batch empties the buffer: read the next
          // one while this one is acked and handed out — one pipelined write for both. (Not in
          // explicit mode: there is no ack to overlap, and an entry read ahead by a consumer that
          // then crashes waits claimIdleMs before another consumer gets it. Nor for one entry at
          // a time: a full read of 1 says nothing of a backlog, and the extra read costs latency.)
          if (this.#more && want > 1 && this.#b.settings.ackMode === 'auto' && this.#buffer.length <= this.#want && !this.#b.closed) this.#readAhead(want);
          await this.#serve();
          continue;
        }
        const closing = this.#b.closed;
        if (closing || Date.now() >= this.#nextClaimAt) {
          if ((await this.#reclaim(want)) > 0) continue;
        }
        // A non-blocking read that also checks the close marker: done when closing, and
        // otherwise at most once per block slice (a blocking read returns at once when entries
        // are there).
        if (closing || Date.now() - this.#closedCheckedAt >= s.sliceMs) {
          const closed = await this.#readNow(want);
          if (this.#buffer.length > 0) continue;
          if (closed || this.#b.closedLocal) {
            this.#getters.rejectAll(() => new QueueClosedError('the queue is closed and drained'));
            break;
          }
        }
        const slice = Math.max(1, Math.min(s.sliceMs, this.#nextClaimAt - Date.now()));
        if (!(await this.#read(want, slice))) this.#closedCheckedAt = 0; // empty: check the marker next
      }
    } catch (e) {
      if (!this.#b.released) this.#getters.rejectAll(() => e);
    } finally {
      this.#pumping = false;
      if (this.#getters.size > 0 && !this.#b.released) setImmediate(() => void this.pump());
    }
  }

  /**
   * Repeats an auto-mode ack whose outcome was not known (same sequence number); the entries it
   * acknowledged for this consumer go to the front of the buffer, marked acked.
   */
  #confirmAck(): Promise<void> {
    const u = this.#unconfirmed;
    if (u === undefined) return Promise.resolve();
    this.#confirming ??= (async () => {
      try {
        const flags = await this.#b.settle('ack', u.entries.map((e) => e.id), '', u.seq);
        this.#unconfirmed = undefined;
        const mine = u.entries.filter((_, i) => flags[i] === '1');
        for (const e of mine) e.acked = true;
        this.#buffer = [...mine, ...this.#buffer];
      } finally {
        this.#confirming = undefined;
      }
    })();
    return this.#confirming;
  }

  /** Buffered entries read long ago may have been reclaimed by another consumer: drop them (never acked ones). */
  #dropStale(): void {
    if (this.#buffer.length === 0) return;
    const limit = Date.now() - this.#b.settings.claimIdleMs / 2;
    if ((this.#buffer[0] as RawEntry).readAt >= limit) return;
    this.#buffer = this.#buffer.filter((e) => e.acked === true || e.readAt >= limit);
  }

  #addToBuffer(entries: RawEntry[]): void {
    if (entries.length === 0) return;
    if (this.#buffer.length === 0) {
      this.#buffer = entries;
      return;
    }
    const have = new Set(this.#buffer.map((e) => e.id));
    for (const e of entries) if (!have.has(e.id)) this.#buffer.push(e);
  }

  /**
   * A non-blocking read in the background; a failure is left to the next read to meet again (an
   * entry whose reply was lost is reclaimed after claimIdleMs, as for any read).
   */
  #readAhead(count: number): void {
    this.#ahead = this.#read(count).then(
      () => {
        this.#ahead = undefined;
      },
      () => {
        this.#ahead = undefined;
        this.#more = false;
        this.#recover = true;
      },
    );
  }

  /**
   * Auto ack: entries a failed read may have delivered to this consumer (pending for it, never
   * seen here) are read again from its own pending list, rather than waiting claimIdleMs to be
   * reclaimed. One being acked meanwhile is harmless: the ack hands out only entries it removed.
   */
  async #recoverPending(): Promise<void> {
    this.#recover = false;
    const s = this.#b.settings;
    const reply = await this.#b.call('cmd', 'XREADGROUP', (c) => (c as unknown as XReadGroupBuffer).xreadgroupBuffer('GROUP', s.group, s.consumer, 'COUNT', READ_MAX, 'STREAMS', s.stream, '0'));
    this.#addToBuffer(entriesOf(reply, Date.now()));
  }

  /** Non-blocking read of new entries into the buffer; returns the closed flag. */
  async #readNow(count: number): Promise<boolean> {
    const s = this.#b.settings;
    const reply = await this.#b.script<unknown>('sageqRead', [s.stream, s.closedKey], [s.group, s.consumer, count]);
    const { closed, entries } = parseReadReply(reply, Date.now());
    this.#more = entries.length >= count;
    if (closed) this.#b.closedSeen = true;
    this.#closedCheckedAt = Date.now();
    this.#b.groupReady = true;
    this.#addToBuffer(entries);
    return closed;
  }

  /**
   * XREADGROUP of new entries into the buffer; returns whether it got any. With `blockMs`: BLOCK
   * on the blocking connection (never abandoned: a late reply still lands in the buffer);
   * without: a plain read on the command connection (pipelined with whatever else goes there).
   */
  async #read(count: number, blockMs?: number): Promise<boolean> {
    await this.#b.ensureGroup();
    const s = this.#b.settings;
    const blocking = blockMs !== undefined;
    if (blocking) this.#b.blockingRead = true;
    let reply: unknown;
    try {
      reply = blocking
        ? await this.#b.call(
            'blk',
            'XREADGROUP',
            (c) => c.callBuffer('XREADGROUP', 'GROUP', s.group, s.consumer, 'COUNT', count, 'BLOCK', blockMs, 'STREAMS', s.stream, '>'),
            blockMs + s.commandTimeoutMs,
          )
        : // (not callBuffer: under auto-pipelining ioredis would drop its command name)
          await this.#b.call('cmd', 'XREADGROUP', (c) => (c as unknown as XReadGroupBuffer).xreadgroupBuffer('GROUP', s.group, s.consumer, 'COUNT', count, 'STREAMS', s.stream, '>'));
    } catch (e) {
      if (e instanceof RedisBackendError && /NOGROUP/.test(e.message)) {
        this.#b.groupReady = false;
        this.#more = false;
        return false;
      }
      if (blocking && e instanceof RedisBackendError && e.code === 'ERR_REDIS_TIMEOUT') {
        // A read that outlived its BLOCK by commandTimeoutMs: the connection is likely dead.
        this.#b.resetBlocking();
        if (this.#b.settings.ackMode === 'auto') this.#recover = true;
        return false;
      }
      throw e;
    } finally {
      if (blocking) this.#b.blockingRead = false;
    }
    if (reply === null || reply === undefined) {
      this.#more = false;
      return false;
    }
    const entries = entriesOf(reply, Date.now());
    this.#more = entries.length >= count;
    this.#addToBuffer(entries);
    return entries.length > 0;
  }

  /** Reclaims idle entries into the buffer; returns how many. */
  async #reclaim(count: number): Promise<number> {
    const s = this.#b.settings;
    this.#nextClaimAt = Date.now() + Math.max(20, Math.min(s.claimIdleMs / 2, 5000));
    const reply = await this.#b.script<unknown>(
      'sageqReclaim',
      [s.stream, s.deadLetterStream],
      [s.group, s.consumer, s.claimIdleMs, this.#claimCursor, Math.max(count, 10), s.maxDeliveries, s.deadMaxLen, Date.now()],
    );
    const { cursor, entries } = parseReclaimReply(reply, Date.now());
    this.#claimCursor = cursor;
    if (this.#claimCursor !== '0-0') this.#nextClaimAt = 0; // more to scan
    this.#addToBuffer(entries);
    return entries.length;
  }

  /**
   * PartitionedRedisQueue, on taking a partition: claims every entry pending for a consumer of the
   * group that is neither this one nor in `live` (sageqTakeover, `count` per call until done) and
   * puts them at the front of the buffer in stream order, so they are handed out before any newer
   * entry. Returns how many were claimed and how many dead-lettered (over maxDeliveries).
   */
  async takeOver(live: readonly string[], count = 200): Promise<{ taken: number; deadLettered: number }> {
    const s = this.#b.settings;
    const taken: RawEntry[] = [];
    let deadLettered = 0;
    for (;;) {
      const reply = await this.#b.script<unknown>(
        'sageqTakeover',
        [s.stream, s.deadLetterStream],
        [s.group, s.consumer, count, s.maxDeliveries, s.deadMaxLen, Date.now(), ...live],
      );
      const r = parseTakeoverReply(reply, Date.now());
      taken.push(...r.entries);
      deadLettered += r.deadLettered;
      if (!r.more) break;
    }
    if (taken.length > 0) {
      taken.sort((a, b) => compareStreamIds(a.id, b.id));
      const ids = new Set(taken.map((e) => e.id));
      this.#buffer = [...taken, ...this.#buffer.filter((e) => !ids.has(e.id))];
    }
    return { taken: taken.length, deadLettered };
  }

  /** Hands buffered entries to the oldest getters (one settle call for all of them in auto mode). */
  async #serve(): Promise<void> {
    const assigned: Array<{ waiter: { payload: GetRequest; resolve(v: unknown[]): void; reject(e: unknown): void }; batch: RawEntry[] }> = [];
    while (this.#buffer.length > 0) {
      const waiter = this.#getters.shift();
      if (waiter === undefined) break;
      assigned.push({ waiter, batch: this.#buffer.splice(0, waiter.payload.max) });
    }
    if (assigned.length === 0) return;
    const all = assigned.flatMap((a) => a.batch);
    let prepared: { items: unknown[]; failure?: unknown; owners?: number[] };
    try {
      prepared = await this.#prepare(all, assigned.map((a) => a.batch.length));
    } catch (e) {
      for (const a of assigned) a.waiter.reject(e);
      return;
    }
    let at = 0;
    for (const a of assigned) {
      const mine = (prepared.owners as number[])[assigned.indexOf(a)] as number;
      const items = prepared.items.slice(at, at + mine);
      at += mine;
      if (prepared.failure !== undefined && a === assigned[0]) {
        a.waiter.reject(prepared.failure);
        continue;
      }
      if (items.length > 0) {
        a.waiter.resolve(items);
      } else {
        // Every entry of this getter turned out to be another consumer's: wait again.
        const req = a.waiter.payload;
        const remaining = req.deadline === undefined ? undefined : Math.max(1, req.deadline - Date.now());
        this.#enqueueGetter(req, 'getAsync', remaining).then(a.waiter.resolve, a.waiter.reject);
      }
    }
  }

  /**
   * Decodes entries (undecodable ones go to the dead-letter stream and fail the request); in
   * auto mode acknowledges the rest and keeps only those this consumer still owned. `sizes`
   * splits the entries between getters; `owners[i]` is how many items getter i receives.
   */
  async #prepare(entries: RawEntry[], sizes: number[] = [entries.length]): Promise<{ items: unknown[]; failure?: unknown; owners: number[] }> {
    const decoded: Array<{ entry: RawEntry; value: unknown; group: number }> = [];
    const bad: Array<{ entry: RawEntry; error: SerializationError }> = [];
    let group = 0;
    let left = sizes[0] ?? 0;
    for (const entry of entries) {
      while (left === 0 && group < sizes.length - 1) left = sizes[++group] as number;
      left--;
      try {
        decoded.push({ entry, value: decodeEntry(entry), group });
      } catch (e) {
        bad.push({ entry, error: e as SerializationError });
      }
    }
    let failure: unknown;
    if (bad.length > 0) {
      const reason = `cannot decode: ${(bad[0] as { error: Error }).error.message}`;
      await this.#b.settle('dead', bad.map((b) => b.entry.id), reason);
      failure = Object.assign((bad[0] as { error: Error }).error, { deadLetterIds: bad.map((b) => b.entry.id) });
      // The good entries of a failed request go back to the buffer for the next getter.
      this.#buffer = [...decoded.map((d) => d.entry), ...this.#buffer];
      return { items: [], failure, owners: sizes.map(() => 0) };
    }
    let kept = decoded;
    const toAck = decoded.filter((d) => !d.entry.acked);
    if (this.#b.settings.ackMode === 'auto' && toAck.length > 0) {
      const seq = this.#b.nextSeq();
      let flags: string;
      try {
        flags = await this.#b.settle('ack', toAck.map((d) => d.entry.id), '', seq);
      } catch (e) {
        if (e instanceof RedisBackendError && e.maybeApplied) {
          // The ack may have been applied: these entries may be ours alone now. The same call
          // (same sequence number, so Redis answers what it answered then) is repeated before
          // anything else is handed out; an entry acked at Redis is never dropped here.
          this.#unconfirmed = { seq, entries: toAck.map((d) => d.entry) };
          const waiting = new Set(toAck);
          this.#buffer = [...decoded.filter((d) => !waiting.has(d)).map((d) => d.entry), ...this.#buffer];
        } else {
          this.#buffer = [...decoded.map((d) => d.entry), ...this.#buffer];
        }
        throw e;
      }
      // The usual case: every entry acked here, none acked earlier — hand them all out as they are.
      if (toAck.length === decoded.length && !flags.includes('0')) return { items: decoded.map((d) => d.value), owners: sizes.slice() };
      const mine = new Set(toAck.filter((_, i) => flags[i] === '1'));
      kept = decoded.filter((d) => d.entry.acked || mine.has(d));
    }
    const owners = sizes.map(() => 0);
    for (const d of kept) owners[d.group] = (owners[d.group] as number) + 1;
    const items = kept.map((d) => (this.#b.settings.ackMode === 'auto' ? d.value : makeMessage(this.#b, d.entry, d.value, this.#onNack)));
    return { items, owners };
  }
}
