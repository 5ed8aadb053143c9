/**
 * Every error this package throws has a stable `code` (like Node's `ERR_*` codes) so callers can
 * branch on it without parsing messages. Messages say what happened and what to do.
 */

/** Codes of the queue operations' errors (QueueEmptyError, QueueFullError, ...). */
export type QueueErrorCode =
  | 'ERR_QUEUE_EMPTY'
  | 'ERR_QUEUE_FULL'
  | 'ERR_QUEUE_CLOSED'
  | 'ERR_QUEUE_RELEASED'
  | 'ERR_MESSAGE_TOO_LARGE'
  | 'ERR_SERIALIZATION'
  | 'ERR_WOULD_DEADLOCK'
  | 'ERR_INTERRUPTED'
  | 'ERR_QUEUE_MAX_UNACKED'
  | 'ERR_QUEUE_ACK_MODE';

/**
 * Codes of SharedMemoryError: what the native core reports about a segment (every code of the
 * addon's status table is here; test/queue/error-codes.test.ts checks that against the addon).
 */
export const SHARED_MEMORY_ERROR_CODES = [
  'ERR_QUEUE_EXISTS', 'ERR_QUEUE_NOT_FOUND', 'ERR_NOT_A_SAGE_QUEUE', 'ERR_LAYOUT_MISMATCH', 'ERR_QUEUE_NOT_INITIALISED',
  'ERR_QUEUE_INITIALISING', 'ERR_NO_SHM_SPACE', 'ERR_PERMISSION_DENIED', 'ERR_TOO_MANY_HANDLES', 'ERR_QUEUE_CORRUPT',
  'ERR_MESSAGE_TOO_LARGE', 'ERR_QUEUE_CLOSED', 'ERR_QUEUE_EMPTY', 'ERR_QUEUE_FULL', 'ERR_BUFFER_TOO_SMALL', 'ERR_CANCELLED',
  'ERR_TIMED_OUT', 'ERR_INVALID_ARG_VALUE', 'ERR_INVALID_QUEUE_NAME', 'ERR_UNKNOWN', 'ERR_SYSTEM',
  'ERR_QUEUE_FORKED', 'ERR_QUEUE_UNTRUSTED_OWNER', 'ERR_QUEUE_SHARED_MODE', 'ERR_QUEUE_REPLACED', 'ERR_INTERRUPTED',
  'ERR_QUEUE_TRUNCATED', 'ERR_QUEUE_LEASE_LOST',
] as const;
export type SharedMemoryErrorCode = (typeof SHARED_MEMORY_ERROR_CODES)[number];

/** Codes of InvalidArgumentValueError (a value of the right type that is not acceptable). */
export type InvalidArgumentValueErrorCode =
  | 'ERR_INVALID_ARG_VALUE'
  | 'ERR_INVALID_QUEUE_NAME'
  | 'ERR_UNKNOWN_CODEC'
  | 'ERR_CODEC_MISMATCH'
  | 'ERR_UNKNOWN_STRATEGY'
  | 'ERR_QUEUE_TYPE_EXISTS'
  | 'ERR_INVALID_RETURN_VALUE'
  | 'ERR_CONNECTION_EXISTS'
  | 'ERR_STORE_CLOSED'
  | 'ERR_CROSSSLOT'
  | 'ERR_OUT_OF_RANGE'
  | 'ERR_UNSUPPORTED_OPTION'
  | 'ERR_QUEUE_SHARED_MODE'
  | 'ERR_UNKNOWN_INSTANCE'
  | 'ERR_UNKNOWN_PRIORITY'
  | 'ERR_ACK_MODE_MISMATCH'
  | 'ERR_PARTITIONS_MISMATCH';

/** The stable codes of RedisBackendError (see lib/redis/connection.ts). */
export type RedisBackendErrorCode =
  | 'ERR_REDIS_UNAVAILABLE'
  | 'ERR_REDIS_TIMEOUT'
  | 'ERR_REDIS_REPLY'
  | 'ERR_REDIS_AUTH'
  | 'ERR_REDIS_PERMISSION'
  | 'ERR_REDIS_NOT_REPLICATED';

