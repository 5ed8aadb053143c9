// Every measurement of `npm run bench`, and the targets computed from them.
//
// A case is one measurement (run once per round). `row` and `col` place it in the human table;
// `id` (row/col) keys it in bench/results/*.json.

export const PAYLOADS = {
  64: { label: '64 B', size: 64, payload: 'bytes' },
  4096: { label: '4 KiB', size: 4096, payload: 'bytes' },
  obj: { label: 'small object', size: 0, payload: 'obj' },
};

/** Messages per batch: 64 KiB of payload per native call / per socket write. */
export const BATCH = { 64: 1024, 4096: 16, obj: 1024 };
/** getMany(max): the slab (64 KiB) bounds what one call returns anyway. */
export const GET_MAX = 1024;

export const THROUGHPUT_ROWS = [
  { row: 'sage-raw-single', label: 'SageQueue raw: put() / get()', cols: ['64', '4096'] },
  { row: 'sage-raw-batch', label: 'SageQueue raw: putMany() / getMany()', cols: ['64', '4096'] },
  { row: 'sage-raw-zero', label: 'SageQueue raw: putMany() / getRawBatch() (zero allocation)', cols: ['64', '4096'] },
  { row: 'sage-raw-ack-single', label: 'SageQueue raw, explicit acks: put() / get() + ack()', cols: ['64'] },
  { row: 'sage-raw-ack-batch', label: 'SageQueue raw, explicit acks: putMany() / getMany() + ackMany()', cols: ['64', '4096'] },
  { row: 'sage-v8-single', label: 'SageQueue v8: put() / get()', cols: ['64', '4096', 'obj'] },
  { row: 'sage-v8-batch', label: 'SageQueue v8: putMany() / getMany()', cols: ['64', '4096', 'obj'] },
  { row: 'sage-records-single', label: 'SageQueue records (default codec): put() / get()', cols: ['obj'] },
  { row: 'sage-records-batch', label: 'SageQueue records (default codec): putMany() / getMany()', cols: ['obj'] },
  { row: 'send-json', label: 'process.send, serialization json', cols: ['64', '4096', 'obj'] },
  { row: 'send-advanced', label: 'process.send, serialization advanced', cols: ['64', '4096', 'obj'] },
  { row: 'unix-each', label: 'Unix socket, one write per message', cols: ['64', '4096'] },
  { row: 'unix-batch', label: 'Unix socket, 64 KiB batched writes', cols: ['64', '4096'] },
  { row: 'cpp-single', label: 'C++ ring alone, one message per call', cols: ['64', '4096'] },
  { row: 'cpp-batch', label: 'C++ ring alone, batched calls', cols: ['64', '4096'] },
];

export const LATENCY_ROWS = [
  { row: 'sage-sync-default', label: 'SageQueue put() / get(true), default spinUs (50): spins, then sleeps' },
  { row: 'sage-sync-spin0', label: 'SageQueue put() / get(true), spinUs 0: sleeps at once' },
  { row: 'sage-async-default', label: 'SageQueue putAsync() / getAsync(), default spinUs (50)' },
  { row: 'sage-async-spin0', label: 'SageQueue putAsync() / getAsync(), spinUs 0' },
  { row: 'sage-ack-sync', label: 'SageQueue job with an explicit ack: put() / get(true), ack(), reply put() (default spinUs)' },
  { row: 'send-json', label: 'process.send, serialization json' },
  { row: 'send-advanced', label: 'process.send, serialization advanced' },
  { row: 'unix', label: 'Unix socket, one write per message' },
  { row: 'cpp-default', label: 'C++ ring alone, blocking get, default spin (50 µs)' },
  { row: 'cpp-spin0', label: 'C++ ring alone, blocking get, spin 0' },
];

