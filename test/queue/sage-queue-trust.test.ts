/**
 * Whom a SageQueue trusts when it opens an existing segment: the owner must be this user (or root,
 * or a uid listed in `trustedUids`), and a segment that group/other may write is refused unless
 * `allowSharedMode`. Checked on the open descriptor. A queue another user planted under the name
 * is refused by open-or-create and open alike; inspection still shows it, marked untrusted.
 *
 * The other user is `nobody`, a real process run with setpriv. It loads a copy of the addon from a
 * temporary directory it can read (the checkout may not be readable by nobody), removed afterwards.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';

import { QueueDescriptor, SageQueue, SharedMemoryError } from '../../lib/index';
import { native } from '../../lib/native';

const REPO = path.resolve(__dirname, '..', '..');
const IS_ROOT = typeof process.getuid === 'function' && process.getuid() === 0;
const NOBODY = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'];
const CAN_SETPRIV = IS_ROOT && spawnSync(NOBODY[0] as string, [...NOBODY.slice(1), 'true'], { stdio: 'ignore' }).status === 0;

const names = new Set<string>();
const handles = new Set<SageQueue>();
let addonDir: string | undefined;

function qname(tag: string): string {
  const n = `trust-${process.pid}-${tag}-${randomBytes(3).toString('hex')}`;
  names.add(n);
  return n;
}

function track<T extends SageQueue>(q: T): T {
  handles.add(q);
  return q;
}

afterEach(() => {
  for (const q of handles) q.release();
  handles.clear();
  for (const n of names) {
    try {
      SageQueue.destroy(n);
    } catch {
      // already gone
    }
  }
  names.clear();
});

afterAll(() => {
  if (addonDir !== undefined) rmSync(addonDir, { recursive: true, force: true });
  expect(SageQueue.list().filter((n) => n.startsWith(`trust-${process.pid}-`))).toEqual([]);
});

/** The addon this process loaded, copied where `nobody` can read it. */
function addonForNobody(): string {
  if (addonDir === undefined) {
    addonDir = mkdtempSync(path.join(os.tmpdir(), 'sage-trust-'));
    chmodSync(addonDir, 0o755);
  }
  const target = path.join(addonDir, 'sage_queue.node');
  if (!existsSync(target)) {
    const loaded = process.env.SAGE_QUEUE_NATIVE_ADDON || path.join(REPO, 'build', 'Release', 'sage_queue.node');
    copyFileSync(loaded, target);
    chmodSync(target, 0o755);
  }
  return target;
}

