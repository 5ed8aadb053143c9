/**
 * A segment truncated (shrunk) by another process must yield a typed error -- ERR_QUEUE_TRUNCATED
 * -- in every attached process and in inspection, never SIGBUS. Real processes: a creator, a
 * producer and a consumer attached (the consumer blocked in get), then this process truncates the
 * file to 4096 bytes.
 */
import { spawn } from 'node:child_process';
import { truncateSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SageQueue } from '../../lib/index';
import { queueName, sleep, spawnAgents, useCleanup } from '../helpers/harness';
import type { ChildRequestError } from '../helpers/harness';

useCleanup();

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return 'OK';
  } catch (e) {
    return (e as ChildRequestError).code;
  }
}

describe('a segment truncated under attached processes', () => {
  it('creator, producer and a consumer blocked in get() all get ERR_QUEUE_TRUNCATED, keep running and exit 0; inspect and stats report it', async () => {
    const name = queueName('trunc');
    const [creator, producer, consumer] = await spawnAgents(['creator', 'producer', 'consumer']);
    await creator.call('open', { how: 'create', name, options: { capacity: 1 << 16, codec: 'raw' } });
    await producer.call('open', { how: 'open', name });
    await consumer.call('open', { how: 'open', name });
    await producer.call('putFrames', { producer: 1, count: 5 });
    for (let i = 0; i < 5; i++) await consumer.call('get', { timeoutMs: 1000 });
    // The consumer waits (blocking get, in native code) on the now empty queue.
    const blockedGet = codeOf(consumer.call('get', { timeoutMs: 10_000 }));
    await sleep(200);

    truncateSync(`/dev/shm/sageq.${name}`, 4096);

    expect(await blockedGet).toBe('ERR_QUEUE_TRUNCATED');
    expect(await codeOf(producer.call('putFrames', { producer: 1, from: 5, count: 1 }))).toBe('ERR_QUEUE_TRUNCATED');
    expect(await codeOf(creator.call('getMany', { max: 10, block: false }))).toBe('ERR_QUEUE_TRUNCATED');
    expect(await codeOf(creator.call('stats', {}))).toBe('ERR_QUEUE_TRUNCATED');
    expect(await codeOf(consumer.call('get', { block: false }))).toBe('ERR_QUEUE_TRUNCATED');

    // Inspection from here (maps after fstat) reports it too.
    const seen = SageQueue.inspect(name);
    expect(seen.liveness).toBe('broken');
    expect(seen.error?.code).toBe('ERR_QUEUE_TRUNCATED');

    // Everyone is still alive, releases its handle and exits normally.
    for (const c of [creator, producer, consumer]) {
      expect(await c.call('release', {})).toBe(true);
      await c.call('exit', { code: 0 });
      expect(await c.exited).toEqual({ code: 0, signal: null });
    }
    SageQueue.destroy(name);
  });

  it('inspecting a segment that another process keeps shrinking and regrowing never crashes: each look gives stats or a typed error', async () => {
    const name = queueName('trunc-race');
    const [owner] = await spawnAgents(['owner']);
    await owner.call('open', { how: 'create', name, options: { capacity: 1 << 16, codec: 'raw' } });
    const file = `/dev/shm/sageq.${name}`;
    const size = (await import('node:fs')).statSync(file).size;
    // Another process resizes the file as fast as it can.
    const resizer = spawn(process.execPath, ['-e', `const fs=require('fs');for(;;){fs.truncateSync(${JSON.stringify(file)},4096);fs.truncateSync(${JSON.stringify(file)},${size});}`], {
      stdio: 'ignore',
    });
    try {
      const codes = new Set<string>();
      const until = Date.now() + 1500;
      let looks = 0;
      while (Date.now() < until) {
        const r = SageQueue.inspect(name);
        codes.add(r.error === null ? 'stats' : r.error.code);
        looks++;
        if (looks % 20 === 0) await sleep(0);
      }
      expect(looks).toBeGreaterThan(50);
      for (const c of codes) expect(['stats', 'ERR_QUEUE_TRUNCATED', 'ERR_QUEUE_CORRUPT']).toContain(c);
    } finally {
      resizer.kill('SIGKILL');
    }
    await owner.call('exit', { code: 0 });
    expect((await owner.exited).signal).toBeNull();
    SageQueue.destroy(name);
  });
});
