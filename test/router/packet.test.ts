/**
 * Packet: the immutable routed message. Defaults, immutability, the copy-returning changes,
 * the trace a packet collects as routers deliver it, its wire form, and typed errors on bad input.
 */
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';

import {
  ArgumentRangeError, BaseRouter, InvalidArgumentTypeError, InvalidArgumentValueError, LocalQueue, Packet, SageQueue,
} from '../../lib/index';
import type { Hop, PacketWire, PartitionKey } from '../../lib/index';
import { thrown } from '../support/expect-errors';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

const segments: string[] = [];
afterEach(() => {
  for (const name of segments.splice(0)) SageQueue.destroy(name);
});

describe('Packet defaults', () => {
  it('a new packet has inputIndex 0, no key, no strategy, an empty trace, createdAt = now and a UUID traceId', () => {
    const before = Date.now();
    const p = new Packet({ x: 1 });
    const after = Date.now();
    expect(p.payload).toEqual({ x: 1 });
    expect(p.inputIndex).toBe(0);
    expect(p.partitionKey).toBeNull();
    expect(p.partitionStrategy).toBeNull();
    expect(p.trace).toEqual([]);
    expect(p.createdAt).toBeGreaterThanOrEqual(before);
    expect(p.createdAt).toBeLessThanOrEqual(after);
    expect(p.traceId).toMatch(UUID);
    expect(p.isKeyed()).toBe(false);
  });

  it('every packet gets its own traceId unless one is given', () => {
    const ids = new Set(Array.from({ length: 1000 }, () => new Packet(null).traceId));
    expect(ids.size).toBe(1000);
    expect(new Packet(null, { traceId: 'abc' }).traceId).toBe('abc');
  });

  it('options given are kept as given', () => {
    const trace: Hop[] = [{ router: 'r', target: 't', at: 5 }];
    const p = new Packet('x', { inputIndex: 2, partitionKey: 'k', partitionStrategy: 'hash', traceId: 'id-1', createdAt: 42, trace });
    expect(p).toMatchObject({ payload: 'x', inputIndex: 2, partitionKey: 'k', partitionStrategy: 'hash', traceId: 'id-1', createdAt: 42 });
    expect(p.trace).toEqual(trace);
    expect(p.trace).not.toBe(trace); // a copy: the caller's array can change without touching the packet
    trace.push({ router: 'r2', target: 't2', at: 6 });
    expect(p.trace.length).toBe(1);
  });
});

describe('Packet keys', () => {
  it('isKeyed() is true for the falsy keys 0 and "" (and for every other key type)', () => {
    expect(new Packet(1, { partitionKey: 0 }).isKeyed()).toBe(true);
    expect(new Packet(1, { partitionKey: '' }).isKeyed()).toBe(true);
    expect(new Packet(1, { partitionKey: 0n }).isKeyed()).toBe(true);
    expect(new Packet(1, { partitionKey: new Uint8Array(0) }).isKeyed()).toBe(true);
    expect(new Packet(1, { partitionKey: -1.5 }).isKeyed()).toBe(true);
  });

  it('isKeyed() is false for a null or undefined key', () => {
    expect(new Packet(1, { partitionKey: null }).isKeyed()).toBe(false);
    expect(new Packet(1, { partitionKey: undefined }).isKeyed()).toBe(false);
    expect(new Packet(1, { partitionKey: 'k' }).updateKey(null).isKeyed()).toBe(false);
  });
});

