/**
 * Explicit acks on a SageQueue (issue #11): leases, ack / nack / inProgress, redelivery of expired
 * and dead consumers' leases, stale acks refused, maxUnacked, dead letters. The crash cases use
 * real child processes parked at the native test hooks and real SIGKILLs.
 */
import { describe, expect, it } from 'vitest';
import {
  InvalidArgumentTypeError, InvalidArgumentValueError, LeaseLostError, collectMetrics, LocalQueue, MaxUnackedError, QueueDescriptor, QueueEmptyError, QueueFullError, SageQueue,
  SageQueueError, SerializationError, resolveDescriptor,
} from '../../lib/index';
import { native } from '../../lib/native';
import type { SageDeadLetter, SageMessage } from '../../lib/index';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { REPO, queueName, sleep, spawnAgent, track, until, useCleanup } from '../helpers/harness';
import { testAddonEnv } from '../helpers/test-addon';
import { rejected, thrown } from '../support/expect-errors';

useCleanup();

const HOOKS = { env: testAddonEnv() };

type Job = { n: number };
interface Taken {
  id: string;
  deliveries: number;
  value: Job;
}

function explicitQueue(tag: string, options: { ackTimeoutMs?: number; capacity?: number; maxUnacked?: number } = {}): SageQueue<Job, SageMessage<Job>> {
  return track(SageQueue.create<Job>(queueName(tag), { ackMode: 'explicit', capacity: options.capacity ?? 1 << 16, ...options }));
}

function putJobs(q: SageQueue<Job, SageMessage<Job>>, from: number, count: number): void {
  for (let n = from; n < from + count; n++) q.put({ n });
}

/** Busy-waits (the sync API's leases expire by the clock). */
function spin(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // spin
  }
}

