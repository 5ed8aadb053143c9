/**
 * QueueDescriptor: the serialisable name of a queue (SAGE's "queue descriptor"). A pure value: it
 * carries no queue instance and does no work. Pass it (or its JSON) to another process and open
 * it there with resolveDescriptor(), which checks that its type is registered. The wire form uses
 * SAGE's snake_case keys so Python peers can read it.
 */
import { randomBytes } from 'node:crypto';
import { DescriptorError, InvalidArgumentTypeError, InvalidArgumentValueError, describe } from '../errors';
import { checkBoolean, checkInteger, checkKnownKeys, checkOptions } from '../validate';

export type JsonPrimitive = string | number | boolean | null;
export type JsonValue = JsonPrimitive | JsonValue[] | JsonObject;
export interface JsonObject {
  [key: string]: JsonValue;
}
/** Deeply read-only JSON, as held by a (frozen) descriptor. */
export type ReadonlyJsonValue = JsonPrimitive | readonly ReadonlyJsonValue[] | ReadonlyJsonObject;
export interface ReadonlyJsonObject {
  readonly [key: string]: ReadonlyJsonValue;
}

export interface QueueDescriptorInit {
  /** Non-empty, at most 256 characters. */
  queueId: string;
  /** A type registered in this process (see getRegisteredQueueTypes()). */
  queueType: string;
  /** Plain JSON object; defaults to {}. */
  metadata?: ReadonlyJsonObject;
  /** Seconds since the epoch as a float (like Python's time.time()); defaults to now. */
  createdTimestamp?: number;
}

/** The wire form (SAGE's keys). */
export interface QueueDescriptorDict {
  queue_id: string;
  queue_type: string;
  metadata: JsonObject;
  /** Seconds since the epoch, float. */
  created_timestamp: number;
}

export const MAX_QUEUE_ID_LENGTH = 256;
/** Deeper metadata is refused rather than risking a stack overflow while copying it. */
const MAX_METADATA_DEPTH = 100;
const INIT_KEYS = ['queueId', 'queueType', 'metadata', 'createdTimestamp'] as const;
const DICT_KEYS = ['queue_id', 'queue_type', 'metadata', 'created_timestamp', 'can_serialize'] as const;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function childPath(path: string, key: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
}

/** Own data property, so a key such as "__proto__" stays a plain key. */
function setKey(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

/**
 * Validates that `value` survives a JSON round trip unchanged and returns a deep copy (frozen
 * when `freeze`). -0 becomes 0, as JSON would make it.
 */
function copyJson(value: unknown, path: string, freeze: boolean, ancestors: object[] = []): ReadonlyJsonValue {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return value;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new DescriptorError(`${path} must be a finite number (JSON has no NaN or Infinity); received ${value}`);
    return value === 0 ? 0 : value;
  }
  if (typeof value !== 'object') {
    throw new DescriptorError(`${path} is not JSON: received ${describe(value)} (${typeof value})`);
  }
  if (ancestors.includes(value)) throw new DescriptorError(`${path} is a cycle: it contains one of its own ancestors`);
  if (ancestors.length >= MAX_METADATA_DEPTH) throw new DescriptorError(`${path} is nested more than ${MAX_METADATA_DEPTH} levels deep`);
  ancestors.push(value);
  let copy: ReadonlyJsonValue;
  if (Array.isArray(value)) {
    const items: ReadonlyJsonValue[] = [];
    for (let i = 0; i < value.length; i++) {
      if (!(i in value)) throw new DescriptorError(`${path}[${i}] is a hole in a sparse array (JSON would turn it into null)`);
      items.push(copyJson(value[i], `${path}[${i}]`, freeze, ancestors));
    }
    copy = items;
  } else {
    if (!isPlainObject(value)) throw new DescriptorError(`${path} must be a plain object or array; received ${describe(value)}`);
    if (Object.getOwnPropertySymbols(value).length > 0) throw new DescriptorError(`${path} has symbol keys, which JSON drops`);
    const obj: Record<string, unknown> = {};
    for (const key of Object.keys(value)) setKey(obj, key, copyJson(value[key], childPath(path, key), freeze, ancestors));
    copy = obj as ReadonlyJsonObject;
  }
  ancestors.pop();
  return freeze ? Object.freeze(copy) : copy;
}

