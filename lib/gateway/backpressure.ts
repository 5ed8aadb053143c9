/**
 * BackpressureController: high and low watermarks on a queue's usage ratio, with hysteresis.
 * Above `highWatermark` it starts throttling; it keeps throttling until usage falls below
 * `lowWatermark`. Which priorities are throttled is the queue's policy (NORMAL and LOW; never
 * CRITICAL, nor HIGH).
 */
import { ArgumentRangeError, InvalidArgumentTypeError } from '../errors';
import { checkKnownKeys, checkOptions } from '../validate';

export interface BackpressureOptions {
  /** Usage ratio (0-1] at or above which throttling starts. Default 0.8. */
  highWatermark?: number;
  /** Usage ratio below which throttling stops. Default 0.6; must be < highWatermark. */
  lowWatermark?: number;
}

export interface BackpressureStats {
  usage_ratio: number;
  is_throttling: boolean;
  high_watermark: number;
  low_watermark: number;
  /** How many times throttling started. */
  throttle_events: number;
}

function ratio(value: unknown, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number') throw new InvalidArgumentTypeError(name, 'a number in (0, 1]', value);
  if (!(value > 0 && value <= 1)) throw new ArgumentRangeError(name, 'a number in (0, 1]', value);
  return value;
}

export class BackpressureController {
  readonly highWatermark: number;
  readonly lowWatermark: number;
  #usage = 0;
  #throttling = false;
  #events = 0;

  constructor(options?: BackpressureOptions) {
    const o = checkOptions<BackpressureOptions>(options);
    checkKnownKeys(o, ['highWatermark', 'lowWatermark']);
    this.highWatermark = ratio(o.highWatermark, 'options.highWatermark', 0.8);
    this.lowWatermark = ratio(o.lowWatermark, 'options.lowWatermark', Math.min(0.6, this.highWatermark / 2));
    if (this.lowWatermark >= this.highWatermark) {
      throw new ArgumentRangeError('options.lowWatermark', `a number below highWatermark (${this.highWatermark})`, this.lowWatermark);
    }
  }

  /** Records the current usage ratio (clamped to [0, 1]); returns whether it is throttling now. */
  update(usageRatio: number): boolean {
    if (typeof usageRatio !== 'number' || Number.isNaN(usageRatio)) throw new InvalidArgumentTypeError('usageRatio', 'a number', usageRatio);
    const u = Math.min(1, Math.max(0, usageRatio));
    this.#usage = u;
    if (!this.#throttling && u >= this.highWatermark) {
      this.#throttling = true;
      this.#events++;
    } else if (this.#throttling && u < this.lowWatermark) {
      this.#throttling = false;
    }
    return this.#throttling;
  }

  get usageRatio(): number {
    return this.#usage;
  }

  get isThrottling(): boolean {
    return this.#throttling;
  }

  stats(): BackpressureStats {
    return {
      usage_ratio: this.#usage,
      is_throttling: this.#throttling,
      high_watermark: this.highWatermark,
      low_watermark: this.lowWatermark,
      throttle_events: this.#events,
    };
  }
}
