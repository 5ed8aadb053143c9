/** Redis-backed pieces: the "redis" queue type, the session-affinity route store and its router. */
export { RedisBackendError, hashTagOf, DEFAULT_PASSWORD_ENV } from './connection';
export type { RedisBackendErrorCode } from './connection';
export { RedisQueue } from './redis-queue';
export type { RedisQueueConstructor } from './redis-queue';
export type { RedisQueueOptions, RedisAckMode, RedisBatchOptions, RedisWaitReplicas } from './queue-options';
export type { RedisMessage } from './queue-messages';
export type { RedisQueueStats } from './queue-scripts';
export type { DeadLetterEntry } from './queue-entries';
export { createRedisQueueDescriptor } from './descriptor';
export type { RedisQueueDescriptorOptions } from './descriptor';
export { StatefulRouteStore, POD_SERVICE_STATES } from './route-store';
export type { StatefulRouteStoreOptions, LinkOptions, Link, PodState, PodServiceState, RouteStoreStats } from './route-store';
export { ROUTE_STORE_SCRIPTS, replyShapeProblem } from './route-store-scripts';
export type { RouteStoreScript, RouteStoreScriptName, ReplyElement } from './route-store-scripts';
export { StatefulRouter, userKeyOf } from './stateful-router';
export type { StatefulRouterOptions, StatefulRouterStats } from './stateful-router';
