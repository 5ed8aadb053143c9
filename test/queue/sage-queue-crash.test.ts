/**
 * Crash safety with real SIGKILLs: a child arms a test hook (native setTestHook), the next put/get
 * parks at exactly that point and says so on stderr, and the test kills it there. Then the
 * invariants: nothing corrupted is delivered, nothing deadlocks, every committed message is
 * accounted for, and the shared counters say what happened.
 */
import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { SageQueue } from '../../lib/index';
import { auditDeliveries, frames, range } from '../helpers/frames';
import type { Delivery, SizeSpec } from '../helpers/frames';
import { nowMs, queueName, sleep, spawnAgent, spawnAgents, track, until, useCleanup } from '../helpers/harness';
import type { Child, ChildEvent, PutResult, WaitGetResult } from '../helpers/harness';
import { testAddonEnv } from '../helpers/test-addon';

useCleanup();

/** Every child of this file loads the hooks-enabled addon (setTestHook), see test/fixtures/test-addon.cjs. */
const HOOKS = { env: testAddonEnv() };

const SMALL: SizeSpec = { min: 100, max: 2000 };

/** Frames a consumer reported one by one ('each' mode). */
function framesOf(c: Child): ChildEvent[] {
  return c.eventsNamed('frame');
}

function deliveryOf(c: Child): Delivery {
  return framesOf(c).map((e) => [e.producer as number, e.seq as number]);
}

function badOf(cs: Child[]): ChildEvent[] {
  return cs.flatMap((c) => framesOf(c).filter((e) => !e.ok));
}

function countAll(cs: Child[], producer?: number): number {
  return cs.reduce((n, c) => n + framesOf(c).filter((e) => producer === undefined || e.producer === producer).length, 0);
}

function putFrames(q: SageQueue<Buffer>, producer: number, from: number, count: number, sizes: SizeSpec): void {
  for (let s = from; s < from + count; s++) q.put(frames.makeFrame(producer, s, frames.payloadSize(sizes, producer, s)));
}

/** Scheduler state of a process from /proc (R, S, T = stopped, Z, ...). */
function procState(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
}

const recoveries: string[] = [];
afterAll(() => {
  if (recoveries.length > 0) console.log(`[recovery times]\n  ${recoveries.join('\n  ')}`);
});

