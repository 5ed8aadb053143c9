/**
 * Codec extensions (lib/queue/codec-extensions.ts): the queue layer's hook through which another
 * layer (the router, for Packet) makes the MessagePack codecs carry a class of its own. A
 * registration reaches the Packrs made before it; bad registrations are typed errors; the v8
 * codec writes an extension's plain form.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { InvalidArgumentTypeError, InvalidArgumentValueError, Packet } from '../../lib/index';
import { registerCodecExtension } from '../../lib/queue/codec-extensions';
import type { CodecExtension } from '../../lib/queue/codec-extensions';
import { codecByName } from '../../lib/queue/codecs';
import { openRecordCodec } from '../../lib/queue/record-codec';
import { thrown } from '../support/expect-errors';

const dir = mkdtempSync(path.join(tmpdir(), 'sageq-codec-ext-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

class Point {
  constructor(
    readonly x: number,
    readonly y: number,
  ) {}
}

const pointExtension: CodecExtension<Point> = {
  type: 91,
  Class: Point,
  write: (p) => [p.x, p.y],
  read: (data) => {
    const [x, y] = data as [number, number];
    return new Point(x, y);
  },
  plain: (p) => ({ point: [p.x, p.y] }),
};

describe('registerCodecExtension', () => {
  it('reaches the msgpack and records Packrs made before it: both then write and read the class', () => {
    const msgpack = codecByName('msgpack');
    const records = openRecordCodec(path.join(dir, 'a.structs'), 0o600);
    try {
      // Both Packrs exist (and have encoded) before the registration.
      expect(msgpack.decode(Buffer.from(msgpack.encode({ x: 1 })))).toEqual({ x: 1 });
      expect(records.decode(Buffer.from(records.encode({ x: 1 })))).toEqual({ x: 1 });
      const before = msgpack.decode(Buffer.from(msgpack.encode(new Point(1, 2))));
      expect(before).not.toBeInstanceOf(Point); // written as a plain map until registered

      registerCodecExtension(pointExtension);
      for (const codec of [msgpack, records]) {
        const bytes = Buffer.from(codec.encode({ at: new Point(3, 4), list: [new Point(5, 6)] }));
        expect(bytes.includes(Buffer.from([0xd4, 91, 0x00]))).toBe(true); // the extension's tag
        const got = codec.decode(bytes) as { at: Point; list: Point[] };
        expect(got.at).toBeInstanceOf(Point);
        expect(got.at).toEqual(new Point(3, 4));
        expect(got.list[0]).toEqual(new Point(5, 6));
      }
    } finally {
      records.close();
    }
  });

  it('the same class and type again is a no-op; another class on a taken type, or another type for a registered class, is refused', () => {
    registerCodecExtension(pointExtension);
    registerCodecExtension(pointExtension);
    class Other {}
    const other = { type: 91, Class: Other, write: () => 0, read: () => new Other() };
    thrown(() => registerCodecExtension(other), InvalidArgumentValueError, 'ERR_INVALID_ARG_VALUE');
    thrown(() => registerCodecExtension({ ...pointExtension, type: 92 }), InvalidArgumentValueError, 'ERR_INVALID_ARG_VALUE');
    // Packet's own type is taken by Packet.
    thrown(() => registerCodecExtension({ ...other, type: 0x50 }), InvalidArgumentValueError, 'ERR_INVALID_ARG_VALUE');
  });

  it('a type outside 1..100, or one msgpackr uses (66, 98), and missing functions are typed errors', () => {
    class C {}
    const ok = { type: 93, Class: C, write: () => 0, read: () => new C() };
    for (const type of [0, 101, 127, -1, 1.5, 66, 98, '7', NaN]) {
      thrown(() => registerCodecExtension({ ...ok, type } as never), InvalidArgumentValueError, 'ERR_INVALID_ARG_VALUE');
    }
    thrown(() => registerCodecExtension(null as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => registerCodecExtension({ ...ok, Class: {} } as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => registerCodecExtension({ ...ok, write: undefined } as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => registerCodecExtension({ ...ok, read: 1 } as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => registerCodecExtension({ ...ok, plain: 'x' } as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
  });
});

describe('the v8 and json codecs carry the plain form', () => {
  it('v8 writes a top-level instance as its plain() form: a Packet as its toJSON() object, which Packet.from revives', () => {
    const v8 = codecByName('v8');
    registerCodecExtension(pointExtension);
    expect(v8.decode(Buffer.from(v8.encode(new Point(7, 8))))).toEqual({ point: [7, 8] });
    const p = new Packet({ a: 1 }, { partitionKey: 3n, inputIndex: 2 }).withHop('r', 't', 4);
    const wire = v8.decode(Buffer.from(v8.encode(p)));
    expect(wire).not.toBeInstanceOf(Packet);
    expect(wire).toEqual(p.toJSON());
    expect(Packet.from(wire as never).toJSON()).toEqual(p.toJSON());
  });

  it('json writes a Packet as its toJSON() object', () => {
    const json = codecByName('json');
    const p = new Packet(['x'], { partitionKey: 'k', partitionStrategy: 'hash' });
    const wire = json.decode(Buffer.from(json.encode(p)));
    expect(wire).toEqual(p.toJSON());
    expect(Packet.from(wire as never)).toBeInstanceOf(Packet);
  });
});

describe("the codecs' own Buffer extension", () => {
  /** What MessagePack says a Buffer of `n` bytes is: bin 8, bin 16 or bin 32, then the bytes. */
  function bin(bytes: Buffer): Buffer {
    const n = bytes.length;
    const head = n < 0x100 ? [0xc4, n] : n < 0x10000 ? [0xc5, n >> 8, n & 0xff] : [0xc6, (n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
    return Buffer.concat([Buffer.from(head), bytes]);
  }

  it('writes a Buffer of every length class as MessagePack bin (the bytes msgpackr writes) and reads it back as a Buffer', () => {
    const msgpack = codecByName('msgpack');
    const records = openRecordCodec(path.join(dir, 'buffers.structs'), 0o600);
    try {
      for (const n of [0, 1, 255, 256, 65_535, 65_536, 200_000]) {
        const b = Buffer.alloc(n, n & 0xff);
        expect(Buffer.from(msgpack.encode(b)).equals(bin(b))).toBe(true);
        const back = msgpack.decode(Buffer.from(msgpack.encode(b)));
        expect(Buffer.isBuffer(back) && (back as Buffer).equals(b)).toBe(true);
        const viaRecords = records.decode(Buffer.from(records.encode({ b }))) as { b: Buffer };
        expect(Buffer.isBuffer(viaRecords.b) && viaRecords.b.equals(b)).toBe(true);
      }
      // A view into a larger buffer carries only its own bytes.
      const big = Buffer.from('0123456789');
      expect(Buffer.from(msgpack.encode(big.subarray(3, 6))).equals(bin(Buffer.from('345')))).toBe(true);
    } finally {
      records.close();
    }
  });

  it('its type (78) is refused to other registrations', () => {
    class Other {}
    thrown(() => registerCodecExtension({ type: 78, Class: Other, write: () => 0, read: () => new Other() }), InvalidArgumentValueError, 'ERR_INVALID_ARG_VALUE');
  });
});
