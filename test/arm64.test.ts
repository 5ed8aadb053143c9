/**
 * The linux-arm64 prebuilt binary works on arm64: scripts/prebuild.sh cross-compiles it (Debian's
 * aarch64-linux-gnu-g++) into a temp folder, and Debian's arm64 Node, run under
 * qemu-aarch64-static, loads it from a copy of the package laid out as the tarball ships it
 * (dist/, package.json, prebuilds/linux-arm64/; no build/) and moves a message through a SageQueue:
 * put, get back equal, then a second arm64 process attaches to the same queue, takes a message
 * and answers.
 *
 * The arm64 Node (18, N-API 9) is unpacked by scripts/ensure-tools.sh (the `node-arm64` row) into
 * SAGE_ARM64_SYSROOT, default /var/cache/sage-queue/arm64-node; it is run as
 * `qemu-aarch64-static -L SYSROOT SYSROOT/usr/bin/node`. The test fails, naming the command to
 * run, when the emulator or the sysroot is missing, and fails when the prebuild does not build or
 * does not load. The temp folder and the queue's segment are removed even when it fails.
 */
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const REPO = resolve(__dirname, '..');
const SYSROOT = process.env.SAGE_ARM64_SYSROOT ?? '/var/cache/sage-queue/arm64-node';
const QEMU = 'qemu-aarch64-static';
const EM_AARCH64 = 183;
const QUEUE = `arm64-roundtrip-${process.pid}-${Date.now().toString(36)}`;
const SEGMENT = `/dev/shm/sageq.${QUEUE}`;

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

function run(cmd: string, args: string[], opts: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs: number }): Promise<Result> {
  return new Promise((resolvePromise, reject) => {
    const started = Date.now();
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const result = { code, stdout, stderr, ms: Date.now() - started };
      if (code === 0) resolvePromise(result);
      else reject(new Error(`${cmd} ${args.join(' ')} exited with ${code ?? signal}\n${stdout}${stderr}`));
    });
  });
}

