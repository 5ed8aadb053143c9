/**
 * Waiting asynchronously on a SageQueue never blocks the event loop: the wait happens on a
 * native thread, and the JS thread keeps running timers until another process makes the wait
 * succeed.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { SageQueue } from '../../lib/index';
import { cleanup, queueName, spawnAgent, sweepSegments, track } from '../helpers/harness';

afterEach(cleanup);
afterAll(() => {
  expect(sweepSegments()).toEqual([]);
});

const PERIOD_MS = 10;
const WINDOW_MS = 2000;
const MAX_WINDOWS = 3;

interface Window {
  worstDriftMs: number;
  ticks: number;
  cpuMs: number;
}

/**
 * Runs a PERIOD_MS setInterval for about WINDOW_MS; returns the worst lateness of a tick (how
 * much longer than PERIOD_MS the gap between two ticks was), the tick count, and the CPU time
 * this process used meanwhile.
 */
function watchWindow(): Promise<Window> {
  return new Promise((resolve) => {
    const cpu0 = process.cpuUsage();
    const start = performance.now();
    let last = start;
    let worst = 0;
    let ticks = 0;
    const timer = setInterval(() => {
      const now = performance.now();
      worst = Math.max(worst, now - last - PERIOD_MS);
      last = now;
      ticks++;
      if (now - start >= WINDOW_MS) {
        clearInterval(timer);
        const cpu = process.cpuUsage(cpu0);
        resolve({ worstDriftMs: worst, ticks, cpuMs: (cpu.user + cpu.system) / 1000 });
      }
    }, PERIOD_MS);
  });
}

/**
 * Watches the event loop for 2 s windows while a wait stays pending. A wait that blocked the JS
 * thread would spoil every window (it lasts as long as the wait); on this shared 2-core machine
 * other processes cause occasional isolated stalls of a few tens of ms, so a window spoiled by
 * one is measured again, up to MAX_WINDOWS times in all. The verdict uses the best window; every
 * window must still be free of anything near a blocked loop (< 500 ms).
 */
async function watchEventLoop(label: string, stillPending: () => boolean): Promise<Window & { windows: Window[] }> {
  const windows: Window[] = [];
  do {
    windows.push(await watchWindow());
  } while (windows.length < MAX_WINDOWS && stillPending() && (windows.at(-1) as Window).worstDriftMs >= 20);
  const best = windows.reduce((a, b) => (b.worstDriftMs < a.worstDriftMs ? b : a));
  console.log(
    `[event loop, ${label}] worst drift per ${WINDOW_MS} ms window: ${windows.map((w) => `${w.worstDriftMs.toFixed(2)} ms (${w.ticks} ticks, CPU ${w.cpuMs.toFixed(0)} ms)`).join('; ')}`,
  );
  for (const w of windows) expect(w.worstDriftMs).toBeLessThan(500);
  return { ...best, windows };
}

describe('the event loop while a SageQueue waits', () => {
  it('keeps ticking (worst timer drift < 20 ms) while getAsync waits for seconds, and the getAsync resolves with what a child then puts', async () => {
    const name = queueName('el-get');
    const q = track(SageQueue.create<{ hello: string }>(name, { capacity: 1 << 16 }));
    const child = await spawnAgent('putter');
    await child.call('open', { how: 'open', name });

    let settled = false;
    const pending = q.getAsync({ timeoutMs: 60_000 });
    void pending.then(
      () => (settled = true),
      () => (settled = true),
    );
    const watch = await watchEventLoop('getAsync pending', () => !settled);
    expect(settled).toBe(false);
    expect(watch.worstDriftMs).toBeLessThan(20);
    expect(watch.ticks).toBeGreaterThan(WINDOW_MS / PERIOD_MS / 2);
    // Waiting must not mean spinning the CPU.
    expect(watch.cpuMs).toBeLessThan(WINDOW_MS / 2);

    await child.call('putValues', { values: [{ hello: 'from the child' }] });
    await expect(pending).resolves.toEqual({ hello: 'from the child' });
    expect(q.qsize()).toBe(0);
  });

  it('keeps ticking (worst timer drift < 20 ms) while putAsync waits on a full queue, and the put completes once a child makes room', async () => {
    const name = queueName('el-put');
    const q = track(SageQueue.create<string>(name, { capacity: 1 << 16, maxsize: 1 }));
    q.put('first');
    expect(q.full()).toBe(true);
    const child = await spawnAgent('getter');
    await child.call('open', { how: 'open', name });

    let settled = false;
    const pending = q.putAsync('second', { timeoutMs: 60_000 });
    void pending.then(
      () => (settled = true),
      () => (settled = true),
    );
    const watch = await watchEventLoop('putAsync pending', () => !settled);
    expect(settled).toBe(false);
    expect(q.qsize()).toBe(1);
    expect(watch.worstDriftMs).toBeLessThan(20);
    expect(watch.ticks).toBeGreaterThan(WINDOW_MS / PERIOD_MS / 2);
    expect(watch.cpuMs).toBeLessThan(WINDOW_MS / 2);

    expect(await child.call('get', { timeoutMs: 2000 })).toBe('first');
    await pending;
    expect(q.qsize()).toBe(1);
    expect(q.get(false)).toBe('second');
  });
});