/** Codes of the router, the worker pool and the descriptors' errors. */
export type ComponentErrorCode =
  | 'ERR_INVALID_DESCRIPTOR'
  | 'ERR_UNSUPPORTED_QUEUE_TYPE'
  | 'ERR_ROUTER_DISPOSED'
  | 'ERR_NOT_A_POOL_WORKER'
  | 'ERR_PRIMARY_GONE'
  | 'ERR_WORKER_EXITED'
  | 'ERR_POOL_NOT_READY'
  | 'ERR_POOL_CLOSED'
  | 'ERR_METRICS_REGISTERED';

/**
 * Every `code` an error of this package can carry: branch on it (`switch (err.code)`) and the
 * compiler checks the spelling. Argument errors: ERR_INVALID_ARG_TYPE, ERR_OUT_OF_RANGE and the
 * InvalidArgumentValueErrorCode values.
 */
/** Every code a gateway error (and a gateway error reply, on the wire) can carry (lib/gateway/errors.ts). */
export type GatewayErrorCode =
  | 'ERR_BAD_FRAME' // not JSON, binary, or not an object
  | 'ERR_FRAME_TOO_LARGE'
  | 'ERR_BAD_MESSAGE' // a field is missing or has the wrong type
  | 'ERR_UNKNOWN_PRIORITY'
  | 'ERR_UNKNOWN_TYPE'
  | 'ERR_UNKNOWN_ROUTE' // no service owns the message id
  | 'ERR_NO_HEALTHY_INSTANCE'
  | 'ERR_NOT_AUTHENTICATED'
  | 'ERR_AUTH_FAILED'
  | 'ERR_DUPLICATE_MESSAGE'
  | 'ERR_BACKPRESSURE'
  | 'ERR_DISPATCH_FAILED'
  | 'ERR_GATEWAY_CLOSED'
  | 'ERR_ROUTE_TABLE'
  | 'ERR_SERVICE_ERROR';
export type SageQueueErrorCode =

  | QueueErrorCode
  | SharedMemoryErrorCode
  | InvalidArgumentValueErrorCode
  | RedisBackendErrorCode
  | ComponentErrorCode
  | GatewayErrorCode
  | 'ERR_INVALID_ARG_TYPE'
  | 'ERR_OUT_OF_RANGE'
  | 'ERR_UNSUPPORTED_OPTION'
  | 'ERR_QUEUE_SHARED_MODE';

