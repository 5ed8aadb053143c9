/**
 * The queue-type registry: which implementation opens a descriptor of each `queueType`, and the
 * per-process cache, keyed by queue id, that makes one queue id resolve to one instance. A queue
 * that is released tells the registry (releaseResolved), which then forgets exactly that entry.
 *
 * Nothing is registered here: the built-in types are installed by lib/builtins.ts.
 */
import { QueueDescriptor } from './descriptor';
import type { QueueDescriptorDict } from './descriptor';
import {
  DescriptorError,
  InvalidArgumentTypeError,
  InvalidArgumentValueError,
  UnsupportedQueueTypeError,
  describe,
} from '../errors';
import { LocalQueue } from './local-queue';
import { isAsyncQueueLike } from './queue-like';
import type { AsyncQueueLike } from './queue-like';
import { checkBoolean, checkKnownKeys, checkOptions } from '../validate';

/** A factory that opens (or connects to) the queue a descriptor names. */
export type QueueFactory = (descriptor: QueueDescriptor) => AsyncQueueLike<unknown>;
/** A class whose constructor takes the descriptor (`new Impl(descriptor)`), like SAGE's register_queue_implementation. */
export type QueueClass = new (descriptor: QueueDescriptor) => AsyncQueueLike<unknown>;
/** What opens a descriptor's queue: a factory function or a class. Called once per queue id per process. */
export type QueueImplementation = QueueFactory | QueueClass;

export interface RegisterOptions {
  /** Replace an existing registration (its cached instances are forgotten, not closed). */
  replace?: boolean;
}

interface Entry {
  open: QueueFactory;
}

const TYPE_PATTERN = /^[A-Za-z0-9_-]+$/;
const implementations = new Map<string, Entry>();
const resolved = new Map<string, { queueType: string; instance: AsyncQueueLike<unknown> }>();
/** The queue id each cached instance was resolved under (a queue knows its segment, not its id). */
const idOf = new WeakMap<object, string>();

function checkQueueType(type: unknown, name = 'type'): string {
  if (typeof type !== 'string') throw new InvalidArgumentTypeError(name, 'a string', type);
  if (!TYPE_PATTERN.test(type)) {
    throw new InvalidArgumentValueError(
      `${name} must be a non-empty string of letters, digits, '_' and '-'; received ${describe(type)}`,
      type,
    );
  }
  return type;
}

function addEntry(type: unknown, entry: Entry, options: unknown): void {
  const queueType = checkQueueType(type);
  const opts = checkOptions<RegisterOptions>(options);
  checkKnownKeys(opts, ['replace']);
  const replace = checkBoolean(opts.replace, 'options.replace', false);
  if (implementations.has(queueType)) {
    if (!replace) {
      throw new InvalidArgumentValueError(
        `queue type ${JSON.stringify(queueType)} is already registered; pass { replace: true } to replace it`,
        queueType,
        'ERR_QUEUE_TYPE_EXISTS',
      );
    }
    forgetType(queueType);
  }
  implementations.set(queueType, entry);
}

function forgetType(queueType: string): void {
  for (const [id, cached] of resolved) {
    if (cached.queueType === queueType) resolved.delete(id);
  }
}

