/** The argument checks every public entry point shares. */
import { describe, expect, it } from 'vitest';
import { ArgumentRangeError, InvalidArgumentTypeError } from '../lib/errors';
import { checkBoolean, checkInteger, checkKnownKeys, checkOptions, checkSignal, checkTimeoutMs } from '../lib/validate';
import { thrown } from './support/expect-errors';

describe('validate', () => {
  it('checkTimeoutMs: undefined/null wait forever; finite >= 0 pass; negative, NaN, Infinity are RangeErrors; non-numbers type errors', () => {
    expect(checkTimeoutMs(undefined)).toBeUndefined();
    expect(checkTimeoutMs(null)).toBeUndefined();
    expect(checkTimeoutMs(0)).toBe(0);
    expect(checkTimeoutMs(1.5)).toBe(1.5);
    for (const bad of [-1, Number.NaN, Infinity]) {
      const e = thrown(() => checkTimeoutMs(bad, 'options.timeoutMs'), ArgumentRangeError, 'ERR_OUT_OF_RANGE');
      expect(e).toBeInstanceOf(RangeError);
      expect(e.message).toMatch(/options\.timeoutMs/);
    }
    thrown(() => checkTimeoutMs('5'), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
  });

  it('checkBoolean: the fallback for undefined, booleans as given, anything else a type error', () => {
    expect(checkBoolean(undefined, 'b', true)).toBe(true);
    expect(checkBoolean(false, 'b', true)).toBe(false);
    thrown(() => checkBoolean(0, 'b', true), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
  });

  it('checkInteger: safe integers within [min, max]; fractions and out-of-range values are RangeErrors', () => {
    expect(checkInteger(3, 'n', 0, 3)).toBe(3);
    thrown(() => checkInteger(4, 'n', 0, 3), ArgumentRangeError, 'ERR_OUT_OF_RANGE');
    thrown(() => checkInteger(1.5, 'n', 0), ArgumentRangeError, 'ERR_OUT_OF_RANGE');
    thrown(() => checkInteger(2 ** 53, 'n', 0), ArgumentRangeError, 'ERR_OUT_OF_RANGE');
    thrown(() => checkInteger('1', 'n', 0), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
  });

  it('checkOptions: undefined is {}, plain objects pass, null/arrays/primitives are type errors', () => {
    expect(checkOptions(undefined)).toEqual({});
    const o = { a: 1 };
    expect(checkOptions(o)).toBe(o);
    for (const bad of [null, [], 3, 'x']) thrown(() => checkOptions(bad), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
  });

  it('checkSignal: an AbortSignal or undefined', () => {
    const s = new AbortController().signal;
    expect(checkSignal(s)).toBe(s);
    expect(checkSignal(undefined)).toBeUndefined();
    thrown(() => checkSignal({ aborted: false }), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
  });

  it('checkKnownKeys: an unknown key (a typo such as timeout for timeoutMs) is a type error naming the known ones', () => {
    expect(() => checkKnownKeys({ timeoutMs: 1 }, ['timeoutMs'])).not.toThrow();
    const e = thrown(() => checkKnownKeys({ timeout: 1 }, ['timeoutMs', 'signal']), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    expect(e.message).toMatch(/options\.timeout/);
    expect(e.message).toMatch(/timeoutMs, signal/);
  });
});
