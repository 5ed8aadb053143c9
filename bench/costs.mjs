#!/usr/bin/env node
// Per-message cost breakdown of SageQueue's data path, in ONE process (no cross-core traffic, hot
// caches): what each layer adds -- the native call, the copy, the slab, the view, the codec, the
// TypeScript wrapper. Used to explain where the time goes when a `npm run bench` target is
// missed; not part of the comparison table.
//
//   node bench/costs.mjs [--json]
import * as v8 from 'node:v8';
import { createRequire } from 'node:module';

import { SageQueue } from '../dist/index.mjs';

const require = createRequire(import.meta.url);
const { native } = require('../dist/native/index.js');

const SLAB = 64 * 1024;
const name = `bench-costs-${process.pid}`;
const results = [];

function best(fn, rounds = 7) {
  // Median of rounds of ns/op; fn returns [elapsedMs, ops].
  const v = [];
  for (let r = 0; r < rounds; r++) {
    const [ms, ops] = fn();
    v.push((ms * 1e6) / ops);
  }
  v.sort((a, b) => a - b);
  return v[v.length >> 1];
}

function record(size, what, ns) {
  results.push({ size, what, nsPerMsg: Math.round(ns * 10) / 10 });
}

function main() {
  const addon = native();
  const sq = SageQueue.create(name, { codec: 'raw', capacity: 4 << 20 });
  const nq = new addon.NativeQueue(name, 'open', {}, () => {}, 1000);
  const lengths = new Uint32Array(4096);
  const reused = Buffer.allocUnsafeSlow(SLAB);
  try {
    const drain = () => {
      while (nq.tryGetBatch(reused, 0, lengths, 4096) > 0);
    };
    record(0, 'bare Node-API call on the handle (qsize)', best(() => {
      const t = performance.now();
      for (let i = 0; i < 200000; i++) nq.qsize();
      return [performance.now() - t, 200000];
    }));
    for (const size of [64, 4096]) {
      const batch = size === 64 ? 1024 : 16;
      const msg = Buffer.alloc(size, 7);
      const packed = Buffer.alloc(size * batch, 7);
      const lens = new Uint32Array(batch).fill(size);
      const perRound = size === 64 ? 8192 : 256;

      record(size, 'native tryPut, one message per call', best(() => {
        let ms = 0;
        for (let k = 0; k < 8; k++) {
          const t = performance.now();
          for (let i = 0; i < perRound; i++) nq.tryPut(msg);
          ms += performance.now() - t;
          drain();
        }
        return [ms, 8 * perRound];
      }));
      record(size, `native tryPutBatch, ${batch} per call`, best(() => {
        let ms = 0;
        for (let k = 0; k < 8; k++) {
          const t = performance.now();
          for (let i = 0; i < perRound / batch; i++) nq.tryPutBatch(packed, lens, batch);
          ms += performance.now() - t;
          drain();
        }
        return [ms, 8 * perRound];
      }));
      const fill = () => {
        for (let i = 0; i < perRound / batch; i++) nq.tryPutBatch(packed, lens, batch);
      };
      record(size, 'native tryGet into a reused slab, one per call', best(() => {
        let ms = 0;
        for (let k = 0; k < 8; k++) {
          fill();
          const t = performance.now();
          for (let i = 0; i < perRound; i++) nq.tryGet(reused, 0);
          ms += performance.now() - t;
        }
        return [ms, 8 * perRound];
      }));
      record(size, `native tryGetBatch into a reused 64 KiB slab`, best(() => {
        let ms = 0;
        for (let k = 0; k < 8; k++) {
          fill();
          const t = performance.now();
          let got = 0;
          while (got < perRound) got += nq.tryGetBatch(reused, 0, lengths, 4096);
          ms += performance.now() - t;
        }
        return [ms, 8 * perRound];
      }));
      record(size, `native tryGetBatch into a fresh 64 KiB slab per call (as getMany does)`, best(() => {
        let ms = 0;
        for (let k = 0; k < 8; k++) {
          fill();
          const t = performance.now();
          let got = 0;
          while (got < perRound) got += nq.tryGetBatch(Buffer.allocUnsafeSlow(SLAB), 0, lengths, 4096);
          ms += performance.now() - t;
        }
        return [ms, 8 * perRound];
      }));
      // What a getMany-like loop pays per message for the view it hands out, with a fresh slab
      // per call as getMany has (GC timing changes the slab's cost; views make GCs frequent).
      const viewLoop = (label, makeView) =>
        record(size, `fresh slab + tryGetBatch + ${label} per message`, best(() => {
          let ms = 0;
          let sink = 0;
          for (let k = 0; k < 8; k++) {
            fill();
            const t = performance.now();
            let got = 0;
            while (got < perRound) {
              const s = Buffer.allocUnsafeSlow(SLAB);
              const n = nq.tryGetBatch(s, 0, lengths, 4096);
              let off = 0;
              for (let i = 0; i < n; i++) {
                const v = makeView(s, off, lengths[i]);
                sink += v[0];
                off += lengths[i];
              }
              got += n;
            }
            ms += performance.now() - t;
          }
          return [ms, 8 * perRound + (sink & 0)];
        }));
      viewLoop('Buffer#subarray view (what SageQueue does)', (s, off, len) => s.subarray(off, off + len));
      viewLoop('Buffer.from(arrayBuffer, offset, length) view', (s, off, len) => Buffer.from(s.buffer, s.byteOffset + off, len));
      viewLoop('new Uint8Array(arrayBuffer, offset, length) view', (s, off, len) => new Uint8Array(s.buffer, s.byteOffset + off, len));
      record(size, 'Buffer.allocUnsafeSlow(64 KiB) + 64 KiB copy into it, per message share', best(() => {
        const src = Buffer.alloc(SLAB, 1);
        const n = 2000;
        const t = performance.now();
        for (let i = 0; i < n; i++) src.copy(Buffer.allocUnsafeSlow(SLAB));
        return [performance.now() - t, (n * SLAB) / size];
      }));
      record(size, 'subarray view per message', best(() => {
        const n = 1 << 18;
        let x = 0;
        const t = performance.now();
        for (let i = 0; i < n; i++) x += reused.subarray(i & 1023, (i & 1023) + size).length;
        return [performance.now() - t, n + (x & 0)];
      }));
      const staging = Buffer.allocUnsafeSlow(SLAB);
      const one = Array.from({ length: batch }, () => Buffer.alloc(size, 7));
      record(size, `pack ${batch} Buffers into a staging Buffer (set) + tryPutBatch`, best(() => {
        let ms = 0;
        for (let k = 0; k < 8; k++) {
          const t = performance.now();
          for (let i = 0; i < perRound / batch; i++) {
            let at = 0;
            for (let j = 0; j < batch; j++) {
              staging.set(one[j], at);
              lens[j] = size;
              at += size;
            }
            nq.tryPutBatch(staging, lens, batch);
          }
          ms += performance.now() - t;
          drain();
        }
        return [ms, 8 * perRound];
      }));
      record(size, 'SageQueue put()', best(() => {
        let ms = 0;
        for (let k = 0; k < 8; k++) {
          const t = performance.now();
          for (let i = 0; i < perRound; i++) sq.put(msg);
          ms += performance.now() - t;
          drain();
        }
        return [ms, 8 * perRound];
      }));
      record(size, 'SageQueue get() (non-empty queue)', best(() => {
        let ms = 0;
        for (let k = 0; k < 8; k++) {
          fill();
          const t = performance.now();
          for (let i = 0; i < perRound; i++) sq.get();
          ms += performance.now() - t;
        }
        return [ms, 8 * perRound];
      }));
      const items = Array.from({ length: batch }, () => Buffer.alloc(size, 7));
      record(size, `SageQueue putMany(${batch} Buffers)`, best(() => {
        let ms = 0;
        for (let k = 0; k < 8; k++) {
          const t = performance.now();
          for (let i = 0; i < perRound / batch; i++) sq.putMany(items);
          ms += performance.now() - t;
          drain();
        }
        return [ms, 8 * perRound];
      }));
      record(size, 'SageQueue getMany(1024)', best(() => {
        let ms = 0;
        for (let k = 0; k < 8; k++) {
          fill();
          const t = performance.now();
          let got = 0;
          while (got < perRound) got += sq.getMany(1024).length;
          ms += performance.now() - t;
        }
        return [ms, 8 * perRound];
      }));
      record(size, 'v8.serialize + v8.deserialize of the Buffer', best(() => {
        const n = size === 64 ? 20000 : 5000;
        const t = performance.now();
        for (let i = 0; i < n; i++) v8.deserialize(v8.serialize(msg));
        return [performance.now() - t, n];
      }));
    }
  } finally {
    nq.release();
    sq.destroy();
  }
}

main();
if (process.argv.includes('--json')) {
  process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
} else {
  console.log('| Size | Operation (one process, hot caches) | ns per message |');
  console.log('|---:|---|---:|');
  for (const r of results) console.log(`| ${r.size || '—'} | ${r.what} | ${r.nsPerMsg} |`);
}
