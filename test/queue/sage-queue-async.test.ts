/**
 * SageQueue's async path (lib/queue/sage-async.ts): an empty getAsync polls from the event loop
 * for spinUs, then parks the native notifier; messages are taken only by the JS thread for a
 * waiter still waiting, so timeouts and aborts racing arrivals lose nothing; iterate() batches and
 * a loop left early leaves the rest of its batch to the handle's next consumer.
 */
import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { SageQueue } from '../../lib/index';
import { QueueClosedError, QueueEmptyError, QueueReleasedError } from '../../lib/errors';
import { FixtureChild, REPO, queueName, sleep, track, useCleanup } from '../helpers/harness';
import { rejected } from '../support/expect-errors';

useCleanup();

const immediate = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function make<T>(options: Parameters<typeof SageQueue.create>[1] = {}): SageQueue<T> {
  return track(SageQueue.create<T>(queueName('async'), { codec: 'json', ...options }));
}

describe('getAsync: poll, then park', () => {
  it('polls without blocking the loop for spinUs (notifier not waiting), then parks the notifier on the futex; a put from another handle resolves it either way', async () => {
    const q = make<number>({ spinUs: 200_000 });
    const other = track(SageQueue.open<number>(q.name));
    // While polling: other callbacks keep running, and no native thread sleeps on the queue.
    const p1 = q.getAsync();
    let ticks = 0;
    const t0 = performance.now();
    while (performance.now() - t0 < 30) {
      await immediate();
      ticks++;
    }
    expect(ticks).toBeGreaterThan(20);
    expect(other.stats().dataWaiters).toBe(0);
    other.put(1);
    await expect(p1).resolves.toBe(1);
    // Past the budget: parked, the notifier thread asleep on the futex; the put still wakes it.
    const p2 = q.getAsync();
    await sleep(600);
    expect(other.stats().dataWaiters).toBe(1);
    other.put(2);
    await expect(p2).resolves.toBe(2);
    // setSpinUs(0): parks at once.
    q.setSpinUs(0);
    const p3 = q.getAsync();
    await sleep(50);
    expect(other.stats().dataWaiters).toBe(1);
    other.put(3);
    await expect(p3).resolves.toBe(3);
  });

  it('a worker_thread terminated while its getAsync polls (spinUs 1 s): no crash, its handle is released, the queue works on', async () => {
    const q = make<number>();
    const code = `
      const { SageQueue } = require(${JSON.stringify(REPO)});
      const { parentPort } = require('node:worker_threads');
      const h = SageQueue.open(${JSON.stringify(q.name)}, { spinUs: 1000000 });
      h.getAsync().catch(() => {});
      parentPort.postMessage(h.stats().dataWaiters);`;
    const w = new Worker(code, { eval: true });
    const [waitersWhilePolling] = (await once(w, 'message')) as [number];
    expect(waitersWhilePolling).toBe(0); // polling from its loop, not parked on the futex
    expect(q.stats().processes).toHaveLength(2);
    await w.terminate();
    expect(q.stats().processes).toHaveLength(1);
    q.put(5);
    expect(await q.getAsync()).toBe(5);
  });

  it('pending getAsync calls are served in call order, each with one message, in put order', async () => {
    for (const spinUs of [50, 0]) {
      const q = make<number>({ spinUs });
      const other = track(SageQueue.open<number>(q.name));
      const order: number[] = [];
      const waits = [0, 1, 2, 3].map((i) => q.getAsync().then((v) => order.push(i * 100 + v)));
      await sleep(20);
      other.putMany([1, 2, 3, 4]);
      await Promise.all(waits);
      expect(order).toEqual([1, 102, 203, 304]);
    }
  });

  it('putAsync on a queue with room has completed when it returns (the item is in the queue before any await)', async () => {
    const q = make<number>();
    const p = q.putAsync(7);
    expect(q.qsize()).toBe(1);
    await p;
    expect(q.get(false)).toBe(7);
  });
});