function throughputCase(row, col, t) {
  const p = PAYLOADS[col];
  const base = { id: `throughput/${row}/${col}`, group: 'throughput', kind: 'stream', row, col, size: p.size, payload: p.payload, warmMs: t.warmMs, ms: t.ms };
  switch (row) {
    case 'sage-raw-single':
      return { ...base, transport: 'sage', codec: 'raw', mode: 'single' };
    case 'sage-raw-batch':
      return { ...base, transport: 'sage', codec: 'raw', mode: 'batch', batch: BATCH[col], getMax: GET_MAX };
    case 'sage-raw-zero':
      return { ...base, transport: 'sage', codec: 'raw', mode: 'zero', batch: BATCH[col], getMax: GET_MAX };
    case 'sage-raw-ack-single':
      return { ...base, transport: 'sage', codec: 'raw', mode: 'single', ack: true };
    case 'sage-raw-ack-batch':
      return { ...base, transport: 'sage', codec: 'raw', mode: 'batch', batch: BATCH[col], getMax: GET_MAX, ack: true };
    case 'sage-v8-single':
      return { ...base, transport: 'sage', codec: 'v8', mode: 'single' };
    case 'sage-v8-batch':
      return { ...base, transport: 'sage', codec: 'v8', mode: 'batch', batch: BATCH[col], getMax: GET_MAX };
    case 'sage-records-single':
      return { ...base, transport: 'sage', codec: 'records', mode: 'single' };
    case 'sage-records-batch':
      return { ...base, transport: 'sage', codec: 'records', mode: 'batch', batch: BATCH[col], getMax: GET_MAX };
    case 'send-json':
      return { ...base, transport: 'process-send', serialization: 'json' };
    case 'send-advanced':
      return { ...base, transport: 'process-send', serialization: 'advanced' };
    case 'unix-each':
      return { ...base, transport: 'unix-socket', mode: 'each' };
    case 'unix-batch':
      return { ...base, transport: 'unix-socket', mode: 'batch' };
    case 'cpp-single':
      return { ...base, transport: 'cpp', batch: 1 };
    case 'cpp-batch':
      return { ...base, transport: 'cpp', batch: BATCH[col] };
    default:
      throw new Error(`unknown row ${row}`);
  }
}

function latencyCase(row, t) {
  const base = { id: `latency/${row}`, group: 'latency', kind: 'ping', row, col: '64', size: 64, payload: 'bytes', warmMs: t.pingWarmMs, ms: t.pingMs };
  switch (row) {
    case 'sage-sync-default':
      return { ...base, transport: 'sage', codec: 'raw', api: 'sync' };
    case 'sage-sync-spin0':
      return { ...base, transport: 'sage', codec: 'raw', api: 'sync', spinUs: 0 };
    case 'sage-async-default':
      return { ...base, transport: 'sage', codec: 'raw', api: 'async' };
    case 'sage-async-spin0':
      return { ...base, transport: 'sage', codec: 'raw', api: 'async', spinUs: 0 };
    case 'sage-ack-sync':
      return { ...base, transport: 'sage', codec: 'raw', api: 'sync', ack: true };
    case 'send-json':
      return { ...base, transport: 'process-send', serialization: 'json' };
    case 'send-advanced':
      return { ...base, transport: 'process-send', serialization: 'advanced' };
    case 'unix':
      return { ...base, transport: 'unix-socket' };
    case 'cpp-default':
      return { ...base, transport: 'cpp' };
    case 'cpp-spin0':
      return { ...base, transport: 'cpp', spinUs: 0 };
    default:
      throw new Error(`unknown row ${row}`);
  }
}

/**
 * All cases in run order. Each payload size runs its transports back to back, so the figures a
 * ratio compares are measured close together in time.
 */
export function buildCases(t) {
  const cases = [];
  for (const col of ['64', '4096', 'obj']) {
    for (const r of THROUGHPUT_ROWS) if (r.cols.includes(col)) cases.push(throughputCase(r.row, col, t));
  }
  for (const r of LATENCY_ROWS) cases.push(latencyCase(r.row, t));
  return cases;
}

const tp = (row, col) => ({ id: `throughput/${row}/${col}`, metric: 'msgsPerSec' });
const lat = (row) => ({ id: `latency/${row}`, metric: 'p50Us' });
const wakes = (row, col) => ({ id: `throughput/${row}/${col}`, metric: 'wakesPerMsg' });

/**
 * The targets. ratio = num / den, computed within each round and reported as the median
 * over rounds. `value` targets compare one figure to a bound.
 */
