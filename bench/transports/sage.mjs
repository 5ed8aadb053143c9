// SageQueue between two processes. The queue segments are created (and always removed) by
// bench/run.mjs; the children only open them.
//
// stream: the producer puts for warm+measure ms, then closes the queue; the consumer takes until
//         the queue reports closed-and-drained.
//   single:  put(item) / get()                        one native call per message each side
//   batch:   putMany(items) / getMany(getMax)          one native call per batch each side
//   zero:    putMany(items) / getRawBatch(getMax)      as batch; the consumer reads records in
//            place through offsets/lengths (no allocation per message)
//   cfg.ack: the queue has explicit acks; the consumer acks each message after consuming it
//            (single: get() + ack(); batch: getMany() + one ackMany() for the batch)
// ping:   the client puts on <name>.a and waits on <name>.b; the server echoes.
//   cfg.ack: <name>.a has explicit acks: the server gets the job, acks it, then replies
//   sync:    put() / get(true)  (get spins spinUs, then sleeps on a futex)
//   async:   putAsync() / getAsync()  (the event loop polls for spinUs, then a native thread waits
//            and wakes the loop)
import { SageQueue, QueueClosedError } from '../../dist/index.mjs';

import { announceReady, reportAndExit, usageSince, usageSnapshot, waitForGo } from '../lib/child-io.mjs';
import { consumeAt, consumerFor, latencySummary, makeBytes, makeObject, makeWindow, tally } from '../lib/consume.mjs';

/** explicit: open the queue in explicit-ack mode (cfg.ack, and not a reply queue). */
function openOpts(cfg, explicit = false) {
  const o = cfg.spinUs === undefined ? {} : { spinUs: cfg.spinUs };
  // maxUnacked above getMax: a getMany is never cut short by the handle's unacked limit.
  return explicit ? { ...o, ackMode: 'explicit', maxUnacked: 4096 } : o;
}

export async function streamProducer(cfg) {
  const q = SageQueue.open(cfg.name, openOpts(cfg, cfg.ack));
  announceReady();
  await waitForGo();
  const usage = usageSnapshot();
  const stopAt = performance.now() + cfg.warmMs + cfg.ms;
  let seq = 0;
  let sent = 0;
  if (cfg.payload === 'obj') {
    if (cfg.mode === 'single') {
      for (;;) {
        for (let i = 0; i < 256; i++) q.put(makeObject(seq++));
        sent += 256;
        if (performance.now() >= stopAt) break;
      }
    } else {
      const items = new Array(cfg.batch);
      for (;;) {
        for (let i = 0; i < cfg.batch; i++) items[i] = makeObject(seq++);
        q.putMany(items);
        sent += cfg.batch;
        if (performance.now() >= stopAt) break;
      }
    }
  } else if (cfg.mode === 'single') {
    const { buf, seq: stamp } = makeBytes(cfg.size);
    for (;;) {
      for (let i = 0; i < 256; i++) {
        stamp[0] = seq++;
        q.put(buf);
      }
      sent += 256;
      if (performance.now() >= stopAt) break;
    }
  } else {
    // putMany copies every item into the segment, so the same Buffers are restamped each batch.
    const bufs = [];
    const stamps = [];
    for (let i = 0; i < cfg.batch; i++) {
      const b = makeBytes(cfg.size);
      bufs.push(b.buf);
      stamps.push(b.seq);
    }
    for (;;) {
      for (let i = 0; i < cfg.batch; i++) stamps[i][0] = seq++;
      q.putMany(bufs);
      sent += cfg.batch;
      if (performance.now() >= stopAt) break;
    }
  }
  q.close();
  const producer = usageSince(usage, sent);
  q.release();
  reportAndExit({ sent, producer });
}

