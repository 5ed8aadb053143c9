// A Unix stream socket with length-prefixed frames (u32 little-endian length, then the payload).
// The consumer (the listening side) parses frames out of each chunk it reads and hands every
// message to user code as its own Buffer view (subarray); a frame split across two chunks is
// reassembled by copying just that frame.
//
// stream:
//   each:   one socket.write() per message (a fresh frame Buffer each: header + payload copy)
//   batch:  frames packed into 64 KiB Buffers, one write() per 64 KiB
// ping:     the client writes one frame and waits for the echo.
import * as net from 'node:net';

import { announceReady, reportAndExit, usageSince, usageSnapshot, waitForGo } from '../lib/child-io.mjs';
import { consumeBytes, latencySummary, makeBytes, makeWindow, tally } from '../lib/consume.mjs';

const BATCH_BYTES = 64 * 1024;

/**
 * A frame parser: push(chunk) calls onMessage(view) for every complete message. Keeps at most
 * one partial frame between chunks.
 */
function frameParser(onMessage) {
  let carry = null; // bytes of an incomplete frame (header included)
  return function push(chunk) {
    let off = 0;
    const end = chunk.length;
    if (carry !== null) {
      // Complete the header first, then the body, copying only this one frame.
      if (carry.length < 4) {
        const take = Math.min(4 - carry.length, end);
        carry = Buffer.concat([carry, chunk.subarray(0, take)]);
        off = take;
        if (carry.length < 4) return;
      }
      const len = carry[0] | (carry[1] << 8) | (carry[2] << 16) | (carry[3] << 24);
      const need = 4 + len - carry.length;
      if (end - off < need) {
        carry = Buffer.concat([carry, chunk.subarray(off)]);
        return;
      }
      const whole = Buffer.allocUnsafe(len);
      carry.copy(whole, 0, 4);
      chunk.copy(whole, carry.length - 4, off, off + need);
      off += need;
      carry = null;
      onMessage(whole);
    }
    while (end - off >= 4) {
      const len = chunk[off] | (chunk[off + 1] << 8) | (chunk[off + 2] << 16) | (chunk[off + 3] << 24);
      if (end - off - 4 < len) break;
      onMessage(chunk.subarray(off + 4, off + 4 + len));
      off += 4 + len;
    }
    if (off < end) carry = Buffer.from(chunk.subarray(off)); // a copy: the chunk is not kept
  };
}

function frameOf(payload) {
  const f = Buffer.allocUnsafe(4 + payload.length);
  const len = payload.length;
  f[0] = len & 0xff;
  f[1] = (len >>> 8) & 0xff;
  f[2] = (len >>> 16) & 0xff;
  f[3] = (len >>> 24) & 0xff;
  f.set(payload, 4);
  return f;
}

function listen(path) {
  return new Promise((resolve, reject) => {
    const server = net.createServer({ noDelay: true });
    server.once('error', reject);
    server.listen(path, () => resolve(server));
  });
}

function connect(path) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(path, () => resolve(sock));
    sock.once('error', reject);
  });
}

const drained = (sock) => new Promise((resolve) => sock.once('drain', resolve));

export async function streamConsumer(cfg) {
  const server = await listen(cfg.path);
  const win = makeWindow(cfg.warmMs);
  let usage = usageSnapshot();
  let total = 0;
  const push = frameParser((m) => {
    consumeBytes(m);
    total++;
  });
  server.on('connection', (sock) => {
    server.close(); // one producer; also unlinks the socket path
    sock.on('data', (chunk) => {
      push(chunk);
      win.check(total);
    });
    sock.on('end', () => reportAndExit({ ...win.finish(total), ...tally(), consumer: usageSince(usage, total) }));
  });
  announceReady();
  await waitForGo();
  usage = usageSnapshot();
}

export async function streamProducer(cfg) {
  const sock = await connect(cfg.path);
  announceReady();
  await waitForGo();
  const usage = usageSnapshot();
  const stopAt = performance.now() + cfg.warmMs + cfg.ms;
  const { buf: payload, seq: stamp } = makeBytes(cfg.size);
  let seq = 0;
  let sent = 0;
  if (cfg.mode === 'each') {
    for (;;) {
      for (let i = 0; i < 64; i++) {
        stamp[0] = seq++;
        sent++;
        if (!sock.write(frameOf(payload))) await drained(sock);
      }
      if (performance.now() >= stopAt) break;
    }
  } else {
    const frame = 4 + cfg.size;
    let out = Buffer.allocUnsafeSlow(BATCH_BYTES);
    let at = 0;
    for (;;) {
      for (let i = 0; i < 64; i++) {
        if (at + frame > BATCH_BYTES) {
          // The written Buffer belongs to the socket until it is flushed: start a new one.
          const full = out.subarray(0, at);
          out = Buffer.allocUnsafeSlow(BATCH_BYTES);
          at = 0;
          if (!sock.write(full)) await drained(sock);
        }
        stamp[0] = seq++;
        sent++;
        out[at] = cfg.size & 0xff;
        out[at + 1] = (cfg.size >>> 8) & 0xff;
        out[at + 2] = (cfg.size >>> 16) & 0xff;
        out[at + 3] = (cfg.size >>> 24) & 0xff;
        out.set(payload, at + 4);
        at += frame;
      }
      if (performance.now() >= stopAt) break;
    }
    if (at > 0) sock.write(out.subarray(0, at));
  }
  sock.end(() => reportAndExit({ sent, producer: usageSince(usage, sent) }));
}

export async function pingServer(cfg) {
  const server = await listen(cfg.path);
  let echoed = 0;
  server.on('connection', (sock) => {
    server.close();
    sock.setNoDelay(true);
    const push = frameParser((m) => {
      sock.write(frameOf(m));
      echoed++;
    });
    sock.on('data', push);
    sock.on('end', () => {
      sock.end();
      reportAndExit({ echoed });
    });
  });
  announceReady();
  await waitForGo();
}

export async function pingClient(cfg) {
  const sock = await connect(cfg.path);
  const { buf, seq: stamp } = makeBytes(cfg.size);
  const samples = new Float64Array(1 << 20);
  let n = 0;
  let bad = 0;
  let seq = 0;
  let t0 = 0;
  let warmEnd = 0;
  let stopAt = 0;
  const send = () => {
    stamp[0] = seq;
    t0 = performance.now();
    sock.write(frameOf(buf));
  };
  const push = frameParser((m) => {
    const t1 = performance.now();
    if ((m[0] | (m[1] << 8) | (m[2] << 16) | (m[3] << 24)) >>> 0 !== seq) bad++;
    seq++;
    if (t0 >= warmEnd) samples[n++] = (t1 - t0) * 1000;
    if (t1 >= stopAt || n === samples.length) {
      sock.end(() => reportAndExit({ ...latencySummary(samples, n), outOfOrder: bad }));
      return;
    }
    send();
  });
  sock.on('data', push);
  announceReady();
  await waitForGo();
  warmEnd = performance.now() + cfg.warmMs;
  stopAt = warmEnd + cfg.ms;
  send();
}