function copyMetadata(value: unknown, freeze: boolean): ReadonlyJsonObject {
  if (!isPlainObject(value)) throw new DescriptorError(`metadata must be a plain JSON object; received ${describe(value)}`);
  return copyJson(value, 'metadata', freeze) as ReadonlyJsonObject;
}

function jsonEqual(a: ReadonlyJsonValue, b: ReadonlyJsonValue): boolean {
  if (a === b) return true;
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return false;
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    return a.every((item: ReadonlyJsonValue, i: number) => jsonEqual(item, (b as readonly ReadonlyJsonValue[])[i]));
  }
  const objA = a as ReadonlyJsonObject;
  const objB = b as ReadonlyJsonObject;
  const keys = Object.keys(objA);
  if (keys.length !== Object.keys(objB).length) return false;
  return keys.every((key) => Object.prototype.hasOwnProperty.call(objB, key) && jsonEqual(objA[key], objB[key]));
}

function checkId(value: unknown, name: string): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_QUEUE_ID_LENGTH) {
    throw new DescriptorError(`${name} must be a non-empty string of at most ${MAX_QUEUE_ID_LENGTH} characters; received ${describe(value)}`);
  }
  return value;
}

/** Factory argument: an optional queue id (argument errors, not DescriptorError). */
function checkQueueIdArg(value: unknown, prefix: string): string {
  if (value === undefined) return `${prefix}${randomBytes(4).toString('hex')}`;
  return checkNonEmptyString(value, 'options.queueId', MAX_QUEUE_ID_LENGTH);
}

function checkNonEmptyString(value: unknown, name: string, maxLength = Infinity): string {
  if (typeof value !== 'string') throw new InvalidArgumentTypeError(name, 'a string', value);
  if (value.length === 0 || value.length > maxLength) {
    const limit = maxLength === Infinity ? '' : ` of at most ${maxLength} characters`;
    throw new InvalidArgumentValueError(`${name} must be a non-empty string${limit}; received ${describe(value)}`, value);
  }
  return value;
}

function checkMaxsize(value: unknown, fallback: number): number {
  return value === undefined ? fallback : checkInteger(value, 'options.maxsize', 0);
}

export interface LocalQueueDescriptorOptions {
  queueId?: string;
  /** 0 (default) = unbounded. */
  maxsize?: number;
}
export interface ShmQueueDescriptorOptions {
  shmName: string;
  queueId?: string;
  /** Default 1000. */
  maxsize?: number;
}
export interface SageQueueDescriptorOptions {
  queueId?: string;
  /** Default 1000. */
  maxsize?: number;
  /**
   * Resolving the descriptor creates the queue when it does not exist (default false: resolving
   * attaches to an existing queue and throws ERR_QUEUE_NOT_FOUND otherwise, so a typo cannot
   * make an empty queue whose consumer waits forever).
   */
  create?: boolean;
  /** Default null. */
  namespace?: string | null;
  /** Default true. */
  enableMultiTenant?: boolean;
  /** Ring size in bytes (read by the shared-memory queue). */
  capacity?: number;
  /** Largest encoded message in bytes. */
  maxMessageSize?: number;
  /** Name of the message codec. */
  codec?: string;
  /** File mode of the shared-memory segment, e.g. 0o600. */
  mode?: number;
  /** 'explicit' for a queue with explicit acks (SageQueueOptions.ackMode); default 'auto'. */
  ackMode?: 'auto' | 'explicit';
}
export interface RayActorQueueDescriptorOptions {
  actorName: string;
  queueId?: string;
  maxsize?: number;
}
export interface RayQueueDescriptorOptions {
  queueId?: string;
  maxsize?: number;
}
export interface RpcQueueDescriptorOptions {
  serverAddress: string;
  port: number;
  queueId?: string;
}

/** Immutable: the instance and its metadata are deeply frozen. Not meant to be subclassed. */
export class QueueDescriptor {
  readonly queueId: string;
  readonly queueType: string;
  readonly metadata: ReadonlyJsonObject;
  /** Seconds since the epoch as a float (like Python's time.time()), not milliseconds. */
  readonly createdTimestamp: number;

