import { afterEach, describe, expect, it } from 'vitest';
import { QueueDescriptor } from '../../lib/queue/descriptor';
import {
  DescriptorError,
  InvalidArgumentTypeError,
  InvalidArgumentValueError,
  UnsupportedQueueTypeError,
} from '../../lib/errors';
import { LocalQueue } from '../../lib/queue/local-queue';
import {
  forgetResolved,
  getRegisteredQueueTypes,
  releaseResolved,
  registerQueueImplementation,
  resolveDescriptor,
  unregisterQueueImplementation,
} from '../../lib/queue/registry';
import type { QueueImplementation } from '../../lib/queue/registry';
import { thrown } from '../support/expect-errors';
import { installBuiltinQueueTypes } from '../../lib/builtins';

installBuiltinQueueTypes();


const registeredHere: string[] = [];
function register(type: string, impl: QueueImplementation, replace?: boolean): void {
  registerQueueImplementation(type, impl, replace === undefined ? undefined : { replace });
  registeredHere.push(type);
}
afterEach(() => {
  for (const type of registeredHere.splice(0)) unregisterQueueImplementation(type);
});

/** An implementation that counts how often it is called. */
function counting(): { impl: QueueImplementation; calls: QueueDescriptor[] } {
  const calls: QueueDescriptor[] = [];
  return { calls, impl: (d) => (calls.push(d), new LocalQueue()) };
}

describe('registry type list', () => {
  it('lists the built-in types, sorted', () => {
    const types = getRegisteredQueueTypes();
    for (const t of ['local', 'ray_actor', 'ray_queue', 'rpc']) expect(types).toContain(t);
    expect(types).toEqual([...types].sort());
  });

  it('returns a copy that callers cannot use to change the registry', () => {
    getRegisteredQueueTypes().push('fake');
    expect(getRegisteredQueueTypes()).not.toContain('fake');
  });

  it('installBuiltinQueueTypes registers every built-in type, and is idempotent', () => {
    installBuiltinQueueTypes();
    for (const type of ['local', 'sage_queue', 'shm', 'redis', 'ray_actor', 'ray_queue', 'rpc']) {
      expect(getRegisteredQueueTypes()).toContain(type);
    }
  });
});

