/**
 * A fake Clock for the router tests: time moves only when a test says so, and every sleep the
 * router asks for is recorded.
 *
 * - `now()` returns the fake time (ms).
 * - `sleep(ms)` records `ms` in `sleeps`. In mode 'immediate' (the default) it resolves at once
 *   (on a microtask); with `advanceOnSleep` the fake time also moves forward by `ms`, as if the
 *   sleep had really happened. In mode 'manual' it resolves only once advance() has moved the
 *   time past its deadline.
 * - `advance(ms)` moves the time forward and settles the manual sleeps that are due, oldest
 *   deadline first.
 */
import type { Clock } from '../../lib/index';

export interface FakeClockOptions {
  /** Start time in ms. Default 1_000_000 (far from 0, so `0` never passes for a valid time). */
  start?: number;
  /** 'immediate': sleeps resolve at once. 'manual': sleeps wait for advance(). Default 'immediate'. */
  mode?: 'immediate' | 'manual';
  /** In 'immediate' mode, let each sleep move the fake time forward by its length. Default false. */
  advanceOnSleep?: boolean;
}

interface PendingSleep {
  at: number;
  seq: number;
  resolve: () => void;
}

export class FakeClock implements Clock {
  #now: number;
  #seq = 0;
  readonly mode: 'immediate' | 'manual';
  advanceOnSleep: boolean;
  /** Every sleep requested, in order of the calls. */
  readonly sleeps: number[] = [];
  readonly #pending: PendingSleep[] = [];

  constructor(options: FakeClockOptions = {}) {
    this.#now = options.start ?? 1_000_000;
    this.mode = options.mode ?? 'immediate';
    this.advanceOnSleep = options.advanceOnSleep ?? false;
  }

  now(): number {
    return this.#now;
  }

  sleep(ms: number): Promise<void> {
    if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) {
      return Promise.reject(new RangeError(`FakeClock.sleep: ms must be a finite number >= 0; received ${String(ms)}`));
    }
    this.sleeps.push(ms);
    if (this.mode === 'immediate') {
      if (this.advanceOnSleep) this.#now += ms;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      this.#pending.push({ at: this.#now + ms, seq: this.#seq++, resolve });
    });
  }

  /** Moves the time forward by `ms` and resolves the manual sleeps that are due. */
  advance(ms: number): void {
    if (!(ms >= 0)) throw new RangeError(`FakeClock.advance: ms must be >= 0; received ${String(ms)}`);
    this.#now += ms;
    this.#pending.sort((a, b) => a.at - b.at || a.seq - b.seq);
    while (this.#pending.length > 0 && (this.#pending[0] as PendingSleep).at <= this.#now) {
      (this.#pending.shift() as PendingSleep).resolve();
    }
  }

  /** Sets the time (never backwards) and resolves what is due. */
  setTime(t: number): void {
    if (t < this.#now) throw new RangeError(`FakeClock.setTime: time cannot go back (${t} < ${this.#now})`);
    this.advance(t - this.#now);
  }

  /** Manual sleeps still waiting. */
  get pendingSleeps(): number {
    return this.#pending.length;
  }
}
