/** Public exports of sage-queue, listed in one place. Loading it registers the built-in queue types. */
import { installBuiltinQueueTypes } from './builtins';

installBuiltinQueueTypes();

export {
  SageQueueError, QueueEmptyError, QueueFullError, QueueClosedError, QueueReleasedError, SharedMemoryError,
  MessageTooLargeError, SerializationError, UnsupportedQueueTypeError, DescriptorError, WouldDeadlockError,
  InvalidArgumentTypeError, ArgumentRangeError, InvalidArgumentValueError,
} from './errors';
export type { AsyncQueueLike, AsyncWaitOptions, LoadReporting, QueueLike, SyncAndAsyncQueue } from './queue/queue-like';
export { isAsyncQueueLike } from './queue/queue-like';

export { LocalQueue } from './queue/local-queue';
export type { LocalQueueOptions } from './queue/local-queue';

export { SageQueue } from './queue/sage-queue';
export type { SageQueueOptions, SageQueueStats, BatchOptions, IterateOptions } from './queue/sage-queue';
export { CODEC_NAMES } from './queue/codecs';
export type { CodecName } from './queue/codecs';

export { QueueDescriptor, MAX_QUEUE_ID_LENGTH, getLocalQueue, attachToShmQueue, getSageQueue } from './queue/descriptor';
export type {
  JsonObject, JsonPrimitive, JsonValue, ReadonlyJsonObject, ReadonlyJsonValue, QueueDescriptorDict, QueueDescriptorInit,
  LocalQueueDescriptorOptions, ShmQueueDescriptorOptions, SageQueueDescriptorOptions, RayActorQueueDescriptorOptions,
  RayQueueDescriptorOptions, RpcQueueDescriptorOptions,
} from './queue/descriptor';
export {
  registerQueueImplementation, unregisterQueueImplementation, getRegisteredQueueTypes, resolveDescriptor, forgetResolved,
} from './queue/registry';
export type { QueueImplementation, RegisterOptions } from './queue/registry';

export type { NativeCapabilities, NativeStats, NativeProcessInfo } from './native';
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

export { Packet, Connection, BaseRouter, isStopSignal, HashRing, stableHash, STRATEGIES, systemClock } from './router';
export type {
  Hop, PacketOptions, PacketWire, ConnectionInit, ConnectionHealth, ConnectionCounters, HealthState, LoadSample, RouterOptions,
  RouteReport, RouteManyReport, DeliveryReport, DeliveryStatus, DeadLetter, SelectionContext, RouterStats, StopSignal, PartitionKey, StrategyName, Clock,
} from './router';

export { WorkerPool } from './cluster/worker-pool';
export type { WorkerPoolOptions } from './cluster/worker-pool';
export { joinWorkerPool } from './cluster/join';
export type { PoolWorker } from './cluster/join';

export {
  RedisQueue, RedisBackendError, createRedisQueueDescriptor, StatefulRouteStore, POD_SERVICE_STATES, StatefulRouter, userKeyOf,
} from './redis';
export type {
  RedisQueueOptions, RedisMessage, RedisAckMode, RedisBatchOptions, RedisQueueStats, DeadLetterEntry, RedisQueueDescriptorOptions,
  RedisBackendErrorCode, RedisQueueConstructor,
  StatefulRouteStoreOptions, LinkOptions, Link, PodState, PodServiceState, RouteStoreStats, StatefulRouterOptions, StatefulRouterStats,
} from './redis';
