/**
 * Connection: one downstream target of a router. Its load read from real queue state (including a
 * SageQueue filled by another process), its load history and trend, lazy descriptor resolution,
 * send() (copy addressed to the target input, counters, timeouts) and its argument checks.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';

import {
  ArgumentRangeError, Connection, InvalidArgumentTypeError, LocalQueue, Packet, QueueClosedError, QueueDescriptor, QueueFullError,
  SageQueue, registerQueueImplementation,
} from '../../lib/index';
import { FixtureChild, cleanup, queueName, track, trackQueueType } from '../helpers/harness';
import { FakeClock } from '../support/fake-clock';
import { rejected, thrown } from '../support/expect-errors';
import { OpaqueQueue } from '../support/opaque-queue';

// ---------------------------------------------------------------------------------------------
// Cleanup: every child killed, every handle released, every segment destroyed, every queue type
// registered here unregistered — after each test, whether it passed or not.
afterEach(cleanup);

const conn = (handle: Connection['queue'] | QueueDescriptor, extra: Partial<ConstructorParameters<typeof Connection>[0]> = {}, clock?: FakeClock): Connection =>
  new Connection({ broadcastIndex: 0, parallelIndex: 0, targetName: 'target', targetHandle: handle, ...extra }, clock);

// ---------------------------------------------------------------------------------------------

describe('Connection.getBufferLoad() is depth/maxsize from the real queue', () => {
  it('LocalQueue({maxsize: 8}): 0, then 3/8, then 8/8, then back down as items are taken', () => {
    const q = new LocalQueue<number>({ maxsize: 8 });
    const c = conn(q);
    expect(c.getBufferLoad()).toBe(0);
    for (let i = 0; i < 3; i++) q.put(i);
    expect(c.getBufferLoad()).toBe(3 / 8);
    for (let i = 0; i < 5; i++) q.put(i);
    expect(c.getBufferLoad()).toBe(1);
    q.get();
    q.get();
    expect(c.getBufferLoad()).toBe(6 / 8);
  });

  it('an unbounded LocalQueue reports 0', () => {
    const q = new LocalQueue<number>();
    for (let i = 0; i < 100; i++) q.put(i);
    expect(conn(q).getBufferLoad()).toBe(0);
  });

  it('SageQueue({maxsize: 100}) filled by this process: 25/100', () => {
    const name = queueName('load');
    const q = SageQueue.create<number>(name, { capacity: 1 << 16, maxsize: 100 });
    track(q);
    const c = conn(q);
    expect(c.getBufferLoad()).toBe(0);
    for (let i = 0; i < 25; i++) q.put(i);
    expect(c.getBufferLoad()).toBe(0.25);
  });

  it('SageQueue({maxsize: 100}) filled by ANOTHER PROCESS: the parent reads 37/100 from shared memory, directly and through a descriptor', async () => {
    const name = queueName('xload');
    const q = SageQueue.create<unknown>(name, { capacity: 1 << 16, maxsize: 100 });
    track(q);
    const direct = conn(q);
    const viaDescriptor = conn(q.descriptor, { targetName: 'by-descriptor' });
    expect(direct.getBufferLoad()).toBe(0);

    const child = new FixtureChild('router-putter.cjs', [name, '37']);
    const done = await child.next('done');
    expect(done).toMatchObject({ count: 37, qsize: 37 });
    expect(done.pid).not.toBe(process.pid);

    expect(direct.getBufferLoad()).toBe(0.37);
    expect(viaDescriptor.getBufferLoad()).toBe(0.37);
    track(viaDescriptor.queue as SageQueue); // the descriptor opened a handle of its own
    expect(viaDescriptor.queue).not.toBe(q);

    // The producer leaves; its messages stay. The parent takes 10: every view agrees on 27.
    child.proc.send('exit');
    expect(await child.exitCode()).toBe(0);
    expect(direct.getBufferLoad()).toBe(0.37);
    for (let i = 0; i < 10; i++) expect(q.get(true, 1000)).toMatchObject({ from: done.pid, i });
    expect(direct.getBufferLoad()).toBe(0.27);
    expect(viaDescriptor.getBufferLoad()).toBe(0.27);
  });
});

describe('Connection load history and trend', () => {
  it('filling records one sample per reading (oldest first) and a positive trend; draining turns the trend negative', () => {
    const clock = new FakeClock();
    const q = new LocalQueue<number>({ maxsize: 20 });
    const c = conn(q, {}, clock);
    const t0 = clock.now();
    c.getBufferLoad();
    for (let i = 1; i <= 10; i++) {
      q.put(i);
      clock.advance(100);
      expect(c.getBufferLoad()).toBe(i / 20);
    }
    expect(c.loadHistory.map((s) => s.load)).toEqual(Array.from({ length: 11 }, (_, i) => i / 20));
    expect(c.loadHistory.map((s) => s.at)).toEqual(Array.from({ length: 11 }, (_, i) => t0 + i * 100));
    const filling = c.loadTrend;
    // +1/20 per 100 ms is +0.5 per second; the smoothed slope approaches it from below.
    expect(filling).toBeGreaterThan(0.4);
    expect(filling).toBeLessThanOrEqual(0.5 + 1e-9);

    for (let i = 1; i <= 10; i++) {
      q.get();
      clock.advance(100);
      c.getBufferLoad();
    }
    expect(c.loadTrend).toBeLessThan(0);
    expect(c.loadTrend).toBeGreaterThanOrEqual(-0.5 - 1e-9);
    expect(c.loadHistory[c.loadHistory.length - 1]?.load).toBe(0);
  });

  it('two readings at the same instant keep one sample (the latest) and do not change the trend', () => {
    const clock = new FakeClock();
    const q = new LocalQueue<number>({ maxsize: 10 });
    const c = conn(q, {}, clock);
    c.getBufferLoad();
    q.put(1);
    c.getBufferLoad();
    expect(c.loadHistory).toEqual([{ at: clock.now(), load: 0.1 }]);
    expect(c.loadTrend).toBe(0);
  });

  it('the history keeps the 32 most recent samples', () => {
    const clock = new FakeClock();
    const q = new LocalQueue<number>({ maxsize: 100 });
    const c = conn(q, {}, clock);
    for (let i = 0; i < 50; i++) {
      q.put(i);
      clock.advance(10);
      c.getBufferLoad();
    }
    expect(c.loadHistory.length).toBe(32);
    expect(c.loadHistory[0]?.load).toBe(19 / 100);
    expect(c.loadHistory[31]?.load).toBe(50 / 100);
  });

  it('a SageQueue filled by this process shows a positive trend, drained a negative one (real clock)', async () => {
    const name = queueName('trend');
    const q = SageQueue.create<number>(name, { capacity: 1 << 16, maxsize: 50 });
    track(q);
    const c = conn(q);
    for (let i = 0; i < 10; i++) {
      q.put(i);
      await new Promise((r) => setTimeout(r, 2));
      c.getBufferLoad();
    }
    expect(c.loadTrend).toBeGreaterThan(0);
    for (let i = 0; i < 10; i++) {
      q.get();
      await new Promise((r) => setTimeout(r, 2));
      c.getBufferLoad();
    }
    expect(c.loadTrend).toBeLessThan(0);
  });
});

describe('Connection.reportLoad() for queues that cannot tell their load', () => {
  it('without a report the load is unknown (undefined); a report is returned as the load', () => {
    const clock = new FakeClock();
    const c = conn(new OpaqueQueue(), {}, clock);
    expect(c.getBufferLoad()).toBeUndefined();
    c.reportLoad(0.4);
    expect(c.getBufferLoad()).toBe(0.4);
    expect(c.loadHistory).toEqual([{ at: clock.now(), load: 0.4 }]);
  });

  it('freshLoad(maxAge) ignores a report older than maxAge', () => {
    const clock = new FakeClock();
    const c = conn(new OpaqueQueue(), {}, clock);
    c.reportLoad(0.3, clock.now() - 5000);
    expect(c.freshLoad(1000)).toBeUndefined();
    c.reportLoad(0.6);
    expect(c.freshLoad(1000)).toBe(0.6);
    clock.advance(1001);
    expect(c.freshLoad(1000)).toBeUndefined();
  });

  it('a load that is not a number is ERR_INVALID_ARG_TYPE', () => {
    const c = conn(new OpaqueQueue());
    thrown(() => c.reportLoad('0.5' as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
  });

  it('a number outside [0, 1] (or NaN) is ERR_OUT_OF_RANGE, like every other out-of-range number in the package', () => {
    const c = conn(new OpaqueQueue());
    for (const bad of [1.5, -0.1, NaN]) thrown(() => c.reportLoad(bad), ArgumentRangeError, 'ERR_OUT_OF_RANGE');
  });
});

describe('Connection with a descriptor targetHandle', () => {
  it('the descriptor is resolved on first use, exactly once', async () => {
    const type = `router-lazy-${randomBytes(3).toString('hex')}`;
    let opened = 0;
    const local = new LocalQueue<unknown>({ maxsize: 4 });
    registerQueueImplementation(type, () => {
      opened++;
      return local;
    });
    trackQueueType(type);
    const desc = new QueueDescriptor({ queueId: `lazy-${randomBytes(4).toString('hex')}`, queueType: type });
    const c = conn(desc);
    expect(opened).toBe(0); // constructing the connection opened nothing
    expect(c.targetType).toBe(type);
    await c.send(new Packet('a'));
    expect(opened).toBe(1);
    expect(c.queue).toBe(local);
    expect(c.getBufferLoad()).toBe(0.25);
    await c.send(new Packet('b'));
    expect(opened).toBe(1);
    expect(local.qsize()).toBe(2);
  });

  it('a descriptor whose type cannot open fails at first use (the send rejects and counts failed), not at construction', async () => {
    const type = `router-broken-${randomBytes(3).toString('hex')}`;
    registerQueueImplementation(type, () => {
      throw new QueueClosedError('cannot open');
    });
    trackQueueType(type);
    const c = conn(new QueueDescriptor({ queueId: `broken-${randomBytes(4).toString('hex')}`, queueType: type }));
    await rejected(c.send(new Packet(1)), QueueClosedError, 'ERR_QUEUE_CLOSED');
    expect(c.counters).toMatchObject({ sent: 1, delivered: 0, failed: 1 });
  });

  it("a SageQueue descriptor resolves to the segment: a send lands in the creator's queue", async () => {
    const name = queueName('desc');
    const q = SageQueue.create<unknown>(name, { capacity: 1 << 16, maxsize: 10 });
    track(q);
    const c = conn(q.descriptor);
    expect(c.targetType).toBe('sage_queue');
    await c.send(new Packet({ hello: 1 }, { partitionKey: 'k' }));
    track(c.queue as SageQueue);
    const got = q.get(true, 1000) as { payload: unknown; partitionKey: unknown };
    expect(got.payload).toEqual({ hello: 1 });
    expect(got.partitionKey).toBe('k');
  });
});

describe('Connection.send()', () => {
  it('delivers a copy whose inputIndex is targetInputIndex; the original is unchanged', async () => {
    const q = new LocalQueue<Packet>();
    const c = conn(q, { targetInputIndex: 2 });
    const p = new Packet({ v: 1 }, { partitionKey: 'k' });
    await c.send(p);
    const got = q.getNowait();
    expect(got).toBeInstanceOf(Packet);
    expect(got).not.toBe(p);
    expect(got.inputIndex).toBe(2);
    expect(got.traceId).toBe(p.traceId);
    expect(got.partitionKey).toBe('k');
    expect(got.payload).toBe(p.payload);
    expect(p.inputIndex).toBe(0);
  });

  it('counts sent, delivered and payload bytes (Uint8Array and UTF-8 string payloads; others count 0)', async () => {
    const q = new LocalQueue<Packet>();
    const c = conn(q);
    await c.send(new Packet(new Uint8Array(10)));
    await c.send(new Packet('héllo')); // 6 bytes in UTF-8
    await c.send(new Packet({ not: 'bytes' }));
    expect(c.counters).toEqual({ sent: 3, delivered: 3, failed: 0, retried: 0, bytes: 16 });
    expect(q.qsize()).toBe(3);
  });

  it('a send to a full LocalQueue times out after timeoutMs (QueueFullError, timedOut) and counts failed', async () => {
    const q = new LocalQueue<unknown>({ maxsize: 1 });
    q.put('occupant');
    const c = conn(q);
    const t0 = performance.now();
    const e = await rejected(c.send(new Packet('x'), { timeoutMs: 40 }), QueueFullError, 'ERR_QUEUE_FULL');
    const waited = performance.now() - t0;
    expect(e.timedOut).toBe(true);
    expect(waited).toBeGreaterThanOrEqual(35);
    expect(waited).toBeLessThan(2000);
    expect(c.counters).toEqual({ sent: 1, delivered: 0, failed: 1, retried: 0, bytes: 0 });
    expect(q.qsize()).toBe(1); // nothing was enqueued late
    q.get();
    await new Promise((r) => setTimeout(r, 10));
    expect(q.qsize()).toBe(0);
  });

  it('a send to a full SageQueue times out after timeoutMs and counts failed; nothing is enqueued later', async () => {
    const name = queueName('full');
    const q = SageQueue.create<unknown>(name, { capacity: 1 << 16, maxsize: 2 });
    track(q);
    q.put(1);
    q.put(2);
    const c = conn(q);
    const t0 = performance.now();
    const e = await rejected(c.send(new Packet('x'), { timeoutMs: 40 }), QueueFullError, 'ERR_QUEUE_FULL');
    expect(e.timedOut).toBe(true);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(35);
    expect(c.counters).toMatchObject({ sent: 1, delivered: 0, failed: 1 });
    q.get();
    await new Promise((r) => setTimeout(r, 20));
    expect(q.qsize()).toBe(1);
  });

  it('a send to a closed queue rejects with QueueClosedError and counts failed', async () => {
    const q = new LocalQueue<unknown>();
    q.close();
    const c = conn(q);
    await rejected(c.send(new Packet('x')), QueueClosedError, 'ERR_QUEUE_CLOSED');
    expect(c.counters).toMatchObject({ sent: 1, delivered: 0, failed: 1 });
  });
});

describe('Connection health helpers', () => {
  it('markDown() takes the target out until markUp(), however much time passes', () => {
    const clock = new FakeClock();
    const c = conn(new LocalQueue(), {}, clock);
    expect(c.isAvailable()).toBe(true);
    c.markDown('consumer exited');
    expect(c.health).toMatchObject({ state: 'ejected', nextProbeAt: null, lastError: 'consumer exited' });
    clock.advance(10 ** 9);
    expect(c.isAvailable()).toBe(false);
    c.markUp();
    expect(c.isAvailable()).toBe(true);
    expect(c.health).toMatchObject({ state: 'healthy', consecutiveFailures: 0, nextProbeAt: null });
  });

  it('toString() names target, broadcast and parallel index', () => {
    expect(conn(new LocalQueue(), { broadcastIndex: 2, parallelIndex: 5, targetName: 'w' }).toString()).toBe('w[2.5]');
  });
});

describe('Connection argument checks', () => {
  const q = new LocalQueue();
  it('bad init → typed errors with codes', () => {
    thrown(() => new Connection(null as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => conn(q, { targetName: '' }), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => conn({ put: () => {} } as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => conn(q, { broadcastIndex: -1 }), ArgumentRangeError, 'ERR_OUT_OF_RANGE');
    thrown(() => conn(q, { parallelIndex: 0.5 }), ArgumentRangeError, 'ERR_OUT_OF_RANGE');
    thrown(() => conn(q, { targetInputIndex: '1' as never }), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => conn(q, { target: 'x' } as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
  });
});
