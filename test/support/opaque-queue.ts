import { LocalQueue } from '../../lib/index';
import type { AsyncQueueLike, AsyncWaitOptions } from '../../lib/index';

/**
 * An AsyncQueueLike over a LocalQueue, with no bufferLoad(): its load can only be reported, so a
 * router knows only what is reported.
 */
export class OpaqueQueue implements AsyncQueueLike<unknown> {
  readonly inner: LocalQueue<unknown>;
  constructor(maxsize = 0) {
    this.inner = new LocalQueue<unknown>({ maxsize });
  }
  putAsync(item: unknown, options?: AsyncWaitOptions): Promise<void> {
    return this.inner.putAsync(item, options);
  }
  getAsync(options?: AsyncWaitOptions): Promise<unknown> {
    return this.inner.getAsync(options);
  }
  [Symbol.asyncIterator](): AsyncIterator<unknown> {
    return this.inner[Symbol.asyncIterator]();
  }
  close(): void {
    this.inner.close();
  }
}
