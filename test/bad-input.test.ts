/**
 * The bad-input matrix (issue 6): every public function of the package against wrong types,
 * out-of-range numbers, NaN/Infinity, huge and empty strings, invalid names, non-serialisable
 * items, oversized messages, and calls after close/release/destroy. Table-driven: each row is one
 * call and the stable `code` it must fail with. After every row the fixture queues are drained and
 * compared with what they held before (a failed call changes nothing), and no segment may be left
 * behind by a failed create. Promise-returning calls must reject, never throw synchronously.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import {
  ArgumentRangeError,
  BaseRouter,
  Connection,
  InvalidArgumentTypeError,
  InvalidArgumentValueError,
  LocalQueue,
  Packet,
  QueueDescriptor,
  SageQueue,
  SageQueueError,
  WorkerPool,
  shmQueueDescriptor,
  forgetResolved,
  getLocalQueue,
  sageQueueDescriptor,
  HashRing,
  joinWorkerPool,
  registerQueueImplementation,
  resolveDescriptor,
  stableHash,
  unregisterQueueImplementation,
} from '../lib/index';

const REPO = path.resolve(__dirname, '..');
const CLI = path.join(REPO, 'dist', 'cli', 'main.js');
const PREFIX = `bi-${process.pid}`;

// --- codes ----------------------------------------------------------------------------------------
const TYPE = 'ERR_INVALID_ARG_TYPE';
const RANGE = 'ERR_OUT_OF_RANGE';
const VALUE = 'ERR_INVALID_ARG_VALUE';
const NAME = 'ERR_INVALID_QUEUE_NAME';
const SERIAL = 'ERR_SERIALIZATION';
const TOO_LARGE = 'ERR_MESSAGE_TOO_LARGE';
const RELEASED = 'ERR_QUEUE_RELEASED';
const CLOSED = 'ERR_QUEUE_CLOSED';
const DESC = 'ERR_INVALID_DESCRIPTOR';
const UNSUPPORTED = 'ERR_UNSUPPORTED_QUEUE_TYPE';

// --- bad values -----------------------------------------------------------------------------------
type Named = [string, unknown];
const circular: Record<string, unknown> = {};
circular.self = circular;

const NOT_STRINGS: Named[] = [
  ['undefined', undefined], ['null', null], ['a number', 42], ['NaN', NaN], ['an object', {}], ['an array', ['q']],
  ['a boolean', true], ['a symbol', Symbol('s')], ['a bigint', 1n], ['a function', () => 'q'], ['a Buffer', Buffer.from('q')],
];
const BAD_NAMES: Array<[string, string]> = [
  ['empty', ''], ['"../x"', '../x'], ['"a/b"', 'a/b'], ['10k chars', 'x'.repeat(10_000)], ['a NUL', 'a\0b'], ['".."', '..'],
  ['"."', '.'], ['a space', 'a b'], ['non-ASCII', 'qué'], ['201 chars', 'a'.repeat(201)], ['a newline', 'a\nb'], ['"/abs"', '/abs'],
];
/** Not integers in range for a count/size option: [label, value, code]. */
const BAD_INTS: Array<[string, unknown, string]> = [
  ['-1', -1, RANGE], ['1.5', 1.5, RANGE], ['NaN', NaN, RANGE], ['Infinity', Infinity, RANGE], ['-Infinity', -Infinity, RANGE],
  ['2**53', 2 ** 53, RANGE], ['a numeric string', '5', TYPE], ['an object', {}, TYPE], ['null', null, TYPE], ['a bigint', 5n, TYPE],
];
const BAD_TIMEOUTS: Array<[string, unknown, string]> = [
  ['-1', -1, RANGE], ['NaN', NaN, RANGE], ['Infinity', Infinity, RANGE], ['-Infinity', -Infinity, RANGE],
  ['a numeric string', '5', TYPE], ['an object', {}, TYPE], ['a boolean', true, TYPE], ['a bigint', 5n, TYPE],
];
const BAD_BOOLEANS: Named[] = [['1', 1], ['"yes"', 'yes'], ['null', null], ['an object', {}]];
const BAD_OPTIONS: Named[] = [['a number', 42], ['a string', 'x'], ['an array', []], ['null', null], ['a function', () => ({})], ['an unknown key', { bogus: 1 }]];

// --- fixtures -------------------------------------------------------------------------------------
interface Fixtures {
  v8: SageQueue<unknown>;
  json: SageQueue<unknown>;
  raw: SageQueue<Buffer | string>;
  msgpack: SageQueue<unknown>;
  /** Created without a codec option: the default, records. */
  records: SageQueue<unknown>;
  local: LocalQueue<unknown>;
  full: LocalQueue<unknown>;
  empty: LocalQueue<unknown>;
  names: { v8: string; json: string; raw: string };
  router: BaseRouter;
  conn: Connection;
}

const CONTENT: Record<string, unknown[]> = {
  v8: [{ a: 1 }, new Map([[1, 2]]), 'three'],
  json: [{ a: 1 }, [2], 'three'],
  raw: ['one', 'two', 'three'],
  msgpack: [{ a: 1 }, [2], 'three'],
  records: [{ a: 1 }, new Map([[1, 2]]), 'three'],
  local: [1, 2, 3],
  full: [1, 2],
};

let fx: Fixtures;
const created = new Set<string>();
const extraHandles = new Set<SageQueue<unknown>>();
let counter = 0;

/** A fresh, unique, valid queue name (destroyed after the file). */
function fresh(tag = 'n'): string {
  const n = `${PREFIX}-${tag}-${counter++}`;
  created.add(n);
  return n;
}

function fill(): void {
  for (const k of ['v8', 'json', 'raw', 'msgpack', 'records'] as const) for (const v of CONTENT[k] as unknown[]) fx[k].put(v as never);
  for (const v of CONTENT.local as unknown[]) fx.local.put(v);
  for (const v of CONTENT.full as unknown[]) fx.full.put(v);
}

function drainSage(q: SageQueue<unknown>): unknown[] {
  const out: unknown[] = [];
  for (;;) {
    try {
      out.push(q.getNowait());
    } catch (e) {
      if ((e as { code?: string }).code === 'ERR_QUEUE_EMPTY') return out;
      throw e;
    }
  }
}

