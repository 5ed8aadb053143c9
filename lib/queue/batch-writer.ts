/**
 * The write side of a SageQueue batch, handed to the ring with as few native calls as it allows:
 * - the gather path (codecs with encodeAt: `records`, `msgpack`): each message is encoded where
 *   the codec's own output buffer has room, and the ring copies it from there (one native call
 *   per run of messages in the same buffer): no Buffer and no copy per message in JavaScript;
 * - otherwise encoded messages are staged back to back in one reused buffer, with their lengths.
 */
import { MessageTooLargeError } from '../errors';
import { NativeStatus } from '../native';
import { interruptPending, interruptSignals, noteInterrupted } from '../native/signals';
import type { NativeQueue } from '../native';
import type { Codec, EncodedAt } from './codecs';
import { BATCH_MAX } from './slab-reader';

const STAGING_BYTES = 64 * 1024;

export interface StagedResult {
  /** How many of the batch's messages went in, in order. */
  sent: number;
  /** 0 when all went in (or, not waiting, what fit); NativeStatus.Full when a blocking write timed
   * out; another status when the ring refused the write. */
  status: number;
}

const NO_BYTES = new Uint8Array(0);

/** Where the gather path's messages lie: message i is buffers[i][starts[i] .. + lengths[i]). */
class Gathered {
  readonly buffers = new Array<Uint8Array>(BATCH_MAX).fill(NO_BYTES);
  readonly starts = new Uint32Array(BATCH_MAX);
  readonly lengths = new Uint32Array(BATCH_MAX);
  readonly at: EncodedAt = { buffer: NO_BYTES, start: 0, length: 0 };
  /** Set while a batch is encoded or written: a putMany that an item's encoding runs on the same
   * handle (a getter, toJSON) takes the staging path instead. */
  busy = false;
}

export class BatchWriter {
  #staging: Buffer = Buffer.allocUnsafeSlow(STAGING_BYTES);
  readonly #lengths = new Uint32Array(BATCH_MAX);
  #gathered: Gathered | null = null;

  /**
   * Encodes items[from, from + count) (count ≤ BATCH_MAX) and writes them as put() does. An item
   * that cannot be encoded (or is over maxMessageSize) throws before anything of this batch is
   * written: encoding runs user code that may itself write through the same handle.
   */
  encodeAndPut(q: NativeQueue, codec: Codec, maxMessageSize: number, items: readonly unknown[], from: number, count: number, wait: boolean, timeout: number | undefined): StagedResult {
    const encodeAt = codec.encodeAt;
    const g = (this.#gathered ??= new Gathered());
    if (encodeAt === undefined || g.busy) {
      const encoded = new Array<Uint8Array>(count);
      for (let i = 0; i < count; i++) {
        const bytes = codec.encode(items[from + i]);
        if (bytes.length > maxMessageSize) throw new MessageTooLargeError(bytes.length, maxMessageSize);
        encoded[i] = bytes;
      }
      return this.put(q, encoded, wait, timeout);
    }
    g.busy = true;
    try {
      const { at, buffers, starts, lengths } = g;
      for (let i = 0; i < count; i++) {
        encodeAt.call(codec, items[from + i], at);
        if (at.length > maxMessageSize) throw new MessageTooLargeError(at.length, maxMessageSize);
        buffers[i] = at.buffer;
        starts[i] = at.start;
        lengths[i] = at.length;
      }
      return this.#putGathered(q, g, count, wait, timeout);
    } finally {
      g.buffers.fill(NO_BYTES, 0, count); // keep no codec buffer alive
      g.at.buffer = NO_BYTES;
      g.busy = false;
    }
  }

  /** Writes the gathered messages, one native call per run of messages in the same buffer. */
  #putGathered(q: NativeQueue, g: Gathered, count: number, wait: boolean, timeout: number | undefined): StagedResult {
    const { buffers, starts, lengths } = g;
    let deadline = -1; // a blocking write's timeout covers the whole batch, not each run
    let sent = 0;
    while (sent < count) {
      const buffer = buffers[sent] as Uint8Array;
      let end = sent + 1;
      while (end < count && buffers[end] === buffer) end++;
      let n = q.tryPutBatch(buffer, lengths, end - sent, starts, sent);
      if (n === 0 && wait && timeout !== 0) {
        let left = -1;
        if (timeout !== undefined) {
          if (deadline < 0) deadline = performance.now() + timeout;
          left = Math.max(0, Math.ceil(deadline - performance.now()));
        }
        n = left === 0 ? -NativeStatus.Full : this.#blocking(q, buffer, lengths, end - sent, left, starts, sent);
      }
      // (After a timeout decided here, lastWritten() is the tryPutBatch's just before: 0.)
      if (n < 0) return { sent: sent + q.lastWritten(), status: -n };
      if (n === 0) return { sent, status: 0 }; // full, not waiting
      sent += n;
    }
    return { sent, status: 0 };
  }

  /** Blocking write of one message (the sync put's slow path); returns the native result. */
  putOneBlocking(q: NativeQueue, bytes: Uint8Array, timeoutMs: number): number {
    this.#lengths[0] = bytes.length;
    return this.#blocking(q, bytes, this.#lengths, 1, timeoutMs);
  }

  /**
   * Writes up to BATCH_MAX encoded messages: all of them when `wait` (up to `timeout`, undefined =
   * forever); otherwise what fits now. Call only after every message is encoded: encoding runs
   * user code that may itself write through the same handle, and the staging buffer is shared.
   */
  put(q: NativeQueue, encoded: readonly Uint8Array[], wait: boolean, timeout: number | undefined): StagedResult {
    const count = encoded.length;
    let total = 0;
    for (let i = 0; i < count; i++) total += (this.#lengths[i] = (encoded[i] as Uint8Array).length);
    if (this.#staging.length < total) this.#staging = Buffer.allocUnsafeSlow(Math.max(total, this.#staging.length * 2));
    let at = 0;
    for (let i = 0; i < count; i++) {
      this.#staging.set(encoded[i] as Uint8Array, at);
      at += (encoded[i] as Uint8Array).length;
    }
    let sent = 0;
    let offset = 0;
    while (sent < count) {
      const data = offset === 0 ? this.#staging : this.#staging.subarray(offset);
      const lens = sent === 0 ? this.#lengths : this.#lengths.subarray(sent);
      let n = q.tryPutBatch(data, lens, count - sent);
      if (n === 0 && wait && timeout !== 0) n = this.#blocking(q, data, lens, count - sent, timeout ?? -1);
      if (n < 0) return { sent: sent + q.lastWritten(), status: -n };
      if (n === 0) return { sent, status: 0 }; // full, not waiting
      for (let i = 0; i < n; i++) offset += this.#lengths[sent + i] as number;
      sent += n;
    }
    return { sent, status: 0 };
  }

  /** putBlocking, interruptible by the signals JS listens for (see ../native/signals.ts). */
  #blocking(q: NativeQueue, data: Uint8Array, lens: Uint32Array, count: number, timeoutMs: number, starts?: Uint32Array, first?: number): number {
    // (Callers read lastWritten() after an error: the tryPutBatch just before wrote nothing.)
    if (interruptPending()) return -NativeStatus.Interrupted;
    const n = starts === undefined ? q.putBlocking(data, lens, count, timeoutMs, interruptSignals()) : q.putBlocking(data, lens, count, timeoutMs, interruptSignals(), starts, first);
    if (n === -NativeStatus.Interrupted) noteInterrupted();
    return n;
  }
}
