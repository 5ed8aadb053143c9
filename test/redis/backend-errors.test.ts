/**
 * How RedisQueue reports a Redis it cannot use, against real redis-servers: refused credentials
 * (ERR_REDIS_AUTH) and ACL refusals (ERR_REDIS_PERMISSION) fail at once instead of being retried
 * as transient, and a get or put whose timeout passes while Redis is unreachable reports
 * ERR_REDIS_UNAVAILABLE, never an empty or full queue.
 */
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { RedisBackendError } from '../../lib/redis/connection';
import type { RedisQueueOptions } from '../../lib/redis/queue-options';
import { RedisQueue } from '../../lib/redis/redis-queue';
import { rejected } from '../support/expect-errors';
import { RedisServer, freePort } from '../support/redis-server';

/** Well under the default unavailableTimeoutMs (30 s) a refused login used to be retried for. */
const FAST_MS = 5000;
const PASSWORD = 'right-password';

let secured: RedisServer;
const open: Array<RedisQueue<unknown, unknown>> = [];
const servers: RedisServer[] = [];
let counter = 0;

beforeAll(async () => {
  secured = await RedisServer.start({ args: ['--requirepass', PASSWORD] });
});

afterEach(async () => {
  await Promise.all(open.splice(0).map((q) => q.release().catch(() => undefined)));
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});

afterAll(async () => {
  await secured?.stop();
});

function make(options: Omit<RedisQueueOptions, 'stream'>): RedisQueue<number, number> {
  const q = new RedisQueue<number, number>({ stream: `{e${process.pid}-${++counter}}`, commandTimeoutMs: 3000, ...options });
  open.push(q as RedisQueue<unknown, unknown>);
  return q;
}

/** An admin connection to the secured server (the default user, with the password). */
function admin(): Redis {
  const c = new Redis({ host: '127.0.0.1', port: secured.port, password: PASSWORD, maxRetriesPerRequest: 1 });
  c.on('error', () => undefined);
  return c;
}

describe('RedisQueue: refused credentials fail at once with ERR_REDIS_AUTH', () => {
  it('a wrong password: putAsync and getAsync reject ERR_REDIS_AUTH (maybeApplied false) within 5 s, not after unavailableTimeoutMs', async () => {
    const q = make({ url: secured.url, password: 'wrong-password' });
    const started = Date.now();
    const put = await rejected(q.putAsync(1), RedisBackendError, 'ERR_REDIS_AUTH');
    expect(put.maybeApplied).toBe(false);
    await rejected(q.getAsync({ timeoutMs: 10_000 }), RedisBackendError, 'ERR_REDIS_AUTH');
    await rejected(q.getAsync(), RedisBackendError, 'ERR_REDIS_AUTH');
    expect(Date.now() - started).toBeLessThan(FAST_MS);
  });

  it('no password where the server requires one (NOAUTH) is ERR_REDIS_AUTH within 5 s', async () => {
    const q = make({ url: secured.url, passwordEnv: 'SAGEQ_TEST_UNSET_PASSWORD' });
    const started = Date.now();
    await rejected(q.putAsync(1), RedisBackendError, 'ERR_REDIS_AUTH');
    expect(Date.now() - started).toBeLessThan(FAST_MS);
  });

  it('a user name with a wrong password (WRONGPASS) is ERR_REDIS_AUTH; the right password in the URL works', async () => {
    const a = admin();
    const user = `auth${process.pid}`;
    try {
      await a.call('ACL', 'SETUSER', user, 'on', '>user-pw', '~*', '&*', '+@all');
      const url = secured.url.replace('redis://', `redis://${user}:nope@`);
      const started = Date.now();
      await rejected(make({ url }).putAsync(1), RedisBackendError, 'ERR_REDIS_AUTH');
      expect(Date.now() - started).toBeLessThan(FAST_MS);
      const ok = make({ url: secured.url.replace('redis://', `redis://${user}:user-pw@`) });
      await ok.putAsync(7);
      expect(await ok.getAsync({ timeoutMs: 2000 })).toBe(7);
    } finally {
      await a.call('ACL', 'DELUSER', user).catch(() => undefined);
      a.disconnect();
    }
  });
});

