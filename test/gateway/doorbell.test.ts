/**
 * The doorbell of cross-process priority lanes (`<name>.bell`): two consumers asleep on the same
 * lanes both get messages from one producer batch (the first to wake rings again when it leaves
 * messages behind); a wait on empty lanes times out with []; closing the lanes ends a waiting
 * consumer's batches(); destroy removes the bell with the lanes. (The cross-process cases, with
 * real child processes, are in priority-lanes.test.ts.)
 */
import { afterEach, describe, expect, it } from 'vitest';

import { MessagePriority, PriorityMessageQueue, SageQueue } from '../../lib/index';
import { queueName, sleep, useCleanup } from '../helpers/harness';

useCleanup();
const created: PriorityMessageQueue[] = [];
afterEach(() => {
  for (const q of created.splice(0)) q.destroy();
});

function lanes<T>(tag: string): PriorityMessageQueue<T> {
  const q = PriorityMessageQueue.create<T>(queueName(tag), { capacity: 10_000, backpressure: false, lane: { capacity: 1 << 20 } });
  created.push(q as PriorityMessageQueue);
  return q;
}

describe('priority lanes doorbell', () => {
  it('wakes a second waiting consumer when the first takes a full batch and leaves messages behind', async () => {
    const q = lanes<number>('two');
    const a = PriorityMessageQueue.attach<number>(q.descriptor!, { backpressure: false });
    const b = PriorityMessageQueue.attach<number>(q.descriptor!, { backpressure: false });
    try {
      // Long timeouts: a timed-out wait looks at the lanes again, which would hide a lost wake.
      const pa = a.dequeueBatch({ batchSize: 10, timeoutMs: 60_000 });
      const pb = b.dequeueBatch({ batchSize: 10, timeoutMs: 60_000 });
      pa.catch(() => undefined);
      pb.catch(() => undefined);
      await sleep(50); // both asleep on the bell
      await q.enqueueMany(Array.from({ length: 30 }, (_, i) => ({ message: i, priority: MessagePriority.NORMAL }))); // one ring
      const both = await Promise.race([Promise.all([pa, pb]), sleep(3000).then(() => 'a consumer was left asleep' as const)]);
      expect(both).not.toBe('a consumer was left asleep'); // without the second ring, one sleeps on
      const [ra, rb] = both as [number[], number[]];
      expect(ra).toHaveLength(10);
      expect(rb).toHaveLength(10);
      expect([...ra, ...rb].sort((x, y) => x - y)).toEqual(Array.from({ length: 20 }, (_, i) => i));
      expect(q.size).toBe(10);
    } finally {
      a.release();
      b.release();
    }
  });

  it('times out with [] on empty lanes, and wakes for a message put during the wait', async () => {
    const q = lanes<string>('timeout');
    const c = PriorityMessageQueue.attach<string>(q.descriptor!, { backpressure: false });
    try {
      expect(await c.dequeueBatch({ timeoutMs: 30 })).toEqual([]);
      const waiting = c.dequeueBatch({ timeoutMs: 60_000 }); // a lost wake would not be hidden by a timeout
      waiting.catch(() => undefined);
      await sleep(30);
      await q.enqueue('x', MessagePriority.LOW);
      expect(await Promise.race([waiting, sleep(3000).then(() => 'still asleep')])).toEqual(['x']);
    } finally {
      c.release();
    }
  });

  it('ends a waiting batches() loop when the lanes are closed, after what was left', async () => {
    const q = lanes<string>('close');
    const c = PriorityMessageQueue.attach<string>(q.descriptor!, { backpressure: false });
    try {
      const got: string[] = [];
      const loop = (async () => {
        for await (const batch of c.batches({ batchSize: 5 })) got.push(...batch);
      })();
      await q.enqueue('last', MessagePriority.HIGH);
      await sleep(30);
      q.close();
      await loop;
      expect(got).toEqual(['last']);
    } finally {
      c.release();
    }
  });

  it('destroy() removes the bell with the lanes', () => {
    const name = queueName('destroy');
    const q = PriorityMessageQueue.create<string>(name, { capacity: 10, backpressure: false });
    expect(() => SageQueue.open(`${name}.bell`).release()).not.toThrow();
    q.destroy();
    expect(() => SageQueue.open(`${name}.bell`)).toThrow(expect.objectContaining({ code: 'ERR_QUEUE_NOT_FOUND' }));
  });
});
