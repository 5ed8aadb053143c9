/**
 * A FIFO of promise waiters with timeout and abort, for queues whose waiting happens on the JS
 * event loop (LocalQueue; the shared-memory queue can reuse it for its JS-side waiters).
 *
 * A waiter that times out or is aborted leaves the list at once, clears its timer and removes its
 * abort listener, so it can never take a later item and never keeps the process alive.
 */

/** setTimeout treats larger delays as 1 ms, so longer waits are armed in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface WaiterOptions {
  /** Reject with `onTimeout()` after this many milliseconds (already validated); undefined = never. */
  timeoutMs?: number;
  /** Reject with `signal.reason` when aborted (at once if already aborted). */
  signal?: AbortSignal;
  /** Builds the rejection for a timeout (e.g. QueueEmptyError with timedOut=true). */
  onTimeout: () => unknown;
}

/** A waiter taken off the list by `shift()`: its timer and abort listener are already gone. */
export interface TakenWaiter<R, P> {
  /** What the waiter brought with it (e.g. the item of a waiting put). */
  readonly payload: P;
  resolve(value: R): void;
  reject(reason: unknown): void;
}

interface Waiter<R, P> extends TakenWaiter<R, P> {
  /** Leaves the list and releases the timer and the abort listener; idempotent. */
  detach(): void;
}

/**
 * Waiters in arrival order. `R` is what a waiter's promise resolves to, `P` what it carries.
 * A Set keeps insertion order and removes from the middle in O(1), which abort needs.
 */
export class WaiterList<R, P = undefined> {
  readonly #waiters = new Set<Waiter<R, P>>();
  readonly #onAbandoned: (() => void) | undefined;

  /** `onAbandoned` runs after a waiter left unserved (timed out or aborted), e.g. to disarm. */
  constructor(onAbandoned?: () => void) {
    this.#onAbandoned = onAbandoned;
  }

  /** Number of waiters still waiting. */
  get size(): number {
    return this.#waiters.size;
  }

  /** Adds a waiter at the back; the promise settles through shift()/rejectAll(), timeout or abort. */
  wait(payload: P, options: WaiterOptions): Promise<R> {
    const { timeoutMs, signal, onTimeout } = options;
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<R>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      if (timeoutMs === undefined && signal === undefined) {
        // Nothing to release on the way out: the common unbounded wait allocates no closures.
        const plain: Waiter<R, P> = { payload, resolve, reject, detach: () => this.#waiters.delete(plain) };
        this.#waiters.add(plain);
        return;
      }
      const onAbort = (): void => {
        waiter.detach();
        reject(signal?.reason);
        this.#onAbandoned?.();
      };
      const waiter: Waiter<R, P> = {
        payload,
        resolve,
        reject,
        detach: () => {
          this.#waiters.delete(waiter);
          if (timer !== undefined) clearTimeout(timer);
          timer = undefined;
          signal?.removeEventListener('abort', onAbort);
        },
      };
      const arm = (remaining: number): void => {
        if (remaining > MAX_TIMER_MS) {
          timer = setTimeout(() => arm(remaining - MAX_TIMER_MS), MAX_TIMER_MS);
        } else {
          timer = setTimeout(() => {
            timer = undefined;
            waiter.detach();
            reject(onTimeout());
            this.#onAbandoned?.();
          }, remaining);
        }
      };
      this.#waiters.add(waiter);
      if (timeoutMs !== undefined) arm(timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** The oldest waiter's payload, left in place (a put that still does not fit stays first). */
  peek(): P | undefined {
    const first = this.#waiters.values().next();
    return first.done ? undefined : first.value.payload;
  }

  /** Takes the oldest waiter off the list (the caller settles it), or undefined when none waits. */
  shift(): TakenWaiter<R, P> | undefined {
    const first = this.#waiters.values().next();
    if (first.done) return undefined;
    first.value.detach();
    return first.value;
  }

  /** Rejects every waiter, oldest first, each with a fresh error from `makeError`. */
  rejectAll(makeError: () => unknown): void {
    for (let waiter = this.shift(); waiter !== undefined; waiter = this.shift()) {
      waiter.reject(makeError());
    }
  }
}