  /**
   * Throws DescriptorError for a malformed field. Whether `queueType` is registered is checked
   * when the descriptor is resolved, not here.
   */
  constructor(init: QueueDescriptorInit) {
    if (!isPlainObject(init)) throw new DescriptorError(`a descriptor needs an object of fields; received ${describe(init)}`);
    for (const key of Object.keys(init)) {
      if (!(INIT_KEYS as readonly string[]).includes(key)) {
        throw new DescriptorError(`unknown descriptor field ${JSON.stringify(key)} (known: ${INIT_KEYS.join(', ')})`);
      }
    }
    this.queueId = checkId(init.queueId, 'queueId');
    const type: unknown = init.queueType;
    if (typeof type !== 'string' || type.length === 0) {
      throw new DescriptorError(`queueType must be a non-empty string; received ${describe(type)}`);
    }
    this.queueType = type;
    this.metadata = init.metadata === undefined ? Object.freeze({}) : copyMetadata(init.metadata, true);
    const ts: unknown = init.createdTimestamp;
    if (ts === undefined) {
      this.createdTimestamp = Date.now() / 1000;
    } else if (typeof ts !== 'number' || !Number.isFinite(ts) || ts < 0) {
      throw new DescriptorError(`createdTimestamp must be a finite number of seconds since the epoch >= 0; received ${describe(ts)}`);
    } else {
      this.createdTimestamp = ts;
    }
    Object.freeze(this);
  }

  /** The wire form, with SAGE's snake_case keys; the metadata is a fresh mutable copy. */
  toDict(): QueueDescriptorDict {
    return {
      queue_id: this.queueId,
      queue_type: this.queueType,
      metadata: copyJson(this.metadata, 'metadata', false) as JsonObject,
      created_timestamp: this.createdTimestamp,
    };
  }

  /** Same as toDict(), so JSON.stringify(descriptor) gives the wire form. */
  toJSON(): QueueDescriptorDict {
    return this.toDict();
  }

  /**
   * Parses the wire form. Rejects (DescriptorError) unknown keys, wrong types, a missing or empty
   * id and non-JSON metadata; accepts and ignores SAGE Python's boolean `can_serialize`.
   * `metadata` defaults to {} and `created_timestamp` to now when absent.
   */
  static fromDict(dict: unknown): QueueDescriptor {
    if (!isPlainObject(dict)) throw new DescriptorError(`a descriptor dict must be a plain object; received ${describe(dict)}`);
    for (const key of Object.keys(dict)) {
      if (!(DICT_KEYS as readonly string[]).includes(key)) {
        throw new DescriptorError(`unknown descriptor key ${JSON.stringify(key)} (known: ${DICT_KEYS.join(', ')})`);
      }
    }
    if (!('queue_id' in dict)) throw new DescriptorError('queue_id is missing');
    if (!('queue_type' in dict)) throw new DescriptorError('queue_type is missing');
    if ('can_serialize' in dict && typeof dict.can_serialize !== 'boolean') {
      throw new DescriptorError(`can_serialize must be a boolean; received ${describe(dict.can_serialize)}`);
    }
    const id = checkId(dict.queue_id, 'queue_id');
    if (typeof dict.queue_type !== 'string' || dict.queue_type.length === 0) {
      throw new DescriptorError(`queue_type must be a non-empty string; received ${describe(dict.queue_type)}`);
    }
    const ts = dict.created_timestamp;
    if (ts !== undefined && (typeof ts !== 'number' || !Number.isFinite(ts) || ts < 0)) {
      throw new DescriptorError(`created_timestamp must be a finite number of seconds since the epoch >= 0; received ${describe(ts)}`);
    }
    if (dict.metadata !== undefined) copyMetadata(dict.metadata, false); // validate before the type check
    return new QueueDescriptor({
      queueId: id,
      queueType: dict.queue_type,
      metadata: dict.metadata as ReadonlyJsonObject | undefined,
      createdTimestamp: ts as number | undefined,
    });
  }

  /** Parses JSON text (or an already parsed dict) of the wire form; see fromDict. */
  static fromJSON(json: unknown): QueueDescriptor {
    if (typeof json !== 'string') {
      if (json !== null && typeof json === 'object') return QueueDescriptor.fromDict(json);
      throw new DescriptorError(`a descriptor must be JSON text or a dict; received ${describe(json)}`);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(json);
    } catch (error) {
      throw new DescriptorError(`descriptor is not valid JSON: ${(error as Error).message}`);
    }
    return QueueDescriptor.fromDict(parsed);
  }