describe('Packet immutability', () => {
  it('the packet, its trace and each hop are frozen', () => {
    const p = new Packet({ a: 1 }, { partitionKey: 'k' }).withHop('r', 't', 1);
    expect(Object.isFrozen(p)).toBe(true);
    expect(Object.isFrozen(p.trace)).toBe(true);
    expect(Object.isFrozen(p.trace[0])).toBe(true);
  });

  it('assignments, deletions, new properties and trace mutations throw in strict mode and change nothing', () => {
    'use strict';
    const p = new Packet('payload', { partitionKey: 'k', inputIndex: 1 }).withHop('r', 't', 1);
    const m = p as unknown as Record<string, unknown>;
    expect(() => {
      m.payload = 'other';
    }).toThrow(TypeError);
    expect(() => {
      m.inputIndex = 5;
    }).toThrow(TypeError);
    expect(() => {
      m.partitionKey = 'x';
    }).toThrow(TypeError);
    expect(() => {
      m.traceId = 'x';
    }).toThrow(TypeError);
    expect(() => {
      m.extra = 1;
    }).toThrow(TypeError);
    expect(() => {
      delete m.payload;
    }).toThrow(TypeError);
    expect(() => (p.trace as Hop[]).push({ router: 'x', target: 'y', at: 2 })).toThrow(TypeError);
    expect(() => {
      (p.trace[0] as { router: string }).router = 'changed';
    }).toThrow(TypeError);
    expect(p.payload).toBe('payload');
    expect(p.inputIndex).toBe(1);
    expect(p.partitionKey).toBe('k');
    expect(p.trace).toEqual([{ router: 'r', target: 't', at: 1 }]);
  });
});

describe('Packet changes return new packets and leave the original unchanged', () => {
  const original = (): Packet<{ v: number }> =>
    new Packet({ v: 1 }, { partitionKey: 'k1', partitionStrategy: 'consistent_hash', traceId: 'T', createdAt: 7, inputIndex: 1 });

  it('updateKey(key, strategy) replaces key and strategy; updateKey(key) keeps the strategy', () => {
    const p = original();
    const q = p.updateKey('k2', 'hash');
    expect(q).not.toBe(p);
    expect(q).toBeInstanceOf(Packet);
    expect(q).toMatchObject({ partitionKey: 'k2', partitionStrategy: 'hash', traceId: 'T', createdAt: 7, inputIndex: 1 });
    expect(q.payload).toBe(p.payload);
    const r = p.updateKey(0);
    expect(r).toMatchObject({ partitionKey: 0, partitionStrategy: 'consistent_hash' });
    expect(p.updateKey('k3', null).partitionStrategy).toBeNull();
    expect(p).toMatchObject({ partitionKey: 'k1', partitionStrategy: 'consistent_hash' });
  });

  it("inheritPartitionInfo(other) takes other's key and strategy, nothing else", () => {
    const p = original();
    const other = new Packet('o', { partitionKey: 99, partitionStrategy: 'hash', traceId: 'O', inputIndex: 3 });
    const q = p.inheritPartitionInfo(other);
    expect(q).not.toBe(p);
    expect(q).toMatchObject({ partitionKey: 99, partitionStrategy: 'hash', traceId: 'T', inputIndex: 1, createdAt: 7 });
    expect(q.payload).toEqual({ v: 1 });
    const unkeyed = p.inheritPartitionInfo(new Packet('u'));
    expect(unkeyed.isKeyed()).toBe(false);
    expect(unkeyed.partitionStrategy).toBeNull();
    expect(p).toMatchObject({ partitionKey: 'k1', partitionStrategy: 'consistent_hash' });
  });

  it('withInputIndex(i) addresses another input', () => {
    const p = original();
    const q = p.withInputIndex(4);
    expect(q).not.toBe(p);
    expect(q.inputIndex).toBe(4);
    expect(q).toMatchObject({ traceId: 'T', partitionKey: 'k1', createdAt: 7 });
    expect(p.inputIndex).toBe(1);
  });

  it('withHop(router, target, at) appends one hop', () => {
    const p = original().withHop('a', 'x', 10);
    const q = p.withHop('b', 'y', 20);
    expect(q).not.toBe(p);
    expect(q.trace).toEqual([
      { router: 'a', target: 'x', at: 10 },
      { router: 'b', target: 'y', at: 20 },
    ]);
    expect(p.trace).toEqual([{ router: 'a', target: 'x', at: 10 }]);
    const before = Date.now();
    const r = p.withHop('c', 'z');
    expect(r.trace[1]?.at).toBeGreaterThanOrEqual(before);
    expect(r.trace[1]?.at).toBeLessThanOrEqual(Date.now());
  });
});