/** As user nobody: creates queue `name` with file mode `mode` through the addon, and exits. */
async function createAsNobody(name: string, mode: number): Promise<void> {
  const code = `
    const addon = require(process.env.ADDON);
    const q = new addon.NativeQueue(process.env.Q, 'create', { capacity: 4096, mode: Number(process.env.MODE), codec: 1 }, () => {}, 0);
    q.release();
    console.log(JSON.stringify({ uid: process.getuid() }));`;
  const argv = [...NOBODY, process.execPath, '-e', code];
  const child = spawn(argv[0] as string, argv.slice(1), {
    cwd: os.tmpdir(),
    env: { ...process.env, ADDON: addonForNobody(), Q: name, MODE: String(mode) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  const exit = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  clearTimeout(timer);
  expect(exit, err).toBe(0);
  expect(JSON.parse(out.trim())).toEqual({ uid: 65534 });
  const st = statSync(`/dev/shm/sageq.${name}`);
  expect([st.uid, st.mode & 0o777]).toEqual([65534, mode]);
}

function errorOf(fn: () => unknown): Error & { code?: string } {
  try {
    fn();
  } catch (e) {
    return e as Error & { code?: string };
  }
  throw new Error('expected an error');
}

describe('a queue another user planted under the name', () => {
  it.skipIf(!CAN_SETPRIV)(
    "nobody's 0666 segment: root's new SageQueue(name) and SageQueue.open(name) refuse it (ERR_QUEUE_UNTRUSTED_OWNER, saying which option opts in) and nothing is attached; with trustedUids and allowSharedMode it attaches",
    async () => {
      const name = qname('planted');
      await createAsNobody(name, 0o666);

      for (const attempt of [() => new SageQueue(name), () => SageQueue.open(name), () => SageQueue.create(name)]) {
        const e = errorOf(attempt);
        expect(e).toBeInstanceOf(SharedMemoryError);
        if (e.code === 'ERR_QUEUE_EXISTS') continue; // create: the name is taken, whoever took it
        expect(e.code).toBe('ERR_QUEUE_UNTRUSTED_OWNER');
        expect(e.message).toContain('trustedUids');
        expect(e.message).toContain('owner uid 65534');
      }
      // Trusting the owner is not enough: the segment is writable by others.
      const shared = errorOf(() => SageQueue.open(name, { trustedUids: [65534] }));
      expect(shared).toMatchObject({ code: 'ERR_QUEUE_SHARED_MODE', name: 'SharedMemoryError' });
      expect(shared.message).toContain('allowSharedMode');
      expect(errorOf(() => new SageQueue(name, { allowSharedMode: true }))).toMatchObject({ code: 'ERR_QUEUE_UNTRUSTED_OWNER' });

      // Inspection still shows it, marked untrusted, without probing (or trusting) its processes.
      const view = SageQueue.inspect(name);
      expect(view).toMatchObject({ liveness: 'untrusted', untrusted: 'ERR_QUEUE_UNTRUSTED_OWNER', alive: 0, dead: 0 });
      expect(view.stats).toMatchObject({ fileUid: 65534, fileMode: 0o666, untrusted: 'ERR_QUEUE_UNTRUSTED_OWNER' });
      expect(SageQueue.gc({ only: [name], dryRun: true }).candidates).toEqual([]);
      const cli = spawnSync(process.execPath, [path.join(REPO, 'dist', 'cli', 'main.js'), 'stat', name], { encoding: 'utf8', timeout: 20_000 });
      expect(cli.stdout).toMatch(/state\s+UNTRUSTED/);
      expect(cli.stdout).toMatch(/trust\s+UNTRUSTED: owned by another user \(owner uid 65534, mode 0666\)/);

      // Both opt-ins: it attaches (open-or-create and open), and the queue works.
      const a = track(new SageQueue<string>(name, { trustedUids: [65534], allowSharedMode: true }));
      const b = track(SageQueue.open<string>(name, { trustedUids: [65534], allowSharedMode: true }));
      a.put('hello');
      expect(b.get(false)).toBe('hello');
      expect(a.stats().processes).toHaveLength(2);
    },
    30_000,
  );

  it.skipIf(!CAN_SETPRIV)("nobody's 0600 segment is refused as untrusted too (owner first), unless nobody is trusted", async () => {
    const name = qname('planted600');
    await createAsNobody(name, 0o600);
    expect(errorOf(() => new SageQueue(name))).toMatchObject({ code: 'ERR_QUEUE_UNTRUSTED_OWNER' });
    const q = track(SageQueue.open(name, { trustedUids: [1000, 65534] }));
    expect(q.qsize()).toBe(0);
  });
});

describe('a segment of this user that group or others may write', () => {
  it('is refused without allowSharedMode (ERR_QUEUE_SHARED_MODE), whichever way it is opened; a group-readable one is fine', () => {
    const name = qname('shared');
    const owner = track(SageQueue.create<string>(name, { codec: 'json', mode: 0o666, allowSharedMode: true }));
    for (const attempt of [() => new SageQueue(name), () => SageQueue.open(name), () => new SageQueue(owner.descriptor)]) {
      const e = errorOf(attempt);
      expect(e).toBeInstanceOf(SharedMemoryError);
      expect(e.code).toBe('ERR_QUEUE_SHARED_MODE');
    }
    const q = track(SageQueue.open<string>(name, { allowSharedMode: true }));
    q.put('x');
    expect(owner.get(false)).toBe('x');

    const readable = qname('readable');
    track(SageQueue.create(readable, { mode: 0o640 }));
    expect(track(SageQueue.open(readable)).released).toBe(false);
  });

  it('is checked on the open file, not the name: chmod after opening changes nothing for the open handle, and the next open is refused', () => {
    const name = qname('chmod');
    const owner = track(SageQueue.create<string>(name, { codec: 'json' }));
    const early = track(SageQueue.open<string>(name));
    chmodSync(`/dev/shm/sageq.${name}`, 0o662);
    expect(errorOf(() => SageQueue.open(name))).toMatchObject({ code: 'ERR_QUEUE_SHARED_MODE' });
    early.put('still works');
    expect(owner.get(false)).toBe('still works');
  });

  it('creating one needs allowSharedMode too (a mode with group/other write is refused up front, and nothing is created)', () => {
    const name = qname('modeopt');
    const e = errorOf(() => SageQueue.create(name, { mode: 0o620 }));
    expect(e).toMatchObject({ code: 'ERR_QUEUE_SHARED_MODE', name: 'InvalidArgumentValueError' });
    expect(e.message).toContain('allowSharedMode');
    expect(SageQueue.list()).not.toContain(name);
    expect(errorOf(() => SageQueue.create(name, { trustedUids: [-1] }))).toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
    expect(errorOf(() => SageQueue.create(name, { trustedUids: 5 as never }))).toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
  });
});

describe('descriptors carry no trust', () => {
  it("a descriptor's metadata cannot widen trust: only the resolving caller's own options can", () => {
    const name = qname('desc');
    const owner = track(SageQueue.create<string>(name, { codec: 'json', mode: 0o666, allowSharedMode: true }));
    // A descriptor that claims the opt-ins in its metadata is opened with the default policy.
    const forged = new QueueDescriptor({
      queueId: name,
      queueType: 'sage_queue',
      metadata: { codec: 'json', allowSharedMode: true, allow_shared_mode: true, trustedUids: [65534], trusted_uids: [65534] },
    });
    expect(errorOf(() => new SageQueue(forged))).toMatchObject({ code: 'ERR_QUEUE_SHARED_MODE' });
    // The caller may opt in when it opens a descriptor itself.
    const q = track(new SageQueue<string>(owner.descriptor, { allowSharedMode: true }));
    q.put('via descriptor');
    expect(owner.get(false)).toBe('via descriptor');
    expect(errorOf(() => new SageQueue(owner.descriptor, { capacity: 8192 } as never))).toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
  });

  it('the addon reports the new statuses and the temporary-name prefix', () => {
    const codes = native().statuses().map((s) => s.code);
    expect(codes).toEqual(expect.arrayContaining(['ERR_QUEUE_UNTRUSTED_OWNER', 'ERR_QUEUE_SHARED_MODE', 'ERR_QUEUE_REPLACED', 'ERR_QUEUE_FORKED']));
    expect(native().capabilities().shmTempPrefix).toBe('sageq-tmp.');
  });
});