/** True for `class X {}` (which must be called with new), false for plain and arrow functions. */
function isClass(fn: QueueImplementation): fn is QueueClass {
  return /^class[\s{]/.test(Function.prototype.toString.call(fn));
}

/**
 * Registers the implementation that opens descriptors of `type` (letters, digits, `_`, `-`):
 * a factory `(descriptor) => queue`, or a class constructed as `new Impl(descriptor)`.
 * Throws InvalidArgumentValueError with code 'ERR_QUEUE_TYPE_EXISTS' if the type is taken,
 * unless `{ replace: true }`.
 */
export function registerQueueImplementation(type: string, impl: QueueImplementation, options?: RegisterOptions): void {
  if (typeof impl !== 'function') throw new InvalidArgumentTypeError('impl', 'a function or a class', impl);
  const open: QueueFactory = isClass(impl) ? (desc) => new impl(desc) : impl;
  addEntry(type, { open }, options);
}

/** Removes a type; returns false if it was not registered. Its cached instances are forgotten, not closed. */
export function unregisterQueueImplementation(type: string): boolean {
  const queueType = checkQueueType(type);
  if (!implementations.delete(queueType)) return false;
  forgetType(queueType);
  return true;
}

/** The registered queue types, sorted. */
export function getRegisteredQueueTypes(): string[] {
  return [...implementations.keys()].sort();
}

function toDescriptor(value: unknown): QueueDescriptor {
  if (value instanceof QueueDescriptor) return value;
  if (typeof value === 'string') return QueueDescriptor.fromJSON(value);
  if (value !== null && typeof value === 'object') return QueueDescriptor.fromDict(value);
  throw new InvalidArgumentTypeError('descriptor', 'a QueueDescriptor, its dict form or its JSON text', value);
}

/**
 * Opens the queue a descriptor names, with the implementation registered for its type. The same
 * queue id resolves to the same instance in this process (until forgetResolved or unregister).
 * Accepts a QueueDescriptor, its dict form (`toDict()`) or its JSON text.
 * Throws UnsupportedQueueTypeError (no implementation) or DescriptorError (the id is already
 * open as another type).
 */
export function resolveDescriptor<T = unknown>(
  descriptor: QueueDescriptor | QueueDescriptorDict | string,
): AsyncQueueLike<T> {
  const desc = toDescriptor(descriptor);
  const cached = resolved.get(desc.queueId);
  if (cached !== undefined) {
    if (cached.queueType !== desc.queueType) {
      throw new DescriptorError(
        `queue id ${JSON.stringify(desc.queueId)} is already open in this process as type ` +
          `${JSON.stringify(cached.queueType)}, not ${JSON.stringify(desc.queueType)}`,
      );
    }
    return cached.instance as AsyncQueueLike<T>;
  }
  const entry = implementations.get(desc.queueType);
  if (entry === undefined) throw new UnsupportedQueueTypeError(desc.queueType, getRegisteredQueueTypes());
  const instance = entry.open(desc);
  if (!isAsyncQueueLike(instance)) {
    throw new InvalidArgumentValueError(
      `the implementation of queue type ${JSON.stringify(desc.queueType)} returned ${describe(instance)}, ` +
        'not an AsyncQueueLike (putAsync, getAsync, close, Symbol.asyncIterator)',
      instance,
      'ERR_INVALID_RETURN_VALUE',
    );
  }
  resolved.set(desc.queueId, { queueType: desc.queueType, instance });
  idOf.set(instance, desc.queueId);
  return instance as AsyncQueueLike<T>;
}

/**
 * The release hook: a queue instance calls this when it is released, and the registry forgets
 * it under the queue id it was resolved with (whatever the instance calls itself), so the next
 * resolve of that descriptor opens a fresh instance. A no-op for an instance it never resolved.
 */
export function releaseResolved(instance: object): void {
  const queueId = idOf.get(instance);
  if (queueId === undefined) return;
  idOf.delete(instance);
  if (resolved.get(queueId)?.instance === instance) resolved.delete(queueId);
}

/**
 * The LocalQueue of a "local" descriptor: the same instance for the same id in this process.
 * Without `queueId`, a new queue with a generated id. `maxsize` only applies when the queue is
 * first opened.
 */
export function getLocalQueue<T = unknown>(queueId?: string, options?: { maxsize?: number }): LocalQueue<T> {
  const opts = checkOptions<{ maxsize?: number }>(options);
  checkKnownKeys(opts, ['maxsize']);
  const queue = resolveDescriptor(QueueDescriptor.createLocalQueue({ queueId, maxsize: opts.maxsize }));
  if (!(queue instanceof LocalQueue)) {
    throw new DescriptorError(
      `queue id ${JSON.stringify(queueId)} resolved to ${describe(queue)}, not a LocalQueue (was the "local" type replaced?)`,
    );
  }
  return queue as LocalQueue<T>;
}

/**
 * Drops a queue id from the resolve cache, so the next resolve opens a new instance. With
 * `instance`, only if that instance is the cached one (a released queue removes itself without
 * evicting a newer instance).
 */
export function forgetResolved(queueId: string, instance?: unknown): void {
  if (typeof queueId !== 'string') throw new InvalidArgumentTypeError('queueId', 'a string', queueId);
  const cached = resolved.get(queueId);
  if (cached === undefined) return;
  if (instance === undefined || cached.instance === instance) resolved.delete(queueId);
}
