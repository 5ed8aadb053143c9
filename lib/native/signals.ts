/**
 * Which signals interrupt a synchronous blocking call (native putBlocking/getBlocking): those this
 * process has a JavaScript listener for, among the ones a program listens to in order to stop or
 * reconfigure (SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2). Node runs such listeners on the
 * event loop, which cannot turn while the call holds the thread; so the call returns
 * ERR_INTERRUPTED and the listener runs next (see native/binding/signal_watch.h).
 */
import { constants } from 'node:os';

const WATCHED = ['SIGHUP', 'SIGINT', 'SIGQUIT', 'SIGTERM', 'SIGUSR1', 'SIGUSR2'] as const;
const NUMBERS: ReadonlyArray<readonly [NodeJS.Signals, number]> = WATCHED.map((name) => [name, constants.signals[name]] as const).filter(
  ([, n]) => typeof n === 'number' && n > 0 && n < 32,
);

/** Bit mask (bit n = signal n) of the watched signals that have a listener right now. */
export function interruptSignals(): number {
  let mask = 0;
  for (const [name, n] of NUMBERS) if (process.listenerCount(name) > 0) mask |= 1 << n;
  return mask >>> 0;
}

let pending = false;

/**
 * Records that a blocking call returned Interrupted. Node reads the signal (from libuv's pipe) and
 * runs its listener only in the event loop's poll phase; until the loop has passed through one, a
 * further blocking call would block again with the listener still waiting. So blocking calls made
 * before then are interrupted at once (interruptPending()). setImmediate callbacks run after a
 * poll phase, which is what clears the mark.
 */
export function noteInterrupted(): void {
  if (pending) return;
  pending = true;
  setImmediate(() => {
    pending = false;
  }).unref();
}

/** True while an interrupting signal may still be waiting for its listener (see noteInterrupted). */
export function interruptPending(): boolean {
  return pending;
}
