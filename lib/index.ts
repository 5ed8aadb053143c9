/** Public exports of sage-queue, listed in one place. */
export * from './errors';
export type { AsyncQueueLike, AsyncWaitOptions, LoadReporting, QueueLike, SyncAndAsyncQueue } from './queue-like';
export { isAsyncQueueLike } from './queue-like';
export type { NativeCapabilities } from './native';

import { native } from './native';
import type { NativeCapabilities } from './native';

/** Version of the native core. */
export function nativeVersion(): string {
  return native().version();
}

/** What the loaded native addon supports (and which shared-memory layout version it speaks). */
export function capabilities(): NativeCapabilities {
  return native().capabilities();
}
