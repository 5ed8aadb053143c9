/**
 * A record that cannot be decoded, in the middle of a batch, costs only itself: the batch gets
 * return the messages before it, the next call throws its SerializationError (with its bytes on
 * error.raw; the record is consumed, as documented), and the calls after that get the rest. Every
 * codec, the in-place (decodeAt) and view paths, the stash an early-left loop leaves, and
 * explicit-ack mode (where the bad record is acked, the others stay leased and ackable).
 */
import { describe, expect, it } from 'vitest';

import { SerializationError } from '../../lib/errors';
import { native } from '../../lib/native';
import type { CodecName } from '../../lib/queue/codecs';
import { SageQueue } from '../../lib/queue/sage-queue';
import type { SageMessage } from '../../lib/queue/sage-leases';
import { queueName, track, useCleanup } from '../helpers/harness';
import { thrown } from '../support/expect-errors';

useCleanup();

/** Bytes each codec refuses: a truncated MessagePack array, broken JSON, a broken v8 header. */
const BAD: Record<Exclude<CodecName, 'raw'>, Buffer> = {
  records: Buffer.from([0x92, 0x01]),
  msgpack: Buffer.from([0x92, 0x01]),
  json: Buffer.from('{not json'),
  v8: Buffer.from([0xff, 0x0f, 0x6f, 0x22, 0x7f]),
};

function queueWith(codec: Exclude<CodecName, 'raw'>, explicit = false): SageQueue<unknown, unknown> {
  const name = queueName('undecodable');
  const q = (explicit ? SageQueue.create<unknown>(name, { codec, ackMode: 'explicit' }) : SageQueue.create<unknown>(name, { codec })) as SageQueue<unknown, unknown>;
  return track(q);
}

/** Puts a bad record straight into the ring, past the codec. */
function putBad(q: SageQueue<unknown, unknown>, bytes: Buffer): void {
  const nq = new (native().NativeQueue)(q.name, 'open', {}, () => undefined, 1000);
  try {
    expect(nq.tryPut(bytes)).toBe(0);
  } finally {
    nq.release();
  }
}

describe.each(['records', 'msgpack', 'json', 'v8'] as const)('an undecodable record inside a batch (%s)', (codec) => {
  it('getMany returns the messages before it, the next call throws it (bytes on error.raw), the next gets the rest', () => {
    const q = queueWith(codec);
    q.putMany([{ a: 1 }, { a: 2 }]);
    putBad(q, BAD[codec]);
    q.putMany([{ a: 3 }, { a: 4 }]);
    expect(q.getMany(10, { block: false })).toEqual([{ a: 1 }, { a: 2 }]);
    const e = thrown(() => q.getMany(10, { block: false }), SerializationError, 'ERR_SERIALIZATION');
    expect(Buffer.compare((e as unknown as { raw: Buffer }).raw, BAD[codec])).toBe(0);
    expect(q.getMany(10, { block: false })).toEqual([{ a: 3 }, { a: 4 }]);
    expect(q.getMany(10, { block: false })).toEqual([]);
  });

  it('first in its batch: getMany throws at once and the rest comes next', () => {
    const q = queueWith(codec);
    putBad(q, BAD[codec]);
    q.putMany([{ b: 1 }, { b: 2 }]);
    thrown(() => q.getMany(10, { block: false }), SerializationError, 'ERR_SERIALIZATION');
    expect(q.getMany(10, { block: false })).toEqual([{ b: 1 }, { b: 2 }]);
  });

  it('in what a loop left early (the stash): the same, message by message', async () => {
    const q = queueWith(codec);
    q.putMany([{ c: 0 }, { c: 1 }]);
    putBad(q, BAD[codec]);
    q.putMany([{ c: 3 }]);
    // iterate() takes the four in one batch; leaving after the first stashes the other three.
    for await (const x of q.iterate({ batchSize: 64 })) {
      expect(x).toEqual({ c: 0 });
      break;
    }
    expect(q.getMany(10, { block: false })).toEqual([{ c: 1 }]);
    thrown(() => q.getMany(10, { block: false }), SerializationError, 'ERR_SERIALIZATION');
    expect(q.getMany(10, { block: false })).toEqual([{ c: 3 }]);
  });
});

describe('explicit-ack mode', () => {
  it('the messages around an undecodable record stay leased and ackable; it is acked (consumed), never redelivered', () => {
    const q = queueWith('records', true);
    q.putMany([{ d: 1 }]);
    putBad(q, BAD.records);
    q.putMany([{ d: 2 }, { d: 3 }]);
    const before = q.getMany(10, { block: false }) as Array<SageMessage<unknown>>;
    expect(before.map((m) => m.value)).toEqual([{ d: 1 }]);
    thrown(() => q.getMany(10, { block: false }), SerializationError, 'ERR_SERIALIZATION');
    const after = q.getMany(10, { block: false }) as Array<SageMessage<unknown>>;
    expect(after.map((m) => m.value)).toEqual([{ d: 2 }, { d: 3 }]);
    expect(after.map((m) => m.deliveryCount)).toEqual([1, 1]);
    q.ackMany([...before, ...after]);
    expect(q.stats().leases).toMatchObject({ acks: 4, staleSettles: 0, redeliveries: 0 });
    expect(q.unacked).toBe(0);
    expect(q.qsize()).toBe(0);
    expect(q.getMany(10, { block: false })).toEqual([]);
  });
});