describe('a producer SIGKILLed mid-put', () => {
  it.each([
    ['after-claim', 0],
    ['mid-copy', 0],
    ['before-commit', 0],
    ['in-prod-lock', 1],
  ] as const)(
    'killed at %s: consumers get every message committed before and after it, intact and once; the claim is padded exactly once; a survivor producer continues within 1 s',
    async (point, lockRecoveries) => {
      const name = queueName(`pk-${point}`);
      const q = track(SageQueue.create<Buffer>(name, { capacity: 1 << 16, codec: 'raw' }));
      const [victim, survivor, c1, c2] = await spawnAgents(['victim-producer', 'survivor-producer', 'consumer-1', 'consumer-2'], HOOKS);
      await Promise.all([victim, survivor, c1, c2].map((c) => c.call('open', { how: 'open', name })));
      const consumers = [c1, c2];
      for (const c of consumers) void c.request('consume', { mode: 'get', report: 'each' });

      // Committed before the crash: must all arrive.
      await victim.call('putFrames', { producer: 1, count: 5, sizes: SMALL });
      await until(() => countAll(consumers) >= 5, 'the 5 committed frames to arrive');
      // Both consumers asleep again, so both end up blocked behind the claim.
      await until(() => q.stats().dataWaiters >= 2, 'both consumers to wait');

      await victim.call('hook', { point });
      void victim.request('putFrames', { producer: 1, from: 5, count: 1, sizes: { min: 3000, max: 3000 } });
      await victim.waitStderr(`SAGE_HOOK ${point}`);

      let survivorDone = false;
      const survivorPut = survivor.request<PutResult>('putFrames', { producer: 2, count: 3, sizes: SMALL }).then((r) => {
        survivorDone = true;
        return r;
      });
      await sleep(150);
      // While the victim lives, its claim (or the producer lock it holds) keeps everything behind
      // it undelivered: FIFO per record.
      expect(countAll(consumers)).toBe(5);
      if (point === 'in-prod-lock') expect(survivorDone).toBe(false);

      const tKill = nowMs();
      victim.kill('SIGKILL');
      expect((await victim.waitExit()).signal).toBe('SIGKILL');

      const firstAfter = await Promise.race(
        consumers.map((c) => c.waitEvent('frame', (e) => e.producer === 2, 10_000)),
      );
      const recoveryMs = (firstAfter.t as number) - tKill;
      const put = await survivorPut;
      const putNote = put.tDone < tKill ? 'the survivor put had not needed to wait' : `the survivor put returned ${(put.tDone - tKill).toFixed(2)} ms after it`;
      recoveries.push(`producer killed ${point}: first later message delivered ${recoveryMs.toFixed(2)} ms after the kill; ${putNote}`);
      expect(recoveryMs).toBeLessThan(1000);
      expect(put.tDone - tKill).toBeLessThan(1000);

      // The survivor keeps going: enough bytes to wrap the 64 KiB ring twice.
      await survivor.call('putFrames', { producer: 2, from: 3, count: 60, sizes: { min: 1000, max: 4000 } }, 20_000);
      await until(() => countAll(consumers) >= 5 + 63, 'every later frame to arrive', 20_000);
      // ... and can still put and get by itself, promptly.
      for (const c of consumers) c.kill('SIGKILL'); // idle in get: they hold nothing
      await Promise.all(consumers.map((c) => c.waitExit()));
      const t0 = nowMs();
      await survivor.call('putFrames', { producer: 2, from: 63, count: 1, sizes: SMALL });
      const own = await survivor.call<Buffer>('get', { timeoutMs: 1000 });
      const roundTrip = nowMs() - t0;
      expect(roundTrip).toBeLessThan(1000);
      const ownCheck = frames.checkFrame(own);
      expect(ownCheck).toMatchObject({ ok: true, producer: 2, seq: 63 });

      expect(badOf(consumers)).toEqual([]);
      const audit = auditDeliveries(
        [...consumers.map(deliveryOf), [[2, 63]]],
        new Map([
          [1, range(0, 5)],
          [2, range(0, 64)],
        ]),
      );
      expect(audit).toEqual({ missing: [], duplicates: [], unexpected: [], disorder: [] });
      const st = q.stats();
      expect(st.abandonedClaims).toBe(1); // one claim, padded once, though two consumers raced for it
      expect(st.lockRecoveries).toBe(lockRecoveries);
      expect(st.lostInRead).toBe(0);
      expect(st).toMatchObject({ enqueued: 5 + 1 + 64, dequeued: 5 + 1 + 64, depth: 0 });
      expect(st.processes.some((p) => p.pid === victim.pid)).toBe(false); // reaped
    },
    30_000,
  );

  it('a producer SIGKILLed while blocked on a full queue: others put and get on, and its waiter count heals', async () => {
    const name = queueName('pk-blocked');
    const q = track(SageQueue.create<Buffer>(name, { capacity: 1 << 16, codec: 'raw', maxsize: 4 }));
    putFrames(q, 0, 0, 4, SMALL);
    const [victim, survivor] = await spawnAgents(['victim-producer', 'survivor-producer'], HOOKS);
    await Promise.all([victim, survivor].map((c) => c.call('open', { how: 'open', name })));

    void victim.request('putFrames', { producer: 1, count: 1, sizes: SMALL });
    await until(() => q.stats().processes.find((p) => p.pid === victim.pid && p.waiting > 0), 'the victim to wait for space');
    victim.kill('SIGKILL');
    await victim.waitExit();
    expect(q.stats().processes.find((p) => p.pid === victim.pid)?.alive).toBe(false);

    const survivorPut = survivor.request<PutResult>('putFrames', { producer: 2, count: 1, sizes: SMALL });
    await until(() => q.stats().processes.find((p) => p.pid === survivor.pid && p.waiting > 0), 'the survivor to wait for space');
    const tGet = nowMs();
    const got = [q.get(true, 1000)];
    const put = await survivorPut;
    recoveries.push(`producer killed while blocked on a full queue: survivor's put returned ${(put.tDone - tGet).toFixed(2)} ms after space was made`);
    expect(put.tDone - tGet).toBeLessThan(1000);
    for (let i = 0; i < 4; i++) got.push(q.get(true, 1000));
    const checks = got.map((b) => frames.checkFrame(b));
    expect(checks.map((c) => [c.ok, c.producer, c.seq])).toEqual([
      [true, 0, 0],
      [true, 0, 1],
      [true, 0, 2],
      [true, 0, 3],
      [true, 2, 0],
    ]);
    // The dead producer's share of spaceWaiters is healed by a later wake that finds nobody asleep.
    await until(
      () => {
        q.put(frames.makeFrame(3, 0, 10));
        q.get(true, 1000);
        return q.stats().spaceWaiters === 0;
      },
      'spaceWaiters to heal to 0',
      2000,
      15,
    );
    const st = q.stats();
    expect(st.waiterHeals + st.slotsReaped).toBeGreaterThanOrEqual(1);
    expect(st.abandonedClaims).toBe(0);
  });
});

