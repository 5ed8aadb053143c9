/** The waiter list every queue type waits with, and the async skeleton built on it. */
import { describe, expect, it } from 'vitest';
import { ArgumentRangeError, InvalidArgumentTypeError, QueueClosedError, QueueEmptyError } from '../../lib/errors';
import { WaiterList } from '../../lib/queue/async-waiters';
import { drainUntilClosed, parseWaitOptions, waitArmed } from '../../lib/queue/skeleton';
import { rejected, thrown } from '../support/expect-errors';

const timeout = (): Error => new QueueEmptyError('timed out', true);
const activeTimers = (): number =>
  (process as unknown as { getActiveResourcesInfo(): string[] }).getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

describe('WaiterList', () => {
  it('serves waiters in arrival order with their payloads', async () => {
    const list = new WaiterList<string, number>();
    const a = list.wait(1, { onTimeout: timeout });
    const b = list.wait(2, { onTimeout: timeout });
    expect(list.size).toBe(2);
    expect(list.peek()).toBe(1);
    const first = list.shift();
    expect(first?.payload).toBe(1);
    first?.resolve('one');
    list.shift()?.resolve('two');
    expect(await Promise.all([a, b])).toEqual(['one', 'two']);
    expect(list.shift()).toBeUndefined();
  });

  it('a timed-out waiter leaves the list, rejects with onTimeout() and leaves no timer', async () => {
    const list = new WaiterList<string>();
    const before = activeTimers();
    const p = list.wait(undefined, { timeoutMs: 20, onTimeout: timeout });
    expect(activeTimers()).toBe(before + 1);
    await rejected(p, QueueEmptyError, 'ERR_QUEUE_EMPTY');
    expect(list.size).toBe(0);
    expect(activeTimers()).toBe(before);
  });

  it('an aborted waiter leaves the list at once with signal.reason, and an already aborted signal rejects without joining', async () => {
    const list = new WaiterList<string>();
    const ac = new AbortController();
    const p = list.wait(undefined, { timeoutMs: 60_000, signal: ac.signal, onTimeout: timeout });
    ac.abort(new Error('stop'));
    await expect(p).rejects.toThrow('stop');
    expect(list.size).toBe(0);
    await expect(list.wait(undefined, { signal: ac.signal, onTimeout: timeout })).rejects.toThrow('stop');
    expect(list.size).toBe(0);
  });

  it('a waiter removed from the middle does not disturb the order of the others', async () => {
    const list = new WaiterList<number, string>();
    const ac = new AbortController();
    const a = list.wait('a', { onTimeout: timeout });
    const b = list.wait('b', { signal: ac.signal, onTimeout: timeout });
    const c = list.wait('c', { onTimeout: timeout });
    ac.abort(new Error('b left'));
    await expect(b).rejects.toThrow('b left');
    expect(list.shift()?.payload).toBe('a');
    expect(list.shift()?.payload).toBe('c');
    void a;
    void c;
  });

  it('rejectAll rejects every waiter, oldest first, each with a fresh error', async () => {
    const list = new WaiterList<number>();
    const ps = [list.wait(undefined, { onTimeout: timeout }), list.wait(undefined, { onTimeout: timeout })];
    const errors: Error[] = [];
    list.rejectAll(() => {
      const e = new QueueClosedError(`#${errors.length}`);
      errors.push(e);
      return e;
    });
    const settled = await Promise.allSettled(ps);
    expect(settled.map((s) => (s as PromiseRejectedResult).reason)).toEqual(errors);
    expect(errors[0]).not.toBe(errors[1]);
    expect(list.size).toBe(0);
  });

  it('timeouts longer than setTimeout can arm (2^31-1 ms) are armed in steps, not fired at once', async () => {
    const list = new WaiterList<number>();
    const p = list.wait(undefined, { timeoutMs: 2 ** 31 + 5, onTimeout: timeout });
    await new Promise((r) => setTimeout(r, 20));
    expect(list.size).toBe(1);
    list.shift()?.resolve(1);
    await expect(p).resolves.toBe(1);
  });
});

describe('skeleton', () => {
  it('parseWaitOptions validates timeoutMs and signal and refuses unknown keys', () => {
    const signal = new AbortController().signal;
    expect(parseWaitOptions(undefined)).toEqual({ timeoutMs: undefined, signal: undefined });
    expect(parseWaitOptions({ timeoutMs: 5, signal })).toEqual({ timeoutMs: 5, signal });
    thrown(() => parseWaitOptions({ timeoutMs: -1 }), ArgumentRangeError, 'ERR_OUT_OF_RANGE');
    thrown(() => parseWaitOptions({ timeout: 5 }), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => parseWaitOptions({ signal: {} }), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => parseWaitOptions(3), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
  });

  it('waitArmed arms once, and disarms only when the last waiter leaves unserved', async () => {
    const list = new WaiterList<number>();
    const log: string[] = [];
    const opts = { onTimeout: timeout, arm: () => log.push('arm'), disarm: () => log.push('disarm') };
    const a = waitArmed(list, undefined, { ...opts, timeoutMs: 10 });
    const b = waitArmed(list, undefined, { ...opts, timeoutMs: 60_000 });
    await rejected(a, QueueEmptyError, 'ERR_QUEUE_EMPTY');
    expect(log).toEqual(['arm', 'arm']); // b still waits: no disarm
    list.rejectAll(() => new QueueClosedError());
    await rejected(b, QueueClosedError, 'ERR_QUEUE_CLOSED');
    expect(log).toEqual(['arm', 'arm', 'disarm']);
  });

  it('drainUntilClosed yields until QueueClosedError ends it, and passes any other error to the consumer', async () => {
    const items = [1, 2, 3];
    const take = (): Promise<number> => (items.length > 0 ? Promise.resolve(items.shift() as number) : Promise.reject(new QueueClosedError()));
    const got: number[] = [];
    for await (const n of drainUntilClosed(take)) got.push(n);
    expect(got).toEqual([1, 2, 3]);
    const failing = drainUntilClosed(() => Promise.reject(new Error('boom')));
    await expect(failing.next()).rejects.toThrow('boom');
  });
});