describe('cancellation racing arrivals', () => {
  it('in one process: a wait aborted or timing out as a message is put never takes it; every message is got exactly once, in order', async () => {
    const q = make<number>();
    const other = track(SageQueue.open<number>(q.name));
    const got: number[] = [];
    let seq = 0;
    for (let i = 0; i < 300; i++) {
      const ac = new AbortController();
      const settled = Promise.allSettled([q.getAsync({ signal: ac.signal }), q.getAsync({ timeoutMs: i % 3 }), q.getAsync({ timeoutMs: 5 })]);
      switch (i % 4) {
        case 0: // abort, then the put, in the same turn
          ac.abort(new Error('stop'));
          other.put(seq++);
          break;
        case 1: // the put, then the abort, in the same turn (the poll has not run yet)
          other.put(seq++);
          ac.abort(new Error('stop'));
          break;
        case 2: {
          // the put lands while the timer of the 0-2 ms wait is due in the same loop iteration
          const until = performance.now() + (i % 3);
          while (performance.now() < until);
          other.put(seq++);
          setImmediate(() => ac.abort(new Error('stop')));
          break;
        }
        default:
          await immediate();
          other.putMany([seq++, seq++]);
          ac.abort(new Error('stop'));
      }
      for (const r of await settled) {
        if (r.status === 'fulfilled') got.push(r.value);
        else if (!(r.reason instanceof QueueEmptyError) && (r.reason as Error).message !== 'stop') throw r.reason;
      }
    }
    for (let n = q.qsize(); n > 0; n--) got.push(q.get(false));
    expect(got).toEqual(Array.from({ length: seq }, (_, i) => i));
  });

  it('across processes: 3000 messages put at every pace while this process waits with random timeouts and aborts: each is got exactly once, in order', async () => {
    const q = make<number>();
    const producer = new FixtureChild('async-peer.cjs', ['produce', q.name, JSON.stringify({ count: 3000, seed: 7 })]);
    await producer.next('ready');
    producer.proc.send('go');
    const got: number[] = [];
    let done = false;
    void producer.next('done', 60_000).then(() => (done = true));
    let r = 12345;
    const rand = (): number => ((r = (Math.imul(r, 1103515245) + 12345) >>> 0) / 2 ** 32);
    while (!done || q.qsize() > 0) {
      const ac = new AbortController();
      const kind = rand();
      const waits =
        kind < 0.3
          ? [q.getAsync({ timeoutMs: Math.floor(rand() * 3) })]
          : kind < 0.6
            ? [q.getAsync({ signal: ac.signal }), q.getAsync({ timeoutMs: 2 })]
            : [q.getAsync({ timeoutMs: 20 })];
      if (kind >= 0.3 && kind < 0.6) {
        const delay = rand();
        if (delay < 0.3) ac.abort(new Error('stop'));
        else if (delay < 0.7) setImmediate(() => ac.abort(new Error('stop')));
        else setTimeout(() => ac.abort(new Error('stop')), 1);
      }
      for (const s of await Promise.allSettled(waits)) {
        if (s.status === 'fulfilled') got.push(s.value);
        else if (!(s.reason instanceof QueueEmptyError) && (s.reason as Error).message !== 'stop') throw s.reason;
      }
    }
    expect(await producer.exitCode()).toBe(0);
    expect(got.length).toBe(3000);
    expect(got).toEqual(Array.from({ length: 3000 }, (_, i) => i));
  }, 60_000);
});

describe('async ping-pong between two processes', () => {
  for (const [label, spinUs, n] of [
    ['default spin', undefined, 3000],
    ['spinUs 0', 0, 500],
  ] as const) {
    it(`${label}: ${n} round trips of putAsync/getAsync, every value echoed back in order`, async () => {
      const opts = spinUs === undefined ? {} : { spinUs };
      const out = track(SageQueue.create<number>(queueName('ping'), { codec: 'json', ...opts }));
      const back = track(SageQueue.create<number>(queueName('pong'), { codec: 'json', ...opts }));
      const peer = new FixtureChild('async-peer.cjs', ['echo', out.name, JSON.stringify({ ...opts, out: back.name })]);
      await peer.next('ready');
      const wrong: Array<[number, number]> = [];
      for (let i = 0; i < n; i++) {
        await out.putAsync(i);
        const v = await back.getAsync({ timeoutMs: 10_000 });
        if (v !== i) wrong.push([i, v]);
      }
      out.close();
      expect(wrong).toEqual([]);
      expect((await peer.next('done')).echoed).toBe(n);
      expect(back.qsize()).toBe(0);
    }, 60_000);
  }

  // The loop poller keeps polling in the same loop iteration while replies keep coming (a bounded
  // turn): the loop's other phases must still run during a long exchange, not only after it.
  it('a sustained ping-pong does not starve the loop: a 1 ms timer and recurring immediates run during it', async () => {
    const n = 20_000;
    const out = track(SageQueue.create<number>(queueName('ping'), { codec: 'json' }));
    const back = track(SageQueue.create<number>(queueName('pong'), { codec: 'json' }));
    const peer = new FixtureChild('async-peer.cjs', ['echo', out.name, JSON.stringify({ out: back.name })]);
    await peer.next('ready');
    let i = 0;
    let timerAt = -1;
    let immediates = 0;
    let running = true;
    const onImmediate = (): void => {
      immediates++;
      if (running) setImmediate(onImmediate);
    };
    setImmediate(onImmediate);
    const timer = setTimeout(() => {
      timerAt = i;
    }, 1);
    let wrong = 0;
    for (; i < n; i++) {
      await out.putAsync(i);
      if ((await back.getAsync({ timeoutMs: 10_000 })) !== i) wrong++;
    }
    running = false;
    clearTimeout(timer);
    out.close();
    expect(wrong).toBe(0);
    expect(timerAt).toBeGreaterThanOrEqual(0);
    expect(timerAt).toBeLessThan(n);
    expect(immediates).toBeGreaterThan(1);
    expect((await peer.next('done')).echoed).toBe(n);
  }, 60_000);
});

