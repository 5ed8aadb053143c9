/**
 * The write side of a SageQueue batch: encoded messages are staged back to back in one reused
 * buffer, with their lengths, and handed to the ring with as few native calls as it allows.
 */
import { NativeStatus } from '../native';
import { interruptPending, interruptSignals, noteInterrupted } from '../native/signals';
import type { NativeQueue } from '../native';
import { BATCH_MAX } from './slab-reader';

const STAGING_BYTES = 64 * 1024;

export interface StagedResult {
  /** How many of the batch's messages went in, in order. */
  sent: number;
  /** 0 when all went in (or, not waiting, what fit); NativeStatus.Full when a blocking write timed
   * out; another status when the ring refused the write. */
  status: number;
}

export class BatchWriter {
  #staging: Buffer = Buffer.allocUnsafeSlow(STAGING_BYTES);
  readonly #lengths = new Uint32Array(BATCH_MAX);

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
  #blocking(q: NativeQueue, data: Uint8Array, lens: Uint32Array, count: number, timeoutMs: number): number {
    // (Callers read lastWritten() after an error: the tryPutBatch just before wrote nothing.)
    if (interruptPending()) return -NativeStatus.Interrupted;
    const n = q.putBlocking(data, lens, count, timeoutMs, interruptSignals());
    if (n === -NativeStatus.Interrupted) noteInterrupted();
    return n;
  }
}
