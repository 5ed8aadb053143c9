/**
 * One mapping from what the addon reports (a negated status number from a hot-path method, or an
 * Error with a `code` thrown by the constructor, `unlink` or `inspect`) to the package's typed
 * errors. SageQueue and the library's inspection API (and through it the CLI) use only this.
 */
import {
  InterruptedError,
  InvalidArgumentValueError,
  QueueClosedError,
  QueueEmptyError,
  QueueFullError,
  QueueReleasedError,
  SageQueueError,
  SharedMemoryError,
} from '../errors';
import type { SharedMemoryErrorCode } from '../errors';
import { native, NativeStatus } from './index';

let statusTable: ReturnType<ReturnType<typeof native>['statuses']> | undefined;

/** The addon's code and message for a status number (ERR_SYSTEM for a number it does not know). */
export function statusInfo(status: number): { code: SharedMemoryErrorCode; message: string } {
  statusTable ??= native().statuses();
  const info = statusTable[status];
  // The addon's codes are SharedMemoryErrorCode values (test/queue/error-codes.test.ts checks the table).
  return info === undefined ? { code: 'ERR_SYSTEM', message: `unknown native status ${status}` } : { code: info.code as SharedMemoryErrorCode, message: info.message };
}

/**
 * The typed error for a (positive) status returned by an operation on the queue `name`.
 * `released` tells an InvalidArgument caused by a released handle from a real bad argument.
 */
export function statusError(status: number, name: string, released: boolean): Error {
  switch (status) {
    case NativeStatus.Empty:
      return new QueueEmptyError();
    case NativeStatus.Full:
      return new QueueFullError();
    case NativeStatus.Closed:
      return new QueueClosedError(`queue ${name} is closed`);
    case NativeStatus.Interrupted:
      return new InterruptedError(`a blocking call on queue ${name} was interrupted by a signal this process listens for; its listener runs next`);
    case NativeStatus.InvalidArgument:
      return released ? new QueueReleasedError() : new SageQueueError('ERR_INVALID_ARG_VALUE', 'invalid argument');
    default: {
      const info = statusInfo(status);
      return new SharedMemoryError(info.code, `${info.message} (queue ${name})`, name);
    }
  }
}

/** The typed error for an Error thrown by the addon while opening, unlinking or inspecting `name`. */
export function nativeError(e: unknown, name: string): Error {
  if (e instanceof Error && typeof (e as { code?: unknown }).code === 'string') {
    const code = (e as unknown as { code: string }).code;
    if (code === 'ERR_INVALID_QUEUE_NAME') return new InvalidArgumentValueError(e.message, name, code);
    if (code === 'ERR_INVALID_ARG_VALUE') {
      return new InvalidArgumentValueError(`invalid queue options for ${name}: ${e.message}`, name, code);
    }
    const errno = (e as { errno?: number }).errno;
    return new SharedMemoryError(code as SharedMemoryErrorCode, e.message, name, errno);
  }
  return e instanceof Error ? e : new Error(String(e));
}