/** Our environment without npm's per-script variables, vitest's, or a test addon override. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value === undefined || key.startsWith('VITEST') || key === 'SAGE_QUEUE_NATIVE_ADDON' || key === 'NODE_OPTIONS') continue;
    env[key] = value;
  }
  return { ...env, ...extra };
}

function onPath(cmd: string): boolean {
  return (process.env.PATH ?? '').split(delimiter).some((dir) => dir !== '' && existsSync(join(dir, cmd)));
}

// Runs in the arm64 Node. argv: package dir, role ('primary' | 'attacher'), queue name.
// The primary does the round trip, puts a message, starts the attacher (through qemu: the guest
// cannot exec an arm64 binary by itself without binfmt_misc), and once it has exited takes its
// answer. One JSON line each.
const ROUND_TRIP = String.raw`
const { spawn } = require('node:child_process');
const { isDeepStrictEqual } = require('node:util');
const [pkgDir, role, name] = process.argv.slice(2);
const { SageQueue, capabilities } = require(pkgDir);
const loaded = () => Object.keys(require.cache).filter((f) => f.endsWith('.node'));
const report = (o) => console.log(JSON.stringify({ role, arch: process.arch, node: process.version, loaded: loaded(), ...o }));

if (role === 'attacher') {
  const q = SageQueue.open(name);
  const got = q.get(true, 20000);
  q.put({ reply: got.n * 2, from: 'attacher' });
  report({ got });
  q.release();
} else {
  const q = SageQueue.create(name, { capacity: 1 << 16 });
  try {
    const item = { id: 1, text: 'héllo arm64', at: new Date(0), big: 2n ** 70n, tags: new Set(['a', 'b']), bytes: new Uint8Array([1, 2, 3]) };
    q.put(item);
    const back = q.get(true, 5000);
    const equal = isDeepStrictEqual(back, item);
    const depthAfter = q.qsize();
    q.put({ n: 21 });
    const child = spawn(process.env.SAGE_QEMU, ['-L', process.env.SAGE_SYSROOT, process.env.SAGE_GUEST_NODE, __filename, pkgDir, 'attacher', name], { stdio: ['ignore', 'inherit', 'inherit'] });
    // The primary does not read while the attacher runs (it would take the message itself).
    child.on('exit', (attacherExit) => {
      try {
        const reply = q.get(true, 5000);
        report({ caps: capabilities(), equal, depthAfter, reply, attacherExit, stats: { enqueued: q.stats().enqueued, dequeued: q.stats().dequeued } });
      } finally {
        q.destroy();
      }
    });
  } catch (err) {
    q.destroy();
    throw err;
  }
}
`;

describe('the linux-arm64 prebuild, under qemu with an arm64 Node', () => {
  let root: string | undefined;
  let pkgDir = '';
  let binary = '';
  let guestNode = '';
  let prebuildMs = 0;

  beforeAll(async () => {
    const missing: string[] = [];
    if (!onPath(QEMU)) missing.push(QEMU);
    if (!existsSync(join(SYSROOT, '.complete'))) missing.push(`the arm64 Node in ${SYSROOT}`);
    if (!onPath('aarch64-linux-gnu-g++')) missing.push('aarch64-linux-gnu-g++');
    if (missing.length > 0) throw new Error(`missing ${missing.join(', ')}; run: bash scripts/ensure-tools.sh`);
    if (!existsSync(join(REPO, 'dist', 'index.js'))) throw new Error('dist/ is not built; run: npm run build:ts');
    guestNode = join(SYSROOT, 'usr', 'bin', 'node');

    root = mkdtempSync(join(tmpdir(), 'sage-queue-arm64-'));
    const out = join(root, 'out');
    const started = Date.now();
    await run('bash', [join(REPO, 'scripts', 'prebuild.sh'), '--arch', 'arm64', '--out', out], {
      cwd: REPO,
      env: cleanEnv({ npm_config_nodedir: '/usr' }),
      timeoutMs: 180_000,
    });
    prebuildMs = Date.now() - started;
    const built = readdirSync(join(out, 'prebuilds', 'linux-arm64')).filter((f) => f.endsWith('.node'));
    expect(built, 'prebuild.sh wrote one linux-arm64 binary').toHaveLength(1);

    // The package as the tarball ships it: dist/ copied (not linked: the loader looks for the
    // binary next to dist/'s real path), the arm64 prebuild, no build/ directory.
    pkgDir = join(root, 'package');
    mkdirSync(pkgDir);
    cpSync(join(REPO, 'dist'), join(pkgDir, 'dist'), { recursive: true });
    cpSync(join(REPO, 'package.json'), join(pkgDir, 'package.json'));
    cpSync(join(out, 'prebuilds'), join(pkgDir, 'prebuilds'), { recursive: true });
    symlinkSync(join(REPO, 'node_modules'), join(pkgDir, 'node_modules'), 'dir');
    binary = join(pkgDir, 'prebuilds', 'linux-arm64', built[0]!);
    writeFileSync(join(root, 'round-trip.cjs'), ROUND_TRIP);
  }, 240_000);

  afterAll(() => {
    rmSync(SEGMENT, { force: true });
    if (root !== undefined) rmSync(root, { recursive: true, force: true });
  });

  it('prebuild.sh cross-compiles a stripped, glibc-tagged, N-API ELF 64-bit aarch64 binary', () => {
    const elf = readFileSync(binary);
    expect(elf.subarray(0, 4).toString('latin1')).toBe('\x7fELF');
    expect(elf[4], 'ELFCLASS64').toBe(2);
    expect(elf[5], 'little-endian').toBe(1);
    expect(elf.readUInt16LE(18), 'e_machine is EM_AARCH64').toBe(EM_AARCH64);
    expect(binary).toMatch(/\.glibc\.node$/);
    expect(elf.includes('napi_register_module_v1')).toBe(true);
    expect(elf.includes('.symtab'), 'stripped: no symbol table').toBe(false);
    console.log(`prebuild.sh --arch arm64 took ${prebuildMs} ms`);
  });

  it('an arm64 Node loads it and round-trips a message; a second arm64 process attaches to the same queue and answers', async () => {
    const r = await run(QEMU, ['-L', SYSROOT, guestNode, join(root!, 'round-trip.cjs'), pkgDir, 'primary', QUEUE], {
      cwd: root!,
      env: cleanEnv({ PREBUILDS_ONLY: '1', SAGE_QEMU: QEMU, SAGE_SYSROOT: SYSROOT, SAGE_GUEST_NODE: guestNode }),
      timeoutMs: 120_000,
    });
    console.log(`arm64 round trip took ${r.ms} ms:\n${r.stdout}`);
    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const attacher = lines.find((l) => l.role === 'attacher');
    const primary = lines.find((l) => l.role === 'primary');
    expect(attacher, r.stdout + r.stderr).toBeDefined();
    expect(primary, r.stdout + r.stderr).toBeDefined();
    for (const report of [primary!, attacher!]) {
      expect(report.arch).toBe('arm64');
      expect(report.loaded).toEqual([binary]);
    }
    expect(primary!.equal, 'the message came back deep-equal').toBe(true);
    expect(primary!.depthAfter).toBe(0);
    expect(attacher!.got).toEqual({ n: 21 });
    expect(primary!.reply).toEqual({ reply: 42, from: 'attacher' });
    expect(primary!.attacherExit).toBe(0);
    expect(primary!.stats).toEqual({ enqueued: 3, dequeued: 3 });
    expect((primary!.caps as Record<string, unknown>).platform).toBe('linux');
    expect((primary!.caps as Record<string, unknown>).robustLocks).toBe(true);
    expect(existsSync(SEGMENT), 'the queue was destroyed').toBe(false);
  }, 150_000);
});