describe('a consumer SIGKILLed mid-get', () => {
  it.each([
    ['after-take', 'get', 1],
    ['mid-read', 'get', 1],
    ['mid-read', 'getMany', 4],
  ] as const)(
    'killed at %s in %s: other consumers go on, only the %i message(s) it was reading are lost (lostInRead), producers reclaim its space within 1 s',
    async (point, how, lost) => {
      const name = queueName(`ck-${point}`);
      const q = track(SageQueue.create<Buffer>(name, { capacity: 1 << 16, codec: 'raw' }));
      putFrames(q, 0, 0, 50, { min: 100, max: 1000 });
      const [victim, consumer, producer] = await spawnAgents(['victim-consumer', 'consumer', 'producer'], HOOKS);
      await Promise.all([victim, consumer, producer].map((c) => c.call('open', { how: 'open', name })));

      await victim.call('hook', { point });
      void victim.request(how, { max: lost, timeoutMs: 5000 });
      await victim.waitStderr(`SAGE_HOOK ${point}`);

      // Another consumer takes everything else while the victim sits on its records.
      void consumer.request('consume', { mode: 'get', report: 'each' });
      await until(() => countAll([consumer], 0) >= 50 - lost, `the other ${50 - lost} frames to arrive`);

      // A producer needing the victim's space waits (only reclamation is held up, not delivery).
      const producing = producer.request<PutResult>('putFrames', { producer: 1, count: 150, sizes: { min: 800, max: 1200 } });
      await until(() => q.stats().processes.find((p) => p.pid === producer.pid && p.waiting > 0), 'the producer to wait for the space');
      await sleep(50);
      const beforeKill = countAll([consumer], 1);
      expect(beforeKill).toBeLessThan(150);
      expect(q.stats().processes.find((p) => p.pid === victim.pid)?.alive).toBe(true);

      const tKill = nowMs();
      victim.kill('SIGKILL');
      await victim.waitExit();
      const next = await consumer.waitEvent('frame', (e) => e.producer === 1 && (e.t as number) > tKill, 10_000);
      const recoveryMs = (next.t as number) - tKill;
      recoveries.push(`consumer killed ${point} (${how}): producer resumed, next message delivered ${recoveryMs.toFixed(2)} ms after the kill`);
      expect(recoveryMs).toBeLessThan(1000);
      await producing;
      await until(() => countAll([consumer], 1) >= 150, 'all 150 later frames', 20_000);

      expect(badOf([consumer])).toEqual([]);
      const audit = auditDeliveries(
        [deliveryOf(consumer)],
        new Map([
          [0, range(lost, 50 - lost)],
          [1, range(0, 150)],
        ]),
      );
      expect(audit).toEqual({ missing: [], duplicates: [], unexpected: [], disorder: [] });
      // What is missing is exactly what the victim took: the first `lost` frames.
      expect(deliveryOf(consumer).filter(([p, s]) => p === 0 && s < lost)).toEqual([]);
      const st = q.stats();
      expect(st.lostInRead).toBe(lost);
      expect(st.abandonedClaims).toBe(0);
      expect(st).toMatchObject({ enqueued: 200, dequeued: 200, depth: 0 });
      expect(st.processes.some((p) => p.pid === victim.pid)).toBe(false);
    },
    30_000,
  );

  it('killed while holding the consumer lock (in-cons-lock): nothing is lost, the other consumer gets every message', async () => {
    const name = queueName('ck-lock');
    const q = track(SageQueue.create<Buffer>(name, { capacity: 1 << 16, codec: 'raw' }));
    putFrames(q, 0, 0, 50, { min: 100, max: 1000 });
    const [victim, consumer, producer] = await spawnAgents(['victim-consumer', 'consumer', 'producer'], HOOKS);
    await Promise.all([victim, consumer, producer].map((c) => c.call('open', { how: 'open', name })));

    await victim.call('hook', { point: 'in-cons-lock' });
    void victim.request('get', { timeoutMs: 5000 });
    await victim.waitStderr('SAGE_HOOK in-cons-lock');
    void consumer.request('consume', { mode: 'get', report: 'each' });
    await sleep(150);
    // The lock is held only while records are claimed; a holder parked there stops the others.
    expect(countAll([consumer])).toBe(0);

    const tKill = nowMs();
    victim.kill('SIGKILL');
    await victim.waitExit();
    const first = await consumer.waitEvent('frame', () => true, 10_000);
    recoveries.push(`consumer killed in-cons-lock: other consumer's first message ${((first.t as number) - tKill).toFixed(2)} ms after the kill`);
    expect((first.t as number) - tKill).toBeLessThan(1000);

    // Wrap the ring so producers reclaim past whatever the victim touched.
    await producer.call('putFrames', { producer: 1, count: 150, sizes: { min: 800, max: 1200 } }, 20_000);
    await until(() => countAll([consumer], 1) >= 150, 'all 150 later frames', 20_000);
    await sleep(20);

    expect(badOf([consumer])).toEqual([]);
    const st = q.stats();
    expect(st.lockRecoveries).toBe(1);
    const audit = auditDeliveries(
      [deliveryOf(consumer)],
      new Map([
        [0, range(0, 50)],
        [1, range(0, 150)],
      ]),
    );
    expect({ audit, lostInRead: st.lostInRead }).toEqual({ audit: { missing: [], duplicates: [], unexpected: [], disorder: [] }, lostInRead: 0 });
  });

  it.each([
    ['a synchronous get(true)', false],
    ['a pending getAsync()', true],
  ])(
    'killed while blocked in %s: its entry shows alive:false, producers keep working, and dataWaiters heals to 0 after the next put',
    async (_label, async) => {
      const name = queueName('ck-wait');
      const q = track(SageQueue.create<Buffer>(name, { capacity: 1 << 16, codec: 'raw' }));
      const [waiter, producer] = await spawnAgents(['waiter', 'producer'], HOOKS);
      await Promise.all([waiter, producer].map((c) => c.call('open', { how: 'open', name })));

      void waiter.request<WaitGetResult>('waitGet', { async });
      await waiter.waitEvent('blocking');
      await until(() => q.stats().processes.find((p) => p.pid === waiter.pid && p.waiting > 0), 'the waiter to sleep');
      waiter.kill('SIGKILL');
      await waiter.waitExit();

      const dead = q.stats();
      expect(dead.processes.find((p) => p.pid === waiter.pid)).toMatchObject({ alive: false });
      expect(dead.processes.find((p) => p.pid === process.pid)).toMatchObject({ alive: true });
      expect(dead.dataWaiters).toBeGreaterThanOrEqual(1); // left behind by the dead waiter

      await producer.call('putFrames', { producer: 1, count: 1, sizes: SMALL });
      const healed = await until(
        () => {
          const s = q.stats();
          return s.dataWaiters === 0 ? s : undefined;
        },
        'dataWaiters to heal to 0',
        2000,
      );
      expect(healed.waiterHeals + healed.slotsReaped).toBeGreaterThanOrEqual(1);
      expect(healed.processes.some((p) => p.pid === waiter.pid)).toBe(false);

      // Small enough that all 99 fit the ring at once (the test gets them afterwards).
      await producer.call('putFrames', { producer: 1, from: 1, count: 99, sizes: { min: 10, max: 200 } });
      const got = range(0, 100).map(() => frames.checkFrame(q.get(true, 2000)));
      expect(got.every((c) => c.ok && c.producer === 1)).toBe(true);
      expect(got.map((c) => c.seq)).toEqual(range(0, 100));
      expect(q.stats()).toMatchObject({ dataWaiters: 0, depth: 0, lostInRead: 0, abandonedClaims: 0 });
    },
  );
});

