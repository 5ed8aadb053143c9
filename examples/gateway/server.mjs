#!/usr/bin/env node
// The example gateway: WebSocket clients -> UnifiedMessageHandler -> ServiceRouter (route table,
// route cache, instance registry) -> MessageDispatcher (batches per instance) -> each instance's
// cross-process PriorityMessageQueue -> service worker processes (a ServicePool per service) ->
// reply queue -> the same client. HTTP: GET /health, /stats, /routing/stats.
//
//   node examples/gateway/server.mjs [--port 8080] [--workers 2] [--lane-capacity 10000]
//     [--high 0.8] [--low 0.6] [--dedup-window-ms 60000] [--health-interval-ms 30000]
//     [--max-buffered 1048576] [--transport sage|ipc] [--dispatch-flush idle|timer]
// --dispatch-flush: 'timer' (default) cuts a dispatch batch at 100 messages or 10 ms after its
// first; 'idle' also as soon as none is in flight for its instance (MessageDispatcher
// cutWhenIdle; see docs/gateway.md for why it is not the default).
// Prints one JSON line `{"listening":PORT,...}` on stdout when ready. SIGTERM/SIGINT: closes
// cleanly (flushes batches, drains workers, removes every segment).
import { fork } from 'node:child_process';
import { createServer } from 'node:http';
import { fileURLToPath } from 'node:url';
import { WebSocketServer } from 'ws';
import {
  GatewayError, InstanceRegistry, MessageDeduplicator, MessageDispatcher, MessagePriority, RouteTable, ServiceInstance, ServicePool, ServiceRouter, UnifiedMessageHandler,
} from 'sage-queue';

const WORKER = fileURLToPath(new URL('./service-worker.mjs', import.meta.url));

export const DEFAULT_CONFIG = {
  routes: [
    { start: 1000, end: 1999, service: 'logic' },
    { start: 2000, end: 2999, service: 'chat' },
    { start: 3000, end: 3999, service: 'fight' },
    { start: 9000, end: 9999, service: 'gateway' },
  ],
  /** Tokens the example's auth verifier accepts: token -> principal. */
  tokens: { 'token-alice': 'alice', 'token-bob': 'bob', 'token-load': 'load' },
};

function parseArgs(argv) {
  const o = { port: 8080, workers: 2, laneCapacity: 10_000, high: 0.8, low: 0.6, dedupWindowMs: 60_000, healthIntervalMs: 30_000, maxBuffered: 1 << 20, transport: 'sage', dispatchFlush: 'timer' };
  const keys = { '--port': 'port', '--workers': 'workers', '--lane-capacity': 'laneCapacity', '--high': 'high', '--low': 'low', '--dedup-window-ms': 'dedupWindowMs', '--health-interval-ms': 'healthIntervalMs', '--max-buffered': 'maxBuffered' };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--transport') o.transport = argv[++i];
    else if (argv[i] === '--dispatch-flush') o.dispatchFlush = argv[++i];
    else if (keys[argv[i]]) o[keys[argv[i]]] = Number(argv[++i]);
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  if (o.transport !== 'sage' && o.transport !== 'ipc') throw new Error('--transport is sage or ipc');
  if (o.dispatchFlush !== 'idle' && o.dispatchFlush !== 'timer') throw new Error('--dispatch-flush is idle or timer');
  return o;
}

