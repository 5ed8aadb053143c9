/** Argument checks shared by every public entry point. Each throws a typed error with a code. */
import { ArgumentRangeError, InvalidArgumentTypeError } from './errors';

/**
 * A timeout in milliseconds: `undefined` means "wait forever"; otherwise a finite number >= 0.
 * Negative, NaN or infinite values are a RangeError (a typo should not become "forever").
 */
export function checkTimeoutMs(value: unknown, name = 'timeoutMs'): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number') throw new InvalidArgumentTypeError(name, 'a number of milliseconds or undefined', value);
  if (!Number.isFinite(value) || value < 0) {
    throw new ArgumentRangeError(name, 'a finite number of milliseconds >= 0', value);
  }
  return value;
}

export function checkBoolean(value: unknown, name: string, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw new InvalidArgumentTypeError(name, 'a boolean', value);
  return value;
}

/** A safe integer in [min, max]. */
export function checkInteger(value: unknown, name: string, min: number, max: number = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number') throw new InvalidArgumentTypeError(name, 'an integer', value);
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new ArgumentRangeError(name, `an integer in [${min}, ${max}]`, value);
  }
  return value;
}

/** Options objects must be plain objects (or undefined). */
export function checkOptions<T extends object>(value: unknown, name = 'options'): Partial<T> {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new InvalidArgumentTypeError(name, 'an object or undefined', value);
  }
  return value as Partial<T>;
}

/** An AbortSignal, or undefined. */
export function checkSignal(value: unknown, name = 'signal'): AbortSignal | undefined {
  if (value === undefined) return undefined;
  if (!(value instanceof AbortSignal)) throw new InvalidArgumentTypeError(name, 'an AbortSignal or undefined', value);
  return value;
}

/** Reject the keys an options object must not have (catches typos like `timeout` for `timeoutMs`). */
export function checkKnownKeys(value: object, allowed: readonly string[], name = 'options'): void {
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) {
      throw new InvalidArgumentTypeError(`${name}.${key}`, `absent (known options: ${allowed.join(', ')})`, (value as Record<string, unknown>)[key]);
    }
  }
}
