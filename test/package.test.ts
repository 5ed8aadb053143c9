/**
 * The package as shipped: the prebuilt binary in the npm tarball is what a consumer loads, with
 * no compiler anywhere on its PATH, from CommonJS and from ESM, with and without PREBUILDS_ONLY.
 *
 * Steps: `npm run prebuild` (prebuildify) -> `npm pack` -> `npm install <tarball>` into an empty
 * project whose PATH starts with fake `cc`/`g++`/`make`/`cmake`/... that only fail loudly.
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
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const repo = resolve(__dirname, '..');
const pkg = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { name: string; version: string };
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
  let prebuildName = '';
  let prebuildSha = '';
  let tarball = '';
  let tarEntries: string[] = [];
  let consumer = '';
  let fakebin = '';
  let installOutput = '';
  let consumerEnv: NodeJS.ProcessEnv = {};

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'sage-queue-package-'));
    const packDir = join(root, 'pack');
    consumer = join(root, 'consumer');
    fakebin = join(root, 'fakebin');
    for (const d of [packDir, consumer, fakebin]) mkdirSync(d);

    // 1. The prebuilt binary, from a clean prebuilds/<platform> (a stale file would be shipped too).
    rmSync(join(repo, 'prebuilds', platformDir), { recursive: true, force: true });
    await run('npm', ['run', 'prebuild'], { cwd: repo, env: childEnv(), timeoutMs: 240_000 });
    const built = readdirSync(join(repo, 'prebuilds', platformDir)).filter((f) => f.endsWith('.node'));
    expect(built, 'prebuildify wrote exactly one binary').toHaveLength(1);
    prebuildName = built[0]!;
    prebuildSha = sha256(join(repo, 'prebuilds', platformDir, prebuildName));

    // 2. The tarball (npm pack runs `prepare`, which rebuilds dist/).
    await run('npm', ['pack', '--pack-destination', packDir], { cwd: repo, env: childEnv(), timeoutMs: 120_000 });
    const tgz = readdirSync(packDir).filter((f) => f.endsWith('.tgz'));
    expect(tgz, 'npm pack wrote one tarball').toHaveLength(1);
    tarball = join(packDir, tgz[0]!);
    const listing = await run('tar', ['-tzf', tarball], { cwd: root, env: childEnv(), timeoutMs: 30_000 });
    tarEntries = listing.stdout.split('\n').filter((l) => l !== '');

    // 3. A toolchain that only fails loudly, first on PATH. Each call is also logged to a file,
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

    // 4. An empty project installs the tarball. npm 11 asks projects to approve dependencies'
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
    const binary = readFileSync(join(repo, 'prebuilds', platformDir, prebuildName));
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
      'binding.gyp',
      'CMakeLists.txt',
      'native/core/version.h',
    ]) {
      expect(files, `tarball lists ${f}`).toContain(f);
    }
    expect([...files].some((f) => /^native\/binding\/.+\.cpp$/.test(f)), 'tarball lists native/binding/*.cpp').toBe(true);
    for (const f of files) {
      expect(f, 'no build output, dependencies or tarballs in the package').not.toMatch(/^(build[^/]*|node_modules)\/|\.tgz$/);
    }
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