export async function startGateway(opts) {
  const started = Date.now();
  const services = [...new Set(DEFAULT_CONFIG.routes.map((r) => r.service))].filter((s) => s !== 'gateway');
  const table = new RouteTable(DEFAULT_CONFIG.routes);
  const pools = new Map();
  const registry = new InstanceRegistry({
    healthCheckIntervalMs: opts.healthIntervalMs,
    healthCheck: (instance) => pools.get(instance.service)?.isAlive(instance) ?? false,
  });
  const router = new ServiceRouter({ table, registry, cache: { maxEntries: 50_000, ttlMs: 60_000 } });
  const connections = new Map();
  let nextConn = 1;
  const conn = { paused: 0, closedSlow: 0, maxBuffered: 0 };

  // ---- service workers: a ServicePool per service (or the process.send twin)
  if (opts.transport === 'sage') {
    for (const service of services) {
      pools.set(service, new ServicePool({
        service, script: WORKER, workers: opts.workers, registry,
        replies: { codec: 'raw' }, // each reply: the client's connection number (u32 LE), then its frame
        lanes: {
          capacity: opts.laneCapacity,
          backpressure: { highWatermark: opts.high, lowWatermark: opts.low, mode: 'reject' },
          dedup: { windowMs: opts.dedupWindowMs, maxEntries: 200_000 },
        },
      }));
    }
    await Promise.all([...pools.values()].map((p) => p.ready()));
  } else {
    for (const service of services) {
      const children = [];
      for (let index = 0; index < opts.workers; index++) {
        const child = fork(WORKER, [], { env: { ...process.env, GATEWAY_IPC: '1', GATEWAY_IPC_ASSIGNMENT: JSON.stringify({ service, index }) }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
        child.on('message', (replies) => deliverPairs(replies));
        children.push(child);
        registry.register(new ServiceInstance(service, `${service}-${index}`, '127.0.0.1', 0, { index }));
      }
      const dedup = new Map(children.map((_, index) => [`${service}-${index}`, new MessageDeduplicator({ windowMs: opts.dedupWindowMs, maxEntries: 200_000 })]));
      pools.set(service, { ipc: children, dedup, isAlive: (i) => children[i.metadata.index].exitCode === null });
    }
  }
  registry.start();

  // ---- replies back to the client that asked
  // The workers write each reply's frame (JSON text) themselves: the gateway forwards the bytes.
  // A SageQueue reply is a Buffer, the connection number (u32 LE) then the frame; a process.send
  // batch holds [connection number, frame text] pairs.
  function deliver(n, frame) {
    const c = connections.get(n);
    if (c === undefined) return; // the client left
    if (!c.corked) {
      c.corked = true;
      c.cork();
      corked.push(c);
    }
    c.inFlight--;
    c.sendFrame(frame);
  }
  // Each client's socket is corked while its frames of a batch are written, so they leave in one
  // write instead of one syscall per reply.
  const corked = [];
  function uncorkAll() {
    for (const c of corked) {
      c.corked = false;
      c.uncork();
    }
    corked.length = 0;
  }
  let malformedReplies = 0;
  function deliverBuffers(replies) {
    for (const r of replies) {
      if (r.length > 4) deliver(r.readUInt32LE(0), r.subarray(4));
      else malformedReplies++; // not a reply a worker of ours writes: counted (GET /stats), not fatal
    }
    uncorkAll();
  }
  function deliverPairs(replies) {
    for (const [n, frame] of replies) deliver(n, frame);
    uncorkAll();
  }
  // The reply pump: everything the queue holds per pass (one native call), then one turn of the
  // event loop (more replies gather meanwhile); only a pass that finds none waits (getAsync: the
  // native notifier wakes the loop), and what that wake brings is delivered the same way.
  const yieldTurn = () => new Promise((r) => setImmediate(r));
  async function pump(replies) {
    for (;;) {
      const batch = replies.getMany(1024, { block: false });
      if (batch.length > 0) {
        deliverBuffers(batch);
        await yieldTurn();
      } else {
        deliverBuffers([await replies.getAsync()]);
      }
    }
  }
  const pumps = [];
  if (opts.transport === 'sage') {
    for (const pool of pools.values()) pumps.push(pump(pool.replies).catch(() => undefined)); // ends when the pool closes
  }

  // ---- batch dispatch into the instances' priority lanes
  /** A message the lanes did not take ('duplicate' or 'throttled'): the client gets an error. */
  function reportOutcome(instanceId, { c, m }, outcome) {
    c.inFlight--;
    const error = outcome === 'duplicate'
      ? new GatewayError('ERR_DUPLICATE_MESSAGE', `message ${JSON.stringify(m.msgId)} of session ${JSON.stringify(m.session)} was already received within the de-duplication window: dropped`)
      : new GatewayError('ERR_BACKPRESSURE', `${instanceId} is above its high watermark: NORMAL and LOW messages are refused until it drains; retry later or use a higher priority`);
    handler.reportError(c, error, m.msgId, m.id);
  }
  const dispatcher = new MessageDispatcher({
    batchSize: 100, timeoutMs: 10, maxBatches: 10, retryDelayMs: 100, maxRetries: 3, cutWhenIdle: opts.dispatchFlush === 'idle',
    process: async (instanceId, batch) => {
      const service = instanceId.slice(0, instanceId.lastIndexOf('-'));
      const pool = pools.get(service);
      if (opts.transport === 'ipc') {
        // The same de-duplication as the lanes do (a deduplicator per instance, same window), so
        // that the twin is the same gateway with another transport.
        const dedup = pool.dedup.get(instanceId);
        const fresh = [];
        for (const b of batch) {
          if (dedup.isDuplicate(b.dedupId)) reportOutcome(instanceId, b, 'duplicate');
          else fresh.push(b);
        }
        if (fresh.length === 0) return;
        const child = pool.ipc[Number(instanceId.slice(instanceId.lastIndexOf('-') + 1))];
        try {
          await new Promise((resolve, reject) => child.send(fresh.map((b) => [b.c.n, b.m.priority, String(b.frame)]), (e) => (e ? reject(e) : resolve())));
        } catch (e) {
          for (const b of fresh) dedup.forget(b.dedupId); // not delivered: a retry is not a duplicate
          throw e;
        }
        return;
      }
      const outcomes = await pool.queueOf(instanceId).enqueueMany(batch.map((b) => ({ message: [b.c.n, b.m.priority, b.frame], priority: b.m.priority, id: b.dedupId })));
      outcomes.forEach((o, i) => {
        if (o !== 'enqueued') reportOutcome(instanceId, batch[i], o);
      });
    },
    onDeadLetter: (instanceId, batch, error) => {
      for (const { c, m } of batch) {
        c.inFlight--;
        handler.reportError(c, new GatewayError('ERR_DISPATCH_FAILED', `could not hand the message to ${instanceId}: ${error?.message ?? error}`), m.msgId, m.id);
      }
    },
  });

  const handler = new UnifiedMessageHandler({
    router,
    verifyAuth: (token) => (typeof token === 'string' ? DEFAULT_CONFIG.tokens[token] ?? false : false),
    maxFrameBytes: 64 * 1024,
    handleGateway: (m) => (m.id === 9000 ? { connections: connections.size, uptime_s: (Date.now() - started) / 1000 } : { echo: m.body ?? null }),
    // The workers get the client's frame as it came (they parse it), with the connection number
    // and the checked priority: [n, priority, frame].
    dispatch: (m, instance, c, frame) => {
      if (closing) throw new GatewayError('ERR_GATEWAY_CLOSED', 'the gateway is shutting down');
      c.inFlight++;
      return dispatcher.dispatch(instance.instanceId, { c, m, frame, dedupId: `${m.session}:${m.msgId}` }, m.priority === MessagePriority.CRITICAL);
    },
  });

  // ---- HTTP + WebSocket
  const http = createServer((req, res) => {
    const json = (status, body) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.method !== 'GET') return json(405, { error: 'GET only' });
    if (req.url === '/health') {
      const reg = registry.stats().services;
      const healthy = services.every((s) => (reg[s]?.healthy ?? 0) > 0);
      return json(healthy ? 200 : 503, { status: healthy ? 'ok' : 'degraded', uptime_s: (Date.now() - started) / 1000, services: reg, connections: connections.size });
    }
    if (req.url === '/stats') {
      const queues = {};
      if (opts.transport === 'sage') for (const pool of pools.values()) for (const i of pool.instances) queues[i.instanceId] = pool.queueOf(i.instanceId).stats();
      const pids = {};
      for (const [name, pool] of pools) pids[name] = opts.transport === 'sage' ? pool.pool.pids : pool.ipc.map((c) => c.pid);
      let buffered = 0;
      for (const c of connections.values()) buffered += c.ws.bufferedAmount;
      return json(200, {
        gateway: handler.stats(),
        queues,
        dispatcher: dispatcher.stats(),
        connections: { open: connections.size, buffered_bytes: buffered, max_buffered_bytes: conn.maxBuffered, paused: conn.paused, closed_slow: conn.closedSlow },
        malformed_replies: malformedReplies,
        workers: pids,
        memory: process.memoryUsage(),
        transport: opts.transport,
      });
    }
    if (req.url === '/routing/stats') return json(200, router.stats());
    return json(404, { error: 'not found' });
  });
  const wss = new WebSocketServer({ server: http, maxPayload: 1 << 20 });
  wss.on('connection', (ws) => {
    const n = nextConn++;
    let paused = false;
    const c = {
      id: `c${n}`, n, ws, principal: null, inFlight: 0, corked: false,
      // ws has no public cork: its socket's (a net.Socket) batches the frames of one reply batch.
      cork() { ws._socket?.cork(); },
      uncork() { ws._socket?.uncork(); },
      send(reply) {
        c.sendFrame(JSON.stringify(reply));
      },
      /** A JSON text frame (string or UTF-8 bytes). */
      sendFrame(frame) {
        if (ws.readyState !== 1) return;
        // A Buffer is a view of the reply queue's read slab: a client already behind gets a copy,
        // so that frames waiting in its socket never hold whole slabs.
        const data = typeof frame !== 'string' && ws.bufferedAmount > 0 ? Buffer.from(frame) : frame;
        ws.send(data, { binary: false }, () => {
          // written to the socket: resume reading once the client has caught up
          if (paused && ws.bufferedAmount < opts.maxBuffered / 2) {
            paused = false;
            ws.resume();
          }
        });
        const b = ws.bufferedAmount;
        if (b > conn.maxBuffered) conn.maxBuffered = b;
        if (b > opts.maxBuffered * 8) {
          conn.closedSlow++;
          ws.terminate(); // hopelessly behind: drop it rather than grow without bound
        } else if (b > opts.maxBuffered && !paused) {
          paused = true; // a slow reader: stop reading its requests until it catches up
          conn.paused++;
          ws.pause();
        }
      },
    };
    connections.set(n, c);
    // One frame at a time per client, in order; other clients are not held up.
    let chain = Promise.resolve();
    ws.on('message', (data, isBinary) => {
      const frame = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
      chain = chain.then(() => handler.handle(c, frame, isBinary));
    });
    ws.on('close', () => connections.delete(n));
    ws.on('error', () => undefined);
  });

  let closing = false;
  await new Promise((resolve) => http.listen(opts.port, '127.0.0.1', resolve));
  return {
    port: http.address().port,
    pids: () => Object.fromEntries([...pools].map(([n, p]) => [n, opts.transport === 'sage' ? p.pool.pids : p.ipc.map((c) => c.pid)])),
    async close() {
      if (closing) return;
      closing = true;
      for (const c of connections.values()) c.ws.terminate();
      wss.close();
      http.close();
      registry.stop();
      await dispatcher.close();
      router.close();
      if (opts.transport === 'sage') await Promise.all([...pools.values()].map((p) => p.close({ timeoutMs: 5000 })));
      else for (const p of pools.values()) for (const c of p.ipc) c.kill();
      await Promise.race([Promise.all(pumps), new Promise((r) => setTimeout(r, 1000))]);
    },
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const opts = parseArgs(process.argv.slice(2));
  const gw = await startGateway(opts);
  console.log(JSON.stringify({ listening: gw.port, pid: process.pid, transport: opts.transport, workers: gw.pids() }));
  const stop = async () => {
    await gw.close();
    process.exit(0);
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}
