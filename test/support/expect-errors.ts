/** Assertions on typed errors: the class and the stable `code`. */
import { expect } from 'vitest';

/** Runs fn, expecting it to throw an instance of cls carrying code; returns the error. */
export function thrown<E extends Error>(fn: () => unknown, cls: new (...args: never[]) => E, code: string): E {
  let error: unknown;
  try {
    fn();
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(cls);
  expect((error as { code?: string }).code).toBe(code);
  return error as E;
}

/** Awaits p, expecting it to reject with an instance of cls carrying code; returns the error. */
export async function rejected<E extends Error>(p: Promise<unknown>, cls: new (...args: never[]) => E, code: string): Promise<E> {
  const error = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(cls);
  expect((error as { code?: string }).code).toBe(code);
  return error as E;
}
