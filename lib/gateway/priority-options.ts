/** The options of PriorityMessageQueue and their validation into one policy object. */
import { InvalidArgumentTypeError } from '../errors';
import type { SageAutoOptions } from '../queue/sage-queue';
import { checkInteger, checkKnownKeys, checkOptions, checkTimeoutMs } from '../validate';
import { BackpressureController } from './backpressure';
import type { BackpressureOptions } from './backpressure';
import { MessageDeduplicator } from './dedup';
import type { DeduplicatorOptions } from './dedup';
import type { MessagePriority, PriorityName } from './priorities';

export interface PriorityMessageQueueOptions {
  /** Messages per lane; the usage ratio is total depth ÷ capacity. Default 10 000. */
  capacity?: number;
  /** Serve a non-empty lane after this many more urgent dequeues (see the aging bound). Default 32. */
  agingAfter?: number;
  /** Watermarks, and whether a throttled enqueue waits (default) or rejects. `false` disables. */
  backpressure?: (BackpressureOptions & { mode?: 'wait' | 'reject'; waitTimeoutMs?: number; pollMs?: number }) | false;
  /** De-duplication of messages by id (`enqueue(..., { id })`). `false` (default) disables. */
  dedup?: DeduplicatorOptions | false;
}

export interface SharedPriorityQueueOptions extends PriorityMessageQueueOptions {
  /** Options of each lane's SageQueue (capacity in bytes, codec — default 'msgpack' —, spinUs). */
  lane?: Omit<SageAutoOptions, 'maxsize'>;
}

export interface EnqueueOptions {
  /** Message id for de-duplication (needs the `dedup` option). */
  id?: string;
  /** Wait at most this long for backpressure to release (wait mode) or for lane room. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface DequeueBatchOptions {
  /** Most messages returned. Default 100. */
  batchSize?: number;
  /** How long to wait for the first message when all lanes are empty; undefined = forever, 0 = not at all. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** What happened to one enqueued message. */
export type EnqueueOutcome = 'enqueued' | 'duplicate' | 'throttled';

export interface EnqueueEntry<T> {
  message: T;
  priority: MessagePriority;
  id?: string;
}

/** Stats in the design's shape. */
export interface PriorityQueueStats {
  size: number;
  enqueue_count: number;
  dequeue_count: number;
  duplicate_count: number;
  rejected_count: number;
  /** Messages served by aging (ahead of more urgent ones). */
  aged_count: number;
  levels: Record<PriorityName, number>;
  usage_ratio: number;
  is_throttling: boolean;
  capacity: number;
  kind: 'local' | 'shared';
}

export interface Policy {
  capacity: number;
  agingAfter: number;
  backpressure: BackpressureController | null;
  mode: 'wait' | 'reject';
  waitTimeoutMs: number | undefined;
  pollMs: number;
  dedup: MessageDeduplicator | null;
}

export function parsePolicy(options: unknown, extraKeys: readonly string[] = []): Policy {
  const o = checkOptions<SharedPriorityQueueOptions>(options);
  checkKnownKeys(o, ['capacity', 'agingAfter', 'backpressure', 'dedup', ...extraKeys]);
  const capacity = o.capacity === undefined ? 10_000 : checkInteger(o.capacity, 'options.capacity', 1, 2 ** 31);
  const agingAfter = o.agingAfter === undefined ? 32 : checkInteger(o.agingAfter, 'options.agingAfter', 1);
  let backpressure: BackpressureController | null = null;
  let mode: 'wait' | 'reject' = 'wait';
  let waitTimeoutMs: number | undefined;
  let pollMs = 5;
  if (o.backpressure !== false) {
    const b = checkOptions<NonNullable<Exclude<PriorityMessageQueueOptions['backpressure'], false>>>(o.backpressure, 'options.backpressure');
    checkKnownKeys(b, ['highWatermark', 'lowWatermark', 'mode', 'waitTimeoutMs', 'pollMs'], 'options.backpressure');
    if (b.mode !== undefined && b.mode !== 'wait' && b.mode !== 'reject') {
      throw new InvalidArgumentTypeError('options.backpressure.mode', "'wait' or 'reject'", b.mode);
    }
    mode = b.mode ?? 'wait';
    waitTimeoutMs = checkTimeoutMs(b.waitTimeoutMs, 'options.backpressure.waitTimeoutMs');
    pollMs = b.pollMs === undefined ? 5 : checkInteger(b.pollMs, 'options.backpressure.pollMs', 1, 10_000);
    backpressure = new BackpressureController({ highWatermark: b.highWatermark, lowWatermark: b.lowWatermark });
  }
  const dedup = o.dedup === undefined || o.dedup === false ? null : new MessageDeduplicator(o.dedup);
  return { capacity, agingAfter, backpressure, mode, waitTimeoutMs, pollMs, dedup };
}