describe('registering custom types', () => {
  it('round-trips a custom type: register, describe, resolve, use the instance', async () => {
    const { impl, calls } = counting();
    register('mem-test', impl);
    expect(getRegisteredQueueTypes()).toContain('mem-test');
    const desc = new QueueDescriptor({ queueId: 'custom-1', queueType: 'mem-test', metadata: { k: 1 } });
    const q = resolveDescriptor<string>(desc);
    expect(calls).toEqual([desc]);
    await q.putAsync('hello');
    await expect(q.getAsync()).resolves.toBe('hello');
  });

  it('resolves a descriptor given as a dict or JSON text to the same instance', () => {
    register('mem-test', counting().impl);
    const desc = new QueueDescriptor({ queueId: 'custom-2', queueType: 'mem-test' });
    const q = resolveDescriptor(desc);
    expect(resolveDescriptor(desc.toDict())).toBe(q);
    expect(resolveDescriptor(JSON.stringify(desc))).toBe(q);
  });

  it('resolving the same id twice calls the implementation once and returns the same instance', () => {
    const { impl, calls } = counting();
    register('mem-test', impl);
    const desc = new QueueDescriptor({ queueId: 'same', queueType: 'mem-test' });
    expect(resolveDescriptor(desc)).toBe(resolveDescriptor(desc.clone()));
    expect(calls).toHaveLength(1);
  });

  it('a cached id resolved with another type throws DescriptorError', () => {
    register('mem-a', counting().impl);
    register('mem-b', counting().impl);
    resolveDescriptor(new QueueDescriptor({ queueId: 'shared-id', queueType: 'mem-a' }));
    const e = thrown(
      () => resolveDescriptor(new QueueDescriptor({ queueId: 'shared-id', queueType: 'mem-b' })),
      DescriptorError,
      'ERR_INVALID_DESCRIPTOR',
    );
    expect(e.message).toMatch(/mem-a/);
  });

  it('registering an existing type without replace throws ERR_QUEUE_TYPE_EXISTS', () => {
    register('mem-test', counting().impl);
    const e = thrown(() => registerQueueImplementation('mem-test', counting().impl), InvalidArgumentValueError, 'ERR_QUEUE_TYPE_EXISTS');
    expect(e.message).toMatch(/replace: true/);
    thrown(() => registerQueueImplementation('local', counting().impl), InvalidArgumentValueError, 'ERR_QUEUE_TYPE_EXISTS');
  });

  it('replace: true swaps the implementation and forgets instances of the old one', () => {
    const first = counting();
    const second = counting();
    register('mem-test', first.impl);
    const desc = new QueueDescriptor({ queueId: 'replaced', queueType: 'mem-test' });
    const old = resolveDescriptor(desc);
    register('mem-test', second.impl, true);
    const fresh = resolveDescriptor(desc);
    expect(fresh).not.toBe(old);
    expect(second.calls).toHaveLength(1);
  });

  it('rejects bad type names, implementations and options with typed errors', () => {
    for (const bad of ['', 'has space', 'dot.ted', 'slash/x', 'ü']) {
      thrown(() => registerQueueImplementation(bad, counting().impl), InvalidArgumentValueError, 'ERR_INVALID_ARG_VALUE');
    }
    thrown(() => registerQueueImplementation(5 as never, counting().impl), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => registerQueueImplementation('ok', 'impl' as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => registerQueueImplementation('ok', counting().impl, { replace: 'yes' as never }), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => registerQueueImplementation('ok', counting().impl, { force: true } as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    expect(getRegisteredQueueTypes()).not.toContain('ok');
  });

  it('an implementation that returns something other than an AsyncQueueLike is refused', () => {
    register('mem-bad', (() => ({ put() {} })) as never);
    const desc = new QueueDescriptor({ queueId: 'bad-impl', queueType: 'mem-bad' });
    thrown(() => resolveDescriptor(desc), InvalidArgumentValueError, 'ERR_INVALID_RETURN_VALUE');
  });

  it('an implementation that throws leaves nothing cached', () => {
    let fail = true;
    register('mem-flaky', () => {
      if (fail) throw new Error('boom');
      return new LocalQueue();
    });
    const desc = new QueueDescriptor({ queueId: 'flaky', queueType: 'mem-flaky' });
    expect(() => resolveDescriptor(desc)).toThrow('boom');
    fail = false;
    expect(resolveDescriptor(desc)).toBeInstanceOf(LocalQueue);
  });

  it('resolveDescriptor rejects values that are not descriptors', () => {
    thrown(() => resolveDescriptor(42 as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
    thrown(() => resolveDescriptor('not json'), DescriptorError, 'ERR_INVALID_DESCRIPTOR');
    thrown(() => resolveDescriptor({ queue_id: 'x' } as never), DescriptorError, 'ERR_INVALID_DESCRIPTOR');
  });
});

describe('unknown and unregistered types', () => {
  it('a dict with an unknown type throws UnsupportedQueueTypeError listing the available types', () => {
    const e = thrown(
      () => resolveDescriptor({ queue_id: 'x', queue_type: 'kafka', metadata: {}, created_timestamp: 1 }),
      UnsupportedQueueTypeError,
      'ERR_UNSUPPORTED_QUEUE_TYPE',
    );
    expect(e.queueType).toBe('kafka');
    expect(e.availableTypes).toEqual(getRegisteredQueueTypes());
    expect(e.message).toMatch(/local/);
  });

  it('unregister returns true once, then false, and the type is gone', () => {
    registerQueueImplementation('mem-gone', counting().impl);
    expect(unregisterQueueImplementation('mem-gone')).toBe(true);
    expect(unregisterQueueImplementation('mem-gone')).toBe(false);
    expect(getRegisteredQueueTypes()).not.toContain('mem-gone');
  });

  it('a descriptor made before its type was unregistered no longer resolves', () => {
    registerQueueImplementation('mem-gone', counting().impl);
    const desc = new QueueDescriptor({ queueId: 'orphan', queueType: 'mem-gone' });
    unregisterQueueImplementation('mem-gone');
    thrown(() => resolveDescriptor(desc), UnsupportedQueueTypeError, 'ERR_UNSUPPORTED_QUEUE_TYPE');
  });

  it('unregistering drops cached instances of that type without closing them', () => {
    const { impl, calls } = counting();
    registerQueueImplementation('mem-drop', impl);
    const desc = new QueueDescriptor({ queueId: 'dropped', queueType: 'mem-drop' });
    const q = resolveDescriptor(desc) as LocalQueue;
    unregisterQueueImplementation('mem-drop');
    expect(q.closed).toBe(false);
    register('mem-drop', impl);
    expect(resolveDescriptor(desc)).not.toBe(q);
    expect(calls).toHaveLength(2);
  });
});

describe('forgetResolved', () => {
  it('drops the cached instance so the next resolve opens a new one', () => {
    register('mem-test', counting().impl);
    const desc = new QueueDescriptor({ queueId: 'forget-1', queueType: 'mem-test' });
    const q = resolveDescriptor(desc);
    forgetResolved('forget-1');
    expect(resolveDescriptor(desc)).not.toBe(q);
  });

  it('with an instance, only drops the cache entry if it is that instance', () => {
    register('mem-test', counting().impl);
    const desc = new QueueDescriptor({ queueId: 'forget-2', queueType: 'mem-test' });
    const q = resolveDescriptor(desc);
    forgetResolved('forget-2', new LocalQueue());
    expect(resolveDescriptor(desc)).toBe(q);
    forgetResolved('forget-2', q);
    expect(resolveDescriptor(desc)).not.toBe(q);
  });

  it('ignores unknown ids and rejects a non-string id', () => {
    expect(() => forgetResolved('never-resolved')).not.toThrow();
    thrown(() => forgetResolved(3 as never), InvalidArgumentTypeError, 'ERR_INVALID_ARG_TYPE');
  });
});

describe('registering a class', () => {
  it('a class is constructed with new Impl(descriptor), once per queue id', () => {
    const seen: QueueDescriptor[] = [];
    class Recording extends LocalQueue<unknown> {
      constructor(desc: QueueDescriptor) {
        super();
        seen.push(desc);
      }
    }
    register('class-test', Recording);
    const desc = new QueueDescriptor({ queueId: 'class-1', queueType: 'class-test' });
    const q = resolveDescriptor(desc);
    expect(q).toBeInstanceOf(Recording);
    expect(resolveDescriptor(desc)).toBe(q);
    expect(seen).toEqual([desc]);
  });

  it('the built-in LocalQueue class registers as a type and reads maxsize from the descriptor', () => {
    register('class-local', LocalQueue);
    const q = resolveDescriptor(new QueueDescriptor({ queueId: 'class-2', queueType: 'class-local', metadata: { maxsize: 3 } }));
    expect(q).toBeInstanceOf(LocalQueue);
    expect((q as LocalQueue).maxsize).toBe(3);
  });

  it('a plain function and an arrow function are called as factories, not constructed', () => {
    let calls = 0;
    function factory(): LocalQueue {
      calls++;
      return new LocalQueue();
    }
    register('fn-factory', factory);
    register('arrow-factory', () => {
      calls++;
      return new LocalQueue();
    });
    resolveDescriptor(new QueueDescriptor({ queueId: 'fn-1', queueType: 'fn-factory' }));
    resolveDescriptor(new QueueDescriptor({ queueId: 'fn-2', queueType: 'arrow-factory' }));
    expect(calls).toBe(2);
  });
});

describe('release hook', () => {
  it('releaseResolved forgets the instance under the id it was resolved with, and only that instance', () => {
    register('release-test', () => new LocalQueue());
    const desc = new QueueDescriptor({ queueId: 'release-1', queueType: 'release-test' });
    const q = resolveDescriptor(desc);
    releaseResolved(new LocalQueue()); // never resolved: no-op
    expect(resolveDescriptor(desc)).toBe(q);
    releaseResolved(q);
    const fresh = resolveDescriptor(desc);
    expect(fresh).not.toBe(q);
    releaseResolved(q); // a second release of the old instance does not evict the new one
    expect(resolveDescriptor(desc)).toBe(fresh);
  });
});

describe('built-in types', () => {
  it('local resolves to a LocalQueue with maxsize from the metadata', () => {
    const q = resolveDescriptor(QueueDescriptor.createLocalQueue({ maxsize: 5 }));
    expect(q).toBeInstanceOf(LocalQueue);
    expect((q as LocalQueue).maxsize).toBe(5);
  });

  it('local refuses a descriptor whose maxsize is not an integer >= 0', () => {
    const desc = new QueueDescriptor({ queueId: 'bad-local', queueType: 'local', metadata: { maxsize: 'big' } });
    thrown(() => resolveDescriptor(desc), DescriptorError, 'ERR_INVALID_DESCRIPTOR');
  });

  for (const make of [
    () => QueueDescriptor.createRayActorQueue({ actorName: 'a' }),
    () => QueueDescriptor.createRayQueue(),
  ]) {
    const type = make().queueType;
    it(`${type} throws UnsupportedQueueTypeError explaining there is no Node.js Ray client`, () => {
      const e = thrown(() => resolveDescriptor(make()), UnsupportedQueueTypeError, 'ERR_UNSUPPORTED_QUEUE_TYPE');
      expect(e.message).toMatch(/no Node\.js Ray client/);
      expect(e.message).toMatch(/registerQueueImplementation/);
      expect(e.message).toMatch(/Redis Streams/);
      expect(e.availableTypes).not.toContain(type);
    });
  }

  it('rpc throws UnsupportedQueueTypeError saying there is no RPC implementation yet', () => {
    const desc = QueueDescriptor.createRpcQueue({ serverAddress: 'localhost', port: 9000 });
    const e = thrown(() => resolveDescriptor(desc), UnsupportedQueueTypeError, 'ERR_UNSUPPORTED_QUEUE_TYPE');
    expect(e.message).toMatch(/no RPC queue implementation yet; register one with registerQueueImplementation/);
  });

});