export async function streamConsumer(cfg) {
  const q = SageQueue.open(cfg.name, openOpts(cfg, cfg.ack));
  const consume = consumerFor(cfg.payload);
  const win = makeWindow(cfg.warmMs);
  announceReady();
  await waitForGo();
  const usage = usageSnapshot();
  let total = 0;
  if (cfg.ack && cfg.mode === 'single') {
    for (;;) {
      let m;
      try {
        m = q.get();
      } catch (e) {
        if (e instanceof QueueClosedError) break;
        throw e;
      }
      consume(m.value);
      m.ack();
      if ((++total & 255) === 0) win.check(total);
    }
  } else if (cfg.ack) {
    const max = cfg.getMax;
    for (;;) {
      let batch;
      try {
        batch = q.getMany(max);
      } catch (e) {
        if (e instanceof QueueClosedError) break;
        throw e;
      }
      for (let i = 0; i < batch.length; i++) consume(batch[i].value);
      if (q.ackMany(batch) !== batch.length) throw new Error('ackMany acked fewer messages than the batch held');
      total += batch.length;
      win.check(total);
    }
  } else if (cfg.mode === 'single') {
    for (;;) {
      let m;
      try {
        m = q.get();
      } catch (e) {
        if (e instanceof QueueClosedError) break;
        throw e;
      }
      consume(m);
      if ((++total & 255) === 0) win.check(total);
    }
  } else if (cfg.mode === 'zero') {
    const max = cfg.getMax;
    for (;;) {
      let batch;
      try {
        batch = q.getRawBatch(max);
      } catch (e) {
        if (e instanceof QueueClosedError) break;
        throw e;
      }
      const { buffer, offsets, lengths, count } = batch;
      for (let i = 0; i < count; i++) consumeAt(buffer, offsets[i], lengths[i]);
      total += count;
      win.check(total);
    }
  } else {
    const max = cfg.getMax;
    for (;;) {
      let batch;
      try {
        batch = q.getMany(max);
      } catch (e) {
        if (e instanceof QueueClosedError) break;
        throw e;
      }
      for (let i = 0; i < batch.length; i++) consume(batch[i]);
      total += batch.length;
      win.check(total);
    }
  }
  const res = win.finish(total);
  const consumer = usageSince(usage, total);
  const st = q.stats();
  q.release();
  reportAndExit({
    ...res,
    ...tally(),
    wakeCalls: st.wakeCalls,
    waits: st.waits,
    enqueued: st.enqueued,
    dequeued: st.dequeued,
    consumer,
  });
}

export async function pingClient(cfg) {
  const out = SageQueue.open(`${cfg.name}.a`, openOpts(cfg, cfg.ack));
  const back = SageQueue.open(`${cfg.name}.b`, openOpts(cfg));
  const { buf, seq: stamp } = makeBytes(cfg.size);
  const samples = new Float64Array(1 << 20);
  let n = 0;
  let bad = 0;
  let seq = 0;
  announceReady();
  await waitForGo();
  const start = performance.now();
  const warmEnd = start + cfg.warmMs;
  const stopAt = warmEnd + cfg.ms;
  for (;;) {
    stamp[0] = seq;
    const t0 = performance.now();
    let r;
    if (cfg.api === 'async') {
      await out.putAsync(buf);
      r = await back.getAsync();
    } else {
      out.put(buf);
      r = back.get();
    }
    const t1 = performance.now();
    if ((r[0] | (r[1] << 8) | (r[2] << 16) | (r[3] << 24)) >>> 0 !== seq) bad++;
    seq++;
    if (t0 >= warmEnd) samples[n++] = (t1 - t0) * 1000;
    if (t1 >= stopAt || n === samples.length) break;
  }
  out.close();
  const st = out.stats();
  const sb = back.stats();
  out.release();
  back.release();
  reportAndExit({
    ...latencySummary(samples, n),
    outOfOrder: bad,
    wakeCalls: st.wakeCalls + sb.wakeCalls,
    waits: st.waits + sb.waits,
  });
}

export async function pingServer(cfg) {
  const inq = SageQueue.open(`${cfg.name}.a`, openOpts(cfg, cfg.ack));
  const outq = SageQueue.open(`${cfg.name}.b`, openOpts(cfg));
  announceReady();
  await waitForGo();
  let echoed = 0;
  for (;;) {
    let m;
    try {
      m = cfg.api === 'async' ? await inq.getAsync() : inq.get();
    } catch (e) {
      if (e instanceof QueueClosedError) break;
      throw e;
    }
    if (cfg.ack) {
      m.ack();
      outq.put(m.value);
    } else if (cfg.api === 'async') await outq.putAsync(m);
    else outq.put(m);
    echoed++;
  }
  inq.release();
  outq.release();
  reportAndExit({ echoed });
}