describe('iterate() batches', () => {
  it('yields every message in order; leaving the loop mid-batch leaves the rest to this handle\'s next get, getMany, getRawBatch, getAsync and iterate, in order', async () => {
    const q = make<number>();
    q.putMany(Array.from({ length: 200 }, (_, i) => i));
    const seen: number[] = [];
    for await (const m of q) {
      seen.push(m);
      if (m === 9) break;
    }
    expect(seen).toEqual(Array.from({ length: 10 }, (_, i) => i));
    expect(q.qsize()).toBe(200 - 64); // one batch of 64 was taken: 54 of it are held by this handle
    const other = track(SageQueue.open<number>(q.name));
    expect(other.get(false)).toBe(64); // another handle sees only the shared queue
    expect(q.get(false)).toBe(10);
    expect(q.getMany(5)).toEqual([11, 12, 13, 14, 15]);
    const raw = q.getRawBatch(3);
    expect(Array.from({ length: raw.count }, (_, i) => JSON.parse(raw.buffer.toString('utf8', raw.offsets[i], raw.offsets[i]! + raw.lengths[i]!)))).toEqual([16, 17, 18]);
    expect(await q.getAsync()).toBe(19);
    q.close();
    const rest: number[] = [];
    for await (const m of q.iterate({ batchSize: 7 })) rest.push(m);
    expect(rest).toEqual([...Array.from({ length: 44 }, (_, i) => 20 + i), ...Array.from({ length: 135 }, (_, i) => 65 + i)]);
  });

  it('batchSize 1 takes a message only when it yields it: leaving the loop leaves the rest in the shared queue', async () => {
    const q = make<number>();
    q.putMany([1, 2, 3, 4]);
    for await (const m of q.iterate({ batchSize: 1 })) if (m === 2) break;
    expect(q.qsize()).toBe(2);
    expect(track(SageQueue.open<number>(q.name)).get(false)).toBe(3);
  });

  it('an iterate() started while a getAsync waits queues behind it; release() drops what the handle held (documented)', async () => {
    const q = make<number>();
    const other = track(SageQueue.open<number>(q.name));
    const first = q.getAsync();
    const it = q.iterate();
    const second = it.next();
    await sleep(5);
    other.putMany([1, 2, 3]);
    expect(await first).toBe(1);
    expect((await second).value).toBe(2);
    expect((await it.next()).value).toBe(3);
    other.putMany([4, 5, 6]);
    expect((await it.next()).value).toBe(4);
    // 5 and 6 came in the same batch: q holds them now; released with the handle, they are gone.
    expect(other.qsize()).toBe(0);
    q.release();
    await rejected(q.getAsync(), QueueReleasedError, 'ERR_QUEUE_RELEASED');
    expect(other.getMany(10, { block: false })).toEqual([]);
    await it.return();
  });
});

describe('no leak', () => {
  const fdCount = (): number => readdirSync('/proc/self/fd').length;
  const threads = (): number => readdirSync('/proc/self/task').length;

  it('600 cycles of polled, parked, timed-out and closed getAsync waits leave no descriptor or thread behind', async () => {
    const cycle = async (i: number): Promise<void> => {
      const q = SageQueue.create<number>(queueName('leak'), { codec: 'json', spinUs: i % 2 === 0 ? 50 : 0 });
      const polled = q.getAsync();
      q.put(i);
      if ((await polled) !== i) throw new Error(`cycle ${i}: wrong message`);
      await rejected(q.getAsync({ timeoutMs: 1 }), QueueEmptyError, 'ERR_QUEUE_EMPTY');
      const closed = q.getAsync();
      if (i % 3 === 0) await sleep(1); // parked by then
      q.close();
      await rejected(closed, QueueClosedError, 'ERR_QUEUE_CLOSED');
      q.destroy();
    };
    for (let i = 0; i < 20; i++) await cycle(i);
    const fds = fdCount();
    const threadCount = threads();
    for (let i = 20; i < 620; i++) await cycle(i);
    await immediate();
    expect(fdCount()).toBe(fds);
    expect(threads()).toBeLessThanOrEqual(threadCount + 1);
  }, 60_000);

  it('a wait that times out or is aborted stops the loop polling at once, even with a long spin budget (the loop goes idle)', async () => {
    const q = make<number>({ spinUs: 1_000_000 });
    const cpuWhile = async (ms: number): Promise<number> => {
      const before = process.cpuUsage();
      await sleep(ms);
      const used = process.cpuUsage(before);
      return (used.user + used.system) / 1000;
    };
    // Polling (the control): the loop stays busy for the budget.
    const polling = q.getAsync({ timeoutMs: 400 });
    expect(await cpuWhile(300)).toBeGreaterThan(50); // loose: other processes share the cores
    await rejected(polling, QueueEmptyError, 'ERR_QUEUE_EMPTY');
    await rejected(q.getAsync({ timeoutMs: 5 }), QueueEmptyError, 'ERR_QUEUE_EMPTY');
    expect(await cpuWhile(300)).toBeLessThan(30);
    const ac = new AbortController();
    const aborted = q.getAsync({ signal: ac.signal });
    await sleep(5);
    ac.abort(new Error('stop'));
    await expect(aborted).rejects.toThrow('stop');
    expect(await cpuWhile(300)).toBeLessThan(30);
  });
});
