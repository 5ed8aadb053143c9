/**
 * Lifetime edges of a SageQueue handle, each in a forked child (CONVENTIONS.md, "Tests"): garbage
 * collection, worker-thread exit and termination, process exit with handles open or waits
 * pending, use from worker threads, and iteration ending on close. "Released" is checked from
 * outside, in the shared stats: the handle's entry leaves stats().processes.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { SageQueue } from '../../lib/index';
import { frames } from '../helpers/frames';
import type { ConsumeResult } from '../helpers/frames';
import { cleanup, nowMs, pidExists, queueName, spawnAgent, sweepSegments, track, until } from '../helpers/harness';

afterEach(cleanup);
afterAll(() => {
  expect(sweepSegments()).toEqual([]);
});

function entriesOf(q: SageQueue, pid: number): Array<{ alive: boolean; roles: string[] }> {
  return q.stats().processes.filter((p) => p.pid === pid);
}

interface WorkerRun {
  code: number;
  messages: Array<{ type: string; [k: string]: unknown }>;
}

describe('SageQueue handle lifetime', () => {
  it('a handle dropped without release() is released by garbage collection while its process lives on', async () => {
    const name = queueName('gc');
    const q = track(SageQueue.create(name, { capacity: 1 << 16 }));
    const child = await spawnAgent('gc-child', { execArgv: ['--expose-gc'] });
    await child.call('open', { how: 'new', name });
    expect(entriesOf(q, child.pid)).toHaveLength(1);

    await child.call('dropAndGc', { h: 0 });
    await until(() => entriesOf(q, child.pid).length === 0, "the dropped handle's entry to leave stats().processes", 5000, 10);
    expect(child.alive).toBe(true);
    expect(pidExists(child.pid)).toBe(true);
  });

  it('a worker_thread that opens a queue and ends without release(): its handle is released, the process carries on', async () => {
    const name = queueName('wexit');
    const q = track(SageQueue.create<string>(name, { capacity: 1 << 16 }));
    const child = await spawnAgent('worker-host');
    const run = await child.call<WorkerRun>('workerOpenAndLeave', { name, action: 'exit' });
    expect(run.code).toBe(0);
    expect(run.messages.map((m) => m.type)).toEqual(['opened']);
    await until(() => entriesOf(q, child.pid).length === 0, "the worker's entry to leave stats().processes", 5000, 10);

    // No crash, and the addon still works in the process's main thread.
    await child.call('open', { how: 'open', name });
    await child.call('putValues', { values: ['after the worker'] });
    expect(q.get(true, 2000)).toBe('after the worker');
    expect(child.alive).toBe(true);
  });

  it('a worker_thread terminated while a getAsync is pending: its handle is released, no crash', async () => {
    const name = queueName('wterm');
    const q = track(SageQueue.create<string>(name, { capacity: 1 << 16 }));
    const child = await spawnAgent('worker-host');
    const running = child.call<WorkerRun>('workerOpenAndLeave', { name, action: 'pending', terminate: true, terminateAfterMs: 100 });
    await child.waitEvent('worker-opened');
    const run = await running;
    expect(run.messages.map((m) => m.type)).toEqual(['opened', 'pending']);
    expect(run.code).toBe(1); // what Worker#terminate() reports
    await until(() => entriesOf(q, child.pid).length === 0, "the terminated worker's entry to leave stats().processes", 5000, 10);
    // Its waiter count went with it.
    expect(q.stats().dataWaiters).toBe(0);
    await child.call('open', { how: 'open', name });
    q.put('still fine');
    expect(await child.call('get', { timeoutMs: 2000 })).toBe('still fine');
  });

  it.each([
    ['its event loop runs dry', 'natural'],
    ['it calls process.exit()', 'exit'],
  ])('a process that exits normally (%s) with a handle open releases it: its entry is gone, not left dead', async (_label, how) => {
    const name = queueName(`exit-${how}`);
    const q = track(SageQueue.create<string>(name, { capacity: 1 << 16 }));
    const child = await spawnAgent('exiting');
    await child.call('open', { how: 'open', name });
    await child.call('putValues', { values: ['left behind'] });
    expect(entriesOf(q, child.pid)).toHaveLength(1);

    await child.call('exit', { how, code: 0 });
    const ex = await child.waitExit(10_000);
    expect(ex).toEqual({ code: 0, signal: null });
    expect(entriesOf(q, child.pid)).toEqual([]);
    expect(q.get(true, 1000)).toBe('left behind');
  });

  it('a process that calls process.exit() while a getAsync is pending exits promptly, and the queue stays usable', async () => {
    const name = queueName('exit-pending');
    const q = track(SageQueue.create<string>(name, { capacity: 1 << 16 }));
    const child = await spawnAgent('exiting-pending');
    await child.call('open', { how: 'open', name });
    void child.request('exitWithPendingGet', { delayMs: 50, code: 0 });
    await child.waitEvent('pending');
    await until(() => q.stats().processes.find((p) => p.pid === child.pid && p.waiting > 0), 'the pending getAsync to wait');
    const t0 = nowMs();
    const ex = await child.waitExit(5000);
    const exitMs = nowMs() - t0;
    console.log(`[exit with pending getAsync] exited ${exitMs.toFixed(1)} ms after the wait was seen`);
    expect(ex).toEqual({ code: 0, signal: null });

    q.put('a');
    expect(q.get(true, 1000)).toBe('a');
    // Whatever the exit left behind, the waiter count ends at 0 and no entry of it stays.
    await until(
      () => {
        q.put('b');
        q.get(true, 1000);
        const s = q.stats();
        return s.dataWaiters === 0 && !s.processes.some((p) => p.pid === child.pid);
      },
      'the exited process to leave no waiter count and no entry',
      2000,
      15,
    );
  });

  it('SageQueue works inside a worker_thread: put in the worker and get in the main thread, and the other way round', async () => {
    const name = queueName('wround');
    const q = track(SageQueue.create(name, { capacity: 1 << 16 }));
    const child = await spawnAgent('worker-host');
    await child.call('open', { how: 'open', name });
    const r = await child.call<{ mainGot: unknown[]; workerExit: number; workerMessages: WorkerRun['messages'] }>('workerRoundTrip', { count: 200 }, 20_000);
    expect(r.mainGot).toEqual(Array.from({ length: 200 }, (_, i) => ({ from: 'worker', i })));
    const received = r.workerMessages.find((m) => m.type === 'received');
    expect(received?.items).toEqual(Array.from({ length: 200 }, (_, i) => ({ from: 'main', i })));
    expect(r.workerExit).toBe(0);
    expect(q.qsize()).toBe(0);
    // The worker released its own handle; the child's main-thread handle is still attached.
    await until(() => entriesOf(q, child.pid).length === 1, "only the child's main-thread handle to remain", 5000, 10);
  });

  it('`for await` in a child ends once the parent closes the queue, after draining what was put before the close', async () => {
    const name = queueName('forawait');
    const q = track(SageQueue.create<Buffer>(name, { capacity: 1 << 16, codec: 'raw' }));
    const child = await spawnAgent('iterating');
    await child.call('open', { how: 'open', name });
    const iterating = child.call<ConsumeResult>('consume', { mode: 'for-await', report: 'each' }, 20_000);
    for (let s = 0; s < 5; s++) q.put(frames.makeFrame(1, s, 64));
    await child.waitFor(() => child.eventsNamed('frame').length >= 5, 'the first 5 frames');
    await until(() => q.stats().processes.find((p) => p.pid === child.pid && p.waiting > 0), 'the iterator to wait');
    for (let s = 5; s < 8; s++) q.put(frames.makeFrame(1, s, 64));
    const tClose = nowMs();
    q.close();
    const r = await iterating;
    console.log(`[for await] loop ended ${(r.tEnd - tClose).toFixed(2)} ms after close()`);
    expect(r.endedBy).toBe('iterator-end');
    expect(r.count).toBe(8);
    expect(r.bad).toEqual([]);
    expect(Array.from(r.frames)).toEqual([1, 0, 1, 1, 1, 2, 1, 3, 1, 4, 1, 5, 1, 6, 1, 7]);
    expect(r.tEnd - tClose).toBeLessThan(1000);
  });
});
