/**
 * An explicit-ack handle's count of unsettled messages (`unacked`, which `maxUnacked` limits) stays
 * exact when leases are lost: a recount at maxUnacked drops expired leases, and a later stale ack
 * of one of them must not take it off the count a second time (found while benchmarking ackMany).
 */
import { afterEach, describe, expect, it } from 'vitest';

import { SageQueue } from '../../lib';
import type { SageMessage } from '../../lib';

const names: string[] = [];

afterEach(() => {
  for (const n of names.splice(0)) {
    try {
      SageQueue.destroy(n);
    } catch {
      // gone
    }
  }
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('explicit acks: unacked after lost leases', () => {
  it('a stale ackMany after a recount at maxUnacked leaves the count at the leases really held', async () => {
    const name = `ack-count-${process.pid}-${Date.now()}`;
    names.push(name);
    const q = SageQueue.create<Buffer>(name, { codec: 'raw', ackMode: 'explicit', maxUnacked: 5, ackTimeoutMs: 30 });
    try {
      for (let i = 0; i < 10; i++) q.putNowait(Buffer.from([i]));
      const first = q.getMany(3, { block: false });
      expect(first).toHaveLength(3);
      await sleep(60); // their leases expire
      // The handle still counts them (3), so 2 fit; at the limit it recounts (2 held) and 3 more fit.
      const again: SageMessage<Buffer>[] = [...q.getMany(5, { block: false }), ...q.getMany(5, { block: false })];
      expect(again.map((m) => [m.value[0], m.deliveries])).toEqual([[0, 2], [1, 2], [2, 2], [3, 1], [4, 1]]);
      expect(q.unacked).toBe(5);
      expect(q.ackMany(first)).toBe(0); // stale: all three were delivered again
      expect(first.every((m) => m.settled)).toBe(true);
      expect(q.unacked).toBe(5);
      expect(q.ackMany(again.slice(0, 3))).toBe(3);
      expect(q.unacked).toBe(2);
      expect(() => first[0]?.ack()).toThrow(/settled it already/);
      expect(q.unacked).toBe(2);
      // So the limit still holds: 3 more, not 5.
      expect(q.getMany(5, { block: false })).toHaveLength(3);
      expect(q.unacked).toBe(5);
    } finally {
      q.destroy();
    }
  });
});