function drainLocal(q: LocalQueue<unknown>): unknown[] {
  const out: unknown[] = [];
  while (q.qsize() > 0) out.push(q.getNowait());
  return out;
}

beforeAll(() => {
  const names = { v8: fresh('v8'), json: fresh('json'), raw: fresh('raw') };
  const msgpackName = fresh('msgpack');
  fx = {
    v8: SageQueue.create(names.v8, { capacity: 4096, codec: 'v8' }),
    json: SageQueue.create(names.json, { capacity: 4096, codec: 'json' }),
    raw: SageQueue.create(names.raw, { capacity: 4096, codec: 'raw' }),
    msgpack: SageQueue.create(msgpackName, { capacity: 4096, codec: 'msgpack' }),
    records: SageQueue.create(fresh('records'), { capacity: 4096 }),
    local: new LocalQueue({ maxsize: 5 }),
    full: new LocalQueue({ maxsize: 2 }),
    empty: new LocalQueue(),
    names,
    router: new BaseRouter({ name: 'bad-input' }),
    conn: undefined as unknown as Connection,
  };
  fx.conn = fx.router.addConnection({ broadcastIndex: 0, parallelIndex: 0, targetName: 't0', targetHandle: fx.local });
  fill();
});

afterEach(() => {
  for (const q of extraHandles) q.release();
  extraHandles.clear();
});

afterAll(() => {
  for (const q of [fx?.v8, fx?.json, fx?.raw, fx?.msgpack, fx?.records]) q?.release();
  for (const n of created) {
    try {
      SageQueue.destroy(n);
    } catch {
      // already gone
    }
  }
  expect(readdirSync('/dev/shm').filter((f) => f.startsWith(`sageq.${PREFIX}`))).toEqual([]);
});

/** A queue handle made for one row (released, closed...), cleaned up after it. */
function own<T>(q: SageQueue<T>): SageQueue<T> {
  extraHandles.add(q as SageQueue<unknown>);
  return q;
}

function released(codec: 'json' | 'raw' = 'json'): SageQueue<unknown> {
  const q = own(SageQueue.create<unknown>(fresh('rel'), { codec, capacity: 4096 }));
  q.put('kept' as never);
  q.release();
  return q;
}

function destroyed(): SageQueue<unknown> {
  const q = own(SageQueue.create<unknown>(fresh('des'), { codec: 'json', capacity: 4096 }));
  q.destroy();
  return q;
}

/** A closed queue still holding one message, which the row must not disturb. */
const closedQueues: SageQueue<unknown>[] = [];
function closed(): SageQueue<unknown> {
  const q = own(SageQueue.create<unknown>(fresh('closed'), { codec: 'json', capacity: 4096 }));
  q.put('left');
  q.close();
  closedQueues.push(q);
  return q;
}

// --- the matrix -----------------------------------------------------------------------------------
interface Row {
  what: string;
  call: () => unknown;
  code: string;
  /** The call returns a promise: it must reject (not throw synchronously). */
  async?: boolean;
  /** Names that must not exist afterwards (a failed create leaves nothing). */
  noSegment?: string;
}

const rows: Row[] = [];
const row = (what: string, code: string, call: () => unknown, extra: Partial<Row> = {}): void => {
  rows.push({ what, code, call, ...extra });
};

// SageQueue: names, for every entry point that takes one.
const nameTakers: Array<[string, (n: unknown) => unknown]> = [
  ['new SageQueue', (n) => new SageQueue(n as string)],
  ['SageQueue.create', (n) => SageQueue.create(n as string)],
  ['SageQueue.open', (n) => SageQueue.open(n as string)],
  ['SageQueue.destroy', (n) => SageQueue.destroy(n as string)],
];
for (const [fn, call] of nameTakers) {
  for (const [label, v] of NOT_STRINGS) row(`${fn}(${label})`, TYPE, () => call(v));
  for (const [label, v] of BAD_NAMES) row(`${fn}(name ${label})`, NAME, () => call(v), { noSegment: v });
}

// SageQueue: creation options.
const capacityRows: Array<[string, unknown, string]> = [...BAD_INTS, ['0', 0, RANGE], ['4095', 4095, RANGE], ['2**32 + 1', 2 ** 32 + 1, RANGE]];
for (const [label, v, code] of capacityRows) {
  const n = fresh('opt');
  row(`SageQueue.create(name, { capacity: ${label} })`, code, () => SageQueue.create(n, { capacity: v as number }), { noSegment: n });
}
for (const [label, v, code] of [...BAD_INTS, ['0', 0, RANGE], ['2**31 + 1', 2 ** 31 + 1, RANGE]] as Array<[string, unknown, string]>) {
  const n = fresh('opt');
  row(`SageQueue.create(name, { maxMessageSize: ${label} })`, code, () => SageQueue.create(n, { maxMessageSize: v as number }), { noSegment: n });
}
{
  const n = fresh('opt');
  row('SageQueue.create(name, { capacity: 4096, maxMessageSize: 1 MiB }) (more than half the ring)', VALUE,
    () => SageQueue.create(n, { capacity: 4096, maxMessageSize: 1 << 20 }), { noSegment: n });
}
for (const [label, v, code] of [...BAD_INTS, ['2**48 + 1', 2 ** 48 + 1, RANGE]] as Array<[string, unknown, string]>) {
  const n = fresh('opt');
  row(`SageQueue.create(name, { maxsize: ${label} })`, code, () => SageQueue.create(n, { maxsize: v as number }), { noSegment: n });
}
for (const [label, v, code] of [['0o400 (owner cannot write)', 0o400, RANGE], ['0o1666', 0o1666, RANGE], ['-1', -1, RANGE], ['"0600"', '0600', TYPE]] as Array<[string, unknown, string]>) {
  const n = fresh('opt');
  row(`SageQueue.create(name, { mode: ${label} })`, code, () => SageQueue.create(n, { mode: v as number }), { noSegment: n });
}
for (const [label, v] of [['"xml"', 'xml'], ['42', 42], ['null', null], ['"V8"', 'V8'], ['"__proto__"', '__proto__']] as Named[]) {
  const n = fresh('opt');
  row(`SageQueue.create(name, { codec: ${label} })`, 'ERR_UNKNOWN_CODEC', () => SageQueue.create(n, { codec: v as 'raw' }), { noSegment: n });
}
for (const key of ['spinUs', 'initWaitMs'] as const) {
  for (const [label, v, code] of [...BAD_INTS, ['1e9', 1e9, RANGE]] as Array<[string, unknown, string]>) {
    const n = fresh('opt');
    row(`new SageQueue(name, { ${key}: ${label} })`, code, () => new SageQueue(n, { [key]: v }), { noSegment: n });
  }
}
for (const [label, v] of BAD_OPTIONS) {
  const n = fresh('opt');
  row(`SageQueue.create(name, ${label} as options)`, TYPE, () => SageQueue.create(n, v as object), { noSegment: n });
  row(`SageQueue.open(existing, ${label} as options)`, TYPE, () => SageQueue.open(fx.names.json, v as object));
}
row('SageQueue.open(existing, { capacity }) (a creation option)', TYPE, () => SageQueue.open(fx.names.json, { capacity: 4096 } as object));
row('SageQueue.create(an existing name)', 'ERR_QUEUE_EXISTS', () => SageQueue.create(fx.names.json));
{
  const n = fresh('missing');
  row('SageQueue.open(a missing name)', 'ERR_QUEUE_NOT_FOUND', () => SageQueue.open(n), { noSegment: n });
}
row('SageQueue.open(a json queue, { codec: "raw" })', 'ERR_CODEC_MISMATCH', () => SageQueue.open(fx.names.json, { codec: 'raw' }));
row('new SageQueue(a v8 queue, { codec: "json" })', 'ERR_CODEC_MISMATCH', () => new SageQueue(fx.names.v8, { codec: 'json' }));
row('new SageQueue(a v8 queue, { codec: "records" })', 'ERR_CODEC_MISMATCH', () => new SageQueue(fx.names.v8, { codec: 'records' }));