/** Base class of every sage-queue error that is not a plain argument error. */
export class SageQueueError extends Error {
  readonly code: SageQueueErrorCode;
  constructor(code: SageQueueErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A non-blocking get found the queue empty, or a blocking get timed out. */
export class QueueEmptyError extends SageQueueError {
  /** True when the get waited and timed out; false when it did not wait. */
  readonly timedOut: boolean;
  constructor(message?: string, timedOut = false) {
    super('ERR_QUEUE_EMPTY', message ?? 'the queue is empty');
    this.timedOut = timedOut;
  }
}

/** A non-blocking put found the queue full, or a blocking put timed out. */
export class QueueFullError extends SageQueueError {
  /** True when the put waited and timed out; false when it did not wait. */
  readonly timedOut: boolean;
  constructor(message?: string, timedOut = false) {
    super('ERR_QUEUE_FULL', message ?? 'the queue is full');
    this.timedOut = timedOut;
  }
}

/** The queue was closed: puts fail at once, gets fail once the queue is drained. */
export class QueueClosedError extends SageQueueError {
  constructor(message = 'the queue is closed') {
    super('ERR_QUEUE_CLOSED', message);
  }
}

/** The handle was released (or the queue destroyed) and can no longer be used. */
export class QueueReleasedError extends SageQueueError {
  constructor(message = 'this queue handle was released; open the queue again to use it') {
    super('ERR_QUEUE_RELEASED', message);
  }
}

/**
 * The shared-memory segment could not be created, opened or used: it exists already, does not
 * exist, is not a sage-queue segment, has another layout version, was never initialised, does not
 * fit in /dev/shm, is not accessible, or failed a consistency check. `code` says which
 * (ERR_QUEUE_EXISTS, ERR_QUEUE_NOT_FOUND, ERR_NOT_A_SAGE_QUEUE, ERR_LAYOUT_MISMATCH,
 * ERR_QUEUE_NOT_INITIALISED (its creator died while creating it), ERR_QUEUE_INITIALISING (its creator is
 * still creating it: try again), ERR_NO_SHM_SPACE, ERR_PERMISSION_DENIED, ERR_TOO_MANY_HANDLES,
 * ERR_QUEUE_CORRUPT, ERR_QUEUE_TRUNCATED (another process shrank the segment: the handle is unusable), ERR_SYSTEM); `errno` is set when a system call failed.
 */
export class SharedMemoryError extends SageQueueError {
  declare readonly code: SharedMemoryErrorCode;
  readonly queueName: string;
  readonly errno: number | undefined;
  constructor(code: SharedMemoryErrorCode, message: string, queueName: string, errno?: number) {
    super(code, message);
    this.queueName = queueName;
    this.errno = errno;
  }
}

/**
 * A synchronous blocking call (`get()`, `put()`, `getMany`/`putMany` with `block`) returned early
 * because the process received a signal it has a listener for (`process.on('SIGINT', ...)`), so
 * that the listener can run: it runs as soon as the current JavaScript returns to the event loop.
 * Nothing was taken; a `putMany` says in `written` how many items went in before. Retry the call
 * if the handler decides to carry on.
 */
export class InterruptedError extends SageQueueError {
  constructor(message = 'the blocking call was interrupted by a signal this process listens for; its listener runs next') {
    super('ERR_INTERRUPTED', message);
  }
}

/** An encoded message is larger than the queue's `maxMessageSize`; nothing was enqueued. */
export class MessageTooLargeError extends SageQueueError {
  readonly size: number;
  readonly limit: number;
  constructor(size: number, limit: number) {
    super(
      'ERR_MESSAGE_TOO_LARGE',
      `message of ${size} bytes exceeds this queue's maxMessageSize of ${limit} bytes; ` +
        'create the queue with a larger capacity/maxMessageSize or split the message',
    );
    this.size = size;
    this.limit = limit;
  }
}

/** An item could not be encoded (nothing was enqueued), or a record could not be decoded. */
export class SerializationError extends SageQueueError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_SERIALIZATION', message, options);
  }
}

/** A descriptor names a queue type that has no implementation registered in this process. */
export class UnsupportedQueueTypeError extends SageQueueError {
  readonly queueType: string;
  readonly availableTypes: readonly string[];
  constructor(queueType: string, availableTypes: readonly string[], hint?: string) {
    super(
      'ERR_UNSUPPORTED_QUEUE_TYPE',
      `queue type ${JSON.stringify(queueType)} has no implementation registered in this process` +
        ` (available: ${availableTypes.join(', ') || 'none'})` +
        (hint ? `. ${hint}` : ''),
    );
    this.queueType = queueType;
    this.availableTypes = availableTypes;
  }
}

/** A descriptor (or its wire form) is malformed. */
export class DescriptorError extends SageQueueError {
  constructor(message: string) {
    super('ERR_INVALID_DESCRIPTOR', message);
  }
}

/**
 * A synchronous blocking call that can never be satisfied: e.g. `get(true)` on an empty
 * in-process queue, where no other code can run while this thread waits.
 */
export class WouldDeadlockError extends SageQueueError {
  constructor(message: string) {
    super('ERR_WOULD_DEADLOCK', message);
  }
}

/**
 * Explicit acks: the message's lease is no longer this handle's (ERR_QUEUE_LEASE_LOST): it was
 * settled already, or its lease expired and it was taken back for redelivery (perhaps already
 * delivered to another consumer). A settle refused this way changed nothing.
 */
