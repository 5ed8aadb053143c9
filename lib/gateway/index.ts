/**
 * The gateway: priorities, priority lanes (in-process and cross-process), backpressure, dedup,
 * the route table, the instance registry, the route cache, the batch dispatcher and the unified
 * message handler. The WebSocket server itself is an example (examples/gateway/).
 */
export { MessagePriority, PRIORITY_LEVELS, PRIORITY_NAMES, isPriority, parsePriority, priorityName } from './priorities';
export type { PriorityName } from './priorities';
export { GatewayError, RouteTableError, RoutingError, BackpressureError } from './errors';
export type { GatewayErrorCode } from './errors';
export { PriorityMessageQueue } from './priority-queue';
export type {
  PriorityMessageQueueOptions, SharedPriorityQueueOptions, EnqueueOptions, DequeueBatchOptions, EnqueueOutcome, EnqueueEntry, PriorityQueueStats,
} from './priority-queue';
export type { PriorityQueueDescriptor } from './shared-lanes';
export { BackpressureController } from './backpressure';
export type { BackpressureOptions, BackpressureStats } from './backpressure';
export { MessageDeduplicator } from './dedup';
export type { DeduplicatorOptions, DeduplicatorStats } from './dedup';
export { RouteTable } from './route-table';
export type { RouteRange, RouteTableStats } from './route-table';
export { ServiceInstance, InstanceRegistry } from './instance-registry';
export type { HealthCheck, InstanceRegistryOptions, InstanceHealth, RegistryStats } from './instance-registry';
export { RouteCache } from './route-cache';
export type { RouteCacheOptions, RouteCacheStats } from './route-cache';
export { ServiceRouter } from './service-router';
export type { ServiceRouterOptions, RouteDecision, RoutingStats } from './service-router';
export { BatchProcessor, MessageDispatcher } from './batch-processor';
export type { BatchProcessorOptions, MessageDispatcherOptions, DispatchStats, FlushCounts, FlushReason } from './batch-processor';
export { UnifiedMessageHandler } from './message-handler';
export type { GatewayConnection, AuthVerifier, BusinessMessage, UnifiedMessageHandlerOptions, HandlerStats } from './message-handler';
export { SYSTEM_TYPES } from './message';
export type { GatewayMessage, GatewayReply, MessageKind, SystemType } from './message';
export { ServicePool, joinGatewayService, SERVICE_ENV } from './service-pool';
export type { ServicePoolOptions, GatewayServiceWorker, JoinGatewayServiceOptions } from './service-pool';