// SageQueue: instance methods on the fixtures.
const Q = (): SageQueue<unknown> => fx.v8;
for (const [label, v] of BAD_BOOLEANS) {
  row(`q.put(item, block ${label})`, TYPE, () => Q().put('x', v as boolean));
  row(`q.get(block ${label})`, TYPE, () => Q().get(v as boolean));
}
for (const [label, v, code] of BAD_TIMEOUTS) {
  row(`q.put(item, true, timeoutMs ${label})`, code, () => Q().put('x', true, v as number));
  row(`q.get(true, timeoutMs ${label})`, code, () => Q().get(true, v as number));
  row(`q.putMany([item], { timeoutMs: ${label} })`, code, () => Q().putMany(['x'], { timeoutMs: v as number }));
  row(`q.getMany(1, { timeoutMs: ${label} })`, code, () => Q().getMany(1, { timeoutMs: v as number }));
  row(`q.putAsync(item, { timeoutMs: ${label} })`, code, () => Q().putAsync('x', { timeoutMs: v as number }), { async: true });
  row(`q.getAsync({ timeoutMs: ${label} })`, code, () => Q().getAsync({ timeoutMs: v as number }), { async: true });
}
const notSerialisable: Array<[string, () => SageQueue<unknown>, unknown]> = [
  ['v8: a function', () => fx.v8, () => 1],
  ['v8: a symbol', () => fx.v8, Symbol('s')],
  ['v8: an object holding a function', () => fx.v8, { f: () => 1 }],
  ['v8: a WeakMap', () => fx.v8, new WeakMap()],
  ['v8: a Promise', () => fx.v8, Promise.resolve(1)],
  ['json: a bigint', () => fx.json, 1n],
  ['json: a cycle', () => fx.json, circular],
  ['json: undefined', () => fx.json, undefined],
  ['json: a function', () => fx.json, () => 1],
  ['json: a symbol', () => fx.json, Symbol('s')],
  ['raw: a number', () => fx.raw as SageQueue<unknown>, 42],
  ['raw: an object', () => fx.raw as SageQueue<unknown>, { a: 1 }],
  ['raw: null', () => fx.raw as SageQueue<unknown>, null],
  ['raw: an ArrayBuffer', () => fx.raw as SageQueue<unknown>, new ArrayBuffer(4)],
  ['msgpack: a function', () => fx.msgpack, () => 1],
  ['msgpack: a symbol', () => fx.msgpack, Symbol('s')],
  ['msgpack: undefined', () => fx.msgpack, undefined],
  ['records: a function', () => fx.records, () => 1],
  ['records: a symbol', () => fx.records, Symbol('s')],
  ['records: an object holding a function', () => fx.records, { f: () => 1 }],
  ['records: an object holding a symbol', () => fx.records, { deep: [{ s: Symbol('s') }] }],
];
for (const [label, q, item] of notSerialisable) {
  row(`q.put(${label})`, SERIAL, () => q().put(item));
  row(`q.putNowait(${label})`, SERIAL, () => q().putNowait(item));
  row(`q.putAsync(${label})`, SERIAL, () => q().putAsync(item), { async: true });
  row(`q.putMany([ok, ${label}, ok])`, SERIAL, () => q().putMany(['ok', item, 'ok']));
}
const oversized: Array<[string, () => SageQueue<unknown>, () => unknown]> = [
  ['raw: maxMessageSize + 1 bytes', () => fx.raw as SageQueue<unknown>, () => Buffer.alloc(fx.raw.maxMessageSize + 1)],
  ['raw: a 1 MiB string', () => fx.raw as SageQueue<unknown>, () => 'x'.repeat(1 << 20)],
  ['json: a string of maxMessageSize characters (plus quotes)', () => fx.json, () => 'x'.repeat(fx.json.maxMessageSize)],
  ['v8: a 64 KiB typed array', () => fx.v8, () => new Float64Array(8192)],
];
for (const [label, q, item] of oversized) {
  row(`q.put(${label})`, TOO_LARGE, () => q().put(item()));
  row(`q.putAsync(${label})`, TOO_LARGE, () => q().putAsync(item()), { async: true });
  row(`q.putMany([ok, ${label}])`, TOO_LARGE, () => q().putMany(['ok', item()]));
}
for (const [label, v] of NOT_STRINGS.filter(([, v]) => !Array.isArray(v))) {
  row(`q.putMany(${label})`, TYPE, () => Q().putMany(v as unknown[]));
}
for (const [label, v, code] of [...BAD_INTS, ['0', 0, RANGE], ['4097', 4097, RANGE]] as Array<[string, unknown, string]>) {
  row(`q.getMany(${label})`, code, () => Q().getMany(v as number));
}
for (const [label, v, code] of [...BAD_INTS, ['1e7', 1e7, RANGE]] as Array<[string, unknown, string]>) {
  row(`q.setSpinUs(${label})`, code, () => Q().setSpinUs(v as number));
}
for (const [label, v] of BAD_OPTIONS) {
  row(`q.putMany([item], ${label} as options)`, TYPE, () => Q().putMany(['x'], v as object));
  row(`q.getMany(1, ${label} as options)`, TYPE, () => Q().getMany(1, v as object));
  row(`q.putAsync(item, ${label} as options)`, TYPE, () => Q().putAsync('x', v as object), { async: true });
  row(`q.getAsync(${label} as options)`, TYPE, () => Q().getAsync(v as object), { async: true });
  row(`q.iterate(${label} as options).next()`, TYPE, () => Q().iterate(v as object).next(), { async: true });
}
for (const [label, v] of BAD_BOOLEANS) {
  row(`q.putMany([item], { block: ${label} })`, TYPE, () => Q().putMany(['x'], { block: v as boolean }));
  row(`q.getMany(1, { block: ${label} })`, TYPE, () => Q().getMany(1, { block: v as boolean }));
}
for (const [label, v] of [['a string', 'abort'], ['an object', {}], ['an AbortController', new AbortController()]] as Named[]) {
  row(`q.putAsync(item, { signal: ${label} })`, TYPE, () => Q().putAsync('x', { signal: v as AbortSignal }), { async: true });
  row(`q.getAsync({ signal: ${label} })`, TYPE, () => Q().getAsync({ signal: v as AbortSignal }), { async: true });
  row(`q.iterate({ signal: ${label} }).next()`, TYPE, () => Q().iterate({ signal: v as AbortSignal }).next(), { async: true });
}
for (const [label, v, code] of [...BAD_INTS, ['0', 0, RANGE], ['4097', 4097, RANGE]] as Array<[string, unknown, string]>) {
  row(`q.iterate({ batchSize: ${label} }).next()`, code, () => Q().iterate({ batchSize: v as number }).next(), { async: true });
}

