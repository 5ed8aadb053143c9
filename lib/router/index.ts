/** The router layer: packets, connections, target selection, delivery, and BaseRouter over them. */
export { Packet } from './packet';
export type { Hop, PacketOptions, PacketWire } from './packet';
export { Connection } from './connection';
export type { ConnectionInit, ConnectionHealth, ConnectionCounters, HealthState, LoadSample } from './connection';
export { BaseRouter } from './base-router';
export { isStopSignal } from './reports';
export type { RouteReport, RouteManyReport, DeliveryReport, DeliveryStatus, DeliveryFault, DeadLetter, RouterStats, StopSignal } from './reports';
export type { RouterOptions } from './router-options';
export type { RouterEvents, RetryEvent, EjectEvent, RecoverEvent, DeadLetterEvent, RouteEvent } from './events';
export {
  availableCandidates, hashTarget, buildRing, ringTarget, roundRobinTarget, leastLoadedTarget, loadScore, broadcastTargets,
} from './strategies';
export type { SelectionContext, RoundRobinPick, LoadScoreOptions } from './strategies';
export { ITEM_FAULT, isItemFault, markItemFault } from './faults';
export { HashRing, stableHash } from './hashing';
export type { PartitionKey } from './hashing';
export { STRATEGIES } from './strategy-names';
export type { StrategyName } from './strategy-names';
export { systemClock } from './clock';
export type { Clock } from './clock';
export { ROUTE_LATENCY_BUCKETS } from './metrics';
