// The same ring driven from C++ alone (native/bench/ring_bench.cpp): the limit the Node layers
// are compared with. Built on demand into build-bench/ring_bench; run by bench/run.mjs.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export const SOURCE = 'native/bench/ring_bench.cpp';
export const BINARY = 'build-bench/ring_bench';

function newestMtime(files) {
  let t = 0;
  for (const f of files) t = Math.max(t, fs.statSync(f).mtimeMs);
  return t;
}

/**
 * Compiles ring_bench when it is missing or older than its sources. Resolves with the binary's
 * path. The compiler writes to a temporary name that is renamed on success, so an interrupted
 * build never leaves a binary that looks up to date. `track(proc)` lets the caller kill the
 * compiler on Ctrl-C.
 */
export async function buildRingBench(root, log, track = () => {}) {
  const coreDir = path.join(root, 'native/core');
  const coreCpp = fs.readdirSync(coreDir).filter((f) => f.endsWith('.cpp')).sort().map((f) => `native/core/${f}`);
  const coreAll = fs.readdirSync(coreDir).map((f) => path.join(coreDir, f));
  const bin = path.join(root, BINARY);
  const srcTime = newestMtime([...coreAll, path.join(root, SOURCE)]);
  if (fs.existsSync(bin) && fs.statSync(bin).mtimeMs >= srcTime) return bin;
  fs.mkdirSync(path.dirname(bin), { recursive: true });
  const tmp = `${BINARY}.tmp-${process.pid}`;
  const args = ['-O2', '-std=c++17', '-Inative/core', ...coreCpp, SOURCE, '-lpthread', '-lrt', '-o', tmp];
  log(`compiling ${BINARY}: g++ ${args.join(' ')}`);
  try {
    await new Promise((resolve, reject) => {
      const proc = spawn('g++', args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
      track(proc);
      proc.on('error', reject);
      proc.on('exit', (code, signal) => (code === 0 ? resolve() : reject(new Error(`g++ failed (${signal ?? code})`))));
    });
    fs.renameSync(path.join(root, tmp), bin);
  } finally {
    fs.rmSync(path.join(root, tmp), { force: true });
  }
  return bin;
}

/** Arguments for one ring_bench run. */
export function ringBenchArgs(c, name, pin) {
  const args = ['--name', name, '--mode', c.kind === 'ping' ? 'pingpong' : 'stream', '--size', String(c.size)];
  args.push('--ms', String(c.ms), '--warm-ms', String(c.warmMs));
  if (c.kind === 'stream') args.push('--batch', String(c.batch));
  if (c.spinUs !== undefined) args.push('--spin-us', String(c.spinUs));
  if (pin) args.push('--pin');
  return args;
}