// SageQueue: after release / destroy / close.
const afterRelease: Array<[string, (q: SageQueue<unknown>) => unknown, boolean?]> = [
  ['put', (q) => q.put('x')],
  ['putNowait', (q) => q.putNowait('x')],
  ['get', (q) => q.get(false)],
  ['getNowait', (q) => q.getNowait()],
  ['putMany', (q) => q.putMany(['x'])],
  ['getMany', (q) => q.getMany(1, { block: false })],
  ['empty', (q) => q.empty()],
  ['full', (q) => q.full()],
  ['qsize', (q) => q.qsize()],
  ['stats', (q) => q.stats()],
  ['bufferLoad', (q) => q.bufferLoad()],
  ['setSpinUs', (q) => q.setSpinUs(10)],
  ['putAsync', (q) => q.putAsync('x'), true],
  ['getAsync', (q) => q.getAsync(), true],
  ['iterate().next()', (q) => q.iterate().next(), true],
];
for (const [m, call, isAsync] of afterRelease) {
  row(`q.${m}() after release()`, RELEASED, () => call(released()), { async: isAsync });
  row(`q.${m}() after destroy()`, RELEASED, () => call(destroyed()), { async: isAsync });
}
const afterClose: Array<[string, (q: SageQueue<unknown>) => unknown, boolean?]> = [
  ['put', (q) => q.put('x')],
  ['putNowait', (q) => q.putNowait('x')],
  ['putMany', (q) => q.putMany(['x', 'y'])],
  ['putAsync', (q) => q.putAsync('x'), true],
];
for (const [m, call, isAsync] of afterClose) row(`q.${m}() after close()`, CLOSED, () => call(closed()), { async: isAsync });

// LocalQueue.
for (const [label, v] of BAD_OPTIONS) row(`new LocalQueue(${label} as options)`, TYPE, () => new LocalQueue(v as object));
for (const [label, v, code] of BAD_INTS) row(`new LocalQueue({ maxsize: ${label} })`, code, () => new LocalQueue({ maxsize: v as number }));
for (const [label, v] of BAD_BOOLEANS) {
  row(`local.put(item, block ${label})`, TYPE, () => fx.local.put('x', v as boolean));
  row(`local.get(block ${label})`, TYPE, () => fx.local.get(v as boolean));
}
for (const [label, v, code] of BAD_TIMEOUTS) {
  row(`local.put(item, true, timeoutMs ${label})`, code, () => fx.local.put('x', true, v as number));
  row(`local.get(true, timeoutMs ${label})`, code, () => fx.local.get(true, v as number));
  row(`local.putAsync(item, { timeoutMs: ${label} })`, code, () => fx.local.putAsync('x', { timeoutMs: v as number }), { async: true });
  row(`local.getAsync({ timeoutMs: ${label} })`, code, () => fx.local.getAsync({ timeoutMs: v as number }), { async: true });
}
for (const [label, v] of BAD_OPTIONS) {
  row(`local.putAsync(item, ${label} as options)`, TYPE, () => fx.local.putAsync('x', v as object), { async: true });
  row(`local.getAsync(${label} as options)`, TYPE, () => fx.local.getAsync(v as object), { async: true });
}
row('local.getAsync({ signal: "x" })', TYPE, () => fx.local.getAsync({ signal: 'x' as unknown as AbortSignal }), { async: true });
row('full local.put(item) (would wait forever in this thread)', 'ERR_WOULD_DEADLOCK', () => fx.full.put('x'));
row('full local.put(item, false)', 'ERR_QUEUE_FULL', () => fx.full.put('x', false));
row('full local.putNowait(item)', 'ERR_QUEUE_FULL', () => fx.full.putNowait('x'));
row('full local.put(item, true, 10)', 'ERR_QUEUE_FULL', () => fx.full.put('x', true, 10));
row('empty local.get()', 'ERR_WOULD_DEADLOCK', () => fx.empty.get());
row('empty local.getNowait()', 'ERR_QUEUE_EMPTY', () => fx.empty.getNowait());
row('empty local.getAsync({ timeoutMs: 0 })', 'ERR_QUEUE_EMPTY', () => fx.empty.getAsync({ timeoutMs: 0 }), { async: true });
{
  const closedLocal = (): LocalQueue<unknown> => {
    const q = new LocalQueue();
    q.close();
    return q;
  };
  row('local.put() after close()', CLOSED, () => closedLocal().put('x'));
  row('local.putAsync() after close()', CLOSED, () => closedLocal().putAsync('x'), { async: true });
  row('local.get() after close() (drained)', CLOSED, () => closedLocal().get());
  row('local.getAsync() after close() (drained)', CLOSED, () => closedLocal().getAsync(), { async: true });
}

