/**
 * scripts/ensure-tools.sh, the first step of `npm test` and of .ci/run: a missing system tool is
 * installed with apt-get when the script may (root, or passwordless sudo), and otherwise the script
 * stops at once with one line naming the command to run.
 *
 * Each case runs a copy of the script (in a temp folder every user can read) with a PATH made of
 * symlinks to everything in the system's bin directories except redis-server, apt-get and sudo,
 * plus stub apt-get / sudo scripts that append their arguments to a log (and, for the install case,
 * make a stub redis-server appear, as installing the package would). The non-root cases run as
 * user nobody (setpriv) when the tests run as root. The temp folder is removed afterwards.
 */
import { spawn } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { worldReadableTempDir } from './support/readable-package';

const REPO = resolve(__dirname, '..');
const IS_ROOT = typeof process.getuid === 'function' && process.getuid() === 0;
const AS_NOBODY = IS_ROOT ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'] : [];
const HIDDEN = new Set(['redis-server', 'apt-get', 'sudo']);
const SYSTEM_BINS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

let root = '';
let script = '';
let sysbin = '';
let caseNo = 0;

function run(argv: string[], env: NodeJS.ProcessEnv): Promise<Result> {
  return new Promise((resolvePromise, reject) => {
    const started = Date.now();
    const child = spawn(argv[0] as string, argv.slice(1), { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolvePromise({ code, stdout, stderr, ms: Date.now() - started });
    });
  });
}

function writeExecutable(file: string, lines: string[]): void {
  writeFileSync(file, `${lines.join('\n')}\n`);
  chmodSync(file, 0o755);
}

/**
 * A case's stub directory (first on PATH) and the log its stubs append to (writable by nobody).
 * `apt-get` provides redis-server when asked to install it, unless `aptInstalls` is false.
 * `sudo` is absent, passwordless (runs the command) or asks for a password (`sudo -n` fails).
 */
function stubs(opts: { aptInstalls?: boolean; sudo: 'absent' | 'passwordless' | 'needs-password' }) {
  const dir = join(root, `case-${++caseNo}`);
  const bin = join(dir, 'bin');
  mkdirSync(bin, { recursive: true });
  chmodSync(dir, 0o777);
  chmodSync(bin, 0o777);
  const log = join(dir, 'calls.log');
  writeFileSync(log, '');
  chmodSync(log, 0o666);
  writeExecutable(join(bin, 'apt-get'), [
    '#!/bin/sh',
    `echo "uid=$(id -u) DEBIAN_FRONTEND=$DEBIAN_FRONTEND apt-get $*" >> "${log}"`,
    ...(opts.aptInstalls === false
      ? []
      : [
          'if [ "$1" = install ]; then',
          '  for p in "$@"; do',
          `    if [ "$p" = redis-server ]; then printf '#!/bin/sh\\nexit 0\\n' > "${bin}/redis-server"; chmod 755 "${bin}/redis-server"; fi`,
          '  done',
          'fi',
        ]),
    'exit 0',
  ]);
  if (opts.sudo === 'passwordless') {
    writeExecutable(join(bin, 'sudo'), ['#!/bin/sh', `echo "sudo $*" >> "${log}"`, '[ "$1" = -n ] && shift', 'exec "$@"']);
  } else if (opts.sudo === 'needs-password') {
    writeExecutable(join(bin, 'sudo'), [
      '#!/bin/sh',
      `echo "sudo $*" >> "${log}"`,
      'echo "sudo: a password is required" >&2',
      'exit 1',
    ]);
  }
  const env: NodeJS.ProcessEnv = { PATH: `${bin}:${sysbin}`, HOME: root, LANG: 'C' };
  return { bin, env, calls: () => readFileSync(log, 'utf8').split('\n').filter((l) => l !== '') };
}

beforeAll(() => {
  root = worldReadableTempDir('sageq-ensure-tools-');
  script = join(root, 'ensure-tools.sh');
  copyFileSync(join(REPO, 'scripts', 'ensure-tools.sh'), script);
  chmodSync(script, 0o755);
  // Everything the system's bin directories hold, except the hidden commands (first one wins).
  sysbin = join(root, 'sysbin');
  mkdirSync(sysbin);
  for (const dir of SYSTEM_BINS) {
    if (!existsSync(dir)) continue;
    for (const name of readdirSync(dir)) {
      if (HIDDEN.has(name) || existsSync(join(sysbin, name))) continue;
      symlinkSync(join(dir, name), join(sysbin, name));
    }
  }
});

