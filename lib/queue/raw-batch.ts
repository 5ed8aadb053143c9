/**
 * Zero-allocation batch consumption: one reused buffer receives a batch of records back to back,
 * and the consumer reads them through offsets and lengths, so taking a batch allocates nothing
 * per message (and nothing per call once the buffer has grown to the batch size it sees).
 */
import { NativeStatus } from '../native';
import type { NativeQueue } from '../native';
import { interruptPending, interruptSignals, noteInterrupted } from '../native/signals';
import { BATCH_MAX, NO_WAIT } from './slab-reader';
import type { TakenStash } from './taken-stash';

const INITIAL_BYTES = 256 * 1024;

/**
 * A batch of raw records, valid until the next getRawBatch call on the same handle (which
 * reuses `buffer`, `offsets` and `lengths`). Record i is
 * `buffer.subarray(offsets[i], offsets[i] + lengths[i])` — or read it in place without a view.
 * Records are the codec's bytes: decode them with the queue's codec if it is not `raw`.
 */
export interface RawBatch {
  /** Records in this batch (0 when a non-blocking call found none). */
  readonly count: number;
  readonly buffer: Buffer;
  /** offsets[i] is where record i starts in `buffer` (entries past `count` are stale). */
  readonly offsets: Uint32Array;
  /** lengths[i] is record i's length in bytes (entries past `count` are stale). */
  readonly lengths: Uint32Array;
}

export class RawBatchReader implements RawBatch {
  count = 0;
  buffer: Buffer = Buffer.allocUnsafeSlow(INITIAL_BYTES);
  readonly offsets = new Uint32Array(BATCH_MAX);
  readonly lengths = new Uint32Array(BATCH_MAX);
  /** Why the last take returned nothing (NativeStatus.Empty, or an error status). */
  lastStatus = 0;

  /** Fills the batch with up to `max` records; timeoutMs: NO_WAIT, -1 = forever, or ms. Returns the count. */
  takeBatch(q: NativeQueue, max: number, timeoutMs: number): number {
    for (;;) {
      if (timeoutMs !== NO_WAIT && interruptPending()) {
        this.count = 0;
        this.lastStatus = NativeStatus.Interrupted;
        return 0;
      }
      const n =
        timeoutMs === NO_WAIT
          ? q.tryGetBatch(this.buffer, 0, this.lengths, max)
          : q.getBlocking(this.buffer, 0, this.lengths, max, timeoutMs, interruptSignals());
      if (n === -NativeStatus.BufferTooSmall) {
        // Not even the first record fits: grow (the old buffer is garbage now: nobody holds views
        // past the next call, by contract).
        this.buffer = Buffer.allocUnsafeSlow(Math.max(q.needed(), this.buffer.length * 2));
        continue;
      }
      if (n <= 0) {
        this.count = 0;
        this.lastStatus = n === 0 ? NativeStatus.Empty : -n;
        if (n === -NativeStatus.Interrupted) noteInterrupted();
        return 0;
      }
      let at = 0;
      for (let i = 0; i < n; i++) {
        this.offsets[i] = at;
        at += this.lengths[i] as number;
      }
      this.count = n;
      return n;
    }
  }

  /** Fills the batch with up to `max` messages from `stash` (taken earlier by this handle). */
  copyFrom(stash: TakenStash, max: number): number {
    let n = 0;
    let at = 0;
    for (let raw = n < max ? stash.shift() : undefined; raw !== undefined; raw = n < max ? stash.shift() : undefined) {
      if (this.buffer.length - at < raw.length) {
        const grown = Buffer.allocUnsafeSlow(Math.max(this.buffer.length * 2, at + raw.length));
        this.buffer.copy(grown, 0, 0, at);
        this.buffer = grown;
      }
      raw.copy(this.buffer, at);
      this.offsets[n] = at;
      this.lengths[n] = raw.length;
      at += raw.length;
      n++;
    }
    this.count = n;
    return n;
  }
}
