/** The cluster helper: WorkerPool (primary side) and joinWorkerPool (worker side). */
export { WorkerPool } from './worker-pool';
export type { WorkerPoolOptions, PoolReadyOptions, PoolInbound, PoolAckOptions } from './worker-pool';
export type {
  WorkerPoolEvents, WorkerPoolStats, WorkerState, WorkerStartInfo, WorkerReadyInfo, WorkerExitInfo, WorkerCrashLoopInfo, JobsRehomedInfo,
} from './pool-events';
export { joinWorkerPool } from './join';
export type { PoolWorker, WorkerBatchOptions } from './join';
export { collectMetrics } from './metrics';
export type { MetricsSources, MetricsCollector, MetricsPool, MetricsQueue } from './metrics';
