/**
 * The `records` codec (the default) and its shared structure table: round trips of many shapes
 * between real processes that learn structures at the same time, a writer SIGKILLed in the middle
 * of appending to the table, a torn tail, the table's bound, and queues created with other codecs.
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SageQueue, SerializationError } from '../../lib/index';
import { MAX_SHARED_STRUCTURES } from '../../lib/queue/record-codec';
import { StructureLog, encodeRecord, structureTablePath } from '../../lib/queue/structure-log';
import { FIXTURES, queueName, track, until, useCleanup } from '../helpers/harness';

useCleanup();

const { item } = createRequire(__filename)(path.join(FIXTURES, 'record-shapes.cjs')) as { item: (shape: number, i: number) => unknown };

const kids = new Set<ChildProcess>();
const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(
    [...kids].map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.exitCode !== null || c.signalCode !== null) return resolve();
          c.once('exit', () => resolve());
          c.kill('SIGKILL');
        }),
    ),
  );
  kids.clear();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tableOf(q: SageQueue): string {
  const nonce = SageQueue.inspect(q.name).stats?.nonce as string;
  return structureTablePath(q.name, nonce);
}

function tableEntries(q: SageQueue): number {
  const log = new StructureLog(tableOf(q), 0o600);
  try {
    return log.refresh();
  } finally {
    log.close();
  }
}

interface PeerMessage {
  type: string;
  items?: unknown[];
  codec?: string;
}

function peer(args: string[], env: NodeJS.ProcessEnv = process.env): { child: ChildProcess; next: (type: string) => Promise<PeerMessage> } {
  const child = fork(path.join(FIXTURES, 'records-peer.cjs'), args, { serialization: 'advanced', env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  kids.add(child);
  const inbox: PeerMessage[] = [];
  child.on('message', (m) => inbox.push(m as PeerMessage));
  const next = (type: string): Promise<PeerMessage> =>
    until(() => {
      const i = inbox.findIndex((m) => m.type === type);
      return i < 0 ? undefined : inbox.splice(i, 1)[0];
    }, `${type} from peer ${child.pid}`, 30_000);
  return { child, next };
}

describe('the records codec', () => {
  it('is the default of a new queue and records id 4 in the segment', () => {
    const q = track(SageQueue.create(queueName('def')));
    expect(q.codec).toBe('records');
    expect(q.stats().codec).toBe(4);
    expect(q.stats().codecName).toBe('records');
  });

  it('a Buffer in a message whose structure the reader had to load mid-decode still comes back a Buffer (msgpackr decodes the rest of such a message from a Uint8Array copy: the codec decodes it again)', () => {
    const name = queueName('reload');
    const writer = track(SageQueue.create(name, { capacity: 1 << 16 }));
    const reader = track(SageQueue.open(name));
    writer.put({ a: 1 });
    expect(reader.get()).toEqual({ a: 1 }); // the reader has loaded the table as it was
    writer.put({ kind: 'new-shape', n: 5, bytes: Buffer.from([1, 2, 3]), more: { inner: Buffer.from([4]) } });
    const got = reader.get() as { bytes: unknown; more: { inner: unknown } };
    expect(Buffer.isBuffer(got.bytes)).toBe(true);
    expect(Buffer.isBuffer(got.more.inner)).toBe(true);
    expect([...(got.bytes as Buffer)]).toEqual([1, 2, 3]);
  });

  it('two processes that learn new structures concurrently: every message decodes deep-equal in both directions, and a third process decodes them too', async () => {
    const ab = queueName('ab');
    const ba = queueName('ba');
    track(SageQueue.create(ab, { capacity: 4 << 20 }));
    track(SageQueue.create(ba, { capacity: 4 << 20 }));
    const count = 600;
    // Shapes 0..59 and 30..89: both learn 30 shapes of their own and race for 30 shared ones.
    const a = peer([ab, ba, '0', '60', String(count)]);
    const b = peer([ba, ab, '30', '60', String(count)]);
    expect((await a.next('ready')).codec).toBe('records');
    await b.next('ready');
    a.child.send({ type: 'go' });
    b.child.send({ type: 'go' });
    const [gotByA, gotByB] = await Promise.all([a.next('got'), b.next('got')]);
    const expected = (first: number): unknown[] => Array.from({ length: count }, (_, i) => item(first + (i % 60), i));
    expect(gotByB.items).toEqual(expected(0)); // what A put
    expect(gotByA.items).toEqual(expected(30)); // what B put
    // The table every process agrees on: 90 shapes (plus nested ones), never more than the bound.
    const entries = tableEntries(SageQueue.open(ab));
    expect(entries).toBeGreaterThanOrEqual(60);
    expect(entries).toBeLessThanOrEqual(MAX_SHARED_STRUCTURES);
    // A process that saw none of it decodes what they put with what the table holds.
    const fresh = track(SageQueue.open(ab));
    fresh.putMany(expected(0).slice(0, 100));
    const reader = track(SageQueue.open(ab));
    // (Buffers come back as Buffers even when the reader loads the table mid-decode: see above.)
    expect(reader.getMany(100)).toEqual(expected(0).slice(0, 100));
  }, 60_000);

  it('a writer SIGKILLed in the middle of appending to the table: readers and later writers keep working and lose nothing', async () => {
    const name = queueName('torn');
    const q = track(SageQueue.create(name));
    q.put(item(0, 0)); // the table exists and holds shape 0
    const before = tableEntries(q);
    const dir = mkdtempSync(path.join(tmpdir(), 'sageq-torn-'));
    dirs.push(dir);
    const flag = path.join(dir, 'parked');
    // The peer writes half of its append (shape 100), says so, and waits there to be killed.
    const p = peer([name, name, '100', '1', '1'], { ...process.env, SAGE_TEST_TORN_APPEND: flag });
    await p.next('ready');
    const sizeBefore = statSync(tableOf(q)).size;
    p.child.send({ type: 'go' });
    await until(() => existsSync(flag), 'the peer to park mid-append', 20_000);
    expect(statSync(tableOf(q)).size).toBeGreaterThan(sizeBefore); // half a record is in the file
    p.child.kill('SIGKILL');
    await new Promise((resolve) => p.child.once('exit', resolve));
    // The torn tail does not count, and nothing it sent is in the queue.
    expect(tableEntries(q)).toBe(before);
    expect(q.qsize()).toBe(1);
    expect(q.get()).toEqual(item(0, 0));
    // Later writers append after the torn bytes; every process reads past them.
    const other = track(SageQueue.open(name));
    const shapes = [101, 102, 103, 104, 105]; // 104 holds a Buffer (shape % 6 === 4)
    q.putMany(shapes.map((s) => item(s, 1)));
    expect(other.getMany(10)).toEqual(shapes.map((s) => item(s, 1)));
    expect(tableEntries(q)).toBeGreaterThanOrEqual(before + shapes.length); // plus the nested shapes
    const late = track(SageQueue.open(name));
    late.put(item(0, 2));
    q.put(item(102, 3));
    expect(late.get()).toEqual(item(0, 2));
    expect(late.get()).toEqual(item(102, 3));
  }, 30_000);

  it('a torn tail appended directly (what a crash leaves) is ignored now and skipped once a writer appends after it', () => {
    const name = queueName('tail');
    const q = track(SageQueue.create(name));
    q.put({ a: 1 });
    expect(q.get()).toEqual({ a: 1 });
    const rec = encodeRecord(tableEntries(q), ['x', 'y']);
    appendFileSync(tableOf(q), rec.subarray(0, rec.length - 3));
    const r = track(SageQueue.open(name));
    q.put({ b: 2, c: 3 });
    expect(r.get()).toEqual({ b: 2, c: 3 });
    expect(tableEntries(q)).toBe(2);
    q.put({ x: 1, y: 2 }); // the torn record's shape, learnt properly this time
    expect(r.get()).toEqual({ x: 1, y: 2 });
    expect(tableEntries(q)).toBe(3);
  });

  it(`holds at most ${MAX_SHARED_STRUCTURES} structures; shapes beyond the bound still round trip, with their keys inline`, () => {
    const name = queueName('bound');
    const q = track(SageQueue.create(name, { capacity: 1 << 20 }));
    const r = track(SageQueue.open(name));
    const n = MAX_SHARED_STRUCTURES + 40;
    for (let s = 0; s < n; s += 50) {
      const batch = Array.from({ length: Math.min(50, n - s) }, (_, i) => ({ [`only${s + i}`]: s + i, tail: 'x' }));
      q.putMany(batch);
      expect(r.getMany(50)).toEqual(batch);
    }
    expect(tableEntries(q)).toBe(MAX_SHARED_STRUCTURES);
    const lastShape = { [`only${n - 1}`]: 1, tail: 'x' };
    q.put(lastShape);
    expect(r.get()).toEqual(lastShape);
  });

  it('refuses what it cannot carry with SerializationError and enqueues nothing', () => {
    const q = track(SageQueue.create(queueName('refuse')));
    for (const bad of [() => 1, Symbol('s'), { f: () => 1 }, { deep: [{ g: Symbol('t') }] }]) {
      expect(() => q.put(bad)).toThrow(SerializationError);
    }
    expect(q.qsize()).toBe(0);
  });

  it('the table gets the segment mode; list() does not show it; destroy() removes it; gc removes one whose queue is gone', () => {
    const name = queueName('files');
    const q = SageQueue.create(name, { mode: 0o640 });
    q.put({ k: 1 });
    const table = tableOf(q);
    expect(statSync(table).mode & 0o777).toBe(0o640);
    expect(SageQueue.list()).toContain(name);
    expect(SageQueue.list().some((n) => n.includes('@') || n.endsWith('.structs'))).toBe(false);
    q.destroy();
    expect(existsSync(table)).toBe(false);
    // An orphan: a table whose segment is gone.
    const orphanName = queueName('orphan');
    const orphan = structureTablePath(orphanName, '12345');
    appendFileSync(orphan, encodeRecord(0, ['a']));
    expect(SageQueue.gc({ only: [orphanName], dryRun: true }).removedTables).toEqual([path.basename(orphan)]);
    expect(existsSync(orphan)).toBe(true);
    expect(SageQueue.gc({ only: [orphanName] }).removedTables).toEqual([path.basename(orphan)]);
    expect(existsSync(orphan)).toBe(false);
    expect(readdirSync('/dev/shm').filter((f) => f.includes(name))).toEqual([]);
  });

  it('a queue created with v8 (the old default) still opens with its codec and works; the other codecs stay selectable', () => {
    for (const codec of ['v8', 'json', 'msgpack', 'raw'] as const) {
      const name = queueName(codec);
      track(SageQueue.create(name, { codec }));
      const q = track(SageQueue.open(name));
      expect(q.codec).toBe(codec);
      const v = codec === 'raw' ? Buffer.from('abc') : { a: 1, b: ['x'] };
      q.put(v);
      expect(q.get()).toEqual(v);
      expect(readdirSync('/dev/shm').filter((f) => f.startsWith(`sageq.${name}@`))).toEqual([]);
    }
  });

  it('records written before a reader attached decode in a reader that loads the table afterwards (the file is the only state)', () => {
    const name = queueName('late');
    const q = track(SageQueue.create(name));
    const values = Array.from({ length: 20 }, (_, i) => item(i, i));
    q.putMany(values);
    q.release();
    expect(readFileSync(tableOf(track(SageQueue.open(name)))).length).toBeGreaterThan(0);
    expect(track(SageQueue.open(name)).getMany(50)).toEqual(values);
  });
});
