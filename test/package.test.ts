/**
 * The package as shipped: the prebuilt binary in the npm tarball is what a consumer loads, with
 * no compiler anywhere on its PATH, from CommonJS and from ESM, with and without PREBUILDS_ONLY;
 * the tarball carries its LICENSE and no source map that points at a file it does not ship.
 *
 * Steps: `git clone` of HEAD into a temp folder -> `npm pack` there (its `prepack` runs prebuildify
 * for linux-x64 and, cross-compiled, for linux-arm64, which test/arm64.test.ts runs under qemu;
 * its `prepare` builds dist/) -> `npm install <tarball>` into an empty project whose PATH starts
 * with fake `cc`/`g++`/`make`/`cmake`/... that only fail loudly.
 *
 * Packing from a clone, not from the working tree, is what makes this a test of what a publisher
 * gets: nothing untracked or ignored (a stale prebuilds/ or dist/ file) can leak into the tarball,
 * and the working tree's build/, dist/ and prebuilds/ are left alone. It tests HEAD: commit first.
 *
 * The clone's node_modules is a symlink to the working tree's when package.json and
 * package-lock.json there are the ones HEAD records (the dependencies are then the ones the clone
 * would install; npm pack and the build only read them). Otherwise the clone gets its own
 * `npm ci --prefer-offline --ignore-scripts`, from the npm cache when it can.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const repo = resolve(__dirname, '..');
const platformDir = `${process.platform}-${process.arch}`;

/** The fake toolchain: every one of these prints this and exits 1. */
const COMPILER_CALLED = 'compiler called';
const FAKE_TOOLS = ['cc', 'c++', 'g++', 'gcc', 'make', 'cmake', 'clang', 'clang++', 'ninja'];

/** npm's per-script variables that must not leak from `npm test` into the child npm/node runs. */
const KEEP_NPM_VARS = new Set(['npm_config_cache', 'npm_config_userconfig', 'npm_config_globalconfig', 'npm_config_registry', 'npm_config_cafile']);

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

interface LoadReport {
  caps: Record<string, unknown>;
  loaded: string[];
}

/** Everything every child printed, for the "no compiler was called" check and for failure messages. */
const transcript: string[] = [];

/** Environment for child processes: ours minus npm's per-run variables and node_modules/.bin on PATH. */
function childEnv(extra: { pathPrefix?: string; env?: Record<string, string> } = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value === undefined) continue;
    if (/^npm_/i.test(key) && !KEEP_NPM_VARS.has(key.toLowerCase())) continue;
    if (key === 'INIT_CWD' || key === 'PREBUILDS_ONLY' || key.startsWith('VITEST')) continue;
    env[key] = value;
  }
  const path = (process.env.PATH ?? '')
    .split(delimiter)
    .filter((p) => p !== '' && !/node_modules[\\/]\.bin$/.test(p) && !/node-gyp-bin$/.test(p));
  if (extra.pathPrefix !== undefined) path.unshift(extra.pathPrefix);
  env.PATH = path.join(delimiter);
  // Addons are built against the local headers, never downloaded ones.
  env.npm_config_nodedir = '/usr';
  env.npm_config_update_notifier = 'false';
  env.npm_config_fund = 'false';
  env.npm_config_audit = 'false';
  return { ...env, ...extra.env };
}

/** Runs a command to completion; rejects with its whole output unless it exits 0. */
function run(cmd: string, args: string[], opts: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs: number }): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
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
      const shown = `$ (cd ${opts.cwd} && ${cmd} ${args.join(' ')})\n${stdout}${stderr}`;
      transcript.push(shown);
      if (code === 0) resolvePromise({ code, stdout, stderr });
      else reject(new Error(`exited with ${code ?? signal}${signal === 'SIGKILL' ? ' (timed out?)' : ''}\n${shown}`));
    });
  });
}

/** The last stdout line of a node run, parsed. */
function lastJsonLine(out: string): LoadReport {
  const lines = out.trim().split('\n');
  return JSON.parse(lines[lines.length - 1] ?? '') as LoadReport;
}

/** Every file under dir, as paths relative to it. */
function filesUnder(dir: string, prefix = ''): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(join(dir, prefix), { withFileTypes: true })) {
    const rel = prefix === '' ? entry.name : `${prefix}/${entry.name}`;
    if (entry.isDirectory()) out.push(...filesUnder(dir, rel));
    else out.push(rel);
  }
  return out;
}

function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

