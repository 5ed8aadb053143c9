/** How a WorkerPool tells a worker which queues are its own: one environment variable. */
import type { QueueDescriptorDict } from '../queue/descriptor';

export const POOL_ENV = 'SAGE_QUEUE_POOL';

export interface PoolAssignment {
  pool: string;
  index: number;
  inbound: QueueDescriptorDict;
  replies: QueueDescriptorDict | null;
}

/** IPC message a worker sends once it has attached. */
export const READY_MESSAGE = 'sage-queue:ready';
