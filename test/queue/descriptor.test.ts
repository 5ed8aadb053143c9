import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { QueueDescriptor, shmQueueDescriptor, sageQueueDescriptor } from '../../lib/queue/descriptor';
import { getLocalQueue, resolveDescriptor } from '../../lib/queue/registry';
import type { ReadonlyJsonObject } from '../../lib/queue/descriptor';
import {
  ArgumentRangeError,
  DescriptorError,
  InvalidArgumentTypeError,
  InvalidArgumentValueError,
  UnsupportedQueueTypeError,
} from '../../lib/errors';
import { LocalQueue } from '../../lib/queue/local-queue';
import { getRegisteredQueueTypes, registerQueueImplementation, unregisterQueueImplementation } from '../../lib/queue/registry';
import { thrown } from '../support/expect-errors';
import { installBuiltinQueueTypes } from '../../lib/builtins';

installBuiltinQueueTypes();

// "shm" and "sage_queue" are registered by the shared-memory module; stand in for it when it is
// not loaded in this test's module graph, so their descriptors can be built.
const stubbed: string[] = [];
beforeAll(() => {
  for (const type of ['shm', 'sage_queue']) {
    if (!getRegisteredQueueTypes().includes(type)) {
      registerQueueImplementation(type, () => new LocalQueue());
      stubbed.push(type);
    }
  }
});
afterAll(() => {
  for (const type of stubbed) unregisterQueueImplementation(type);
});


const descriptorError = (fn: () => unknown): DescriptorError => thrown(fn, DescriptorError, 'ERR_INVALID_DESCRIPTOR');

describe('QueueDescriptor fields', () => {
  it('keeps the given fields and defaults metadata to {}', () => {
    const d = new QueueDescriptor({ queueId: 'q1', queueType: 'local', createdTimestamp: 1700000000.25 });
    expect(d.queueId).toBe('q1');
    expect(d.queueType).toBe('local');
    expect(d.metadata).toEqual({});
    expect(d.createdTimestamp).toBe(1700000000.25);
  });

  it('sets createdTimestamp to now in SECONDS since the epoch (a float, like time.time())', () => {
    const before = Date.now() / 1000;
    const d = new QueueDescriptor({ queueId: 'q', queueType: 'local' });
    const after = Date.now() / 1000;
    expect(d.createdTimestamp).toBeGreaterThanOrEqual(before);
    expect(d.createdTimestamp).toBeLessThanOrEqual(after);
  });

  it('accepts an id of exactly 256 characters and rejects 257', () => {
    expect(new QueueDescriptor({ queueId: 'x'.repeat(256), queueType: 'local' }).queueId).toHaveLength(256);
    descriptorError(() => new QueueDescriptor({ queueId: 'x'.repeat(257), queueType: 'local' }));
  });

  it('rejects a missing, empty or non-string id, a bad type and a bad timestamp with DescriptorError', () => {
    descriptorError(() => new QueueDescriptor({ queueType: 'local' } as never));
    descriptorError(() => new QueueDescriptor({ queueId: '', queueType: 'local' }));
    descriptorError(() => new QueueDescriptor({ queueId: 5 as never, queueType: 'local' }));
    descriptorError(() => new QueueDescriptor({ queueId: 'q', queueType: 3 as never }));
    descriptorError(() => new QueueDescriptor({ queueId: 'q', queueType: '' }));
    descriptorError(() => new QueueDescriptor({ queueId: 'q', queueType: 'local', createdTimestamp: -1 }));
    descriptorError(() => new QueueDescriptor({ queueId: 'q', queueType: 'local', createdTimestamp: Number.NaN }));
    descriptorError(() => new QueueDescriptor({ queueId: 'q', queueType: 'local', extra: 1 } as never));
    descriptorError(() => new QueueDescriptor(null as never));
  });

  it('is a pure value: any well-formed type is accepted, and resolving an unregistered one is UnsupportedQueueTypeError naming the available types', () => {
    const desc = new QueueDescriptor({ queueId: 'q', queueType: 'no_such_type' });
    expect(QueueDescriptor.fromDict(desc.toDict()).queueType).toBe('no_such_type');
    const e = thrown(() => resolveDescriptor(desc), UnsupportedQueueTypeError, 'ERR_UNSUPPORTED_QUEUE_TYPE');
    expect(e.queueType).toBe('no_such_type');
    expect(e.availableTypes).toContain('local');
    expect(e.message).toMatch(/local/);
  });
});

