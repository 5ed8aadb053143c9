/**
 * The queue-type registry: which implementation opens a descriptor of each `queueType`, and the
 * per-process cache that makes one queue id resolve to one instance.
 *
 * descriptor.ts and this module import each other (a descriptor checks its type here; resolving
 * parses descriptors). Neither uses the other while loading, only inside functions, so CommonJS
 * and ESM both resolve the cycle.
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
import { isAsyncQueueLike } from './queue-like';
import type { AsyncQueueLike } from './queue-like';
import { checkBoolean, checkKnownKeys, checkOptions } from '../validate';

/** Opens (or connects to) the queue a descriptor names. Called once per queue id per process. */
export type QueueImplementation = (descriptor: QueueDescriptor) => AsyncQueueLike<unknown>;

export interface RegisterOptions {
  /** Replace an existing registration (its cached instances are forgotten, not closed). */
  replace?: boolean;
}

interface Entry {
  impl?: QueueImplementation;
  /** Set for lazily loaded built-ins until the first resolve loads them. */
  load?: () => QueueImplementation;
}

const TYPE_PATTERN = /^[A-Za-z0-9_-]+$/;
const implementations = new Map<string, Entry>();
const resolved = new Map<string, { queueType: string; instance: AsyncQueueLike<unknown> }>();

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

/**
 * Registers the implementation that opens descriptors of `type` (letters, digits, `_`, `-`).
 * Throws InvalidArgumentValueError with code 'ERR_QUEUE_TYPE_EXISTS' if the type is taken,
 * unless `{ replace: true }`.
 */
export function registerQueueImplementation(type: string, impl: QueueImplementation, options?: RegisterOptions): void {
  if (typeof impl !== 'function') throw new InvalidArgumentTypeError('impl', 'a function', impl);
  addEntry(type, { impl }, options);
}

/**
 * Registers a built-in type whose implementation module is loaded on first resolve (used by
 * modules that would otherwise import each other). Same rules as registerQueueImplementation.
 * @internal
 */
export function registerBuiltinLazy(type: string, load: () => QueueImplementation): void {
  if (typeof load !== 'function') throw new InvalidArgumentTypeError('load', 'a function', load);
  addEntry(type, { load }, undefined);
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
  if (entry.impl === undefined && entry.load !== undefined) {
    entry.impl = entry.load(); // a failed load stays lazy and is retried on the next resolve
    entry.load = undefined;
  }
  const instance = (entry.impl as QueueImplementation)(desc);
  if (!isAsyncQueueLike(instance)) {
    throw new InvalidArgumentValueError(
      `the implementation of queue type ${JSON.stringify(desc.queueType)} returned ${describe(instance)}, ` +
        'not an AsyncQueueLike (putAsync, getAsync, close, Symbol.asyncIterator)',
      instance,
      'ERR_INVALID_RETURN_VALUE',
    );
  }
  resolved.set(desc.queueId, { queueType: desc.queueType, instance });
  return instance as AsyncQueueLike<T>;
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