// Descriptors.
for (const [label, v] of [...NOT_STRINGS.filter(([l]) => l !== 'an object'), ['a class instance', new Map()]] as Named[]) {
  row(`new QueueDescriptor(${label})`, DESC, () => new QueueDescriptor(v as never));
}
const descInit = (over: Record<string, unknown>): never => ({ queueId: 'q1', queueType: 'local', ...over }) as never;
for (const [label, v] of [['empty', ''], ['257 chars', 'x'.repeat(257)], ['10k chars', 'x'.repeat(10_000)], ['a number', 42], ['null', null]] as Named[]) {
  row(`new QueueDescriptor({ queueId: ${label} })`, DESC, () => new QueueDescriptor(descInit({ queueId: v })));
}
row('new QueueDescriptor({ queueType: "" })', DESC, () => new QueueDescriptor(descInit({ queueType: '' })));
row('new QueueDescriptor({ queueType: 42 })', DESC, () => new QueueDescriptor(descInit({ queueType: 42 })));
row('resolveDescriptor(new QueueDescriptor({ queueType: "nope" }))', UNSUPPORTED, () => resolveDescriptor(new QueueDescriptor(descInit({ queueType: 'nope' }))));
row('new QueueDescriptor({ bogus: 1 })', DESC, () => new QueueDescriptor(descInit({ bogus: 1 })));
for (const [label, v] of [['NaN', { x: NaN }], ['Infinity', { x: Infinity }], ['a function', { f: () => 1 }], ['a bigint', { b: 1n }], ['undefined', { u: undefined }], ['a cycle', circular], ['a Date', { d: new Date() }], ['an array', [1]], ['a string', 'meta'], ['a sparse array', { a: [1, , 3] }], ['a symbol key', { [Symbol('k')]: 1 }]] as Named[]) {
  row(`new QueueDescriptor({ metadata: ${label} })`, DESC, () => new QueueDescriptor(descInit({ metadata: v })));
}
{
  let deep: Record<string, unknown> = {};
  const root = deep;
  for (let i = 0; i < 200; i++) deep = (deep.d = {}) as Record<string, unknown>;
  row('new QueueDescriptor({ metadata: nested 200 deep })', DESC, () => new QueueDescriptor(descInit({ metadata: root })));
}
for (const [label, v] of [['-1', -1], ['NaN', NaN], ['Infinity', Infinity], ['a string', '1'], ['null', null]] as Named[]) {
  row(`new QueueDescriptor({ createdTimestamp: ${label} })`, DESC, () => new QueueDescriptor(descInit({ createdTimestamp: v })));
}
for (const [label, v] of [['not JSON', '{bad'], ['a number', 42], ['null', null], ['"null"', 'null'], ['an array', '[]'], ['an empty object', '{}'], ['a huge string', 'x'.repeat(1 << 20)]] as Named[]) {
  row(`QueueDescriptor.fromJSON(${label})`, DESC, () => QueueDescriptor.fromJSON(v));
}
for (const [label, v] of [['an unknown key', { queue_id: 'q', queue_type: 'local', extra: 1 }], ['no queue_type', { queue_id: 'q' }], ['can_serialize "yes"', { queue_id: 'q', queue_type: 'local', can_serialize: 'yes' }], ['metadata null', { queue_id: 'q', queue_type: 'local', metadata: null }]] as Named[]) {
  row(`QueueDescriptor.fromDict(${label})`, DESC, () => QueueDescriptor.fromDict(v));
}
row('resolveDescriptor({ queue_type: "nope" })', UNSUPPORTED, () => resolveDescriptor({ queue_id: 'q', queue_type: 'nope', metadata: {}, created_timestamp: 0 }));
{
  const d = QueueDescriptor.createLocalQueue({ queueId: 'clone-me' });
  row('descriptor.clone("")', VALUE, () => d.clone(''));
  row('descriptor.clone(42)', TYPE, () => d.clone(42 as unknown as string));
  row('descriptor.clone(300 chars)', VALUE, () => d.clone('x'.repeat(300)));
}
const factories: Array<[string, (o: unknown) => unknown]> = [
  ['createLocalQueue', (o) => QueueDescriptor.createLocalQueue(o as never)],
  ['createShmQueue', (o) => QueueDescriptor.createShmQueue(o as never)],
  ['createSageQueue', (o) => QueueDescriptor.createSageQueue(o as never)],
  ['createRayActorQueue', (o) => QueueDescriptor.createRayActorQueue(o as never)],
  ['createRayQueue', (o) => QueueDescriptor.createRayQueue(o as never)],
  ['createRpcQueue', (o) => QueueDescriptor.createRpcQueue(o as never)],
];
for (const [fn, call] of factories) {
  for (const [label, v] of BAD_OPTIONS) row(`QueueDescriptor.${fn}(${label} as options)`, TYPE, () => call(v));
}
row('QueueDescriptor.createLocalQueue({ maxsize: -1 })', RANGE, () => QueueDescriptor.createLocalQueue({ maxsize: -1 }));
row('QueueDescriptor.createLocalQueue({ queueId: "" })', VALUE, () => QueueDescriptor.createLocalQueue({ queueId: '' }));
row('QueueDescriptor.createLocalQueue({ queueId: 10k chars })', VALUE, () => QueueDescriptor.createLocalQueue({ queueId: 'x'.repeat(10_000) }));
row('QueueDescriptor.createShmQueue({}) (no shmName)', TYPE, () => QueueDescriptor.createShmQueue({} as never));
row('QueueDescriptor.createShmQueue({ shmName: "" })', VALUE, () => QueueDescriptor.createShmQueue({ shmName: '' }));
row('QueueDescriptor.createSageQueue({ capacity: NaN })', RANGE, () => QueueDescriptor.createSageQueue({ capacity: NaN }));
row('QueueDescriptor.createSageQueue({ namespace: "" })', VALUE, () => QueueDescriptor.createSageQueue({ namespace: '' }));
row('QueueDescriptor.createSageQueue({ create: "yes" })', TYPE, () => QueueDescriptor.createSageQueue({ create: 'yes' as never }));
row('QueueDescriptor.createSageQueue({ autoCleanup: true })', 'ERR_UNSUPPORTED_OPTION', () => QueueDescriptor.createSageQueue({ autoCleanup: true } as never));
row('QueueDescriptor.createSageQueue({ mode: 0o10000 })', RANGE, () => QueueDescriptor.createSageQueue({ mode: 0o10000 }));
row('QueueDescriptor.createRayActorQueue({}) (no actorName)', TYPE, () => QueueDescriptor.createRayActorQueue({} as never));
for (const [label, v, code] of [['0', 0, RANGE], ['65536', 65536, RANGE], ['1.5', 1.5, RANGE], ['"80"', '80', TYPE]] as Array<[string, unknown, string]>) {
  row(`QueueDescriptor.createRpcQueue({ port: ${label} })`, code, () => QueueDescriptor.createRpcQueue({ serverAddress: 'h', port: v as number }));
}
row('getLocalQueue(42)', TYPE, () => getLocalQueue(42 as unknown as string));
row('getLocalQueue("id", { maxsize: -1 })', RANGE, () => getLocalQueue('bad-input-local', { maxsize: -1 }));
row('getLocalQueue("id", { bogus: 1 })', TYPE, () => getLocalQueue('bad-input-local', { bogus: 1 } as never));
row('shmQueueDescriptor(42)', TYPE, () => shmQueueDescriptor(42 as unknown as string));
row('shmQueueDescriptor("")', VALUE, () => shmQueueDescriptor(''));
row('sageQueueDescriptor("id", { queueId: "other" })', TYPE, () => sageQueueDescriptor('id', { queueId: 'other' } as never));
row('sageQueueDescriptor(42)', TYPE, () => sageQueueDescriptor(42 as unknown as string));

