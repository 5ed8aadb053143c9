#!/usr/bin/env node
// Load generator for the example gateway: N WebSocket clients, each authenticates and keeps
// `--window` business messages in flight for `--ms` milliseconds; prints msgs/s and the p50/p99
// round-trip latency as one JSON line. Used by bench/gateway.mjs.
//   node examples/gateway/load.mjs --port PORT [--clients 8] [--ms 3000] [--window 64] [--warm-ms N]
// --warm-ms: how long the clients run before measuring (default min(500, ms / 4)).
import WebSocket from 'ws';

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), Number(all[i + 1])]] : acc), []));
const { port, clients = 8, ms = 3000, window = 64 } = args;
const warmMs = args['warm-ms'] ?? Math.min(500, ms / 4);
if (!port) throw new Error('--port is required');

const lat = [];
let done = 0;
let measuring = false;
const ids = [1001, 2001, 3001];

async function client(n) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}`);
  await new Promise((r, j) => { ws.once('open', r); ws.once('error', j); });
  const sent = new Map();
  let seq = 0;
  const fire = () => {
    const msgId = `${n}-${seq++}`;
    sent.set(msgId, performance.now());
    ws.send(JSON.stringify({ id: ids[seq % 3], msgId, session: `user-${n}-${seq % 16}`, body: { seq } }));
  };
  await new Promise((resolve) => {
    ws.on('message', (d) => {
      const r = JSON.parse(String(d));
      if (r.type === 'auth_ok') {
        for (let i = 0; i < window; i++) fire();
        return resolve();
      }
      const t = sent.get(r.msgId);
      if (t === undefined) return;
      sent.delete(r.msgId);
      if (measuring) {
        done++;
        if (lat.length < 200_000) lat.push(performance.now() - t);
      }
      if (!stopped) fire();
    });
    ws.send(JSON.stringify({ type: 'auth', msgId: 'auth', body: { token: 'token-load' } }));
  });
  return ws;
}

let stopped = false;
const sockets = await Promise.all(Array.from({ length: clients }, (_, i) => client(i)));
await new Promise((r) => setTimeout(r, warmMs)); // warm-up
measuring = true;
const t0 = performance.now();
await new Promise((r) => setTimeout(r, ms));
const elapsed = (performance.now() - t0) / 1000;
measuring = false;
stopped = true;
lat.sort((a, b) => a - b);
const q = (p) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] : NaN);
console.log(JSON.stringify({ clients, window, msgsPerSec: done / elapsed, p50Ms: q(0.5), p99Ms: q(0.99), samples: lat.length }));
for (const ws of sockets) ws.terminate();