export const TARGETS = [
  { key: 'batched-raw-64-vs-unix-batched', label: 'batched raw 64 B vs batched Unix socket', num: tp('sage-raw-batch', '64'), den: tp('unix-batch', '64'), op: '>', bound: 1.0 },
  { key: 'batched-raw-64-vs-cpp', label: 'batched raw 64 B vs C++-only ring (batched)', num: tp('sage-raw-batch', '64'), den: tp('cpp-batch', '64'), op: '>=', bound: 0.25 },
  { key: 'zero-alloc-raw-64-vs-cpp', label: 'zero-allocation batched raw 64 B (getRawBatch) vs C++-only ring (batched)', num: tp('sage-raw-zero', '64'), den: tp('cpp-batch', '64'), op: '>=', bound: 0.35 },
  { key: 'single-raw-64-vs-cpp-single', label: 'single-call raw 64 B vs C++-only ring (single calls)', num: tp('sage-raw-single', '64'), den: tp('cpp-single', '64'), op: '>=', bound: 0.4 },
  { key: 'single-raw-64-vs-unix-each', label: 'single-call raw 64 B vs Unix socket, one write per message', num: tp('sage-raw-single', '64'), den: tp('unix-each', '64'), op: '>=', bound: 3 },
  { key: 'batched-raw-4k-vs-unix-batched', label: 'batched raw 4 KiB vs batched Unix socket', num: tp('sage-raw-batch', '4096'), den: tp('unix-batch', '4096'), op: '>=', bound: 2 },
  { key: 'pingpong-p50-vs-send-json', label: 'ping-pong p50: process.send json ÷ SageQueue (sync, default)', num: lat('send-json'), den: lat('sage-sync-default'), op: '>=', bound: 5 },
  { key: 'pingpong-p50-vs-send-advanced', label: 'ping-pong p50: process.send advanced ÷ SageQueue (sync, default)', num: lat('send-advanced'), den: lat('sage-sync-default'), op: '>=', bound: 5 },
  { key: 'pingpong-p50-vs-unix', label: 'ping-pong p50: Unix socket ÷ SageQueue (sync, default)', num: lat('unix'), den: lat('sage-sync-default'), op: '>=', bound: 5 },
  { key: 'async-p50-vs-sync', label: 'ping-pong p50: SageQueue async ÷ sync (default spin)', num: lat('sage-async-default'), den: lat('sage-sync-default'), op: '<=', bound: 2 },
  { key: 'batched-records-obj-vs-send-json', label: 'batched records (default codec) small object vs process.send json', num: tp('sage-records-batch', 'obj'), den: tp('send-json', 'obj'), op: '>=', bound: 3 },
  { key: 'single-records-obj-vs-send-json', label: 'single-call records (default codec) small object vs process.send json', num: tp('sage-records-single', 'obj'), den: tp('send-json', 'obj'), op: '>=', bound: 2 },
  { key: 'wakes-per-msg-single-64', label: 'FUTEX_WAKE calls per message, raw 64 B single-call stream', value: wakes('sage-raw-single', '64'), op: '<', bound: 0.01 },
  { key: 'batched-ack-64-vs-auto', label: 'batched raw 64 B with explicit acks (getMany + ackMany) vs auto acks (getMany)', num: tp('sage-raw-ack-batch', '64'), den: tp('sage-raw-batch', '64'), op: '>=', bound: 0.5 },
  { key: 'ack-pingpong-p50-vs-send-json', label: 'job round trip p50: process.send json ÷ SageQueue with an explicit ack', num: lat('send-json'), den: lat('sage-ack-sync'), op: '>=', bound: 3 },
  { key: 'wakes-per-msg-batched-64', label: 'FUTEX_WAKE calls per message, raw 64 B batched stream', value: wakes('sage-raw-batch', '64'), op: '<', bound: 0.01 },
];

/** Same-run comparisons worth seeing, without a target. */
export const INFO_RATIOS = [
  { key: 'batched-ack-4k-vs-auto', label: 'batched raw 4 KiB with explicit acks vs auto acks', num: tp('sage-raw-ack-batch', '4096'), den: tp('sage-raw-batch', '4096') },
  { key: 'single-ack-64-vs-auto', label: 'single-call raw 64 B with explicit acks (get + ack) vs auto acks (get)', num: tp('sage-raw-ack-single', '64'), den: tp('sage-raw-single', '64') },
  { key: 'ack-pingpong-p50-vs-send-advanced', label: 'job round trip p50: process.send advanced ÷ SageQueue with an explicit ack', num: lat('send-advanced'), den: lat('sage-ack-sync') },
  { key: 'ack-pingpong-p50-vs-sync', label: 'ping-pong p50: SageQueue with an explicit ack ÷ without (sync, default)', num: lat('sage-ack-sync'), den: lat('sage-sync-default') },
  { key: 'async-p50-vs-unix', label: 'ping-pong p50: Unix socket ÷ SageQueue async (default spin)', num: lat('unix'), den: lat('sage-async-default') },
  { key: 'sync-spin0-p50-vs-unix', label: 'ping-pong p50: Unix socket ÷ SageQueue sync, spinUs 0', num: lat('unix'), den: lat('sage-sync-spin0') },
  { key: 'batched-raw-4k-vs-cpp', label: 'batched raw 4 KiB vs C++-only ring (batched)', num: tp('sage-raw-batch', '4096'), den: tp('cpp-batch', '4096') },
  { key: 'batched-v8-64-vs-send-advanced', label: 'batched v8 64 B vs process.send advanced 64 B', num: tp('sage-v8-batch', '64'), den: tp('send-advanced', '64') },
  { key: 'batched-v8-obj-vs-send-json', label: 'batched v8 small object vs process.send json small object', num: tp('sage-v8-batch', 'obj'), den: tp('send-json', 'obj') },
  { key: 'single-v8-obj-vs-send-json', label: 'single-call v8 small object vs process.send json small object', num: tp('sage-v8-single', 'obj'), den: tp('send-json', 'obj') },
];
