/**
 * ServicePool's reply-queue option: `replies` sets the codec and size of the queue the workers
 * put on (here `raw`, the bytes the example gateway forwards as they are), and bad values are
 * refused with typed errors, leaving no segment or registered instance behind.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

import { InstanceRegistry, ServicePool, joinGatewayService } from '../../lib/index';
import { useCleanup } from '../helpers/harness';

useCleanup();
const WORKER = join(__dirname, '..', '..', 'examples', 'gateway', 'service-worker.mjs');
const pools: ServicePool[] = [];
afterEach(async () => {
  for (const p of pools.splice(0)) await p.close({ timeoutMs: 5000 });
});

const segments = (prefix: string): string[] => readdirSync('/dev/shm').filter((n) => n.startsWith(`sageq.${prefix}`));

describe('ServicePool replies option', () => {
  it('creates the reply queue with the codec and capacity given, and the workers attach to it', async () => {
    const registry = new InstanceRegistry({ healthCheckIntervalMs: 60_000 });
    const name = `vt-${process.pid}-sp-raw`;
    const pool = new ServicePool({ service: 'logic', script: WORKER, workers: 1, registry, name, replies: { codec: 'raw', capacity: 1 << 20 } });
    pools.push(pool);
    await pool.ready();
    expect(pool.replies.codec).toBe('raw');
    expect(pool.replies.stats().capacity).toBe(1 << 20);
    expect(registry.stats().services.logic?.healthy).toBe(1);
  });

  it.each([
    [{ mode: 'shared' }, 'ERR_INVALID_ARG_TYPE'],
    ['raw', 'ERR_INVALID_ARG_TYPE'],
    [{ codec: 'yaml' }, 'ERR_UNKNOWN_CODEC'],
  ])('refuses replies %j with %s and leaves no segment or registered instance behind', (replies, code) => {
    const registry = new InstanceRegistry({ healthCheckIntervalMs: 60_000 });
    const name = `vt-${process.pid}-sp-bad-${code}`;
    expect(() => new ServicePool({ service: 'logic', script: WORKER, workers: 1, registry, name, replies: replies as never })).toThrow(expect.objectContaining({ code }));
    expect(segments(name)).toEqual([]);
    expect(registry.stats().services.logic).toBeUndefined();
  });
});

describe('joinGatewayService', () => {
  it('checks its options before anything else, and refuses a process no ServicePool started', () => {
    expect(() => joinGatewayService({}, { spinUs: -1 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => joinGatewayService({}, { spin: 0 } as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => joinGatewayService(null as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => joinGatewayService({}, { spinUs: 0 })).toThrow(expect.objectContaining({ code: 'ERR_NOT_A_POOL_WORKER' }));
  });
});