// Prints what the package reports and which .node files the process has loaded (native addons
// loaded through require() are in require.cache under their real path).
const CJS_PROBE = [
  "const q = require('sage-queue');",
  'const caps = q.capabilities();',
  "const loaded = Object.keys(require.cache).filter((f) => f.endsWith('.node'));",
  'console.log(JSON.stringify({ caps, loaded }));',
].join('\n');

const ESM_PROBE = [
  "import { capabilities } from 'sage-queue';",
  "import { createRequire } from 'node:module';",
  'const caps = capabilities();',
  "const loaded = Object.keys(createRequire(import.meta.url).cache).filter((f) => f.endsWith('.node'));",
  'console.log(JSON.stringify({ caps, loaded }));',
].join('\n');

describe('the published package loads its shipped prebuilt binary', () => {
  let root: string | undefined;
  let clone = '';
  let pkg = { name: '', version: '' };
  let prebuildName = '';
  let prebuildSha = '';
  let arm64Name = '';
  let tarball = '';
  let tarEntries: string[] = [];
  let unpacked = '';
  let consumer = '';
  let fakebin = '';
  let installOutput = '';
  let consumerEnv: NodeJS.ProcessEnv = {};

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'sage-queue-package-'));
    const packDir = join(root, 'pack');
    clone = join(root, 'clone');
    unpacked = join(root, 'unpacked');
    consumer = join(root, 'consumer');
    fakebin = join(root, 'fakebin');
    for (const d of [packDir, unpacked, consumer, fakebin]) mkdirSync(d);

    // 1. A clean clone of HEAD (local clone: objects are hard-linked, nothing is fetched).
    const head = (await run('git', ['rev-parse', 'HEAD'], { cwd: repo, env: childEnv(), timeoutMs: 30_000 })).stdout.trim();
    await run('git', ['clone', '--quiet', '--no-checkout', repo, clone], { cwd: root, env: childEnv(), timeoutMs: 60_000 });
    await run('git', ['checkout', '--quiet', '--detach', head], { cwd: clone, env: childEnv(), timeoutMs: 60_000 });
    pkg = JSON.parse(readFileSync(join(clone, 'package.json'), 'utf8')) as { name: string; version: string };

    // 2. Its dependencies: the working tree's, if they are the ones HEAD records; else its own.
    const sameDeps = ['package.json', 'package-lock.json'].every(
      (f) => existsSync(join(repo, f)) && readFileSync(join(repo, f)).equals(readFileSync(join(clone, f))),
    );
    if (sameDeps && existsSync(join(repo, 'node_modules'))) {
      symlinkSync(join(repo, 'node_modules'), join(clone, 'node_modules'), 'dir');
    } else {
      await run('npm', ['ci', '--prefer-offline', '--ignore-scripts', '--no-audit', '--no-fund'], {
        cwd: clone,
        env: childEnv(),
        timeoutMs: 240_000,
      });
    }

    // 3. The tarball: `prepack` builds prebuilds/<platform>/ (prebuildify), `prepare` builds dist/.
    await run('npm', ['pack', '--pack-destination', packDir], { cwd: clone, env: childEnv(), timeoutMs: 300_000 });
    const built = readdirSync(join(clone, 'prebuilds', platformDir)).filter((f) => f.endsWith('.node'));
    expect(built, 'prebuildify wrote exactly one binary').toHaveLength(1);
    prebuildName = built[0]!;
    prebuildSha = sha256(join(clone, 'prebuilds', platformDir, prebuildName));
    const arm64 = readdirSync(join(clone, 'prebuilds', 'linux-arm64')).filter((f) => f.endsWith('.node'));
    expect(arm64, 'prebuild.sh cross-compiled exactly one linux-arm64 binary').toHaveLength(1);
    arm64Name = arm64[0]!;
    const tgz = readdirSync(packDir).filter((f) => f.endsWith('.tgz'));
    expect(tgz, 'npm pack wrote one tarball').toHaveLength(1);
    tarball = join(packDir, tgz[0]!);
    const listing = await run('tar', ['-tzf', tarball], { cwd: root, env: childEnv(), timeoutMs: 30_000 });
    tarEntries = listing.stdout.split('\n').filter((l) => l !== '');
    await run('tar', ['-xzf', tarball, '-C', unpacked], { cwd: root, env: childEnv(), timeoutMs: 30_000 });

    // 4. A toolchain that only fails loudly, first on PATH. Each call is also logged to a file,
    //    in case npm hides a script's output.
    for (const tool of FAKE_TOOLS) {
      const file = join(fakebin, tool);
      writeFileSync(
        file,
        [
          '#!/bin/sh',
          `echo "${COMPILER_CALLED}: ${tool} $*" >&2`,
          `echo "${tool} $*" >> "${join(fakebin, 'calls.log')}"`,
          'exit 1',
          '',
        ].join('\n'),
      );
      chmodSync(file, 0o755);
    }
    consumerEnv = childEnv({ pathPrefix: fakebin });

    // 5. An empty project installs the tarball. npm 11 asks projects to approve dependencies'
    //    install scripts (package.json "allowScripts"); approve ours so that its install script
    //    (node-gyp-build) really runs against the fake toolchain, and deny msgpackr's optional
    //    native extension, whose install script is not what this test is about.
    writeFileSync(
      join(consumer, 'package.json'),
      `${JSON.stringify(
        {
          name: 'sage-queue-consumer',
          version: '1.0.0',
          private: true,
          allowScripts: { [`file:${tarball}`]: true, 'msgpackr-extract': false },
        },
        null,
        2,
      )}\n`,
    );
    const install = await run(
      'npm',
      ['install', tarball, '--prefer-offline', '--no-audit', '--no-fund', '--foreground-scripts'],
      { cwd: consumer, env: consumerEnv, timeoutMs: 240_000 },
    );
    installOutput = install.stdout + install.stderr;
  }, 600_000);

  afterAll(() => {
    if (root !== undefined) rmSync(root, { recursive: true, force: true });
  });

  it('prebuildify names the binary as an ABI-stable (N-API), glibc-tagged build', () => {
    // prebuildify >= 5 names N-API builds after the package with no ABI tag
    // (<name>.glibc.node); older ones used node.napi.glibc.node. Both load through node-gyp-build.
    expect(prebuildName).toMatch(/\.glibc\.node$/);
    expect(prebuildName).not.toMatch(/(^|\.)abi\d+(\.|$)/);
    expect(prebuildName).not.toMatch(/(^|\.)(electron|musl)(\.|$)/);
    const binary = readFileSync(join(clone, 'prebuilds', platformDir, prebuildName));
    expect(binary.includes('napi_register_module_v1'), 'the binary registers itself through Node-API').toBe(true);
  });

  it('the tarball holds the compiled JS, the types, the prebuilt binary and the native sources', () => {
    const files = new Set(tarEntries.map((e) => e.replace(/^package\//, '')));
    for (const f of [
      'package.json',
      'dist/index.js',
      'dist/index.mjs',
      'dist/index.d.ts',
      `prebuilds/${platformDir}/${prebuildName}`,
      `prebuilds/linux-arm64/${arm64Name}`,
      'binding.gyp',
      'CMakeLists.txt',
      'native/core/version.h',
      'LICENSE',
    ]) {
      expect(files, `tarball lists ${f}`).toContain(f);
    }
    expect([...files].some((f) => /^native\/binding\/.+\.cpp$/.test(f)), 'tarball lists native/binding/*.cpp').toBe(true);
    expect(
      [...files].filter((f) => f.startsWith('prebuilds/')).sort(),
      'the tarball ships linux-x64 and linux-arm64 (glibc) binaries, one each, and nothing else under prebuilds/',
    ).toEqual([`prebuilds/linux-arm64/${arm64Name}`, `prebuilds/linux-x64/${prebuildName}`].sort());
    expect(arm64Name).toMatch(/\.glibc\.node$/);
    const arm64 = readFileSync(join(unpacked, 'package', 'prebuilds', 'linux-arm64', arm64Name));
    expect(arm64.readUInt16LE(18), 'the linux-arm64 binary is an aarch64 ELF (e_machine 183)').toBe(183);
    for (const f of files) {
      expect(f, 'no build output, dependencies or tarballs in the package').not.toMatch(/^(build[^/]*|node_modules)\/|\.tgz$/);
    }
  });

  it('the tarball ships an MIT LICENSE matching package.json, and package.json names the repository, homepage and issue tracker', () => {
    const shipped = join(unpacked, 'package');
    const license = readFileSync(join(shipped, 'LICENSE'), 'utf8');
    expect(license).toMatch(/^MIT License\n/);
    expect(license).toContain('Copyright (c) 2026 the sage-queue authors');
    const manifest = JSON.parse(readFileSync(join(shipped, 'package.json'), 'utf8')) as Record<string, unknown>;
    expect(manifest.license).toBe('MIT');
    expect(manifest.repository).toEqual({ type: 'git', url: 'git+https://github.com/sage-queue/sage-queue.git' });
    expect(manifest.homepage).toBe('https://github.com/sage-queue/sage-queue#readme');
    expect(manifest.bugs).toEqual({ url: 'https://github.com/sage-queue/sage-queue/issues' });
  });

  it('every source map in the tarball, and every source it names, is in the tarball', () => {
    const shipped = join(unpacked, 'package');
    const files = filesUnder(shipped);
    const maps = files.filter((f) => f.endsWith('.map'));
    expect(maps.length, 'dist/ ships its source maps').toBeGreaterThan(0);
    const missing: string[] = [];
    // A script's sourceMappingURL names a shipped map ...
    for (const js of files.filter((f) => /\.(c|m)?js$/.test(f))) {
      const url = /\/\/# sourceMappingURL=(\S+)\s*$/.exec(readFileSync(join(shipped, js), 'utf8'))?.[1];
      if (url === undefined || url.startsWith('data:')) continue;
      if (!existsSync(join(shipped, dirname(js), url))) missing.push(`${js} -> ${url}`);
    }
    // ... and a map's sources are shipped files.
    for (const map of maps) {
      const parsed = JSON.parse(readFileSync(join(shipped, map), 'utf8')) as { sourceRoot?: string; sources: string[] };
      for (const source of parsed.sources) {
        if (!existsSync(join(shipped, dirname(map), parsed.sourceRoot ?? '', source))) missing.push(`${map} -> ${source}`);
      }
    }
    expect(missing).toEqual([]);
  });

  it('the fake toolchain is what PATH finds in the consumer project', async () => {
    for (const tool of FAKE_TOOLS) {
      const found = await run('sh', ['-c', `command -v ${tool}`], { cwd: consumer, env: consumerEnv, timeoutMs: 10_000 });
      expect(found.stdout.trim()).toBe(join(fakebin, tool));
    }
  });

  it('npm install ran the package install script without building anything', () => {
    expect(installOutput).toMatch(new RegExp(`${pkg.name}@${pkg.version.replace(/\./g, '\\.')} install`));
    const installed = join(consumer, 'node_modules', pkg.name);
    expect(existsSync(join(installed, 'package.json'))).toBe(true);
    expect(existsSync(join(installed, 'build')), 'no build/ directory: nothing was compiled').toBe(false);
    const shipped = join(installed, 'prebuilds', platformDir, prebuildName);
    expect(sha256(shipped), 'the installed binary is the prebuilt one, byte for byte').toBe(prebuildSha);
  });

  const variants: Array<{ name: string; env: Record<string, string> }> = [
    { name: 'default', env: {} },
    { name: 'PREBUILDS_ONLY=1', env: { PREBUILDS_ONLY: '1' } },
  ];

  for (const variant of variants) {
    it(`require() and import load the prebuilt binary (${variant.name})`, async () => {
      const env = { ...consumerEnv, ...variant.env };
      const cjs = lastJsonLine((await run('node', ['-e', CJS_PROBE], { cwd: consumer, env, timeoutMs: 30_000 })).stdout);
      const esm = lastJsonLine(
        (await run('node', ['--input-type=module', '-e', ESM_PROBE], { cwd: consumer, env, timeoutMs: 30_000 })).stdout,
      );
      const expected = realpathSync(join(consumer, 'node_modules', pkg.name, 'prebuilds', platformDir, prebuildName));
      for (const report of [cjs, esm]) {
        expect(report.loaded.map((f) => realpathSync(f))).toEqual([expected]);
        expect(typeof report.caps.version).toBe('string');
        expect((report.caps.version as string).length).toBeGreaterThan(0);
        expect(report.caps.layoutVersion).toBeGreaterThanOrEqual(1);
        expect(report.caps.platform).toBe('linux');
      }
      expect(esm.caps).toEqual(cjs.caps);
    });
  }

  // Declared last: vitest runs a file's tests in order, so this sees every child's output.
  it('no compiler was ever called', () => {
    expect(transcript.length).toBeGreaterThan(0);
    for (const output of transcript) expect(output).not.toContain(COMPILER_CALLED);
    expect(existsSync(join(fakebin, 'calls.log')), 'no fake tool was run').toBe(false);
  });
});