afterAll(() => {
  if (root !== '') rmSync(root, { recursive: true, force: true });
});

/** What the script reports missing on this machine with redis-server visible (normally nothing). */
async function missingBesidesRedis(): Promise<string[]> {
  const bin = join(root, 'redis-visible');
  mkdirSync(bin, { recursive: true });
  writeExecutable(join(bin, 'redis-server'), ['#!/bin/sh', 'exit 0']);
  const r = await run(['bash', script, '--check'], { PATH: `${bin}:${sysbin}`, HOME: root });
  return r.code === 0 ? [] : r.stdout.trim().split(/\s+/);
}

describe('scripts/ensure-tools.sh, redis-server missing unless said otherwise', () => {
  it('does nothing and prints nothing when the tool is there (redis-server on PATH): apt-get is never called', async () => {
    const s = stubs({ sudo: 'absent' });
    writeExecutable(join(s.bin, 'redis-server'), ['#!/bin/sh', 'exit 0']);
    const r = await run(['bash', script, 'redis-server'], s.env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout + r.stderr).toBe('');
    expect(s.calls()).toEqual([]);
  });

  it.skipIf(!IS_ROOT)(
    'as root it runs apt-get update, then apt-get install -y --no-install-recommends with the redis-server package (non-interactively), and succeeds once the tool is there',
    async () => {
      const s = stubs({ sudo: 'absent' });
      const expected = [...new Set(['redis-server', ...(await missingBesidesRedis())])].sort();
      const r = await run(['bash', script], s.env);
      expect(r.code, r.stderr).toBe(0);
      expect(s.calls()).toEqual([
        'uid=0 DEBIAN_FRONTEND=noninteractive apt-get update -q',
        `uid=0 DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ${expected.join(' ')}`,
      ]);
      expect(r.stdout).toContain('redis-server');
      expect(existsSync(join(s.bin, 'redis-server'))).toBe(true);
    },
  );

  it.skipIf(!IS_ROOT)('as root, if apt-get succeeds but the tool is still not found, it fails naming the tool', async () => {
    const s = stubs({ sudo: 'absent', aptInstalls: false });
    const r = await run(['bash', script, 'redis-server'], s.env);
    expect(r.code).toBe(1);
    expect(s.calls()).toHaveLength(2);
    expect(r.stderr).toMatch(/^ensure-tools: apt-get installed redis-server, but redis-server is still not found/m);
  });

  it('as a user without sudo it exits 1 at once with one line naming the command to run, and calls nothing', async () => {
    const s = stubs({ sudo: 'absent' });
    const r = await run([...AS_NOBODY, 'bash', script, 'redis-server'], s.env);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(
      'ensure-tools: missing redis-server; run: sudo apt-get update && sudo apt-get install -y --no-install-recommends redis-server\n',
    );
    expect(s.calls()).toEqual([]);
    expect(r.ms, 'it stops at once').toBeLessThan(5_000);
  });

  it('as a user whose sudo asks for a password it exits 1 with the same line, having only tried `sudo -n true`', async () => {
    const s = stubs({ sudo: 'needs-password' });
    const r = await run([...AS_NOBODY, 'bash', script, 'redis-server'], s.env);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      'ensure-tools: missing redis-server; run: sudo apt-get update && sudo apt-get install -y --no-install-recommends redis-server\n',
    );
    expect(s.calls()).toEqual(['sudo -n true']);
  });

  it('as a user with passwordless sudo it installs through `sudo -n`', async () => {
    const s = stubs({ sudo: 'passwordless' });
    const r = await run([...AS_NOBODY, 'bash', script, 'redis-server'], s.env);
    expect(r.code, r.stderr).toBe(0);
    const uid = IS_ROOT ? 65534 : (process.getuid?.() ?? -1);
    expect(s.calls()).toEqual([
      'sudo -n true',
      'sudo -n env DEBIAN_FRONTEND=noninteractive apt-get update -q',
      `uid=${uid} DEBIAN_FRONTEND=noninteractive apt-get update -q`,
      'sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends redis-server',
      `uid=${uid} DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends redis-server`,
    ]);
  });

  it('SAGE_NO_INSTALL=1 stops with the command to run even as root', async () => {
    const s = stubs({ sudo: 'absent' });
    const r = await run(['bash', script, 'redis-server'], { ...s.env, SAGE_NO_INSTALL: '1' });
    expect(r.code).toBe(1);
    const sudo = IS_ROOT ? '' : 'sudo ';
    expect(r.stderr).toBe(
      `ensure-tools: missing redis-server (SAGE_NO_INSTALL=1); run: ${sudo}apt-get update && ${sudo}apt-get install -y --no-install-recommends redis-server\n`,
    );
    expect(s.calls()).toEqual([]);
  });
});

