/**
 * A peer stopped inside a data lock (parked at the InProdLock / InConsLock test hook, then
 * SIGSTOPped as well) must not block calls that must not block, nor make blocking calls overrun
 * their timeouts: non-blocking calls report busy as full/empty at once, async calls time out off
 * the JS thread (the event loop keeps turning), close() returns at once, blocking calls return
 * after about their timeout. Once the peer is SIGKILLed the lock is recovered and the queue works.
 */
import { describe, expect, it } from 'vitest';
import { QueueEmptyError, QueueFullError, SageQueue } from '../../lib/index';
import { nowMs, queueName, sleep, spawnAgent, track, useCleanup } from '../helpers/harness';
import { testAddonEnv } from '../helpers/test-addon';

useCleanup();

const HOOKS = { env: testAddonEnv() };

/** Largest gap (ms) between ticks of a 5 ms interval while `run` is pending. */
async function maxLoopGap<T>(run: () => Promise<T>): Promise<{ gap: number; result: PromiseSettledResult<T> }> {
  let last = nowMs();
  let gap = 0;
  const timer = setInterval(() => {
    const now = nowMs();
    gap = Math.max(gap, now - last);
    last = now;
  }, 5);
  try {
    const [result] = await Promise.allSettled([run()]);
    gap = Math.max(gap, nowMs() - last);
    return { gap, result: result as PromiseSettledResult<T> };
  } finally {
    clearInterval(timer);
  }
}

function timed<T>(fn: () => T): { ms: number; value?: T; error?: unknown } {
  const t0 = nowMs();
  try {
    const value = fn();
    return { ms: nowMs() - t0, value };
  } catch (error) {
    return { ms: nowMs() - t0, error };
  }
}