// Registry.
for (const [label, v] of [['"a/b"', 'a/b'], ['empty', ''], ['a space', 'a b'], ['10k chars', 'x'.repeat(10_000) + '/']] as Named[]) {
  row(`registerQueueImplementation(type ${label})`, VALUE, () => registerQueueImplementation(v as string, () => fx.local));
}
for (const [label, v] of NOT_STRINGS.filter(([l]) => l !== 'a function')) {
  row(`registerQueueImplementation(type ${label})`, TYPE, () => registerQueueImplementation(v as string, () => fx.local));
  row(`unregisterQueueImplementation(${label})`, TYPE, () => unregisterQueueImplementation(v as string));
}
row('registerQueueImplementation("x", 42) (not a function)', TYPE, () => registerQueueImplementation('bad-input-x', 42 as never));
row('registerQueueImplementation("local", impl) (taken)', 'ERR_QUEUE_TYPE_EXISTS', () => registerQueueImplementation('local', () => fx.local));
row('registerQueueImplementation("x", impl, { replace: "yes" })', TYPE, () => registerQueueImplementation('bad-input-y', () => fx.local, { replace: 'yes' as never }));
for (const [label, v] of [['a number', 42], ['null', null], ['undefined', undefined], ['a boolean', true]] as Named[]) {
  row(`resolveDescriptor(${label})`, TYPE, () => resolveDescriptor(v as never));
}
row('resolveDescriptor("{bad json")', DESC, () => resolveDescriptor('{bad json'));
row('resolveDescriptor(a ray_queue descriptor) (no Node implementation)', UNSUPPORTED, () => resolveDescriptor(QueueDescriptor.createRayQueue()));
row('resolveDescriptor(a descriptor whose implementation returns a non-queue)', 'ERR_INVALID_RETURN_VALUE', () => {
  registerQueueImplementation('bad-input-returns-junk', () => ({}) as never, { replace: true });
  try {
    return resolveDescriptor(new QueueDescriptor({ queueId: 'junk', queueType: 'bad-input-returns-junk' }));
  } finally {
    unregisterQueueImplementation('bad-input-returns-junk');
  }
});
row('resolveDescriptor(a sage_queue descriptor named "../x")', NAME, () => resolveDescriptor(QueueDescriptor.createSageQueue({ queueId: '../x' })));
row('forgetResolved(42)', TYPE, () => forgetResolved(42 as unknown as string));

// Router: Packet.
for (const [label, v] of BAD_OPTIONS) row(`new Packet(payload, ${label} as options)`, TYPE, () => new Packet('p', v as object));
for (const [label, v, code] of BAD_INTS) row(`new Packet(payload, { inputIndex: ${label} })`, code, () => new Packet('p', { inputIndex: v as number }));
for (const [label, v] of [['NaN', NaN], ['Infinity', Infinity], ['an object', {}], ['a boolean', true], ['a symbol', Symbol('k')], ['a function', () => 1]] as Named[]) {
  row(`new Packet(payload, { partitionKey: ${label} })`, TYPE, () => new Packet('p', { partitionKey: v as string }));
}
for (const [label, v] of [['"nope"', 'nope'], ['42', 42], ['"HASH"', 'HASH']] as Named[]) {
  row(`new Packet(payload, { partitionStrategy: ${label} })`, 'ERR_UNKNOWN_STRATEGY', () => new Packet('p', { partitionStrategy: v as 'hash' }));
}
row('new Packet(payload, { traceId: "" })', TYPE, () => new Packet('p', { traceId: '' }));
row('new Packet(payload, { traceId: 42 })', TYPE, () => new Packet('p', { traceId: 42 as unknown as string }));
row('new Packet(payload, { createdAt: NaN })', TYPE, () => new Packet('p', { createdAt: NaN }));
row('new Packet(payload, { trace: "x" })', TYPE, () => new Packet('p', { trace: 'x' as never }));
for (const [label, v] of [['a number', 42], ['null', null], ['a string', 'x']] as Named[]) row(`Packet.from(${label})`, TYPE, () => Packet.from(v as never));
{
  const p = new Packet('p', { partitionKey: 'k' });
  row('packet.withInputIndex(-1)', RANGE, () => p.withInputIndex(-1));
  row('packet.withInputIndex(NaN)', RANGE, () => p.withInputIndex(NaN));
  row('packet.updateKey(NaN)', TYPE, () => p.updateKey(NaN));
  row('packet.updateKey(k, "nope")', 'ERR_UNKNOWN_STRATEGY', () => p.updateKey('k', 'nope' as 'hash'));
  row('packet.inheritPartitionInfo({})', TYPE, () => p.inheritPartitionInfo({} as Packet));
}
for (const [label, v] of [['NaN', NaN], ['an object', {}], ['null', null], ['undefined', undefined]] as Named[]) row(`stableHash(${label})`, TYPE, () => stableHash(v as string));

