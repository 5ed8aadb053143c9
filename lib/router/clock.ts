/** Time for the router, injectable so tests can drive ejection and backoff with a fake clock. */
export interface Clock {
  /** Milliseconds (monotonic within a process). */
  now(): number;
  /** Resolves after `ms` milliseconds. */
  sleep(ms: number): Promise<void>;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};
