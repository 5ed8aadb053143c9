/**
 * A router's options: what a caller may pass (RouterOptions) and the checked, defaulted form the
 * router's parts share (ResolvedRouterOptions).
 */
import { InvalidArgumentTypeError, InvalidArgumentValueError, describe } from '../errors';
import type { AsyncQueueLike } from '../queue/queue-like';
import { isAsyncQueueLike } from '../queue/queue-like';
import { checkBoolean, checkInteger, checkKnownKeys, checkOptions } from '../validate';
import type { Clock } from './clock';
import { systemClock } from './clock';
import { checkStrategy } from './strategy-names';
import type { StrategyName } from './strategy-names';

export interface RouterOptions {
  /** Name used in traces, reports and dead letters. Default 'router'. */
  name?: string;
  /** Default strategy; a packet's partitionStrategy overrides it. Default 'round_robin'. */
  strategy?: StrategyName;
  /** Where packets go after their last failed attempt, or at once when the packet itself is at
   * fault (see isItemFault), as DeadLetter objects (any AsyncQueueLike). */
  deadLetterQueue?: AsyncQueueLike<unknown>;
  /** Retries after the first attempt. Default 3. */
  maxRetries?: number;
  /** First retry backoff; doubles each retry, with full jitter. Default 10 ms. */
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** Every send gives up after this long, so a stopped consumer cannot stall routing. Default 1000 ms. */
  sendTimeoutMs?: number;
  /** Consecutive failures that eject a target. Default 5. */
  ejectAfterFailures?: number;
  /** Ejection lasts base × times ejected (capped by ejectMaxMs). Default 30 s. */
  ejectBaseMs?: number;
  ejectMaxMs?: number;
  /** At most this fraction of a group is ejected at once (at least one target). Default 0.5. */
  maxEjectedFraction?: number;
  /** Virtual nodes per target on the consistent-hash ring. Default 256. */
  ringPointsPerTarget?: number;
  /** load_balance ignores load reports older than this. Default 1000 ms. */
  loadStaleMs?: number;
  /** load_balance compares loads projected this far ahead along their trend. Default 250 ms. */
  trendHorizonMs?: number;
  /** Append a hop to each delivered packet's trace. Default true. */
  trace?: boolean;
  clock?: Clock;
  /** Source of randomness in [0, 1) (jitter, power of two choices). Default Math.random. */
  random?: () => number;
}

/** RouterOptions checked, with every default filled in. */
export interface ResolvedRouterOptions extends Required<Omit<RouterOptions, 'deadLetterQueue'>> {
  deadLetterQueue: AsyncQueueLike<unknown> | undefined;
}

const OPTION_KEYS = [
  'name', 'strategy', 'deadLetterQueue', 'maxRetries', 'retryBaseMs', 'retryMaxMs', 'sendTimeoutMs', 'ejectAfterFailures',
  'ejectBaseMs', 'ejectMaxMs', 'maxEjectedFraction', 'ringPointsPerTarget', 'loadStaleMs', 'trendHorizonMs', 'trace', 'clock', 'random',
] as const;

/** Checks a router's options (typed errors naming the bad option) and fills in the defaults. */
export function resolveRouterOptions(options: RouterOptions | undefined): ResolvedRouterOptions {
  const o = checkOptions<RouterOptions>(options);
  checkKnownKeys(o, OPTION_KEYS);
  const name = o.name === undefined ? 'router' : String(o.name);
  const strategy = o.strategy === undefined ? 'round_robin' : checkStrategy(o.strategy);
  if (o.deadLetterQueue !== undefined && !isAsyncQueueLike(o.deadLetterQueue)) {
    throw new InvalidArgumentTypeError('options.deadLetterQueue', 'an AsyncQueueLike', o.deadLetterQueue);
  }
  const fraction = o.maxEjectedFraction ?? 0.5;
  if (typeof fraction !== 'number' || !(fraction >= 0 && fraction <= 1)) {
    throw new InvalidArgumentValueError(`options.maxEjectedFraction must be a number in [0, 1]; received ${describe(fraction)}`, fraction, 'ERR_OUT_OF_RANGE');
  }
  if (o.clock !== undefined && (typeof o.clock?.now !== 'function' || typeof o.clock?.sleep !== 'function')) {
    throw new InvalidArgumentTypeError('options.clock', 'an object with now() and sleep(ms)', o.clock);
  }
  if (o.random !== undefined && typeof o.random !== 'function') throw new InvalidArgumentTypeError('options.random', 'a function', o.random);
  return {
    name,
    strategy,
    deadLetterQueue: o.deadLetterQueue,
    maxRetries: o.maxRetries === undefined ? 3 : checkInteger(o.maxRetries, 'options.maxRetries', 0, 100),
    retryBaseMs: o.retryBaseMs === undefined ? 10 : checkInteger(o.retryBaseMs, 'options.retryBaseMs', 0),
    retryMaxMs: o.retryMaxMs === undefined ? 1000 : checkInteger(o.retryMaxMs, 'options.retryMaxMs', 0),
    sendTimeoutMs: o.sendTimeoutMs === undefined ? 1000 : checkInteger(o.sendTimeoutMs, 'options.sendTimeoutMs', 0),
    ejectAfterFailures: o.ejectAfterFailures === undefined ? 5 : checkInteger(o.ejectAfterFailures, 'options.ejectAfterFailures', 1),
    ejectBaseMs: o.ejectBaseMs === undefined ? 30_000 : checkInteger(o.ejectBaseMs, 'options.ejectBaseMs', 0),
    ejectMaxMs: o.ejectMaxMs === undefined ? 300_000 : checkInteger(o.ejectMaxMs, 'options.ejectMaxMs', 0),
    maxEjectedFraction: fraction,
    ringPointsPerTarget: o.ringPointsPerTarget === undefined ? 256 : checkInteger(o.ringPointsPerTarget, 'options.ringPointsPerTarget', 1, 100_000),
    loadStaleMs: o.loadStaleMs === undefined ? 1000 : checkInteger(o.loadStaleMs, 'options.loadStaleMs', 0),
    trendHorizonMs: o.trendHorizonMs === undefined ? 250 : checkInteger(o.trendHorizonMs, 'options.trendHorizonMs', 0),
    trace: checkBoolean(o.trace, 'options.trace', true),
    clock: o.clock ?? systemClock,
    random: o.random ?? Math.random,
  };
}