describe('QueueDescriptor metadata validation', () => {
  const bad: Array<[string, unknown, RegExp]> = [
    ['a function', { f: () => 1 }, /metadata\.f/],
    ['undefined', { foo: [1, 2, undefined] }, /metadata\.foo\[2\]/],
    ['a bigint', { n: 1n }, /metadata\.n/],
    ['a symbol', { s: Symbol('x') }, /metadata\.s/],
    ['NaN', { deep: { x: Number.NaN } }, /metadata\.deep\.x/],
    ['Infinity', { x: Number.POSITIVE_INFINITY }, /metadata\.x/],
    ['a Map', { m: new Map() }, /metadata\.m/],
    ['a Date', { when: new Date() }, /metadata\.when/],
    ['a class instance', { c: new (class Thing {})() }, /metadata\.c/],
    ['a sparse array', { a: [1, , 3] }, /metadata\.a\[1\]/], // eslint-disable-line no-sparse-arrays
    ['an odd key', { 'a b': undefined }, /metadata\["a b"\]/],
  ];
  for (const [what, metadata, path] of bad) {
    it(`rejects ${what} with a DescriptorError naming the path`, () => {
      const e = descriptorError(() => new QueueDescriptor({ queueId: 'q', queueType: 'local', metadata: metadata as never }));
      expect(e.message).toMatch(path);
    });
  }

  it('rejects a cycle with a DescriptorError naming where it closes', () => {
    const cyclic: Record<string, unknown> = { a: { b: [] as unknown[] } };
    ((cyclic.a as Record<string, unknown>).b as unknown[]).push(cyclic);
    const e = descriptorError(() => new QueueDescriptor({ queueId: 'q', queueType: 'local', metadata: cyclic as never }));
    expect(e.message).toMatch(/metadata\.a\.b\[0\].*cycle/);
  });

  it('accepts the same object referenced twice (not a cycle)', () => {
    const shared = { x: 1 };
    const d = new QueueDescriptor({ queueId: 'q', queueType: 'local', metadata: { a: shared, b: shared } });
    expect(d.metadata).toEqual({ a: { x: 1 }, b: { x: 1 } });
  });

  it('rejects metadata that is not a plain object', () => {
    for (const metadata of [[], 'x', 1, null, new Map()]) {
      descriptorError(() => new QueueDescriptor({ queueId: 'q', queueType: 'local', metadata: metadata as never }));
    }
  });

  it('keeps a "__proto__" key as plain data', () => {
    const metadata = JSON.parse('{"__proto__": {"polluted": true}}') as ReadonlyJsonObject;
    const d = new QueueDescriptor({ queueId: 'q', queueType: 'local', metadata });
    expect(Object.getPrototypeOf(d.metadata)).toBe(Object.prototype);
    expect(JSON.parse(JSON.stringify(d)).metadata).toEqual(metadata);
  });
});

