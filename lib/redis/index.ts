/** Redis-backed pieces: the "redis" queue type, the session-affinity route store and its router. */
export {
  RedisQueue, RedisBackendError, createRedisQueueDescriptor, hashTagOf, DEFAULT_PASSWORD_ENV,
} from './redis-queue';
export type {
  RedisQueueOptions, RedisMessage, RedisAckMode, RedisBatchOptions, RedisQueueStats, DeadLetterEntry, RedisQueueDescriptorOptions,
} from './redis-queue';
export { StatefulRouteStore, POD_SERVICE_STATES } from './route-store';
export type { StatefulRouteStoreOptions, LinkOptions, Link, PodState, PodServiceState, RouteStoreStats } from './route-store';
export { ROUTE_STORE_SCRIPTS, replyShapeProblem } from './route-store-scripts';
export type { RouteStoreScript, RouteStoreScriptName, ReplyElement } from './route-store-scripts';
export { StatefulRouter, userKeyOf } from './stateful-router';
export type { StatefulRouterOptions, StatefulRouterStats } from './stateful-router';