describe('Packet trace grows with routing', () => {
  it('two routers in a row: the trace names each router, its target and the time, oldest first', async () => {
    const mid = new LocalQueue<Packet>();
    const sink = new LocalQueue<Packet>();
    const ingest = new BaseRouter({ name: 'ingest' });
    ingest.addConnection({ broadcastIndex: 0, parallelIndex: 0, targetName: 'parser', targetHandle: mid });
    const parse = new BaseRouter({ name: 'parse-out' });
    parse.addConnection({ broadcastIndex: 0, parallelIndex: 0, targetName: 'sink', targetHandle: sink });

    const t0 = Date.now();
    const p = new Packet({ n: 1 });
    expect((await ingest.route(p)).ok).toBe(true);
    const atParser = mid.getNowait();
    expect(atParser.traceId).toBe(p.traceId);
    expect((await parse.route(atParser)).ok).toBe(true);
    const atSink = sink.getNowait();
    const t1 = Date.now();

    expect(atSink.traceId).toBe(p.traceId);
    expect(atSink.trace.map((h) => [h.router, h.target])).toEqual([
      ['ingest', 'parser'],
      ['parse-out', 'sink'],
    ]);
    const [h1, h2] = atSink.trace as [Hop, Hop];
    expect(h1.at).toBeGreaterThanOrEqual(t0);
    expect(h2.at).toBeGreaterThanOrEqual(h1.at);
    expect(h2.at).toBeLessThanOrEqual(t1);
    expect(p.trace).toEqual([]); // the packet the caller routed is untouched
    expect(atParser.trace.length).toBe(1);
  });

  it('a router with trace: false adds no hop', async () => {
    const q = new LocalQueue<Packet>();
    const r = new BaseRouter({ name: 'quiet', trace: false });
    r.addConnection({ broadcastIndex: 0, parallelIndex: 0, targetName: 't', targetHandle: q });
    await r.route(new Packet(1));
    expect(q.getNowait().trace).toEqual([]);
  });
});

describe('Packet wire form', () => {
  it('Packet.from(p.toJSON()) equals p for every key type', () => {
    const keys: Array<PartitionKey | null> = [null, 'k', '', 0, -3.25, 12345678901234567890n, new Uint8Array([0, 255, 7])];
    for (const key of keys) {
      const p = new Packet({ deep: [1, { x: 'y' }] }, { partitionKey: key, partitionStrategy: 'hash', inputIndex: 3 }).withHop('r', 't', 17);
      const wire = p.toJSON();
      const q = Packet.from(wire);
      expect(q).toBeInstanceOf(Packet);
      expect(q).not.toBe(p);
      expect(q.toJSON()).toEqual(wire);
      expect(q.isKeyed()).toBe(key !== null);
      expect(Object.isFrozen(q)).toBe(true);
    }
  });

  it('toJSON() is a plain, mutable copy: changing it does not change the packet', () => {
    const p = new Packet('x').withHop('r', 't', 1);
    const wire = p.toJSON();
    wire.trace.push({ router: 'z', target: 'z', at: 2 });
    (wire.trace[0] as { router: string }).router = 'changed';
    expect(p.trace).toEqual([{ router: 'r', target: 't', at: 1 }]);
  });

  it('Packet.from(a Packet) returns it; JSON text of a string- or number-keyed packet round-trips', () => {
    const p = new Packet({ a: [1, 2] }, { partitionKey: 'user-7', partitionStrategy: 'consistent_hash', inputIndex: 1 }).withHop('r', 't', 3);
    expect(Packet.from(p)).toBe(p);
    const viaText = Packet.from(JSON.parse(JSON.stringify(p)) as PacketWire<{ a: number[] }>);
    expect(viaText.toJSON()).toEqual(p.toJSON());
    const n = new Packet(1, { partitionKey: 42 });
    expect(Packet.from(JSON.parse(JSON.stringify(n)) as PacketWire<number>).partitionKey).toBe(42);
  });

  it('property: Packet.from(toJSON()) round-trips arbitrary payloads, keys, input indexes and traces', () => {
    const key = fc.oneof(
      fc.constant(null),
      fc.string({ unit: 'binary' }),
      fc.double({ noNaN: true, noDefaultInfinity: true }),
      fc.bigInt(),
      fc.uint8Array({ maxLength: 16 }),
    );
    const hop = fc.record({ router: fc.string(), target: fc.string(), at: fc.integer({ min: 0 }) });
    fc.assert(
      fc.property(fc.jsonValue(), key, fc.nat({ max: 1000 }), fc.array(hop, { maxLength: 5 }), (payload, k, inputIndex, trace) => {
        const p = new Packet(payload, { partitionKey: k, inputIndex, trace });
        const q = Packet.from(p.toJSON());
        expect(q.toJSON()).toEqual(p.toJSON());
      }),
      { numRuns: 300 },
    );
  });

  it('a packet put through a SageQueue (v8 codec) is revived by Packet.from with key, input and trace intact', async () => {
    const name = `rt-${process.pid}-pkt-${randomBytes(4).toString('hex')}`;
    const q = SageQueue.create<unknown>(name, { capacity: 1 << 16, codec: 'v8' });
    segments.push(name);
    try {
      const p = new Packet({ big: 1n, when: new Date(5) }, { partitionKey: new Uint8Array([1, 2, 3]), inputIndex: 2 }).withHop('r', 't', 9);
      await q.putAsync(p);
      const got = Packet.from((await q.getAsync({ timeoutMs: 1000 })) as PacketWire);
      expect(got.toJSON()).toEqual(p.toJSON());
    } finally {
      q.release();
    }
  });
});