export class LeaseLostError extends SageQueueError {
  readonly messageId: string;
  readonly deliveries: number;
  constructor(messageId: string, deliveries: number, detail: string) {
    super('ERR_QUEUE_LEASE_LOST', `message ${messageId} (delivery ${deliveries}): ${detail}`);
    this.messageId = messageId;
    this.deliveries = deliveries;
  }
}

/**
 * Explicit acks: this handle already holds `maxUnacked` unsettled messages (ERR_QUEUE_MAX_UNACKED).
 * Synchronous gets throw it (they cannot wait for this thread's own acks); async gets wait instead.
 */
export class MaxUnackedError extends SageQueueError {
  readonly maxUnacked: number;
  constructor(maxUnacked: number) {
    super('ERR_QUEUE_MAX_UNACKED', `this handle holds ${maxUnacked} unacked messages (options.maxUnacked): ack or nack some first`);
    this.maxUnacked = maxUnacked;
  }
}

/** The router was disposed (Symbol.asyncDispose): it routes nothing more. */
export class RouterDisposedError extends SageQueueError {
  readonly routerName: string;
  constructor(routerName: string) {
    super('ERR_ROUTER_DISPOSED', `router ${JSON.stringify(routerName)} was disposed and routes nothing more; create a new router`);
    this.routerName = routerName;
  }
}

/** WorkerPool#ready() timed out: the workers `notReady` (indexes; `pids` alike) had not attached. */
export class PoolNotReadyError extends SageQueueError {
  readonly pool: string;
  readonly timeoutMs: number;
  readonly notReady: readonly number[];
  readonly pids: ReadonlyArray<number | undefined>;
  constructor(pool: string, timeoutMs: number, notReady: readonly number[], pids: ReadonlyArray<number | undefined>) {
    super(
      'ERR_POOL_NOT_READY',
      `worker pool ${pool}: worker(s) ${notReady.join(', ')} (pid ${pids.join(', ')}) did not attach within ${timeoutMs} ms; ` +
        'check that the worker script calls joinWorkerPool(), then close() the pool',
    );
    this.pool = pool;
    this.timeoutMs = timeoutMs;
    this.notReady = notReady;
    this.pids = pids;
  }
}

/** An argument has the wrong type. Extends TypeError, like Node's ERR_INVALID_ARG_TYPE. */
export class InvalidArgumentTypeError extends TypeError {
  readonly code = 'ERR_INVALID_ARG_TYPE';
  readonly value: unknown;
  constructor(name: string, expected: string, value: unknown) {
    super(`${name} must be ${expected}; received ${describe(value)}`);
    this.name = 'InvalidArgumentTypeError';
    this.value = value;
  }
}

/** A number is out of range (negative, NaN, Infinity, too big). Extends RangeError. */
export class ArgumentRangeError extends RangeError {
  readonly code = 'ERR_OUT_OF_RANGE';
  readonly value: unknown;
  constructor(name: string, expected: string, value: unknown) {
    super(`${name} must be ${expected}; received ${describe(value)}`);
    this.name = 'ArgumentRangeError';
    this.value = value;
  }
}

/** A string argument has the right type but an invalid value (e.g. a bad queue name). */
export class InvalidArgumentValueError extends TypeError {
  readonly code: InvalidArgumentValueErrorCode;
  readonly value: unknown;
  constructor(message: string, value: unknown, code: InvalidArgumentValueErrorCode = 'ERR_INVALID_ARG_VALUE') {
    super(message);
    this.name = 'InvalidArgumentValueError';
    this.code = code;
    this.value = value;
  }
}

/** Short, bounded rendering of a bad value for error messages. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'string') {
    const s = value.length > 40 ? `${value.slice(0, 40)}…(${value.length} chars)` : value;
    return `string ${JSON.stringify(s)}`;
  }
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') {
    return `${typeof value} ${String(value)}`;
  }
  if (typeof value === 'function') return 'a function';
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  return `an instance of ${(value as object).constructor?.name ?? 'Object'}`;
}
