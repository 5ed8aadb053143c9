/**
 * The built-in queue types, registered in one place: `local`, `sage_queue`, `shm`, `redis`, `redis_partitioned`, and
 * `ray_actor` / `ray_queue` / `rpc` (which parse but cannot be opened from Node.js). The package
 * entry (lib/index.ts) installs them once; nothing registers a type as a side effect of being
 * imported.
 */
import { UnsupportedQueueTypeError } from './errors';
import { LocalQueue } from './queue/local-queue';
import { getRegisteredQueueTypes, registerQueueImplementation } from './queue/registry';
import type { QueueImplementation } from './queue/registry';
import { SageQueue } from './queue/sage-queue';
import { PartitionedRedisQueue } from './redis/partitioned-queue';
import { RedisQueue } from './redis/redis-queue';

/** A built-in type that cannot work in Node.js; it stays registered so such descriptors parse. */
function unsupported(type: string, hint: string): QueueImplementation {
  return () => {
    throw new UnsupportedQueueTypeError(type, getRegisteredQueueTypes().filter((t) => t !== type), hint);
  };
}

const RAY_HINT =
  'There is no Node.js Ray client, so Ray queues cannot be opened from Node.js. Register a bridge with ' +
  'registerQueueImplementation(type, impl, { replace: true }), or use the cross-machine "redis" queue type ' +
  '(RedisQueue, a Redis Streams queue: see createRedisQueueDescriptor)';

const BUILTINS: ReadonlyArray<readonly [string, QueueImplementation]> = [
  ['local', LocalQueue],
  ['sage_queue', SageQueue],
  ['shm', SageQueue],
  ['redis', RedisQueue],
  ['redis_partitioned', PartitionedRedisQueue],
  ['ray_actor', unsupported('ray_actor', RAY_HINT)],
  ['ray_queue', unsupported('ray_queue', RAY_HINT)],
  ['rpc', unsupported('rpc', 'There is no RPC queue implementation yet; register one with registerQueueImplementation')],
];

/**
 * Registers every built-in type that is not registered yet (a type the application replaced or
 * removed and registered again keeps its registration). Idempotent.
 */
export function installBuiltinQueueTypes(): void {
  const present = new Set(getRegisteredQueueTypes());
  for (const [type, impl] of BUILTINS) {
    if (!present.has(type)) registerQueueImplementation(type, impl);
  }
}