describe('scripts/ensure-tools.sh, the arm64 Node row (unpacked into a sysroot, never installed)', () => {
  const DEBS = [
    'nodejs:arm64',
    'libnode108:arm64',
    'libc6:arm64',
    'libgcc-s1:arm64',
    'libstdc++6:arm64',
    'libbrotli1:arm64',
    'libc-ares2:arm64',
    'libicu72:arm64',
    'libnghttp2-14:arm64',
    'libssl3:arm64',
    'libuv1:arm64',
    'zlib1g:arm64',
    'node-acorn',
    'node-cjs-module-lexer',
    'node-undici',
    'node-busboy',
    'node-xtend',
  ];

  /** Stub apt-get (download writes one fake .deb per package), dpkg (no foreign arch yet) and dpkg-deb. */
  function sysrootStubs() {
    const s = stubs({ sudo: 'absent' });
    const log = join(s.bin, '..', 'calls.log');
    writeExecutable(join(s.bin, 'apt-get'), [
      '#!/bin/sh',
      `echo "uid=$(id -u) DEBIAN_FRONTEND=$DEBIAN_FRONTEND apt-get $*" >> "${log}"`,
      'if [ "$1" = download ]; then',
      '  for p in "$@"; do case "$p" in -*|download|APT::*) ;; *) n="${p%%:*}"; : > "${n}_1_all.deb" ;; esac; done',
      'fi',
      'exit 0',
    ]);
    writeExecutable(join(s.bin, 'dpkg'), ['#!/bin/sh', `echo "dpkg $*" >> "${log}"`, 'exit 0']);
    writeExecutable(join(s.bin, 'dpkg-deb'), [
      '#!/bin/sh',
      `echo "dpkg-deb $1 $(basename "$2")" >> "${log}"`,
      'case "$(basename "$2")" in nodejs_*) mkdir -p "$3/usr/bin" && : > "$3/usr/bin/node" ;; esac',
      'exit 0',
    ]);
    const sysroot = join(s.bin, '..', 'cache', 'arm64-node');
    return { ...s, sysroot, env: { ...s.env, SAGE_ARM64_SYSROOT: sysroot } };
  }

  it.skipIf(!IS_ROOT)(
    'as root it adds the arm64 architecture, runs apt-get update, downloads the arm64 Node and its libraries, unpacks each with dpkg-deb -x, and then finds it present',
    async () => {
      const s = sysrootStubs();
      const r = await run(['bash', script, 'node-arm64'], s.env);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      const calls = s.calls();
      expect(calls.slice(0, 4)).toEqual([
        'dpkg --print-foreign-architectures',
        'dpkg --add-architecture arm64',
        'uid=0 DEBIAN_FRONTEND=noninteractive apt-get update -q',
        `uid=0 DEBIAN_FRONTEND= apt-get download -q -o APT::Sandbox::User=root ${DEBS.join(' ')}`,
      ]);
      expect(calls.slice(4).sort()).toEqual(
        DEBS.map((d) => `dpkg-deb -x ${d.split(':')[0]}_1_all.deb`).sort(),
      );
      expect(calls.some((c) => / install /.test(c)), 'nothing is installed with apt-get').toBe(false);
      expect(existsSync(join(s.sysroot, 'usr', 'bin', 'node'))).toBe(true);
      expect(readFileSync(join(s.sysroot, '.complete'), 'utf8').split('\n').filter((l) => l !== '')).toHaveLength(DEBS.length);
      expect(readdirSync(join(s.sysroot, '..')), 'no half-done folder is left').toEqual(['arm64-node']);

      const again = await run(['bash', script, 'node-arm64'], s.env);
      expect(again.code).toBe(0);
      expect(again.stdout + again.stderr).toBe('');
      expect(s.calls()).toHaveLength(calls.length);
    },
  );

  it('as a user without sudo it exits 1 naming the command to run, and calls nothing', async () => {
    const s = sysrootStubs();
    const r = await run([...AS_NOBODY, 'bash', script, 'node-arm64'], s.env);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('ensure-tools: missing node-arm64; run: sudo bash scripts/ensure-tools.sh node-arm64\n');
    expect(s.calls()).toEqual([]);
  });
});
