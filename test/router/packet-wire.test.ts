/**
 * The compact wire form of a Packet (lib/router/packet-wire.ts): every combination of fields
 * round-trips through real SageQueues with the `records` and `msgpack` codecs, in this process and
 * through another process (which gets Packet instances and sends them back with a hop); the
 * traceId is made when first read and travels only when it exists or the packet is traced; a
 * malformed envelope is a SerializationError, never a crash; the envelope is smaller than the
 * toJSON() object form.
 */
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';

import { Packet, SageQueue, STRATEGIES, SerializationError } from '../../lib/index';
import type { Hop, PartitionKey, StrategyName } from '../../lib/index';
import { codecByName } from '../../lib/queue/codecs';
import type { Codec } from '../../lib/queue/codecs';
import { openRecordCodec } from '../../lib/queue/record-codec';
import { FIXTURES, queueName, track, until, useCleanup } from '../helpers/harness';
import { thrown } from '../support/expect-errors';

useCleanup();

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const dir = mkdtempSync(path.join(tmpdir(), 'sageq-packet-wire-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let tables = 0;
/** The codec `name` as a queue uses it (`records` bound to a table of its own). */
function codecOf(name: 'records' | 'msgpack'): Codec & { close?: () => void } {
  return name === 'records' ? openRecordCodec(path.join(dir, `t${tables++}.structs`), 0o600) : codecByName(name);
}

// ---------------------------------------------------------------------------------------------
// The cases: every key type (0 and '' included) × strategy set or not × traceId never read, given
// or read × no trace, a trace with integer times, a trace with fractional times; inputIndex,
// createdAt and the payload cycle through their own lists.

const KEYS: Array<PartitionKey | null> = [
  null, 'k', '', 'clé-ü-🙂', 0, -3.25, 2 ** 40, 0n, -5n, 12345678901234567890n, -(2n ** 70n), new Uint8Array([0, 255, 7]), new Uint8Array(0),
];
const STRATS: Array<StrategyName | null> = [null, ...STRATEGIES];
const ID_STATES = ['never read', 'given', 'read'] as const;
const INPUTS = [0, 1, 63, 64, 300, 2 ** 32 + 5];
const CREATED = [1_796_000_000_123, 0, 1.5, -12];
const PAYLOADS: unknown[] = [{ n: 1, s: 'x' }, [1, 'a', null], 'text', 42, null, { deep: { arr: [1, { x: 'y' }] } }, true, undefined];
const traceFor = (variant: number, createdAt: number): Hop[] =>
  variant === 0
    ? []
    : variant === 1
      ? [{ router: 'r1', target: 't1', at: createdAt + 3 }, { router: '', target: 'ü', at: createdAt + 100_000 }]
      : [{ router: 'r', target: 't', at: 0.25 }];

interface Case {
  packet: Packet;
  /** True when the receiver must see the sender's traceId (it existed, or the packet is traced). */
  idTravels: boolean;
}

function cases(): Case[] {
  const out: Case[] = [];
  let i = 0;
  for (const partitionKey of KEYS) {
    for (const partitionStrategy of STRATS) {
      for (const idState of ID_STATES) {
        for (let variant = 0; variant < 3; variant++) {
          const createdAt = CREATED[i % CREATED.length] as number;
          const trace = traceFor(variant, createdAt);
          const packet = new Packet(PAYLOADS[i % PAYLOADS.length], {
            partitionKey, partitionStrategy, inputIndex: INPUTS[i % INPUTS.length], createdAt, trace,
            ...(idState === 'given' ? { traceId: `given-${i}` } : {}),
          });
          if (idState === 'read') expect(packet.traceId).toMatch(UUID);
          out.push({ packet, idTravels: idState !== 'never read' || trace.length > 0 });
          i++;
        }
      }
    }
  }
  return out;
}

/** Everything but the traceId, as plain data. */
function fieldsOf(p: Packet): Record<string, unknown> {
  return {
    payload: p.payload, inputIndex: p.inputIndex, partitionKey: p.partitionKey, partitionStrategy: p.partitionStrategy, createdAt: p.createdAt,
    trace: p.trace.map((h) => ({ ...h })),
  };
}

/** The received packet `got` carries the fields of `c`, and its traceId iff it travels. */
function expectSame(got: unknown, c: Case): void {
  expect(got).toBeInstanceOf(Packet);
  const p = got as Packet;
  expect(Packet.from(p)).toBe(p);
  expect(Object.isFrozen(p)).toBe(true);
  expect(fieldsOf(p)).toEqual(fieldsOf(c.packet));
  expect(p.traceId).toMatch(c.idTravels ? /./ : UUID);
  if (c.idTravels) expect(p.traceId).toBe(c.packet.traceId);
  else expect(p.traceId).not.toBe(c.packet.traceId); // made on each side, when read there
}

describe.each(['records', 'msgpack'] as const)('Packet through a SageQueue with the %s codec', (codec) => {
  it('every combination of fields round-trips (put and putMany; get and getMany), and get() returns Packets', () => {
    const all = cases();
    expect(all.length).toBe(KEYS.length * STRATS.length * ID_STATES.length * 3);
    const q = track(SageQueue.create<Packet>(queueName('pw'), { codec, capacity: 1 << 20 }));
    const half = all.length >> 1;
    for (const c of all.slice(0, half)) q.put(c.packet);
    expect(q.putMany(all.slice(half).map((c) => c.packet))).toBe(all.length - half);
    const got = [q.get(), ...q.getMany(all.length - 1)];
    expect(got.length).toBe(all.length);
    got.forEach((p, i) => expectSame(p, all[i] as Case));
  });

  it('packets nested in a payload, and arrays of packets, come back as Packets too', () => {
    const q = track(SageQueue.create<unknown>(queueName('pw-nest'), { codec, capacity: 1 << 16 }));
    const inner = new Packet({ v: 'inner' }, { partitionKey: 7n, inputIndex: 2 });
    const outer = new Packet({ wrapped: inner, list: [inner.withHop('r', 't', 1)] }, { partitionKey: 'outer' });
    q.put(outer);
    q.put([outer, inner]);
    const got = q.get() as Packet<{ wrapped: Packet; list: Packet[] }>;
    expect(got).toBeInstanceOf(Packet);
    expect(got.payload.wrapped).toBeInstanceOf(Packet);
    expect(fieldsOf(got.payload.wrapped)).toEqual(fieldsOf(inner));
    expect(got.payload.list[0]?.traceId).toBe(inner.traceId); // traced: its id went along
    const pair = q.get() as Packet[];
    expect(pair.map((p) => p instanceof Packet)).toEqual([true, true]);
    expect(fieldsOf(pair[1] as Packet)).toEqual(fieldsOf(inner));
  });

  it('another process gets Packet instances with every field, and what it puts back (one more hop) decodes here', async () => {
    const all = cases();
    const there = track(SageQueue.create<Packet>(queueName('pw-there'), { codec, capacity: 1 << 20 }));
    const back = track(SageQueue.create<Packet>(queueName('pw-back'), { codec, capacity: 1 << 20 }));
    expect(there.putMany(all.map((c) => c.packet))).toBe(all.length);
    const child = fork(path.join(FIXTURES, 'packet-peer.cjs'), [there.name, back.name, String(all.length)], {
      serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    try {
      const inbox: Array<{ type: string; items: Array<Record<string, unknown>> }> = [];
      child.on('message', (m) => inbox.push(m as (typeof inbox)[number]));
      const { items } = await until(() => inbox[0], 'the peer to report what it got', 30_000);
      expect(items.length).toBe(all.length);
      items.forEach((r, i) => {
        const c = all[i] as Case;
        const { isPacket, fromIsSame, frozen, traceId, ...fields } = r;
        expect({ isPacket, fromIsSame, frozen }).toEqual({ isPacket: true, fromIsSame: true, frozen: true });
        expect(fields).toEqual(fieldsOf(c.packet));
        if (c.idTravels) expect(traceId).toBe(c.packet.traceId);
        else expect(traceId).toMatch(UUID);
      });
      const returned = back.getMany(all.length, { block: true, timeoutMs: 20_000 });
      expect(returned.length).toBe(all.length);
      returned.forEach((p, i) => {
        const c = all[i] as Case;
        expect(p).toBeInstanceOf(Packet);
        expect(p.trace).toEqual([...c.packet.trace, { router: 'peer', target: 'back', at: c.packet.createdAt + 7 }]);
        expect(p.traceId).toBe(items[i]?.traceId); // the peer read it, so it came back
        expect({ ...fieldsOf(p), trace: [] }).toEqual({ ...fieldsOf(c.packet), trace: [] });
      });
    } finally {
      child.kill('SIGKILL');
    }
  }, 60_000);
});

describe('the traceId', () => {
  const msgpack = codecByName('msgpack');
  const roundTrip = (p: Packet): Packet => msgpack.decode(Buffer.from(msgpack.encode(p))) as Packet;

  it('is made the first time it is read: a packet encoded before that carries none, and the receiver makes its own', () => {
    const p = new Packet({ a: 1 }, { partitionKey: 'k' });
    const before = Buffer.from(msgpack.encode(p));
    const id = p.traceId;
    expect(id).toMatch(UUID);
    const after = Buffer.from(msgpack.encode(p));
    expect(after.length).toBe(before.length + 2 + id.length); // a str8 header and the 36 characters
    const late = msgpack.decode(before) as Packet;
    expect(late.traceId).toMatch(UUID);
    expect(late.traceId).not.toBe(id);
    expect((msgpack.decode(after) as Packet).traceId).toBe(id);
  });

  it('once read it is stable, and a packet and all its copies share it, whichever copy reads it first', () => {
    const p = new Packet('x', { partitionKey: 'k' });
    const copies = [p.withInputIndex(2), p.updateKey('other'), p.inheritPartitionInfo(new Packet(1))];
    const last = copies[0]?.withHop('r', 't', 1).updateKey(5, 'hash') as Packet;
    const id = last.traceId; // read on a copy of a copy first
    expect(id).toMatch(UUID);
    expect(p.traceId).toBe(id);
    for (const c of copies) expect(c.traceId).toBe(id);
    expect(p.withInputIndex(9).traceId).toBe(id); // a copy made after the read
    expect(p.traceId).toBe(p.traceId);
    expect(new Packet('x').traceId).not.toBe(id);
  });

  it('is distinct across packets (and across the copies of different packets)', () => {
    const ids = new Set(Array.from({ length: 500 }, () => new Packet(null).withInputIndex(1).traceId));
    expect(ids.size).toBe(500);
  });

  it('a traced packet carries it even if nobody read it: encoding makes it, and the sender sees the same one', () => {
    const p = new Packet('x');
    const hopped = p.withHop('r', 't', 5);
    const got = roundTrip(hopped);
    expect(got.traceId).toBe(p.traceId);
    expect(got.traceId).toBe(hopped.traceId);
  });

  it('toJSON() (what json and v8 carry) always has one', () => {
    const p = new Packet('x');
    const wire = JSON.parse(JSON.stringify(p)) as { traceId: string };
    expect(wire.traceId).toMatch(UUID);
    expect(wire.traceId).toBe(p.traceId);
  });
});

describe('copies take the internal path', () => {
  it('a copy shares the frozen trace and hops it did not change (the constructor re-made them all)', () => {
    const p = new Packet({ v: 1 }, { partitionKey: 'k', trace: [{ router: 'a', target: 'b', at: 1 }] });
    expect(p.withInputIndex(3).trace).toBe(p.trace);
    expect(p.updateKey('j').trace).toBe(p.trace);
    expect(p.inheritPartitionInfo(new Packet(0)).trace).toBe(p.trace);
    const q = p.withHop('c', 'd', 2);
    expect(q.trace[0]).toBe(p.trace[0]);
    expect(Object.isFrozen(q.trace)).toBe(true);
    expect(Object.isFrozen(q.trace[1])).toBe(true);
    expect(new Packet(1).trace).toBe(new Packet(2).trace); // the one frozen empty trace
  });
});

// ---------------------------------------------------------------------------------------------
// Malformed envelopes: the codec extension's tag (fixext 1 of type 0x50) before bytes that are
// not a valid envelope.

const TAG = Buffer.from([0xd4, 0x50, 0x00]);
/** The tag, then `content` as `codec` writes it (so a records codec can read what it holds). */
const envelope = (codec: Codec, content: unknown): Buffer => Buffer.concat([TAG, Buffer.from(codec.encode(content))]);

const BAD_SHAPES: Array<[string, unknown]> = [
  ['not an array', 'x'],
  ['too few fields', [0, 0, null]],
  ['a head that is not a number', ['x', 0, null, 1]],
  ['a head out of range', [0x40, 0, null, 1]],
  ['an unknown strategy id', [6, 0, null, 1]],
  ['relative hop times without a trace', [4 << 3, 0, null, 1]],
  ['a traceId flag without the field', [1 << 3, 0, null, 1]],
  ['two fields more than the flags say', [0, 0, null, 1, 'id', 1]],
  ['a negative inputIndex', [0, 0, null, -1, 1]],
  ['a fractional inputIndex', [0, 0, null, 1.5, 1]],
  ['an inputIndex that is a string', [0, 0, null, '1', 1]],
  ['createdAt NaN', [0, NaN, null, 1]],
  ['createdAt a string', [0, 'now', null, 1]],
  ['a key that is an object', [0, 0, { a: 1 }, 1]],
  ['a NaN key', [0, 0, NaN, 1]],
  ['a boolean key', [0, 0, true, 1]],
  ['an empty traceId', [1 << 3, 0, null, '', 1]],
  ['a traceId that is a number', [1 << 3, 0, null, 5, 1]],
  ['a trace that is not an array', [2 << 3, 0, null, 'hop', 1]],
  ['an empty trace', [2 << 3, 0, null, [], 1]],
  ['a trace that is not triples', [2 << 3, 0, null, ['r', 't'], 1]],
  ['a hop whose target is a number', [2 << 3, 0, null, ['r', 1, 2], 1]],
  ['a hop time that is not finite', [2 << 3, 0, null, ['r', 't', Infinity], 1]],
];

const BAD_BYTES: Array<[string, Buffer]> = [
  ['the tag alone', TAG],
  ['a key (str8) whose length runs past the end', Buffer.concat([TAG, Buffer.from([0x94, 0x00, 0x00, 0xd9, 0xc8, 0x61, 0x62, 0x01])])],
  ['a key (bin8) whose length runs past the end', Buffer.concat([TAG, Buffer.from([0x94, 0x00, 0x00, 0xc4, 0xff, 1, 2, 3])])],
  ['an array32 claiming 2^31 fields', Buffer.concat([TAG, Buffer.from([0xdd, 0x7f, 0xff, 0xff, 0xff, 0x00, 0x00])])],
  ['a traceId (str32) claiming 4 GiB', Buffer.concat([TAG, Buffer.from([0x95, 0x08, 0x00, 0xc0, 0xdb, 0xff, 0xff, 0xff, 0xff, 0x61])])],
];

describe.each(['records', 'msgpack'] as const)('a malformed envelope read with the %s codec', (name) => {
  const good = new Packet({ n: 1 }, { partitionKey: -(2n ** 70n), partitionStrategy: 'hash', inputIndex: 70 }).withHop('r', 't', 12.5);

  function expectRefused(codec: Codec, bytes: Buffer, ours: boolean): void {
    const e = thrown(() => codec.decode(bytes), SerializationError, 'ERR_SERIALIZATION');
    expect((e as SerializationError & { raw: Buffer }).raw.equals(bytes)).toBe(true);
    if (ours) expect(String((e.cause as Error).message)).toMatch(/^malformed packet envelope: /);
  }

  it.each(BAD_SHAPES)('%s: a SerializationError naming the envelope', (_why, content) => {
    const codec = codecOf(name);
    expectRefused(codec, envelope(codec, content), true);
    // Next to a good envelope written the same way: only the field differs.
    expect(codec.decode(envelope(codec, [0, 0, null, 1]))).toBeInstanceOf(Packet);
    expect((codec.decode(Buffer.from(codec.encode(good))) as Packet).toJSON()).toEqual(good.toJSON());
    codec.close?.();
  });

  it('every truncation of a valid envelope, and lengths that run past the end, are SerializationErrors', () => {
    const codec = codecOf(name);
    const bytes = Buffer.from(codec.encode(good));
    for (let n = 0; n < bytes.length; n++) expectRefused(codec, bytes.subarray(0, n), false);
    for (const [, bad] of BAD_BYTES) expectRefused(codec, bad, false);
    expect((codec.decode(bytes) as Packet).toJSON()).toEqual(good.toJSON()); // and the codec still decodes
    codec.close?.();
  });

  it('property: random bytes after the tag, or a valid envelope with one byte changed, decode to a Packet or throw a SerializationError', () => {
    const codec = codecOf(name);
    const bytes = Buffer.from(codec.encode(good));
    const check = (b: Buffer): void => {
      let value: unknown;
      try {
        value = codec.decode(b);
      } catch (e) {
        expect(e).toBeInstanceOf(SerializationError);
        return;
      }
      if (value instanceof Packet) expect(Number.isSafeInteger(value.inputIndex) && Number.isFinite(value.createdAt)).toBe(true);
    };
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (tail) => check(Buffer.concat([TAG, tail]))),
      { numRuns: 500 },
    );
    fc.assert(
      fc.property(fc.nat({ max: bytes.length - 1 }), fc.integer({ min: 0, max: 255 }), (at, byte) => {
        const b = Buffer.from(bytes);
        b[at] = byte;
        check(b);
      }),
      { numRuns: 500 },
    );
    codec.close?.();
  });
});

describe('the wire form is smaller than the toJSON() object form', () => {
  const payload = { seq: 1, kind: 'tick', price: 101.25, qty: 7, tags: ['a', 'b'], ok: true };
  const created = 1_796_000_000_000;
  /** Bytes of the compact form, then of the toJSON() form (which makes the traceId). */
  function sizes(codec: Codec, p: Packet): [number, number] {
    // Second encodings: a records codec writes a new shape's keys once, into its table.
    codec.encode(p);
    const compact = codec.encode(p).length;
    codec.encode(p.toJSON());
    return [compact, codec.encode(p.toJSON()).length];
  }

  it.each(['records', 'msgpack'] as const)('%s: an untraced packet (no traceId made) and a traced one (traceId and one hop)', (name) => {
    const codec = codecOf(name);
    const [untraced, untracedObject] = sizes(codec, new Packet(payload, { partitionKey: 'user-17', createdAt: created }));
    expect(untraced).toBeLessThan(untracedObject - 36); // no 36-character traceId, and no field names or nils
    const [traced, tracedObject] = sizes(codec, new Packet(payload, { partitionKey: 'user-17', createdAt: created }).withHop('ingest', 'worker-3', created + 2));
    expect(traced).toBeLessThan(tracedObject);
    codec.close?.();
  });

  it('msgpack (field names in every record): also an untraced packet whose traceId was read', () => {
    const p = new Packet(payload, { partitionKey: 'user-17', createdAt: created });
    expect(p.traceId).toMatch(UUID);
    const [compact, object] = sizes(codecByName('msgpack'), p);
    expect(compact).toBeLessThan(object - 60); // the object form spells 7 field names (74 bytes with their headers)
  });
});