describe('processes that die or stop', () => {
  it('a queue whose creating process was SIGKILLed can still be opened and used by another process', async () => {
    const name = queueName('creator');
    const creator = await spawnAgent('creator', HOOKS);
    await creator.call('open', { how: 'create', name, options: { capacity: 1 << 16, codec: 'json', maxsize: 10 } });
    await creator.call('putValues', { values: ['a', 'b', 'c'] });
    creator.kill('SIGKILL');
    await creator.waitExit();

    const q = track(SageQueue.open<string>(name));
    expect({ codec: q.codec, capacity: q.capacity, maxsize: q.maxsize }).toEqual({ codec: 'json', capacity: 1 << 16, maxsize: 10 });
    const entry = q.stats().processes.find((p) => p.pid === creator.pid);
    expect(entry).toMatchObject({ alive: false });
    expect(entry?.roles).toEqual(expect.arrayContaining(['creator', 'producer']));
    expect(q.qsize()).toBe(3);
    expect([q.get(), q.get(), q.get()]).toEqual(['a', 'b', 'c']);

    const other = await spawnAgent('other', HOOKS);
    await other.call('open', { how: 'open', name });
    await other.call('putValues', { values: ['d', 'e'] });
    expect(q.get(true, 2000)).toBe('d');
    q.put('f');
    expect(await other.call('get', { timeoutMs: 2000 })).toBe('e');
    expect(await other.call('get', { timeoutMs: 2000 })).toBe('f');
  });

  it('a SIGSTOPped consumer holding nothing does not hold up the other consumers; after SIGCONT every message is still delivered once', async () => {
    const name = queueName('stopped');
    const q = track(SageQueue.create<Buffer>(name, { capacity: 1 << 16, codec: 'raw' }));
    const [stopped, other] = await spawnAgents(['stopped-consumer', 'other-consumer'], HOOKS);
    await Promise.all([stopped, other].map((c) => c.call('open', { how: 'open', name })));
    for (const c of [stopped, other]) void c.request('consume', { mode: 'get', report: 'each' });
    await until(
      () => {
        const ps = q.stats().processes;
        return [stopped, other].every((c) => ps.find((p) => p.pid === c.pid && p.waiting > 0));
      },
      'both consumers to wait',
    );

    stopped.kill('SIGSTOP');
    await until(() => procState(stopped.pid) === 'T', 'the consumer to be stopped');
    putFrames(q, 1, 0, 200, { min: 50, max: 250 });
    await until(() => countAll([other]) >= 200, 'the running consumer to get all 200', 10_000);
    expect(countAll([stopped])).toBe(0);
    expect(q.stats().processes.find((p) => p.pid === stopped.pid)?.alive).toBe(true);

    stopped.kill('SIGCONT');
    putFrames(q, 1, 200, 100, { min: 50, max: 250 });
    await until(() => countAll([stopped, other]) >= 300, 'all 300 frames', 10_000);
    await sleep(20);
    expect(badOf([stopped, other])).toEqual([]);
    const audit = auditDeliveries([deliveryOf(stopped), deliveryOf(other)], new Map([[1, range(0, 300)]]));
    expect(audit).toEqual({ missing: [], duplicates: [], unexpected: [], disorder: [] });
  });
});
