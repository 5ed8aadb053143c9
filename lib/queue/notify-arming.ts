/**
 * Which readiness reports a SageQueue handle has asked its native notifier thread for. A report
 * is armed at most once per kind while async callers wait, and disarmed when the last one leaves.
 */
import { NotifyKind } from '../native';
import type { NativeQueue } from '../native';

export class NotifyArming {
  #read = false;
  #write = false;

  /** True while a readable report is armed (the notifier thread waits for a message). */
  get reading(): boolean {
    return this.#read;
  }

  /**
   * Ask to be told when a message arrives (no-op when already asked). spin=false: the notifier
   * sleeps at once (the caller spun already). A null handle (released) is a no-op here and below.
   */
  armRead(q: NativeQueue | null, spin = true): void {
    if (this.#read || q === null) return;
    this.#read = true;
    q.armReadable(spin);
  }

  /** Ask to be told when `bytes` fit (re-armed with the current first putter's size). */
  armWrite(q: NativeQueue | null, bytes: number): void {
    if (q === null) return;
    this.#write = true;
    q.armWritable(bytes);
  }

  /** Nobody waits for `kind` any more: cancel the report. */
  disarm(q: NativeQueue | null, kind: NotifyKind): void {
    if (q === null) return;
    if (kind === NotifyKind.Readable) {
      if (!this.#read) return;
      this.#read = false;
    } else {
      if (!this.#write) return;
      this.#write = false;
    }
    q.disarm(kind, true);
  }

  /** The report for `kind` arrived (it fires once): forget it. */
  fired(q: NativeQueue, kind: NotifyKind): void {
    if (kind === NotifyKind.Readable) this.#read = false;
    else this.#write = false;
    q.disarm(kind, false);
  }

  /** The handle was released: nothing is armed any more. */
  reset(): void {
    this.#read = this.#write = false;
  }
}