describe('RedisQueue: ACL refusals are ERR_REDIS_PERMISSION', () => {
  it('a user who may not run XADD gets ERR_REDIS_PERMISSION from putAsync; one without access to the keys from getAsync', async () => {
    const a = admin();
    const noXadd = `noxadd${process.pid}`;
    const noKeys = `nokeys${process.pid}`;
    try {
      await a.call('ACL', 'SETUSER', noXadd, 'on', '>pw', '~*', '&*', '+@all', '-xadd');
      await a.call('ACL', 'SETUSER', noKeys, 'on', '>pw', '~elsewhere:*', '&*', '+@all');
      const started = Date.now();
      const putter = make({ url: secured.url.replace('redis://', `redis://${noXadd}:pw@`) });
      const e = await rejected(putter.putAsync(1), RedisBackendError, 'ERR_REDIS_PERMISSION');
      expect(e.message).toMatch(/can't run this command|NOPERM/);
      const getter = make({ url: secured.url.replace('redis://', `redis://${noKeys}:pw@`) });
      await rejected(getter.getAsync({ timeoutMs: 0 }), RedisBackendError, 'ERR_REDIS_PERMISSION');
      await rejected(getter.getAsync({ timeoutMs: 2000 }), RedisBackendError, 'ERR_REDIS_PERMISSION');
      await rejected(getter.putAsync(1), RedisBackendError, 'ERR_REDIS_PERMISSION');
      expect(Date.now() - started).toBeLessThan(FAST_MS);
    } finally {
      await a.call('ACL', 'DELUSER', noXadd, noKeys).catch(() => undefined);
      a.disconnect();
    }
  });
});

describe('RedisQueue: an unreachable Redis is ERR_REDIS_UNAVAILABLE, never an empty or full queue', () => {
  it('nothing listening on the port: getAsync/getManyAsync/putAsync/putManyAsync with a timeout reject ERR_REDIS_UNAVAILABLE at that timeout', async () => {
    const port = await freePort();
    const q = make({ url: `redis://127.0.0.1:${port}` });
    const started = Date.now();
    const get = await rejected(q.getAsync({ timeoutMs: 100 }), RedisBackendError, 'ERR_REDIS_UNAVAILABLE');
    expect(get.maybeApplied).toBe(false);
    await rejected(q.getManyAsync(5, { timeoutMs: 100 }), RedisBackendError, 'ERR_REDIS_UNAVAILABLE');
    const put = await rejected(q.putAsync(1, { timeoutMs: 100 }), RedisBackendError, 'ERR_REDIS_UNAVAILABLE');
    expect(put.maybeApplied).toBe(false);
    const many = await rejected(q.putManyAsync([1, 2, 3], { timeoutMs: 100 }), RedisBackendError, 'ERR_REDIS_UNAVAILABLE');
    expect((many as RedisBackendError & { written?: number }).written).toBe(0);
    // Four waits of 100 ms each, far below the 30 s unavailableTimeoutMs.
    expect(Date.now() - started).toBeLessThan(FAST_MS);
  });

  it('a stopped server: after a working round trip, gets and puts with a timeout reject ERR_REDIS_UNAVAILABLE', async () => {
    const server = await RedisServer.start();
    servers.push(server);
    const q = make({ url: server.url, maxsize: 1 });
    await q.putAsync(1);
    expect(await q.getAsync({ timeoutMs: 2000 })).toBe(1);
    await rejected(q.getAsync({ timeoutMs: 100 }), Error, 'ERR_QUEUE_EMPTY'); // reachable and empty
    await server.kill9();
    const started = Date.now();
    await rejected(q.getAsync({ timeoutMs: 300 }), RedisBackendError, 'ERR_REDIS_UNAVAILABLE');
    await rejected(q.putAsync(2, { timeoutMs: 300 }), RedisBackendError, 'ERR_REDIS_UNAVAILABLE');
    expect(Date.now() - started).toBeLessThan(FAST_MS);
  });
});