  /** Same id, type and (deeply) equal metadata; the timestamp is not compared. */
  equals(other: unknown): boolean {
    return (
      other instanceof QueueDescriptor &&
      other.queueId === this.queueId &&
      other.queueType === this.queueType &&
      jsonEqual(this.metadata, other.metadata)
    );
  }

  /**
   * A copy with deep-copied metadata. With `newId`, a descriptor of a new queue of the same type
   * and metadata (created now); without, an equal descriptor with the same timestamp.
   */
  clone(newId?: string): QueueDescriptor {
    return new QueueDescriptor({
      queueId: newId === undefined ? this.queueId : checkNonEmptyString(newId, 'newId', MAX_QUEUE_ID_LENGTH),
      queueType: this.queueType,
      metadata: this.metadata,
      createdTimestamp: newId === undefined ? this.createdTimestamp : undefined,
    });
  }

  /** `Queue[type](id)`. */
  toString(): string {
    return `Queue[${this.queueType}](${this.queueId})`;
  }

  /** In-process queue (type "local"), id `local_<8 hex>`, metadata `{ maxsize }`. */
  static createLocalQueue(options?: LocalQueueDescriptorOptions): QueueDescriptor {
    const opts = checkOptions<LocalQueueDescriptorOptions>(options);
    checkKnownKeys(opts, ['queueId', 'maxsize']);
    const queueId = checkQueueIdArg(opts.queueId, 'local_');
    return new QueueDescriptor({ queueId, queueType: 'local', metadata: { maxsize: checkMaxsize(opts.maxsize, 0) } });
  }

  /** Shared-memory queue (type "shm"), id `shm_<8 hex>`, metadata `{ shm_name, maxsize }`. */
  static createShmQueue(options: ShmQueueDescriptorOptions): QueueDescriptor {
    const opts = checkOptions<ShmQueueDescriptorOptions>(options);
    checkKnownKeys(opts, ['shmName', 'queueId', 'maxsize']);
    const shmName = checkNonEmptyString(opts.shmName, 'options.shmName');
    const queueId = checkQueueIdArg(opts.queueId, 'shm_');
    return new QueueDescriptor({ queueId, queueType: 'shm', metadata: { shm_name: shmName, maxsize: checkMaxsize(opts.maxsize, 1000) } });
  }

  /**
   * SAGE shared-memory queue (type "sage_queue"), id `sage_<8 hex>`, metadata
   * `{ maxsize, auto_cleanup: false, namespace, enable_multi_tenant }` plus `create: true`,
   * `capacity`, `max_message_size`, `codec`, `mode` when given. SAGE's `autoCleanup` is not
   * offered: a segment stays until SageQueue.destroy(name) or `sage-queue gc` removes it (a
   * "last handle unlinks" rule would race with a process attaching at that moment).
   */
  static createSageQueue(options?: SageQueueDescriptorOptions): QueueDescriptor {
    const opts = checkOptions<SageQueueDescriptorOptions>(options);
    if ('autoCleanup' in opts) {
      throw new InvalidArgumentValueError(
        'options.autoCleanup is not supported: a sage_queue segment stays until SageQueue.destroy(name) or `sage-queue gc` ' +
          'removes it (a "last handle unlinks" rule would race with a process attaching at that moment)',
        (opts as { autoCleanup?: unknown }).autoCleanup,
        'ERR_UNSUPPORTED_OPTION',
      );
    }
    checkKnownKeys(opts, [
      'queueId', 'maxsize', 'create', 'namespace', 'enableMultiTenant', 'capacity', 'maxMessageSize', 'codec', 'mode', 'ackMode',
    ]);
    const queueId = checkQueueIdArg(opts.queueId, 'sage_');
    const namespace = opts.namespace === undefined || opts.namespace === null ? null : checkNonEmptyString(opts.namespace, 'options.namespace');
    const metadata: JsonObject = {
      maxsize: checkMaxsize(opts.maxsize, 1000),
      auto_cleanup: false,
      namespace,
      enable_multi_tenant: checkBoolean(opts.enableMultiTenant, 'options.enableMultiTenant', true),
    };
    if (checkBoolean(opts.create, 'options.create', false)) metadata.create = true;
    if (opts.capacity !== undefined) metadata.capacity = checkInteger(opts.capacity, 'options.capacity', 1);
    if (opts.maxMessageSize !== undefined) metadata.max_message_size = checkInteger(opts.maxMessageSize, 'options.maxMessageSize', 1);
    if (opts.codec !== undefined) metadata.codec = checkNonEmptyString(opts.codec, 'options.codec');
    if (opts.mode !== undefined) metadata.mode = checkInteger(opts.mode, 'options.mode', 0, 0o7777);
    if (opts.ackMode !== undefined) {
      if (opts.ackMode !== 'auto' && opts.ackMode !== 'explicit') {
        throw new InvalidArgumentValueError(`options.ackMode must be 'auto' or 'explicit'; received ${describe(opts.ackMode)}`, opts.ackMode);
      }
      metadata.ack_mode = opts.ackMode;
    }
    return new QueueDescriptor({ queueId, queueType: 'sage_queue', metadata });
  }