describe('Packet bad inputs throw typed errors with codes', () => {
  it('options that are not an object, or carry unknown keys', () => {
    thrown(() => new Packet(1, null as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => new Packet(1, 'opts' as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => new Packet(1, { inputIdx: 1 } as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
  });

  it('inputIndex: not an integer → ERR_INVALID_ARG_TYPE; negative or fractional → ERR_OUT_OF_RANGE', () => {
    thrown(() => new Packet(1, { inputIndex: '1' as never }), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => new Packet(1, { inputIndex: -1 }), ArgumentRangeError, 'ERR_OUT_OF_RANGE');
    thrown(() => new Packet(1, { inputIndex: 1.5 }), ArgumentRangeError, 'ERR_OUT_OF_RANGE');
    thrown(() => new Packet(1).withInputIndex(-2), ArgumentRangeError, 'ERR_OUT_OF_RANGE');
  });

  it('partitionKey of another type, NaN or ±Infinity → ERR_INVALID_ARG_TYPE', () => {
    for (const bad of [{}, [], true, NaN, Infinity, -Infinity, Symbol('s'), () => 1]) {
      thrown(() => new Packet(1, { partitionKey: bad as never }), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    }
    thrown(() => new Packet(1).updateKey({} as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
  });

  it('an unknown partitionStrategy → ERR_UNKNOWN_STRATEGY (InvalidArgumentValueError)', () => {
    const e = thrown(() => new Packet(1, { partitionStrategy: 'random' as never }), InvalidArgumentValueError, 'ERR_UNKNOWN_STRATEGY');
    expect(e.message).toContain('round_robin');
    thrown(() => new Packet(1).updateKey('k', 'modulo' as never), InvalidArgumentValueError, 'ERR_UNKNOWN_STRATEGY');
  });

  it('traceId empty or not a string, createdAt not finite, trace not an array → ERR_INVALID_ARG_TYPE', () => {
    thrown(() => new Packet(1, { traceId: '' }), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => new Packet(1, { traceId: 5 as never }), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => new Packet(1, { createdAt: NaN }), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => new Packet(1, { createdAt: '2024' as never }), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => new Packet(1, { trace: 'hop' as never }), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
  });

  it('Packet.from(not an object) and inheritPartitionInfo(not a Packet) → ERR_INVALID_ARG_TYPE', () => {
    thrown(() => Packet.from(null as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => Packet.from(42 as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => Packet.from({ payload: 1, partitionKey: {} } as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => new Packet(1).inheritPartitionInfo({ partitionKey: 'k' } as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
  });

  it('a trace entry that is not a hop (missing router/target, non-finite time) → ERR_INVALID_ARG_TYPE, not a hop named "undefined"', () => {
    // A corrupted wire form must not turn into hops such as { router: 'undefined', at: NaN }.
    thrown(() => new Packet(1, { trace: [{ router: 'r' } as never] }), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => new Packet(1, { trace: [null as never] }), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => new Packet(1).withHop('r', 't', NaN), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
  });
});
