/**
 * RedisQueue's, PartitionedRedisQueue's and RedisWorkerPool's types: test/types/redis-queue.types.ts,
 * test/types/partitioned-queue.types.ts and test/types/redis-pool.types.ts (assignments that compile
 * only with the right types, and @ts-expect-error lines that must fail) compile cleanly under
 * strict, so `ackMode: 'explicit'` types gets as messages and auto ack as T, and a pool's payloads,
 * replies and events are typed.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(__dirname, '..', '..');

describe('RedisQueue types', () => {
  it('tsc --noEmit over test/types/redis-queue.types.ts, partitioned-queue.types.ts and redis-pool.types.ts (strict) exits 0', () => {
    const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
    const r = spawnSync(process.execPath, [tsc, '-p', join(root, 'test', 'types', 'tsconfig.json')], { cwd: root, encoding: 'utf8', timeout: 120_000 });
    expect(r.error).toBeUndefined();
    expect(`${r.stdout}${r.stderr}`).toBe('');
    expect(r.status).toBe(0);
  }, 130_000);
});
