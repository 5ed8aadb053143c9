/**
 * The example gateway (examples/gateway/server.mjs) as a real process with real service worker
 * processes, driven by real `ws` clients on loopback: routing to the right service, SYSTEM
 * messages, unknown ids, malformed frames (other clients keep being served), auth, CRITICAL
 * overtaking a LOW backlog across the process boundary, aging, duplicates, watermarks, batch
 * flushes, failover when a worker is killed (and cache invalidation), the HTTP stats shapes, and
 * a slow client that does not grow the gateway's memory without bound. Every gateway is stopped
 * and its segments removed after each test, pass or fail.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, unlinkSync } from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';

const root = path.resolve(__dirname, '..', '..');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Gateway {
  proc: ChildProcess;
  port: number;
  workers: Record<string, number[]>;
}
type Reply = Record<string, unknown> & { type: string };

const gateways: Gateway[] = [];
const clients: WebSocket[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.terminate();
  for (const g of gateways.splice(0)) {
    if (g.proc.exitCode === null && g.proc.signalCode === null) {
      g.proc.kill('SIGTERM');
      const t = setTimeout(() => g.proc.kill('SIGKILL'), 8000);
      await once(g.proc, 'exit');
      clearTimeout(t);
    }
    for (const pid of Object.values(g.workers).flat()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    for (const f of readdirSync('/dev/shm').filter((n) => n.startsWith(`sageq.gw-${g.proc.pid}-`))) unlinkSync(`/dev/shm/${f}`);
  }
});

async function startGateway(args: string[] = []): Promise<Gateway> {
  const proc = spawn(process.execPath, [path.join(root, 'examples/gateway/server.mjs'), '--port', '0', ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  const g: Gateway = { proc, port: 0, workers: {} };
  gateways.push(g);
  let out = '';
  let err = '';
  proc.stderr?.setEncoding('utf8').on('data', (d: string) => (err += d));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gateway did not start: ${err}`)), 20_000);
    proc.stdout?.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (line) {
        const info = JSON.parse(line) as { listening: number; workers: Record<string, number[]> };
        g.port = info.listening;
        g.workers = info.workers;
        clearTimeout(timer);
        resolve();
      }
    });
    proc.once('exit', (code) => reject(new Error(`gateway exited ${code}: ${err}`)));
  });
  return g;
}

class Client {
  readonly ws: WebSocket;
  readonly replies: Reply[] = [];
  #waiters = new Set<() => void>();
  constructor(port: number) {
    this.ws = new WebSocket(`ws://127.0.0.1:${port}`);
    clients.push(this.ws);
    this.ws.on('message', (d) => {
      this.replies.push(JSON.parse(String(d)) as Reply);
      for (const w of [...this.#waiters]) w();
    });
  }
  async open(auth = true): Promise<this> {
    await once(this.ws, 'open');
    if (auth) {
      this.send({ type: 'auth', msgId: 'auth', body: { token: 'token-alice' } });
      await this.waitFor((r) => r.msgId === 'auth');
    }
    return this;
  }
  send(m: unknown): void {
    this.ws.send(typeof m === 'string' || Buffer.isBuffer(m) ? m : JSON.stringify(m));
  }
  waitFor(pred: (r: Reply) => boolean, what = 'a reply', timeoutMs = 10_000): Promise<Reply> {
    return this.waitForCount(pred, 1, what, timeoutMs).then((rs) => rs[0] as Reply);
  }
  waitForCount(pred: (r: Reply) => boolean, n: number, what = 'replies', timeoutMs = 10_000): Promise<Reply[]> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const found = this.replies.filter(pred);
        if (found.length >= n) {
          this.#waiters.delete(check);
          clearTimeout(timer);
          resolve(found);
        }
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(new Error(`timed out waiting for ${n} × ${what}; got ${JSON.stringify(this.replies.slice(-5))}`));
      }, timeoutMs);
      this.#waiters.add(check);
      check();
    });
  }
}

async function http<T = Record<string, unknown>>(g: Gateway, url: string): Promise<{ status: number; body: T }> {
  const res = await fetch(`http://127.0.0.1:${g.port}${url}`);
  return { status: res.status, body: (await res.json()) as T };
}

describe('the example gateway (real processes, real sockets)', () => {
  it('routes ids to the right service, answers SYSTEM and GATEWAY messages itself, and replies with an error to an unknown id', async () => {
    const g = await startGateway();
    const c = await new Client(g.port).open(false);
    c.send({ type: 'ping', msgId: 'p' });
    expect(await c.waitFor((r) => r.msgId === 'p')).toMatchObject({ type: 'pong' });
    c.send({ type: 'heartbeat', msgId: 'h' });
    expect(await c.waitFor((r) => r.msgId === 'h')).toMatchObject({ type: 'heartbeat_ack' });
    c.send({ type: 'auth', msgId: 'a', body: { token: 'token-alice' } });
    expect(await c.waitFor((r) => r.msgId === 'a')).toMatchObject({ type: 'auth_ok', principal: 'alice' });
    for (const [id, service] of [[1500, 'logic'], [2000, 'chat'], [3999, 'fight']] as const) {
      c.send({ id, msgId: `m${id}`, session: 'user-1', body: { n: id } });
      const r = await c.waitFor((x) => x.msgId === `m${id}`);
      expect(r).toMatchObject({ type: 'reply', id, service, body: { echo: { n: id } } });
      expect(String(r.instance)).toMatch(new RegExp(`^${service}-\\d$`));
    }
    c.send({ id: 9001, msgId: 'gw', session: 'user-1', body: 'hi' });
    expect(await c.waitFor((r) => r.msgId === 'gw')).toEqual({ type: 'gateway', id: 9001, msgId: 'gw', body: { echo: 'hi' } });
    c.send({ id: 5000, msgId: 'u', session: 'user-1' });
    expect(await c.waitFor((r) => r.msgId === 'u')).toMatchObject({ type: 'error', code: 'ERR_UNKNOWN_ROUTE', id: 5000 });
  });

  it.each(['sage', 'ipc'])('--transport %s: a business reply is the same frame on both transports (the benchmark twin), with the priority the gateway checked', async (transport) => {
    const g = await startGateway(['--transport', transport, '--workers', '1']);
    const c = await new Client(g.port).open();
    c.send({ id: 2002, msgId: 7, session: 'user-2', priority: 'high', body: { text: 'héllo "quoted"' } });
    expect(await c.waitFor((r) => r.msgId === 7)).toEqual({
      type: 'reply', id: 2002, msgId: 7, service: 'chat', instance: 'chat-0', body: { echo: { text: 'héllo "quoted"' }, priority: 1, by: 'chat-0' },
    });
  });

  it('--transport ipc (the benchmark twin) de-duplicates like the lanes: a repeated msgId of a session within the window gets ERR_DUPLICATE_MESSAGE, and is accepted after it', async () => {
    const g = await startGateway(['--transport', 'ipc', '--workers', '1', '--dedup-window-ms', '500']);
    const c = await new Client(g.port).open();
    c.send({ id: 1001, msgId: 'd1', session: 's', body: 1 });
    c.send({ id: 1001, msgId: 'd1', session: 's', body: 2 });
    const [reply, dup] = await Promise.all([c.waitFor((r) => r.msgId === 'd1' && r.type === 'reply'), c.waitFor((r) => r.msgId === 'd1' && r.type === 'error')]);
    expect(reply).toMatchObject({ service: 'logic', body: { echo: 1 } });
    expect(dup).toMatchObject({ code: 'ERR_DUPLICATE_MESSAGE', id: 1001 });
    await sleep(600);
    c.send({ id: 1001, msgId: 'd1', session: 's', body: 3 });
    await c.waitForCount((r) => r.msgId === 'd1' && r.type === 'reply', 2, 'the second reply');
    expect(c.replies.filter((r) => r.msgId === 'd1' && r.type === 'reply').map((r) => (r.body as { echo: number }).echo)).toEqual([1, 3]);
  });

  it('refuses business messages before auth and a wrong token', async () => {
    const g = await startGateway();
    const c = await new Client(g.port).open(false);
    c.send({ id: 2001, msgId: 'x', session: 's' });
    expect(await c.waitFor((r) => r.msgId === 'x')).toMatchObject({ type: 'error', code: 'ERR_NOT_AUTHENTICATED' });
    c.send({ type: 'auth', msgId: 'bad', body: { token: 'nope' } });
    expect(await c.waitFor((r) => r.msgId === 'bad')).toMatchObject({ type: 'error', code: 'ERR_AUTH_FAILED' });
    c.send({ id: 2001, msgId: 'y', session: 's' });
    expect(await c.waitFor((r) => r.msgId === 'y')).toMatchObject({ code: 'ERR_NOT_AUTHENTICATED' });
  });

  it('answers every kind of malformed frame with an error code while another client keeps being served', async () => {
    const g = await startGateway();
    const bad = await new Client(g.port).open();
    const good = await new Client(g.port).open();
    const frames: unknown[] = ['{not json', Buffer.from([0, 1, 2]), '42', '[]', 'x'.repeat(70_000), { msgId: 'm1', session: 's' }, { id: 'x', msgId: 'm2', session: 's' }, { id: 2001, session: 's' }, { id: 2001, msgId: 'm3' }, { id: 2001, msgId: 'm4', session: 's', priority: 'URGENT' }];
    let goodSeq = 0;
    for (const f of frames) {
      if (Buffer.isBuffer(f)) bad.ws.send(f, { binary: true });
      else bad.send(f);
      good.send({ id: 2001, msgId: `g${goodSeq++}`, session: 'other' });
    }
    const errors = await bad.waitForCount((r) => r.type === 'error', frames.length, 'error replies');
    expect(errors.map((e) => e.code)).toEqual([
      'ERR_BAD_FRAME', 'ERR_BAD_FRAME', 'ERR_BAD_FRAME', 'ERR_BAD_FRAME', 'ERR_FRAME_TOO_LARGE', 'ERR_BAD_MESSAGE', 'ERR_BAD_MESSAGE', 'ERR_BAD_MESSAGE', 'ERR_BAD_MESSAGE', 'ERR_UNKNOWN_PRIORITY',
    ]);
    await good.waitForCount((r) => r.type === 'reply', frames.length, 'good replies');
    const { body } = await http<{ gateway: { errors_by_code: Record<string, number> } }>(g, '/stats');
    expect(body.gateway.errors_by_code).toMatchObject({ ERR_BAD_FRAME: 4, ERR_FRAME_TOO_LARGE: 1, ERR_BAD_MESSAGE: 4, ERR_UNKNOWN_PRIORITY: 1 });
    bad.send({ id: 2001, msgId: 'still-ok', session: 's' }); // the sender of the bad frames is still served too
    expect(await bad.waitFor((r) => r.msgId === 'still-ok')).toMatchObject({ type: 'reply' });
  });

  it('delivers a CRITICAL message ahead of a LOW backlog waiting for the same worker process, and ages LOW messages through eventually', async () => {
    const g = await startGateway(['--workers', '1']);
    const c = await new Client(g.port).open();
    c.send({ id: 2001, msgId: 'warm', session: 's' }); // the worker's first message pays its start-up (module loading)
    await c.waitFor((r) => r.msgId === 'warm');
    c.send({ id: 2001, msgId: 'block', session: 's', priority: 'HIGH', body: { work_ms: 400 } }); // keeps the chat worker busy
    await sleep(100);
    for (let i = 0; i < 50; i++) c.send({ id: 2001, msgId: `low${i}`, session: 's', priority: 'LOW' });
    await sleep(50);
    c.send({ id: 2001, msgId: 'crit', session: 's', priority: 'CRITICAL' });
    const all = await c.waitForCount((r) => r.type === 'reply' && r.msgId !== 'warm', 52, 'replies', 15_000);
    const order = all.map((r) => r.msgId);
    expect(order[0]).toBe('block');
    expect(order[1]).toBe('crit'); // overtook all 50 LOW messages that were already waiting
    expect(order.slice(2)).toEqual(Array.from({ length: 50 }, (_, i) => `low${i}`)); // FIFO within LOW, none starved
  });

  it('drops a duplicate msgId of the same session within the window (error reply) and accepts it after the window', async () => {
    const g = await startGateway(['--dedup-window-ms', '500']);
    const c = await new Client(g.port).open();
    c.send({ id: 2001, msgId: 'd1', session: 's', body: 1 });
    c.send({ id: 2001, msgId: 'd1', session: 's', body: 2 });
    const [reply, dup] = await Promise.all([c.waitFor((r) => r.msgId === 'd1' && r.type === 'reply'), c.waitFor((r) => r.msgId === 'd1' && r.type === 'error')]);
    expect(reply).toMatchObject({ body: { echo: 1 } });
    expect(dup).toMatchObject({ code: 'ERR_DUPLICATE_MESSAGE' });
    await sleep(600);
    c.send({ id: 2001, msgId: 'd1', session: 's', body: 3 });
    await c.waitForCount((r) => r.msgId === 'd1' && r.type === 'reply', 2, 'the second reply');
    expect(c.replies.filter((r) => r.msgId === 'd1' && r.type === 'reply').map((r) => (r.body as { echo: number }).echo)).toEqual([1, 3]);
    const { body } = await http<{ queues: Record<string, { duplicate_count: number }> }>(g, '/stats');
    expect(Object.values(body.queues).reduce((n, q) => n + q.duplicate_count, 0)).toBe(1);
  });

  it('throttles NORMAL messages above the high watermark (CRITICAL still accepted) and releases below the low watermark', async () => {
    const g = await startGateway(['--workers', '1', '--lane-capacity', '20', '--high', '0.5', '--low', '0.2']);
    const c = await new Client(g.port).open();
    c.send({ id: 2001, msgId: 'warm', session: 's' }); // the worker's first message pays its start-up (module loading)
    await c.waitFor((r) => r.msgId === 'warm');
    c.send({ id: 2001, msgId: 'block', session: 's', priority: 'HIGH', body: { work_ms: 600 } });
    await sleep(100);
    for (let i = 0; i < 30; i++) c.send({ id: 2001, msgId: `n${i}`, session: 's', priority: 'NORMAL' });
    await c.waitForCount((r) => r.code === 'ERR_BACKPRESSURE', 1, 'a backpressure error');
    c.send({ id: 2001, msgId: 'crit', session: 's', priority: 'CRITICAL' });
    expect(await c.waitFor((r) => r.msgId === 'crit')).toMatchObject({ type: 'reply' });
    const refused = c.replies.filter((r) => r.code === 'ERR_BACKPRESSURE').length;
    expect(refused).toBeGreaterThan(0);
    await c.waitForCount((r) => r.type === 'reply' && String(r.msgId).startsWith('n'), 30 - refused, 'the accepted NORMAL replies', 15_000);
    c.send({ id: 2001, msgId: 'after', session: 's', priority: 'NORMAL' });
    expect(await c.waitFor((r) => r.msgId === 'after')).toMatchObject({ type: 'reply' });
    const { body } = await http<{ queues: Record<string, { rejected_count: number; is_throttling: boolean }> }>(g, '/stats');
    expect(body.queues['chat-0']).toMatchObject({ rejected_count: refused, is_throttling: false });
  });

  it('flushes dispatch batches at 100 messages and 10 ms after the first message', async () => {
    const g = await startGateway(['--workers', '1']);
    const c = await new Client(g.port).open();
    const before = (await http<{ dispatcher: { flushes: Record<string, number> } }>(g, '/stats')).body.dispatcher.flushes;
    c.ws.send(JSON.stringify({ id: 2001, msgId: 'single', session: 's' }));
    await c.waitFor((r) => r.msgId === 'single');
    const mid = (await http<{ dispatcher: { flushes: Record<string, number> } }>(g, '/stats')).body.dispatcher.flushes;
    expect(mid.timeout - (before.timeout ?? 0)).toBe(1);
    // 250 NORMAL messages in a burst: at least two batches are cut by size.
    for (let i = 0; i < 250; i++) c.send({ id: 2001, msgId: `b${i}`, session: 's' });
    await c.waitForCount((r) => String(r.msgId).startsWith('b') && r.type === 'reply', 250, 'burst replies');
    const after = (await http<{ dispatcher: { flushes: Record<string, number>; messages_dispatched: number } }>(g, '/stats')).body.dispatcher;
    expect(after.flushes.size).toBeGreaterThanOrEqual(1);
    expect(after.messages_dispatched).toBe(251);
  });

  it('fails over to a healthy instance when a service worker is killed, invalidating the route cache', async () => {
    const g = await startGateway(['--workers', '2', '--health-interval-ms', '200']);
    const c = await new Client(g.port).open();
    c.send({ id: 2001, msgId: 'first', session: 'sticky' });
    const first = await c.waitFor((r) => r.msgId === 'first');
    const owner = String(first.instance);
    const index = Number(owner.split('-')[1]);
    const routingBefore = (await http<{ cache: { invalidations: number } }>(g, '/routing/stats')).body;
    process.kill((g.workers.chat as number[])[index] as number, 'SIGKILL');
    await sleep(300);
    c.send({ id: 2001, msgId: 'second', session: 'sticky' });
    const second = await c.waitFor((r) => r.msgId === 'second');
    const routing = (await http<{ cache: { invalidations: number }; registry: { failovers: number } }>(g, '/routing/stats')).body;
    expect(routing.cache.invalidations).toBeGreaterThan(routingBefore.cache.invalidations);
    // Either the failover instance answered, or the replacement was already up and took its keys back.
    expect(second).toMatchObject({ type: 'reply' });
    if (second.instance !== owner) expect(routing.registry.failovers).toBeGreaterThan(0);
    const health = await http<{ status: string; services: Record<string, { healthy: number }> }>(g, '/health');
    expect(health.body.services.chat?.healthy).toBeGreaterThanOrEqual(1);
  });

  it('serves /health, /stats and /routing/stats in the design shapes', async () => {
    const g = await startGateway();
    const health = await http(g, '/health');
    expect(health.status).toBe(200);
    expect(health.body).toMatchObject({ status: 'ok', services: { logic: { instances: 2, healthy: 2 }, chat: { instances: 2, healthy: 2 }, fight: { instances: 2, healthy: 2 } } });
    const stats = (await http<Record<string, Record<string, unknown>>>(g, '/stats')).body;
    expect(Object.keys(stats.queues ?? {}).sort()).toEqual(['chat-0', 'chat-1', 'fight-0', 'fight-1', 'logic-0', 'logic-1']);
    expect(Object.keys((stats.queues as Record<string, object>)['chat-0'] ?? {})).toEqual(expect.arrayContaining([
      'size', 'enqueue_count', 'dequeue_count', 'duplicate_count', 'rejected_count', 'levels', 'usage_ratio', 'is_throttling',
    ]));
    expect(Object.keys(stats.dispatcher ?? {})).toEqual(expect.arrayContaining(['total_dispatched', 'successful_dispatches', 'failed_dispatches', 'avg_latency_ms', 'success_rate']));
    const routing = (await http<Record<string, unknown>>(g, '/routing/stats')).body;
    expect(routing).toMatchObject({ total_routed: 0, routing_failures: 0, route_table: { ranges: 4 }, cache: { hits: 0, misses: 0, hit_rate: 0 } });
    expect((await http(g, '/nope')).status).toBe(404);
  });

  it('pauses reading from a slow client instead of buffering its replies without bound', async () => {
    const g = await startGateway(['--max-buffered', '262144']);
    const slow = await new Client(g.port).open();
    const other = await new Client(g.port).open();
    const rssBefore = (await http<{ memory: { rss: number } }>(g, '/stats')).body.memory.rss;
    (slow.ws as unknown as { _socket: { pause(): void } })._socket.pause(); // stop reading replies
    const big = 'x'.repeat(16 * 1024);
    for (let i = 0; i < 3000; i++) slow.send({ id: 9001, msgId: `s${i}`, session: 's', body: big }); // 48 MB of echoes
    await sleep(1500);
    other.send({ type: 'ping', msgId: 'alive' });
    expect(await other.waitFor((r) => r.msgId === 'alive')).toMatchObject({ type: 'pong' });
    const stats = (await http<{ connections: { paused: number; max_buffered_bytes: number }; memory: { rss: number } }>(g, '/stats')).body;
    expect(stats.connections.paused).toBeGreaterThanOrEqual(1);
    expect(stats.connections.max_buffered_bytes).toBeLessThan(262_144 * 8 + 64 * 1024);
    expect(stats.memory.rss - rssBefore).toBeLessThan(40 * 1024 * 1024);
  });
});