describe('QueueDescriptor wire form', () => {
  const d = new QueueDescriptor({
    queueId: 'orders',
    queueType: 'local',
    metadata: { maxsize: 3, tags: ['a', 'b'], nested: { ok: true, none: null } },
    createdTimestamp: 1712345678.5,
  });

  it('toDict uses the seed snake_case keys', () => {
    expect(d.toDict()).toEqual({
      queue_id: 'orders',
      queue_type: 'local',
      metadata: { maxsize: 3, tags: ['a', 'b'], nested: { ok: true, none: null } },
      created_timestamp: 1712345678.5,
    });
  });

  it('toDict returns a mutable copy that does not alias the descriptor', () => {
    const dict = d.toDict();
    dict.metadata.maxsize = 99;
    expect(d.metadata.maxsize).toBe(3);
  });

  it('toJSON equals toDict, so JSON.stringify gives the wire form', () => {
    expect(d.toJSON()).toEqual(d.toDict());
    expect(JSON.parse(JSON.stringify(d))).toEqual(d.toDict());
  });

  it('fromDict(toDict()) and fromJSON(JSON.stringify()) round-trip every field', () => {
    for (const back of [QueueDescriptor.fromDict(d.toDict()), QueueDescriptor.fromJSON(JSON.stringify(d)), QueueDescriptor.fromJSON(d.toDict())]) {
      expect(back.equals(d)).toBe(true);
      expect(back.createdTimestamp).toBe(d.createdTimestamp);
      expect(back.toDict()).toEqual(d.toDict());
    }
  });

  it('fromDict accepts and ignores the SAGE Python key can_serialize when boolean', () => {
    const back = QueueDescriptor.fromDict({ ...d.toDict(), can_serialize: true });
    expect(back.equals(d)).toBe(true);
    expect(back.toDict()).not.toHaveProperty('can_serialize');
    descriptorError(() => QueueDescriptor.fromDict({ ...d.toDict(), can_serialize: 'yes' }));
  });

  it('fromDict defaults a missing metadata to {} and a missing created_timestamp to now', () => {
    const back = QueueDescriptor.fromDict({ queue_id: 'x', queue_type: 'local' });
    expect(back.metadata).toEqual({});
    expect(Math.abs(back.createdTimestamp - Date.now() / 1000)).toBeLessThan(5);
  });

  it('fromDict rejects unknown keys, wrong types, a missing or empty id and bad metadata', () => {
    const good = d.toDict();
    expect(descriptorError(() => QueueDescriptor.fromDict({ ...good, queueId: 'x' })).message).toMatch(/queueId/);
    expect(descriptorError(() => QueueDescriptor.fromDict({ ...good, queue_id: undefined })).message).toMatch(/queue_id/);
    const { queue_id: _id, ...noId } = good;
    expect(descriptorError(() => QueueDescriptor.fromDict(noId)).message).toMatch(/queue_id is missing/);
    const { queue_type: _type, ...noType } = good;
    expect(descriptorError(() => QueueDescriptor.fromDict(noType)).message).toMatch(/queue_type is missing/);
    descriptorError(() => QueueDescriptor.fromDict({ ...good, queue_id: '' }));
    descriptorError(() => QueueDescriptor.fromDict({ ...good, queue_id: 12 }));
    descriptorError(() => QueueDescriptor.fromDict({ ...good, queue_type: null }));
    descriptorError(() => QueueDescriptor.fromDict({ ...good, created_timestamp: '2024' }));
    descriptorError(() => QueueDescriptor.fromDict({ ...good, metadata: [] }));
    descriptorError(() => QueueDescriptor.fromDict({ ...good, metadata: null }));
    expect(descriptorError(() => QueueDescriptor.fromDict({ ...good, metadata: { a: { b: 1n } } })).message).toMatch(/metadata\.a\.b/);
    descriptorError(() => QueueDescriptor.fromDict([good]));
    descriptorError(() => QueueDescriptor.fromDict('x'));
  });

  it('fromJSON rejects invalid JSON text and non-object JSON with DescriptorError', () => {
    expect(descriptorError(() => QueueDescriptor.fromJSON('{"queue_id": ')).message).toMatch(/not valid JSON/);
    descriptorError(() => QueueDescriptor.fromJSON('[]'));
    descriptorError(() => QueueDescriptor.fromJSON('null'));
    descriptorError(() => QueueDescriptor.fromJSON(42));
  });

  it('any JSON metadata survives toJSON → fromJSON unchanged (property)', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.jsonValue()), (metadata) => {
        const desc = new QueueDescriptor({ queueId: 'p', queueType: 'local', metadata: metadata as ReadonlyJsonObject });
        const back = QueueDescriptor.fromJSON(JSON.stringify(desc));
        expect(back.equals(desc)).toBe(true);
        expect(back.metadata).toEqual(JSON.parse(JSON.stringify(metadata)));
      }),
    );
  });
});