describe('a peer stopped inside a data lock', () => {
  it('inside the producer lock: putNowait/putMany(block: false) report full at once, putAsync times out without blocking the event loop, put(x, true, 300) returns after ~300 ms, close() is immediate; after SIGKILL the lock is recovered', async () => {
    const name = queueName('stop-prod');
    const q = track(SageQueue.create<Buffer>(name, { capacity: 1 << 16, codec: 'raw' }));
    const victim = await spawnAgent('victim-producer', HOOKS);
    await victim.call('open', { how: 'open', name });
    await victim.call('hook', { point: 'in-prod-lock' });
    void victim.request('putFrames', { producer: 1, count: 1 }).catch(() => undefined);
    await victim.waitStderr('SAGE_HOOK in-prod-lock');
    victim.proc.kill('SIGSTOP');

    const nowait = timed(() => q.putNowait(Buffer.from('x')));
    expect(nowait.error).toBeInstanceOf(QueueFullError);
    expect((nowait.error as QueueFullError).timedOut).toBe(false);
    expect(nowait.ms).toBeLessThan(1000);

    const many = timed(() => q.putMany([Buffer.from('a'), Buffer.from('b')], { block: false }));
    expect(many.value).toBe(0);
    expect(many.ms).toBeLessThan(1000);

    const t0 = nowMs();
    const asyncPut = await maxLoopGap(() => q.putAsync(Buffer.from('y'), { timeoutMs: 200 }));
    const asyncMs = nowMs() - t0;
    expect(asyncPut.result.status).toBe('rejected');
    const reason = (asyncPut.result as PromiseRejectedResult).reason as QueueFullError;
    expect(reason).toBeInstanceOf(QueueFullError);
    expect(reason.timedOut).toBe(true);
    expect(asyncMs).toBeGreaterThanOrEqual(190);
    expect(asyncMs).toBeLessThan(1500);
    expect(asyncPut.gap).toBeLessThan(150);

    // An AbortSignal ends it as well.
    const ac = new AbortController();
    const aborted = q.putAsync(Buffer.from('z'), { signal: ac.signal });
    setTimeout(() => ac.abort(), 50);
    await expect(aborted).rejects.toThrow();

    const blocking = timed(() => q.put(Buffer.from('w'), true, 300));
    expect(blocking.error).toBeInstanceOf(QueueFullError);
    expect((blocking.error as QueueFullError).timedOut).toBe(true);
    expect(blocking.ms).toBeGreaterThanOrEqual(290);
    expect(blocking.ms).toBeLessThan(1500);

    // The owner died: the next holder recovers the lock (EOWNERDEAD) and re-applies the journal.
    victim.proc.kill('SIGKILL');
    await victim.exited;
    q.put(Buffer.from('after'), true, 5000);
    expect(q.stats().lockRecoveries).toBeGreaterThanOrEqual(1);
    expect(q.get(true, 5000).toString()).not.toBe('');
    q.close();
  });

  it('inside the producer lock: close() returns at once and closes the queue for everyone', async () => {
    const name = queueName('stop-close');
    const q = track(SageQueue.create<Buffer>(name, { capacity: 1 << 16, codec: 'raw' }));
    const victim = await spawnAgent('victim-producer', HOOKS);
    await victim.call('open', { how: 'open', name });
    await victim.call('hook', { point: 'in-prod-lock' });
    void victim.request('putFrames', { producer: 1, count: 1 }).catch(() => undefined);
    await victim.waitStderr('SAGE_HOOK in-prod-lock');
    victim.proc.kill('SIGSTOP');
    const pending = q.putAsync(Buffer.from('p'));
    const closing = timed(() => q.close());
    expect(closing.error).toBeUndefined();
    expect(closing.ms).toBeLessThan(500);
    expect(q.closed).toBe(true);
    await expect(pending).rejects.toMatchObject({ code: 'ERR_QUEUE_CLOSED' });
    victim.proc.kill('SIGKILL');
    await victim.exited;
  });

  it('inside the consumer lock: getNowait/getMany(block: false) report empty at once, getAsync times out without blocking the event loop, get(true, 300) returns after ~300 ms, close() is immediate; after SIGKILL the message is delivered', async () => {
    const name = queueName('stop-cons');
    const q = track(SageQueue.create<Buffer>(name, { capacity: 1 << 16, codec: 'raw' }));
    q.put(Buffer.from('m1'));
    q.put(Buffer.from('m2'));
    const victim = await spawnAgent('victim-consumer', HOOKS);
    await victim.call('open', { how: 'open', name });
    await victim.call('hook', { point: 'in-cons-lock' });
    void victim.request('get', {}).catch(() => undefined);
    await victim.waitStderr('SAGE_HOOK in-cons-lock');
    victim.proc.kill('SIGSTOP');

    const nowait = timed(() => q.getNowait());
    expect(nowait.error).toBeInstanceOf(QueueEmptyError);
    expect(nowait.ms).toBeLessThan(1000);

    const many = timed(() => q.getMany(10, { block: false }));
    expect(many.value).toEqual([]);
    expect(many.ms).toBeLessThan(1000);

    const t0 = nowMs();
    const asyncGet = await maxLoopGap(() => q.getAsync({ timeoutMs: 200 }));
    const asyncMs = nowMs() - t0;
    expect(asyncGet.result.status).toBe('rejected');
    const reason = (asyncGet.result as PromiseRejectedResult).reason as QueueEmptyError;
    expect(reason).toBeInstanceOf(QueueEmptyError);
    expect(reason.timedOut).toBe(true);
    expect(asyncMs).toBeGreaterThanOrEqual(190);
    expect(asyncMs).toBeLessThan(1500);
    expect(asyncGet.gap).toBeLessThan(150);

    const blocking = timed(() => q.get(true, 300));
    expect(blocking.error).toBeInstanceOf(QueueEmptyError);
    expect((blocking.error as QueueEmptyError).timedOut).toBe(true);
    expect(blocking.ms).toBeGreaterThanOrEqual(290);
    expect(blocking.ms).toBeLessThan(1500);

    const closing = timed(() => q.close());
    expect(closing.ms).toBeLessThan(500);

    // The holder dies: its take is rolled back, so both messages are still delivered.
    victim.proc.kill('SIGKILL');
    await victim.exited;
    const got = [q.get(true, 5000), q.get(true, 5000)].map((b) => b.toString());
    expect(got).toEqual(['m1', 'm2']);
    await sleep(0);
  });
});
