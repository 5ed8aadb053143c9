/** The cluster helper: WorkerPool (primary side) and joinWorkerPool (worker side). */
export { WorkerPool } from './worker-pool';
export type { WorkerPoolOptions } from './worker-pool';
export { joinWorkerPool } from './join';
export type { PoolWorker } from './join';