describe('explicit acks in one process', () => {
  it('a get hands out a SageMessage; ack settles it once; the id is stable and a second ack is refused with LeaseLostError', () => {
    const q = explicitQueue('basic');
    expect(q.ackMode).toBe('explicit');
    putJobs(q, 0, 2);
    const m = q.get();
    expect(m.value).toEqual({ n: 0 });
    expect(m.deliveries).toBe(1);
    expect(m.deliveryCount).toBe(1);
    expect(typeof m.id).toBe('string');
    expect(q.unacked).toBe(1);
    m.ack();
    expect(m.settled).toBe(true);
    expect(q.unacked).toBe(0);
    const e = thrown(() => m.ack(), LeaseLostError, 'ERR_QUEUE_LEASE_LOST');
    expect(e.messageId).toBe(m.id);
    expect(q.get().value).toEqual({ n: 1 });
    expect(q.stats().leases).toMatchObject({ acks: 1, redeliveries: 0 });
  });

  it('nack delivers the message again before newer ones, with deliveries 2 and the same id', () => {
    const q = explicitQueue('nack');
    putJobs(q, 0, 3);
    const first = q.get();
    first.nack();
    const again = q.get();
    expect(again.value).toEqual({ n: 0 });
    expect(again.id).toBe(first.id);
    expect(again.deliveries).toBe(2);
    expect(q.get().value).toEqual({ n: 1 });
    expect(q.stats().leases).toMatchObject({ nacks: 1, redeliveries: 1 });
  });

  it('nack({ delayMs }) holds the message back until the delay has passed, while newer messages flow', async () => {
    const q = explicitQueue('delay');
    putJobs(q, 0, 2);
    const m = q.get();
    m.nack({ delayMs: 150 });
    expect(q.get().value).toEqual({ n: 1 }); // the newer one, not the delayed one
    thrown(() => q.getNowait(), QueueEmptyError, 'ERR_QUEUE_EMPTY');
    expect(q.qsize()).toBe(1); // still counted as waiting
    await sleep(200);
    const again = q.getNowait();
    expect(again.value).toEqual({ n: 0 });
    expect(again.deliveries).toBe(2);
  });

  it('a lease not settled within ackTimeoutMs is delivered again; the old delivery\'s ack is refused, the new one\'s accepted', () => {
    const q = explicitQueue('expire', { ackTimeoutMs: 60 });
    putJobs(q, 0, 1);
    const first = q.get();
    thrown(() => q.getNowait(), QueueEmptyError, 'ERR_QUEUE_EMPTY');
    spin(80);
    const second = q.getNowait();
    expect(second.id).toBe(first.id);
    expect(second.deliveries).toBe(2);
    thrown(() => first.ack(), LeaseLostError, 'ERR_QUEUE_LEASE_LOST');
    second.ack();
    expect(q.stats().leases).toMatchObject({ expiredLeases: 1, acks: 1, staleSettles: 1 });
  });

  it('an ack that arrives after the lease expired but before anyone took the message again is accepted', () => {
    const q = explicitQueue('late', { ackTimeoutMs: 40 });
    putJobs(q, 0, 2);
    const first = q.get();
    spin(60);
    // A get now scans: the lease is taken back (REDELIVER) and, the batch being 1, delivered...
    // so settle before any get: the late ack wins and nothing is delivered twice.
    first.ack();
    const next = q.getNowait();
    expect(next.value).toEqual({ n: 1 });
    expect(next.deliveries).toBe(1);
    thrown(() => q.getNowait(), QueueEmptyError, 'ERR_QUEUE_EMPTY');
  });

  it('inProgress() restarts the lease: the message is not delivered again while its consumer keeps extending it', () => {
    const q = explicitQueue('extend', { ackTimeoutMs: 80 });
    putJobs(q, 0, 1);
    const m = q.get();
    for (let i = 0; i < 4; i++) {
      spin(40);
      m.inProgress();
      thrown(() => q.getNowait(), QueueEmptyError, 'ERR_QUEUE_EMPTY');
    }
    m.ack();
    expect(q.stats().leases?.expiredLeases).toBe(0);
  });

  it('space is not reused until acked: a ring full of leased messages refuses puts, and accepts them once they are acked', () => {
    const q = explicitQueue('space', { capacity: 4096 });
    const big = { n: 0, pad: 'x'.repeat(400) } as Job;
    let put = 0;
    for (;;) {
      try {
        q.putNowait({ ...big, n: put });
        put++;
      } catch (e) {
        expect(e).toBeInstanceOf(QueueFullError);
        break;
      }
    }
    const taken = q.getMany(100, { block: false });
    expect(taken.length).toBe(put);
    thrown(() => q.putNowait(big), QueueFullError, 'ERR_QUEUE_FULL');
    expect(q.ackMany(taken)).toBe(put);
    q.putNowait(big); // the acked space is reused
    expect(q.getNowait().value).toEqual(big);
  });

  it('maxUnacked: sync gets at the limit throw MaxUnackedError; getMany takes only up to it; getAsync waits until this handle acks one', async () => {
    const q = explicitQueue('unacked', { maxUnacked: 3 });
    putJobs(q, 0, 6);
    const a = q.get();
    expect(q.getMany(10, { block: false }).map((m) => m.value.n)).toEqual([1, 2]);
    const e = thrown(() => q.get(), MaxUnackedError, 'ERR_QUEUE_MAX_UNACKED');
    expect(e.maxUnacked).toBe(3);
    thrown(() => q.getMany(5, { block: false }), MaxUnackedError, 'ERR_QUEUE_MAX_UNACKED');
    let resolved: SageMessage<Job> | undefined;
    const pending = q.getAsync({ timeoutMs: 5000 }).then((m) => (resolved = m));
    await sleep(30);
    expect(resolved).toBeUndefined(); // waiting for room, not for data (3 more are there)
    a.ack();
    await pending;
    expect(resolved?.value).toEqual({ n: 3 });
  });

  it('maxUnacked counts only leases still held: expired ones taken back no longer count', () => {
    const q = explicitQueue('recount', { maxUnacked: 1, ackTimeoutMs: 40 });
    putJobs(q, 0, 2);
    const first = q.get();
    thrown(() => q.get(), MaxUnackedError, 'ERR_QUEUE_MAX_UNACKED');
    spin(60);
    const again = q.get(); // the recount finds the expired lease, the scan redelivers it
    expect(again.id).toBe(first.id);
    expect(again.deliveries).toBe(2);
  });

  it('after maxDeliveries a message goes to the deadLetter queue with its reason and count, and is not handed out', async () => {
    const dlq = new LocalQueue<SageDeadLetter>();
    const q = track(
      SageQueue.create<Job>(queueName('dlq'), { ackMode: 'explicit', maxDeliveries: 2, deadLetter: dlq, capacity: 1 << 16 }),
    );
    putJobs(q, 0, 2);
    q.get().nack(); // delivery 1 of n=0
    q.get().nack(); // delivery 2 of n=0
    // Delivery 3 would exceed maxDeliveries: it goes to the dead letters; the get hands out n=1.
    const next = q.get();
    expect(next.value).toEqual({ n: 1 });
    const dead = await dlq.getAsync({ timeoutMs: 2000 });
    expect(dead).toMatchObject({ reason: 'max-deliveries', deliveries: 3, value: { n: 0 }, queue: q.name });
    await until(() => q.stats().leases?.acks === 1, 'the dead-lettered message to be acked');
    next.deadLetter('bad input').catch(() => undefined);
    expect(await dlq.getAsync({ timeoutMs: 2000 })).toMatchObject({ reason: 'bad input', deliveries: 1, value: { n: 1 } });
  });

  it('without a deadLetter queue a message past maxDeliveries is still delivered (never dropped), its deliveries telling', () => {
    const q = track(SageQueue.create<Job>(queueName('nodlq'), { ackMode: 'explicit', maxDeliveries: 1, capacity: 1 << 16 }));
    putJobs(q, 0, 1);
    q.get().nack();
    const m = q.get();
    expect(m.deliveries).toBe(2);
    expect(m.value).toEqual({ n: 0 });
  });

  it('the ack mode is recorded in the segment: opening with the other mode is refused, and explicit-only options need it', () => {
    const q = explicitQueue('mode');
    const e = thrown(() => SageQueue.open(q.name, { ackMode: 'auto' }), InvalidArgumentValueError, 'ERR_ACK_MODE_MISMATCH');
    expect(e.message).toMatch(/explicit/);
    const plain = SageQueue.open<Job>(q.name);
    try {
      expect(plain.ackMode).toBe('explicit');
    } finally {
      plain.release();
    }
    const auto = track(SageQueue.create(queueName('auto')));
    thrown(() => SageQueue.open(auto.name, { ackMode: 'explicit' }), InvalidArgumentValueError, 'ERR_ACK_MODE_MISMATCH');
    thrown(() => SageQueue.open(auto.name, { maxUnacked: 5 } as never), InvalidArgumentValueError, 'ERR_ACK_MODE_MISMATCH');
    thrown(() => new SageQueue(queueName('x'), { ackMode: 'auto', ackTimeoutMs: 5 }), InvalidArgumentValueError, 'ERR_UNSUPPORTED_OPTION');
    thrown(() => new SageQueue(queueName('x'), { ackMode: 'explicit', ackTimeoutMs: 0 }), RangeError, 'ERR_OUT_OF_RANGE');
    thrown(() => new SageQueue(queueName('x'), { ackMode: 'sometimes' as never }), InvalidArgumentValueError, 'ERR_INVALID_ARG_VALUE');
    thrown(() => auto.ackMany([]), SageQueueError, 'ERR_QUEUE_ACK_MODE');
    thrown(() => q.getRawBatch(10, { block: false }), SageQueueError, 'ERR_QUEUE_ACK_MODE');
  });

  it("a queue's descriptor carries the ack mode: resolving it gives an explicit-ack handle", () => {
    const q = explicitQueue('desc');
    const json = q.descriptor.toJSON();
    expect(QueueDescriptor.fromJSON(json).metadata.ack_mode).toBe('explicit');
    const other = track(resolveDescriptor(QueueDescriptor.fromJSON(json)) as SageQueue<Job, SageMessage<Job>>);
    putJobs(q, 0, 1);
    const m = other.get();
    expect(m.value).toEqual({ n: 0 });
    m.ack();
  });

  it('for await yields messages to ack; leaving the loop early gives back what it took and did not yield', async () => {
    const q = explicitQueue('iter');
    putJobs(q, 0, 10);
    const seen: number[] = [];
    for await (const m of q) {
      seen.push(m.value.n);
      m.ack();
      if (seen.length === 3) break;
    }
    expect(seen).toEqual([0, 1, 2]);
    expect(q.unacked).toBe(0);
    const rest = q.getMany(20, { block: false });
    expect(rest.map((m) => m.value.n)).toEqual([3, 4, 5, 6, 7, 8, 9]);
    expect(q.ackMany(rest)).toBe(7);
    putJobs(q, 10, 2);
    q.close();
    const drained: number[] = [];
    for await (const m of q) {
      drained.push(m.value.n);
      m.ack();
    }
    expect(drained).toEqual([10, 11]); // a closed queue drains, then the loop ends
  });

  it('a handle released with messages unsettled gives them back: the next consumer gets them again, first', () => {
    const q = explicitQueue('release');
    putJobs(q, 0, 3);
    const other = SageQueue.open<Job>(q.name, { ackMode: 'explicit' });
    expect(other.getMany(2, { block: false }).map((m) => m.value.n)).toEqual([0, 1]);
    other.release();
    const again = q.getMany(10, { timeoutMs: 2000 });
    const all = again.length >= 3 ? again : [...again, ...q.getMany(10, { timeoutMs: 2000 })];
    expect(all.map((m) => [m.value.n, m.deliveries])).toEqual([[0, 2], [1, 2], [2, 1]]);
  });

  it('a record the codec cannot decode is consumed (as in auto mode), its error carrying the bytes: it is not redelivered to fail again', () => {
    const q = track(SageQueue.create<Job>(queueName('undecodable'), { ackMode: 'explicit', codec: 'json', ackTimeoutMs: 30 }));
    const raw = new (native().NativeQueue)(q.name, 'open', {}, () => undefined, 1000);
    try {
      expect(raw.tryPut(Buffer.from('{not json'))).toBe(0);
    } finally {
      raw.release();
    }
    q.put({ n: 1 });
    const e = thrown(() => q.get(), SerializationError, 'ERR_SERIALIZATION');
    expect(String((e as unknown as { raw: Buffer }).raw)).toBe('{not json');
    expect(q.unacked).toBe(0);
    spin(50); // past its lease timeout: it would be redelivered had it not been consumed
    const next = q.get();
    expect([next.value, next.deliveries]).toEqual([{ n: 1 }, 1]);
    expect(q.stats().leases).toMatchObject({ acks: 1, redeliveries: 0, expiredLeases: 0 });
  });

  it('bad settle arguments get typed errors and change nothing', async () => {
    const q = explicitQueue('badargs');
    putJobs(q, 0, 1);
    const m = q.get();
    thrown(() => m.nack({ delayMs: -1 }), RangeError, 'ERR_OUT_OF_RANGE');
    thrown(() => m.nack({ delay: 5 } as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => q.ackMany([{ id: '0' } as never]), SageQueueError, 'ERR_INVALID_ARG_VALUE');
    await rejected(
      track(SageQueue.create<Job>(queueName('nodl'), { ackMode: 'explicit' })).getAsync({ timeoutMs: 0 }),
      QueueEmptyError,
      'ERR_QUEUE_EMPTY',
    );
    expect(m.settled).toBe(false);
    m.ack();
  });
});

describe('explicit acks: what operators see', () => {
  it('collectMetrics exports the lease counters and gauges of an explicit-ack queue, and `sage-queue stat` prints them', async () => {
    const q = explicitQueue('metrics', { ackTimeoutMs: 60 });
    putJobs(q, 0, 3);
    q.get().ack();
    q.get().nack();
    const held = q.get(); // n=1 again (the nack), delivery 2
    expect(held.deliveries).toBe(2);
    const registry = new Registry();
    const collector = collectMetrics(registry, { queues: [q as unknown as SageQueue] });
    try {
      const text = await registry.metrics();
      const value = (family: string): number => Number(new RegExp(`^sage_queue_${family}\\{queue="${q.name}"\\} (\\S+)$`, 'm').exec(text)?.[1]);
      expect(value('acks_total')).toBe(1);
      expect(value('nacks_total')).toBe(1);
      expect(value('redeliveries_total')).toBe(1);
      expect(value('redeliverable')).toBe(0);
      expect(value('unacked_bytes')).toBeGreaterThan(0);
    } finally {
      collector.close();
    }
    const r = spawnSync(process.execPath, [join(REPO, 'dist', 'cli', 'main.js'), 'stat', q.name], { encoding: 'utf8', timeout: 20_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/acks\s+explicit: lease /);
    expect(r.stdout).toMatch(/leases\s+1 acked, 1 nacked, 1 redelivered/);
  });
});

describe('explicit acks across processes, with real SIGKILLs', () => {
  async function consumerChild(label: string, name: string) {
    const c = await spawnAgent(label, HOOKS);
    await c.call('open', { how: 'open', name, options: { ackMode: 'explicit' } });
    return c;
  }

  it('a consumer SIGKILLed while holding leases: another consumer gets exactly those messages again, first, in their order, with deliveries 2', async () => {
    const q = explicitQueue('dead');
    putJobs(q, 0, 8);
    const c = await consumerChild('victim', q.name);
    const taken = await c.call<Taken[]>('takeLeased', { max: 5 });
    expect(taken.map((t) => t.value.n)).toEqual([0, 1, 2, 3, 4]);
    c.kill('SIGKILL');
    await c.waitExit();
    // Leases are checked for dead holders at least every 10 ms: past that, the next get's scan
    // finds the death and hands the messages out before anything newer.
    await sleep(20);
    const again = q.getMany(20, { timeoutMs: 5000 });
    const all = [...again];
    while (all.length < 8) all.push(...q.getMany(20, { timeoutMs: 5000 }));
    expect(all.map((m) => [m.value.n, m.deliveries])).toEqual([[0, 2], [1, 2], [2, 2], [3, 2], [4, 2], [5, 1], [6, 1], [7, 1]]);
    expect(all.slice(0, 5).map((m) => m.id)).toEqual(taken.map((t) => t.id));
    expect(q.ackMany(all)).toBe(8);
    expect(q.stats().leases).toMatchObject({ deadLeases: 5, redeliveries: 5, acks: 8 });
  });

  it('a getAsync waiting in another process receives a dead consumer\'s leases without anyone polling pids', async () => {
    const q = explicitQueue('deadasync');
    putJobs(q, 0, 2);
    const c = await consumerChild('victim', q.name);
    await c.call<Taken[]>('takeLeased', { max: 2 });
    const waiting = q.getAsync({ timeoutMs: 5000 });
    await sleep(50);
    c.kill('SIGKILL');
    const m = await waiting;
    expect([m.value.n, m.deliveries]).toEqual([0, 2]);
    m.ack();
  });

  it.each([
    ['in-cons-lock', 'inside the consumer lock, before its take was committed', 1],
    ['mid-take', 'inside the consumer lock with two records already marked (rolled back)', 1],
    ['after-take', 'after its take was committed (leases recorded, not yet handed out)', 2],
  ] as const)('a consumer killed %s (%s): every message is delivered, in order, none lost', async (point, _what, deliveries) => {
    const q = explicitQueue(`hook-${point}`);
    putJobs(q, 0, 4);
    const c = await consumerChild('victim', q.name);
    await c.call('hook', { point });
    void c.request('takeLeased', { max: 3 }).catch(() => undefined);
    await c.waitStderr(`SAGE_HOOK ${point}`);
    c.kill('SIGKILL');
    await c.waitExit();
    // A consumer that attaches after the death (a replacement) gets the dead one's messages first.
    const replacement = track(SageQueue.open<Job>(q.name, { ackMode: 'explicit' }));
    const all: SageMessage<Job>[] = [];
    while (all.length < 4) all.push(...replacement.getMany(10, { timeoutMs: 5000 }));
    expect(all.map((m) => m.value.n)).toEqual([0, 1, 2, 3]);
    expect(all.slice(0, 3).map((m) => m.deliveries)).toEqual([deliveries, deliveries, deliveries]);
    expect(replacement.ackMany(all)).toBe(4);
  });

  it('a consumer killed in the middle of an ack: that ack never happened, the message is delivered again; its earlier ack holds', async () => {
    const q = explicitQueue('midack');
    putJobs(q, 0, 3);
    const c = await consumerChild('victim', q.name);
    const taken = await c.call<Taken[]>('takeLeased', { max: 3 });
    expect(await c.call('settle', { keys: [`${taken[0]?.id}/1`] })).toEqual([{ ok: true }]);
    await c.call('hook', { point: 'in-settle' });
    void c.request('settle', { keys: [`${taken[1]?.id}/1`] }).catch(() => undefined);
    await c.waitStderr('SAGE_HOOK in-settle');
    c.kill('SIGKILL');
    await c.waitExit();
    const all: SageMessage<Job>[] = [];
    while (all.length < 2) all.push(...q.getMany(10, { timeoutMs: 5000 }));
    expect(all.map((m) => [m.value.n, m.deliveries])).toEqual([[1, 2], [2, 2]]);
    expect(q.ackMany(all)).toBe(2);
    thrown(() => q.getNowait(), QueueEmptyError, 'ERR_QUEUE_EMPTY');
  });

  it('a consumer killed in the middle of redelivering a dead consumer\'s leases: a third consumer still gets every one, in order', async () => {
    const q = explicitQueue('midscan');
    putJobs(q, 0, 3);
    const first = await consumerChild('first', q.name);
    await first.call<Taken[]>('takeLeased', { max: 3 });
    first.kill('SIGKILL');
    await first.waitExit();
    const second = await consumerChild('second', q.name);
    await second.call('hook', { point: 'in-scan' });
    void second.request('takeLeased', { max: 3, timeoutMs: 5000 }).catch(() => undefined);
    await second.waitStderr('SAGE_HOOK in-scan');
    second.kill('SIGKILL');
    await second.waitExit();
    const all: SageMessage<Job>[] = [];
    while (all.length < 3) all.push(...q.getMany(10, { timeoutMs: 5000 }));
    expect(all.map((m) => m.value.n)).toEqual([0, 1, 2]);
    for (const m of all) expect(m.deliveries).toBeGreaterThanOrEqual(2);
    expect(q.ackMany(all)).toBe(3);
    thrown(() => q.getNowait(), QueueEmptyError, 'ERR_QUEUE_EMPTY');
  });
});
