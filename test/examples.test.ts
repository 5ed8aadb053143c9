/**
 * The runnable examples (examples/fan-out.mjs, examples/request-response.mjs) as users run them:
 * `node examples/<name>.mjs` in a subprocess (they import 'sage-queue' by its package name, so
 * this needs a built dist/). Each must exit 0, print its summary, and leave no segment behind.
 * (examples/demo.mjs has its own test: test/demo.test.ts.)
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

import { SageQueue } from '../lib/index';

const root = path.resolve(__dirname, '..');

/** The examples name their pools `pool-<pid of the example>-<random>` (WorkerPool's default). */
function segmentsOf(pid: number): string[] {
  return readdirSync('/dev/shm').filter((f) => f.startsWith(`sageq.pool-${pid}-`));
}

const started: ChildProcess[] = [];

afterEach(async () => {
  for (const child of started.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
    // Its workers exit by themselves when it is gone (their IPC channel closes); its segments
    // are removed here if it did not get to remove them.
    for (const f of segmentsOf(child.pid as number)) SageQueue.destroy(f.slice('sageq.'.length));
  }
});

async function runExample(file: string, timeoutMs = 30_000): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string; pid: number }> {
  const child = spawn(process.execPath, [path.join(root, 'examples', file)], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  started.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const [code, signal] = (await once(child, 'close')) as [number | null, string | null];
  clearTimeout(timer);
  return { code, signal, stdout, stderr, pid: child.pid as number };
}

describe('examples', () => {
  it('fan-out.mjs exits 0, reports 30 keys over 3 workers with 100 packets per key, and leaves no segment', async () => {
    const r = await runExample('fan-out.mjs');
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(4);
    const workers = lines.slice(0, 3).map((line) => {
      const m = /^worker (\d+): (\d+) keys, (\d+) packets$/.exec(line);
      expect(m, line).not.toBeNull();
      return { worker: Number(m?.[1]), keys: Number(m?.[2]), packets: Number(m?.[3]) };
    });
    expect(workers.map((w) => w.worker).sort()).toEqual([0, 1, 2]);
    expect(workers.reduce((a, w) => a + w.keys, 0)).toBe(30);
    expect(workers.reduce((a, w) => a + w.packets, 0)).toBe(3000);
    for (const w of workers) expect(w.packets).toBe(w.keys * 100);
    expect(lines[3]).toBe('30 keys over 3 workers, each key on exactly one worker');
    expect(r.stderr).toBe('');
    expect(segmentsOf(r.pid)).toEqual([]);
  });

  it('request-response.mjs exits 0, reports 1000 requests answered by 2 workers with 0 wrong, and leaves no segment', async () => {
    const r = await runExample('request-response.mjs');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('1000 requests answered by 2 workers, 0 wrong\n');
    expect(r.stderr).toBe('');
    expect(segmentsOf(r.pid)).toEqual([]);
  });
});