describe('QueueDescriptor equality, clone, toString, immutability', () => {
  const d = new QueueDescriptor({ queueId: 'a', queueType: 'local', metadata: { x: [1, { y: 2 }], z: 'w' } });

  it('equals compares id, type and deep metadata, ignoring the timestamp and key order', () => {
    expect(d.equals(new QueueDescriptor({ queueId: 'a', queueType: 'local', metadata: { z: 'w', x: [1, { y: 2 }] }, createdTimestamp: 1 }))).toBe(true);
    expect(d.equals(new QueueDescriptor({ queueId: 'b', queueType: 'local', metadata: d.metadata }))).toBe(false);
    expect(d.equals(new QueueDescriptor({ queueId: 'a', queueType: 'rpc', metadata: d.metadata }))).toBe(false);
    expect(d.equals(new QueueDescriptor({ queueId: 'a', queueType: 'local', metadata: { x: [1, { y: 3 }], z: 'w' } }))).toBe(false);
    expect(d.equals(new QueueDescriptor({ queueId: 'a', queueType: 'local', metadata: { x: [1], z: 'w' } }))).toBe(false);
    expect(d.equals(d.toDict())).toBe(false);
  });

  it('clone() is equal, keeps the timestamp and deep-copies metadata', () => {
    const c = d.clone();
    expect(c).not.toBe(d);
    expect(c.equals(d)).toBe(true);
    expect(c.createdTimestamp).toBe(d.createdTimestamp);
    expect(c.metadata).not.toBe(d.metadata);
    expect(c.metadata.x).not.toBe(d.metadata.x);
  });

  it('clone(newId) keeps type and metadata under the new id', () => {
    const c = d.clone('other');
    expect(c.queueId).toBe('other');
    expect(c.queueType).toBe('local');
    expect(c.metadata).toEqual(d.metadata);
    thrown(() => d.clone(''), InvalidArgumentValueError, 'ERR_INVALID_ARG_VALUE');
    thrown(() => d.clone(7 as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
  });

  it('toString is Queue[type](id)', () => {
    expect(String(d)).toBe('Queue[local](a)');
    expect(`${QueueDescriptor.createRpcQueue({ serverAddress: 'h', port: 1, queueId: 'r' })}`).toBe('Queue[rpc](r)');
  });

  it('is deeply frozen: fields and nested metadata cannot change', () => {
    expect(Object.isFrozen(d)).toBe(true);
    expect(Object.isFrozen(d.metadata)).toBe(true);
    expect(Object.isFrozen(d.metadata.x)).toBe(true);
    expect(() => {
      (d as { queueId: string }).queueId = 'changed';
    }).toThrow(TypeError);
    expect(() => {
      ((d.metadata.x as unknown[])[1] as { y: number }).y = 5;
    }).toThrow(TypeError);
    expect(d.queueId).toBe('a');
  });

  it('does not alias the metadata object it was given', () => {
    const metadata = { list: [1] };
    const desc = new QueueDescriptor({ queueId: 'q', queueType: 'local', metadata });
    metadata.list.push(2);
    expect(desc.metadata).toEqual({ list: [1] });
    expect(Object.isFrozen(metadata)).toBe(false);
  });
});

describe('QueueDescriptor factories', () => {
  it('createLocalQueue: type local, id local_<8 hex>, metadata { maxsize } defaulting to 0', () => {
    const d = QueueDescriptor.createLocalQueue();
    expect(d.queueType).toBe('local');
    expect(d.queueId).toMatch(/^local_[0-9a-f]{8}$/);
    expect(d.metadata).toEqual({ maxsize: 0 });
    expect(QueueDescriptor.createLocalQueue({ queueId: 'mine', maxsize: 4 }).toDict()).toMatchObject({ queue_id: 'mine', metadata: { maxsize: 4 } });
  });

  it('generates a different id each time', () => {
    const ids = new Set(Array.from({ length: 50 }, () => QueueDescriptor.createLocalQueue().queueId));
    expect(ids.size).toBe(50);
  });

  it('createShmQueue: type shm, id shm_<8 hex>, metadata { shm_name, maxsize } defaulting to 1000', () => {
    const d = QueueDescriptor.createShmQueue({ shmName: 'seg1' });
    expect(d.queueType).toBe('shm');
    expect(d.queueId).toMatch(/^shm_[0-9a-f]{8}$/);
    expect(d.metadata).toEqual({ shm_name: 'seg1', maxsize: 1000 });
  });

  it('createSageQueue: type sage_queue, id sage_<8 hex>, the seed metadata and defaults', () => {
    const d = QueueDescriptor.createSageQueue();
    expect(d.queueType).toBe('sage_queue');
    expect(d.queueId).toMatch(/^sage_[0-9a-f]{8}$/);
    expect(d.metadata).toEqual({ maxsize: 1000, auto_cleanup: false, namespace: null, enable_multi_tenant: true });
  });

  it('createSageQueue: adds create, capacity, max_message_size, codec and mode only when given', () => {
    const d = QueueDescriptor.createSageQueue({
      queueId: 's',
      maxsize: 10,
      create: true,
      namespace: 'tenant-a',
      enableMultiTenant: false,
      capacity: 1 << 20,
      maxMessageSize: 4096,
      codec: 'msgpack',
      mode: 0o600,
    });
    expect(d.metadata).toEqual({
      maxsize: 10,
      auto_cleanup: false,
      namespace: 'tenant-a',
      enable_multi_tenant: false,
      create: true,
      capacity: 1 << 20,
      max_message_size: 4096,
      codec: 'msgpack',
      mode: 0o600,
    });
  });

  it('createRayActorQueue: type ray_actor, id ray_actor_<8 hex>, metadata { actor_name, maxsize }', () => {
    const d = QueueDescriptor.createRayActorQueue({ actorName: 'actor1' });
    expect(d.queueType).toBe('ray_actor');
    expect(d.queueId).toMatch(/^ray_actor_[0-9a-f]{8}$/);
    expect(d.metadata).toEqual({ actor_name: 'actor1', maxsize: 0 });
  });

  it('createRayQueue: type ray_queue, id ray_queue_<8 hex>, metadata { maxsize }', () => {
    const d = QueueDescriptor.createRayQueue({ maxsize: 3 });
    expect(d.queueType).toBe('ray_queue');
    expect(d.queueId).toMatch(/^ray_queue_[0-9a-f]{8}$/);
    expect(d.metadata).toEqual({ maxsize: 3 });
  });

  it('createRpcQueue: type rpc, id rpc_<8 hex>, metadata { server_address, port }', () => {
    const d = QueueDescriptor.createRpcQueue({ serverAddress: '10.0.0.1', port: 8080 });
    expect(d.queueType).toBe('rpc');
    expect(d.queueId).toMatch(/^rpc_[0-9a-f]{8}$/);
    expect(d.metadata).toEqual({ server_address: '10.0.0.1', port: 8080 });
  });

  it('factories reject bad arguments with typed errors and codes', () => {
    const type = (fn: () => unknown): void => void thrown(fn, InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    const range = (fn: () => unknown): void => void thrown(fn, ArgumentRangeError, 'ERR_OUT_OF_RANGE');
    const value = (fn: () => unknown): void => void thrown(fn, InvalidArgumentValueError, 'ERR_INVALID_ARG_VALUE');
    range(() => QueueDescriptor.createLocalQueue({ maxsize: -1 }));
    range(() => QueueDescriptor.createLocalQueue({ maxsize: 2.5 }));
    type(() => QueueDescriptor.createLocalQueue({ maxsize: '5' as never }));
    type(() => QueueDescriptor.createLocalQueue({ queueId: 5 as never }));
    value(() => QueueDescriptor.createLocalQueue({ queueId: '' }));
    value(() => QueueDescriptor.createLocalQueue({ queueId: 'x'.repeat(257) }));
    type(() => QueueDescriptor.createLocalQueue({ max: 1 } as never));
    type(() => QueueDescriptor.createLocalQueue(3 as never));
    type(() => QueueDescriptor.createShmQueue({} as never));
    value(() => QueueDescriptor.createShmQueue({ shmName: '' }));
    type(() => QueueDescriptor.createSageQueue({ create: 'yes' as never }));
    // SAGE's autoCleanup is refused with a reason, not accepted and ignored.
    const e = thrown(() => QueueDescriptor.createSageQueue({ autoCleanup: true } as never), InvalidArgumentValueError, 'ERR_UNSUPPORTED_OPTION');
    expect(e.message).toMatch(/SageQueue\.destroy|sage-queue gc/);
    type(() => QueueDescriptor.createSageQueue({ enableMultiTenant: 1 as never }));
    type(() => QueueDescriptor.createSageQueue({ namespace: 3 as never }));
    range(() => QueueDescriptor.createSageQueue({ capacity: 0 }));
    range(() => QueueDescriptor.createSageQueue({ maxMessageSize: -4 }));
    value(() => QueueDescriptor.createSageQueue({ codec: '' }));
    range(() => QueueDescriptor.createSageQueue({ mode: 0o10000 }));
    type(() => QueueDescriptor.createSageQueue({ capacityBytes: 1 } as never));
    type(() => QueueDescriptor.createRayActorQueue({ actorName: undefined } as never));
    type(() => QueueDescriptor.createRayQueue({ maxsize: null } as never));
    type(() => QueueDescriptor.createRpcQueue({ serverAddress: 'h' } as never));
    range(() => QueueDescriptor.createRpcQueue({ serverAddress: 'h', port: 0 }));
    range(() => QueueDescriptor.createRpcQueue({ serverAddress: 'h', port: 65536 }));
    type(() => QueueDescriptor.createRpcQueue({ serverAddress: 'h', port: '80' as never }));
    value(() => QueueDescriptor.createRpcQueue({ serverAddress: '', port: 80 }));
  });
});

describe('convenience functions', () => {
  it('getLocalQueue returns the same LocalQueue for the same id, with maxsize from the first call', () => {
    const a = getLocalQueue<number>('conv-1', { maxsize: 2 });
    expect(a).toBeInstanceOf(LocalQueue);
    expect(a.maxsize).toBe(2);
    expect(getLocalQueue('conv-1')).toBe(a);
    expect(getLocalQueue('conv-2')).not.toBe(a);
  });

  it('getLocalQueue without an id opens a new queue each time', () => {
    expect(getLocalQueue()).not.toBe(getLocalQueue());
  });

  it('shmQueueDescriptor returns the shm descriptor', () => {
    const d = shmQueueDescriptor('segment', { queueId: 'shm-q', maxsize: 5 });
    expect(d.queueType).toBe('shm');
    expect(d.toDict()).toMatchObject({ queue_id: 'shm-q', metadata: { shm_name: 'segment', maxsize: 5 } });
    expect(shmQueueDescriptor('segment').queueId).toMatch(/^shm_[0-9a-f]{8}$/);
  });

  it('sageQueueDescriptor returns the sage_queue descriptor', () => {
    const d = sageQueueDescriptor('jobs', { namespace: 'ns', capacity: 65536 });
    expect(d.queueType).toBe('sage_queue');
    expect(d.queueId).toBe('jobs');
    expect(d.metadata).toMatchObject({ namespace: 'ns', capacity: 65536, maxsize: 1000 });
    expect(sageQueueDescriptor().queueId).toMatch(/^sage_[0-9a-f]{8}$/);
  });
});
