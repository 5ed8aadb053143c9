/** Public exports of sage-queue, listed in one place. Loading it registers the built-in queue types. */
import { installBuiltinQueueTypes } from './builtins';

installBuiltinQueueTypes();

export {
  SageQueueError, QueueEmptyError, QueueFullError, QueueClosedError, QueueReleasedError, SharedMemoryError,
  MessageTooLargeError, SerializationError, UnsupportedQueueTypeError, DescriptorError, WouldDeadlockError, RouterDisposedError,
  InterruptedError, InvalidArgumentTypeError, ArgumentRangeError, InvalidArgumentValueError, PoolNotReadyError, SHARED_MEMORY_ERROR_CODES,
  LeaseLostError, MaxUnackedError,
} from './errors';
export type {
  SageQueueErrorCode, QueueErrorCode, SharedMemoryErrorCode, InvalidArgumentValueErrorCode, ComponentErrorCode,
} from './errors';
export * from './queue';

export type { NativeCapabilities, NativeStats, NativeProcessInfo, NativeLeaseStats } from './native';
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

export {
  Packet, Connection, BaseRouter, isStopSignal, HashRing, stableHash, STRATEGIES, systemClock, ITEM_FAULT, isItemFault, markItemFault,
  availableCandidates, hashTarget, buildRing, ringTarget, roundRobinTarget, leastLoadedTarget, loadScore, broadcastTargets, ROUTE_LATENCY_BUCKETS,
} from './router';
export type {
  Hop, PacketOptions, PacketWire, ConnectionInit, ConnectionHealth, ConnectionCounters, HealthState, LoadSample, RouterOptions,
  RouteReport, RouteManyReport, DeliveryReport, DeliveryStatus, DeliveryFault, DeadLetter, SelectionContext, RouterStats, StopSignal, PartitionKey,
  StrategyName, Clock, RoundRobinPick, LoadScoreOptions, RouterEvents, RetryEvent, EjectEvent, RecoverEvent, DeadLetterEvent, RouteEvent,
} from './router';

export * from './cluster';

export {
  RedisQueue, RedisBackendError, createRedisQueueDescriptor, StatefulRouteStore, POD_SERVICE_STATES, StatefulRouter, userKeyOf,
  PartitionedRedisQueue, createPartitionedRedisQueueDescriptor, PARTITIONED_QUEUE_TYPE, RedisWorkerPool, joinRedisPool, REDIS_POOL_ENV,
  REDIS_POOL_TYPE, collectRedisPoolMetrics, REDIS_POOL_METRIC_PREFIX,
} from './redis';
export type {
  RedisQueueOptions, RedisMessage, RedisAckMode, RedisBatchOptions, RedisWaitReplicas, RedisQueueStats, DeadLetterEntry, RedisQueueDescriptorOptions,
  RedisBackendErrorCode, RedisQueueConstructor, PartitionedRedisQueueConstructor, PartitionedRedisQueueStats, PartitionedRedisQueueOptions,
  PartitionedPutOptions, PartitionedDescriptorOptions, PartitionedRedisMessage, PartitionConsumerStats, PartitionChange,
  StatefulRouteStoreOptions, LinkOptions, Link, PodState, PodServiceState, RouteStoreStats, StatefulRouterOptions, StatefulRouterStats,
  RedisWorkerPoolEvents, RedisWorkerPoolStats, RedisPoolReadyOptions, RedisPoolCloseOptions, RedisPoolWorker, JoinRedisPoolOptions,
  RedisWorkerPoolOptions, RedisPoolReplyOptions, RedisPoolDescriptor, RedisPoolMember, RedisPoolWorkerInfo, RedisPoolExitInfo,
  RedisPoolMetricsCollector,
} from './redis';

export {
  MessagePriority, PRIORITY_LEVELS, PRIORITY_NAMES, isPriority, parsePriority, priorityName, GatewayError, RouteTableError, RoutingError,
  BackpressureError, PriorityMessageQueue, BackpressureController, MessageDeduplicator, RouteTable, ServiceInstance, InstanceRegistry, RouteCache,
  ServiceRouter, BatchProcessor, MessageDispatcher, UnifiedMessageHandler, SYSTEM_TYPES, ServicePool, joinGatewayService,
} from './gateway';
export type {
  PriorityName, GatewayErrorCode, PriorityMessageQueueOptions, SharedPriorityQueueOptions, EnqueueOptions, DequeueBatchOptions, EnqueueOutcome,
  EnqueueEntry, PriorityQueueStats, PriorityQueueDescriptor, BackpressureOptions, BackpressureStats, DeduplicatorOptions, DeduplicatorStats,
  RouteRange, RouteTableStats, HealthCheck, InstanceRegistryOptions, InstanceHealth, RegistryStats, RouteCacheOptions, RouteCacheStats,
  ServiceRouterOptions, RouteDecision, RoutingStats, BatchProcessorOptions, MessageDispatcherOptions, DispatchStats, FlushCounts, FlushReason,
  GatewayConnection, AuthVerifier, BusinessMessage, UnifiedMessageHandlerOptions, HandlerStats, GatewayMessage, GatewayReply, MessageKind, SystemType,
  ServicePoolOptions, GatewayServiceWorker, JoinGatewayServiceOptions,
} from './gateway';