// Router: Connection.
const connInit = (over: Record<string, unknown>): never => ({ broadcastIndex: 0, parallelIndex: 0, targetName: 't', targetHandle: fx.local, ...over }) as never;
for (const [label, v] of BAD_OPTIONS) row(`new Connection(${label} as init)`, TYPE, () => new Connection(v as never));
for (const [label, v, code] of BAD_INTS) {
  row(`new Connection({ broadcastIndex: ${label} })`, code, () => new Connection(connInit({ broadcastIndex: v })));
  row(`new Connection({ parallelIndex: ${label} })`, code, () => new Connection(connInit({ parallelIndex: v })));
}
row('new Connection({ targetName: "" })', TYPE, () => new Connection(connInit({ targetName: '' })));
row('new Connection({ targetHandle: {} })', TYPE, () => new Connection(connInit({ targetHandle: {} })));
row('new Connection({ targetHandle: a plain array })', TYPE, () => new Connection(connInit({ targetHandle: [] })));
for (const [label, v, code] of [['2', 2, RANGE], ['-0.1', -0.1, RANGE], ['NaN', NaN, RANGE], ['"0.5"', '0.5', TYPE]] as Array<[string, unknown, string]>) {
  row(`connection.reportLoad(${label})`, code, () => fx.conn.reportLoad(v as number));
}

// Router: BaseRouter.
for (const [label, v] of BAD_OPTIONS) row(`new BaseRouter(${label} as options)`, TYPE, () => new BaseRouter(v as object));
row('new BaseRouter({ strategy: "nope" })', 'ERR_UNKNOWN_STRATEGY', () => new BaseRouter({ strategy: 'nope' as 'hash' }));
for (const key of ['maxRetries', 'retryBaseMs', 'sendTimeoutMs', 'ejectAfterFailures', 'ringPointsPerTarget'] as const) {
  for (const [label, v, code] of BAD_INTS) row(`new BaseRouter({ ${key}: ${label} })`, code, () => new BaseRouter({ [key]: v }));
}
for (const [label, v] of [['2', 2], ['-1', -1], ['NaN', NaN], ['"0.5"', '0.5']] as Named[]) {
  row(`new BaseRouter({ maxEjectedFraction: ${label} })`, RANGE, () => new BaseRouter({ maxEjectedFraction: v as number }));
}
row('new BaseRouter({ clock: {} })', TYPE, () => new BaseRouter({ clock: {} as never }));
row('new BaseRouter({ random: 5 })', TYPE, () => new BaseRouter({ random: 5 as never }));
row('new BaseRouter({ deadLetterQueue: {} })', TYPE, () => new BaseRouter({ deadLetterQueue: {} as never }));
row('router.addConnection(42)', TYPE, () => fx.router.addConnection(42 as never));
row('router.addConnection(an occupied slot)', 'ERR_CONNECTION_EXISTS', () => fx.router.addConnection(connInit({ targetName: 'dup' })));
row('router.removeConnection(-1, 0)', RANGE, () => fx.router.removeConnection(-1, 0));
row('router.removeConnection(0, NaN)', RANGE, () => fx.router.removeConnection(0, NaN));
row('router.route(not a packet)', TYPE, () => fx.router.route({ payload: 1 } as unknown as Packet), { async: true });
row('router.routeMany(not an array)', TYPE, () => fx.router.routeMany(42 as never), { async: true });
row('router.routeMany([not a packet])', TYPE, () => fx.router.routeMany([42] as never), { async: true });
row('router.sendStopSignal("stop", { timeoutMs: -1 })', RANGE, () => fx.router.sendStopSignal('stop', { timeoutMs: -1 }), { async: true });
row('router.sendStopSignal("stop", 42)', TYPE, () => fx.router.sendStopSignal('stop', 42 as never), { async: true });

// Cluster: WorkerPool options (every row fails before any worker is forked) and joinWorkerPool.
const pool = (o: unknown) => (): unknown => {
  const p = new WorkerPool(o as never);
  // Should never get here (the row then fails); do not leave a pool forking workers behind.
  void p.close({ timeoutMs: 100 });
  return p;
};
for (const [label, v] of BAD_OPTIONS.filter(([l]) => l !== 'an unknown key')) row(`new WorkerPool(${label} as options)`, TYPE, pool(v));
row('new WorkerPool({ script, bogus: 1 })', TYPE, pool({ script: 'w.js', bogus: 1 }));
row('new WorkerPool({}) (no script)', TYPE, pool({}));
row('new WorkerPool({ script: "" })', TYPE, pool({ script: '' }));
row('new WorkerPool({ script: 42 })', TYPE, pool({ script: 42 }));
for (const [label, v, code] of [...BAD_INTS, ['0', 0, RANGE], ['1025', 1025, RANGE]] as Array<[string, unknown, string]>) {
  row(`new WorkerPool({ workers: ${label} })`, code, pool({ script: 'w.js', workers: v }));
}
row('new WorkerPool({ respawn: "yes" })', TYPE, pool({ script: 'w.js', workers: 1, respawn: 'yes' }));
for (const [label, v] of [['"../x"', '../x'], ['"a/b"', 'a/b'], ['10k chars', 'x'.repeat(10_000)], ['a NUL', 'a\0b']] as Named[]) {
  row(`new WorkerPool({ name: ${label} })`, NAME, pool({ script: 'w.js', workers: 1, name: v }));
}
row('new WorkerPool({ queue: { capacity: -1 } })', RANGE, pool({ script: 'w.js', workers: 1, name: `${PREFIX}-pool`, queue: { capacity: -1 } }));
row('new WorkerPool({ router: { strategy: "nope" } })', 'ERR_UNKNOWN_STRATEGY', pool({ script: 'w.js', workers: 1, router: { strategy: 'nope' } }));
for (const [label, env] of [['no SAGE_QUEUE_POOL', {}], ['SAGE_QUEUE_POOL not JSON', { SAGE_QUEUE_POOL: '{bad' }]] as Array<[string, Record<string, string>]>) {
  row(`joinWorkerPool(env with ${label})`, 'ERR_NOT_A_POOL_WORKER', () => joinWorkerPool(env));
}
row('joinWorkerPool(env with an assignment without queues)', DESC, () => joinWorkerPool({ SAGE_QUEUE_POOL: '{}' }));

