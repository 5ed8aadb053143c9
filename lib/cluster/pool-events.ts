/**
 * What a WorkerPool tells its listeners (WorkerPoolEvents: the typed event map behind on / once /
 * off / emit) and what its stats() report. Data only.
 */

/** A worker process was forked: the first of its slot (`restart` 0) or a replacement. */
export interface WorkerStartInfo {
  index: number;
  pid: number;
  /** How many times this slot has been restarted before this start (0 for the first worker). */
  restart: number;
}

/** A worker attached to its queues (joinWorkerPool() ran) and is in rotation. */
export interface WorkerReadyInfo {
  index: number;
  pid: number;
}

/** A worker exited while the pool was running (not during close()). */
export interface WorkerExitInfo {
  index: number;
  pid: number;
  code: number | null;
  signal: NodeJS.Signals | null;
}

/**
 * The pool gave up on a slot: its worker exited again after `restarts` restarts within
 * `windowMs` (options.maxRestarts / options.restartWindowMs). The slot stays out of rotation
 * (its keys go to the successor); its queue and what is in it stay until close().
 */
export interface WorkerCrashLoopInfo {
  index: number;
  /** The pid of the last worker that exited. */
  pid: number;
  restarts: number;
  windowMs: number;
  code: number | null;
  signal: NodeJS.Signals | null;
}

/**
 * A pool with `ack` gave up on a slot (respawn: false, or a crash loop): the jobs left in its
 * queue — those never taken and those its dead worker held unacked — were routed again to the
 * workers in rotation (each acked in the dead slot's queue once routed). `failed`: jobs the
 * router could not place (given back to the slot's queue).
 */
export interface JobsRehomedInfo {
  index: number;
  rehomed: number;
  failed: number;
}

/** The events of a WorkerPool and their listeners' arguments. */
export interface WorkerPoolEvents {
  'worker-start': [info: WorkerStartInfo];
  'worker-ready': [info: WorkerReadyInfo];
  'worker-exit': [info: WorkerExitInfo];
  /** A replacement worker attached (after a 'worker-exit'). */
  'worker-replaced': [info: WorkerReadyInfo];
  'worker-crash-loop': [info: WorkerCrashLoopInfo];
  /** A pool with `ack` moved a given-up slot's jobs to the workers in rotation. */
  'jobs-rehomed': [info: JobsRehomedInfo];
  /** A worker process could not be forked or signalled (the child's 'error'). */
  error: [error: Error];
}

/** Where a pool's worker slot stands. */
export type WorkerState = 'starting' | 'ready' | 'restarting' | 'gave-up' | 'exited';

export interface WorkerPoolStats {
  name: string;
  /** Slots (workers asked for). */
  workers: number;
  /** Slots whose worker is attached and in rotation. */
  ready: number;
  /** Worker exits while running (close() excluded). */
  exits: number;
  /** Replacement workers forked. */
  restarts: number;
  /** Slots the pool gave up on (crash loops). */
  crashLoops: number;
  slots: Array<{ index: number; pid: number | undefined; state: WorkerState; restarts: number }>;
}
