/**
 * Where a SageQueue's reads land: a JS-owned slab that native code fills, handed out one view per
 * message (creating a Buffer per message in native code would cost ~1 us each). Views handed out
 * stay valid: the slab is never written again below the current offset; a full slab is replaced.
 */
import { NativeStatus } from '../native';
import { interruptPending, interruptSignals, noteInterrupted } from '../native/signals';
import type { NativeQueue } from '../native';
import type { Codec } from './codecs';

const SLAB_BYTES = 64 * 1024;
/** Most messages one native batch call moves. */
export const BATCH_MAX = 4096;
/** Timeout meaning "do not wait" for takeBatch (-1 waits forever). */
export const NO_WAIT = -2;

export class SlabReader {
  #slab: Buffer = Buffer.allocUnsafeSlow(SLAB_BYTES);
  #off = 0;
  readonly #lengths = new Uint32Array(BATCH_MAX);
  /** Why the last take returned nothing (NativeStatus.Empty, or an error status). */
  lastStatus = 0;

  /** One message as a view of the slab, or null with lastStatus set. Never waits. */
  takeRaw(q: NativeQueue): Buffer | null {
    for (;;) {
      if (this.#slab.length - this.#off < 64) this.#newSlab(SLAB_BYTES);
      const off = this.#off;
      const n = q.tryGet(this.#slab, off);
      if (n >= 0) {
        // 8-byte alignment keeps typed arrays decoded in place aligned.
        this.#off = (off + n + 7) & ~7;
        return this.#slab.subarray(off, off + n);
      }
      if (n === -NativeStatus.BufferTooSmall) {
        this.#newSlab(q.needed());
        continue;
      }
      this.lastStatus = -n;
      return null;
    }
  }

  /** Waits (blocking this thread: the sync API) for one message; null with lastStatus set. */
  takeBlocking(q: NativeQueue, timeoutMs: number): Buffer | null {
    const n = this.takeBatch(q, 1, timeoutMs);
    if (n === 0) return null;
    const off = this.#off;
    const len = this.#lengths[0] as number;
    this.#off = (off + len + 7) & ~7;
    return this.#slab.subarray(off, off + len);
  }

  /**
   * Takes up to `max` messages into the slab (not yet handed out: call decodeBatch next);
   * returns the count, 0 with lastStatus set. timeoutMs: NO_WAIT, -1 = forever, or ms.
   */
  takeBatch(q: NativeQueue, max: number, timeoutMs: number): number {
    for (;;) {
      if (this.#slab.length - this.#off < 4096) this.#newSlab(SLAB_BYTES);
      if (timeoutMs !== NO_WAIT && interruptPending()) {
        this.lastStatus = NativeStatus.Interrupted;
        return 0;
      }
      const n =
        timeoutMs === NO_WAIT
          ? q.tryGetBatch(this.#slab, this.#off, this.#lengths, max)
          : q.getBlocking(this.#slab, this.#off, this.#lengths, max, timeoutMs, interruptSignals());
      if (n > 0) return n;
      if (n === -NativeStatus.BufferTooSmall) {
        this.#newSlab(q.needed());
        continue;
      }
      this.lastStatus = n === 0 ? NativeStatus.Empty : -n;
      if (n === -NativeStatus.Interrupted) noteInterrupted();
      return 0;
    }
  }

  /**
   * Decodes the `n` messages the last takeBatch laid back to back, and moves past them. A codec
   * with decodeAt reads each in place (no view per message).
   *
   * A message that cannot be decoded loses no other: the ones before it are returned, and it and
   * the ones after it go (as views) to `leftover`, which the handle serves first next time, so the
   * next call throws its error (that message is then consumed, as documented) and the calls after
   * it get the rest. When it is the first, its error is thrown now and the rest go to `leftover`.
   */
  decodeBatch<T>(n: number, codec: Pick<Codec, 'decode' | 'decodeAt'>, leftover: { push(raw: Buffer): void }): T[] {
    const out = new Array<T>(n);
    const slab = this.#slab;
    const lengths = this.#lengths;
    let off = this.#off;
    let i = 0;
    try {
      if (codec.decodeAt !== undefined) {
        for (; i < n; i++) {
          const len = lengths[i] as number;
          out[i] = codec.decodeAt(slab, off, len) as T;
          off += len;
        }
      } else {
        for (; i < n; i++) {
          const len = lengths[i] as number;
          out[i] = codec.decode(slab.subarray(off, off + len)) as T;
          off += len;
        }
      }
    } catch (e) {
      // Message i failed: keep it (unless it is the first: its error is thrown now) and the rest.
      let at = off;
      for (let j = i; j < n; j++) {
        const len = lengths[j] as number;
        if (j > 0 || i > 0) leftover.push(slab.subarray(at, at + len));
        at += len;
      }
      this.#off = (at + 7) & ~7;
      if (i === 0) throw e;
      out.length = i;
      return out;
    }
    this.#off = (off + 7) & ~7;
    return out;
  }

  /** Like decodeBatch, but hands the `n` messages over undecoded, as views, to `into`. */
  viewBatch(n: number, into: { push(raw: Buffer): void }): void {
    let off = this.#off;
    const slab = this.#slab;
    for (let i = 0; i < n; i++) {
      const len = this.#lengths[i] as number;
      into.push(slab.subarray(off, off + len));
      off += len;
    }
    this.#off = (off + 7) & ~7;
  }

  #newSlab(bytes: number): void {
    this.#slab = Buffer.allocUnsafeSlow(Math.max(SLAB_BYTES, bytes));
    this.#off = 0;
  }
}