// --- running the matrix --------------------------------------------------------------------------

const PACKAGE_ERRORS = [SageQueueError, InvalidArgumentTypeError, ArgumentRangeError, InvalidArgumentValueError];

async function failure(r: Row): Promise<{ error: unknown; sync: boolean; returned?: unknown }> {
  let value: unknown;
  try {
    value = r.call();
  } catch (e) {
    return { error: e, sync: true };
  }
  if (value !== null && typeof value === 'object' && typeof (value as Promise<unknown>).then === 'function') {
    try {
      const v = await value;
      return { error: undefined, sync: false, returned: v };
    } catch (e) {
      return { error: e, sync: false };
    }
  }
  return { error: undefined, sync: true, returned: value };
}

describe('bad-input matrix', () => {
  it('has a row for every public entry point (and many of them)', () => {
    expect(rows.length).toBeGreaterThan(500);
  });

  it.each(rows.map((r) => [r.what, r.code, r] as const))('%s → %s', async (_what, code, r) => {
    const { error, sync, returned } = await failure(r);
    expect(error, `expected ${code}; the call returned ${String(returned)}`).toBeInstanceOf(Error);
    expect((error as { code?: unknown }).code, String(error)).toBe(code);
    expect(PACKAGE_ERRORS.some((cls) => error instanceof cls), `${(error as Error).name} is not one of the package's error classes`).toBe(true);
    expect((error as Error).message.length).toBeGreaterThan(10);
    expect((error as Error).message.length).toBeLessThan(2000); // a huge bad value is not echoed whole
    if (r.async) expect(sync, 'a promise-returning call must reject, not throw').toBe(false);
    if (r.noSegment !== undefined && r.noSegment.length < 250 && !r.noSegment.includes('/') && !r.noSegment.includes('\0')) {
      expect(existsSync(`/dev/shm/sageq.${r.noSegment}`)).toBe(false);
    }
    // Nothing changed: every fixture still holds exactly what it held, in order.
    expect(drainSage(fx.v8)).toEqual(CONTENT.v8);
    expect(drainSage(fx.json)).toEqual(CONTENT.json);
    expect(drainSage(fx.raw as SageQueue<unknown>).map(String)).toEqual(CONTENT.raw);
    expect(drainSage(fx.msgpack)).toEqual(CONTENT.msgpack);
    expect(drainSage(fx.records)).toEqual(CONTENT.records);
    expect(drainLocal(fx.local)).toEqual(CONTENT.local);
    expect(drainLocal(fx.full)).toEqual(CONTENT.full);
    expect(fx.empty.qsize()).toBe(0);
    for (const q of closedQueues) {
      expect(q.get(false)).toBe('left');
      expect(() => q.get(false)).toThrow(expect.objectContaining({ code: CLOSED }));
    }
    closedQueues.length = 0;
    fill();
  });

  it('no pool queue or stray segment was left by a failed WorkerPool', () => {
    // This process's pools only: unnamed ones are `pool-<pid>-<random>`, named ones `${PREFIX}-pool`
    // (other suites and other checkouts may have pools of their own running meanwhile).
    const ours = (f: string): boolean => f.startsWith(`sageq.pool-${process.pid}-`) || f.startsWith(`sageq.${PREFIX}-pool`);
    expect(readdirSync('/dev/shm').filter(ours)).toEqual([]);
  });
});

// --- formerly untyped ----------------------------------------------------------------------------
// These used to fail with a plain TypeError; they now give a typed error with a code.
describe('bad input that used to fail untyped now gives a typed error and changes nothing', () => {
  it.each([
    ['connection.send(not a packet)', () => fx.conn.send({} as Packet)],
    ['joinWorkerPool(null)', () => joinWorkerPool(null as never)],
    ['new HashRing(42, idOf)', () => new HashRing(42 as never, String)],
  ] as Array<[string, () => unknown]>)('%s', async (_what, call) => {
    const { error } = await failure({ what: '', code: 'ERR_INVALID_ARG_TYPE', call });
    expect(error).toBeInstanceOf(InvalidArgumentTypeError);
    expect((error as { code?: string }).code).toBe('ERR_INVALID_ARG_TYPE');
    expect(drainLocal(fx.local)).toEqual(CONTENT.local);
    for (const v of CONTENT.local as unknown[]) fx.local.put(v);
  });
});

// --- the CLI --------------------------------------------------------------------------------------

describe('sage-queue CLI with bad input', () => {
  const cli = (...args: string[]): { status: number | null; stdout: string; stderr: string } => {
    const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 20_000 });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  it.each([
    ['an unknown command', ['bogus'], 2],
    ['an unknown option', ['ls', '--bogus'], 2],
    ['stat without a name', ['stat'], 2],
    ['stat "../x"', ['stat', '../x'], 2],
    ['stat "a/b"', ['stat', 'a/b'], 2],
    ['stat with a 10k-character name', ['stat', 'x'.repeat(10_000)], 2],
    ['stat with an empty name', ['stat', ''], 2],
    ['stat --interval abc', ['stat', 'q', '--interval', 'abc'], 2],
    ['stat --interval -5', ['stat', 'q', '--interval', '-5'], 2],
    ['rm "../x"', ['rm', '../x'], 2],
    ['stat of a missing queue', ['stat', `${PREFIX}-missing`], 1],
    ['rm of a missing queue', ['rm', `${PREFIX}-missing`], 1],
  ] as Array<[string, string[], number]>)('%s exits %i with a one-line message on stderr, no stack trace', (_what, args, status) => {
    const r = cli(...args);
    expect(r.status, r.stderr).toBe(status);
    expect(r.stderr.trim().length).toBeGreaterThan(0);
    expect(r.stderr).not.toMatch(/\n\s+at .+:\d+:\d+/); // no stack trace
    expect(r.stderr.length).toBeLessThan(4000); // a 10k-character name is not echoed whole
  });
});