  /** Ray actor queue (type "ray_actor"), id `ray_actor_<8 hex>`, metadata `{ actor_name, maxsize }`. */
  static createRayActorQueue(options: RayActorQueueDescriptorOptions): QueueDescriptor {
    const opts = checkOptions<RayActorQueueDescriptorOptions>(options);
    checkKnownKeys(opts, ['actorName', 'queueId', 'maxsize']);
    const actorName = checkNonEmptyString(opts.actorName, 'options.actorName');
    const queueId = checkQueueIdArg(opts.queueId, 'ray_actor_');
    return new QueueDescriptor({ queueId, queueType: 'ray_actor', metadata: { actor_name: actorName, maxsize: checkMaxsize(opts.maxsize, 0) } });
  }

  /** Ray queue (type "ray_queue"), id `ray_queue_<8 hex>`, metadata `{ maxsize }`. */
  static createRayQueue(options?: RayQueueDescriptorOptions): QueueDescriptor {
    const opts = checkOptions<RayQueueDescriptorOptions>(options);
    checkKnownKeys(opts, ['queueId', 'maxsize']);
    const queueId = checkQueueIdArg(opts.queueId, 'ray_queue_');
    return new QueueDescriptor({ queueId, queueType: 'ray_queue', metadata: { maxsize: checkMaxsize(opts.maxsize, 0) } });
  }

  /** RPC queue (type "rpc"), id `rpc_<8 hex>`, metadata `{ server_address, port }`. */
  static createRpcQueue(options: RpcQueueDescriptorOptions): QueueDescriptor {
    const opts = checkOptions<RpcQueueDescriptorOptions>(options);
    checkKnownKeys(opts, ['serverAddress', 'port', 'queueId']);
    const serverAddress = checkNonEmptyString(opts.serverAddress, 'options.serverAddress');
    const port = checkInteger(opts.port, 'options.port', 1, 65535);
    const queueId = checkQueueIdArg(opts.queueId, 'rpc_');
    return new QueueDescriptor({ queueId, queueType: 'rpc', metadata: { server_address: serverAddress, port } });
  }
}

/** The "shm" descriptor for an existing shared-memory segment (open it with resolveDescriptor). */
export function shmQueueDescriptor(shmName: string, options?: { queueId?: string; maxsize?: number }): QueueDescriptor {
  const opts = checkOptions<{ queueId?: string; maxsize?: number }>(options);
  checkKnownKeys(opts, ['queueId', 'maxsize']);
  return QueueDescriptor.createShmQueue({ shmName, queueId: opts.queueId, maxsize: opts.maxsize });
}

/** The "sage_queue" descriptor for `queueId` (open it with resolveDescriptor). Options as createSageQueue. */
export function sageQueueDescriptor(queueId?: string, options?: Omit<SageQueueDescriptorOptions, 'queueId'>): QueueDescriptor {
  const opts = checkOptions<SageQueueDescriptorOptions>(options);
  if ('queueId' in opts) throw new InvalidArgumentTypeError('options.queueId', 'absent (pass the id as the first argument)', opts.queueId);
  return QueueDescriptor.createSageQueue({ ...opts, queueId });
}
