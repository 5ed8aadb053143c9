/** The router layer: packets, connections, BaseRouter and its strategies. */
export { Packet } from './packet';
export type { Hop, PacketOptions, PacketWire } from './packet';
export { Connection } from './connection';
export type { ConnectionInit, ConnectionHealth, ConnectionCounters, HealthState, LoadSample } from './connection';
export { BaseRouter, isStopSignal } from './base-router';
export type { RouterOptions, RouteReport, RouteManyReport, DeliveryReport, DeliveryStatus, DeadLetter, SelectionContext, RouterStats, StopSignal } from './base-router';
export { HashRing, stableHash } from './hashing';
export type { PartitionKey } from './hashing';
export { STRATEGIES } from './strategy-names';
export type { StrategyName } from './strategy-names';
export { systemClock } from './clock';
export type { Clock } from './clock';
