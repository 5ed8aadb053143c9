/**
 * A synchronous blocking call holds the JS thread in native code, so a signal listener
 * (process.on('SIGINT')) could not run until it returned. With a listener installed the call
 * returns ERR_INTERRUPTED (InterruptedError) when the signal arrives, the listener runs next, and
 * the process exits cleanly. Real child processes, real signals.
 */
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { SageQueue } from '../../lib/index';
import { FIXTURES, nowMs, queueName, sleep, track, until, useCleanup } from '../helpers/harness';

useCleanup();

async function runBlocked(name: string, call: string, signal: NodeJS.Signals): Promise<{ out: string; code: number | null; sig: string | null; ms: number }> {
  const child = spawn(process.execPath, [path.join(FIXTURES, 'blocked-call.cjs'), name, call, signal], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<{ code: number | null; sig: string | null }>((resolve) => child.on('exit', (code, sig) => resolve({ code, sig })));
  try {
    await until(() => out.includes('blocking'), 'the child to block');
    await sleep(300); // well inside the native wait (futex sleep)
    const t0 = nowMs();
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    const { code, sig } = await exited;
    clearTimeout(timer);
    if (code !== 0) throw new Error(`child exited ${code} ${sig}: ${out} ${err}`);
    return { out, code, sig, ms: nowMs() - t0 };
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

describe('a blocking call interrupted by a signal the process listens for', () => {
  it.each([
    ['get', 'SIGINT'],
    ['getMany', 'SIGTERM'],
  ] as const)('%s() on an empty queue returns ERR_INTERRUPTED on %s, the listener runs next and the child stops cleanly (exit 0)', async (call, signal) => {
    const name = queueName(`intr-${call}`);
    track(SageQueue.create<Buffer>(name, { capacity: 1 << 16, codec: 'raw' }));
    const r = await runBlocked(name, call, signal);
    expect(r.out).toContain('returned ERR_INTERRUPTED InterruptedError');
    expect(r.out).toContain(`handler ${signal}\nstopped`);
    expect(r.ms).toBeLessThan(2000);
  });

  it.each([
    ['put', 'SIGINT'],
    ['putMany', 'SIGHUP'],
  ] as const)('%s() on a full queue returns ERR_INTERRUPTED on %s, the listener runs next and the child stops cleanly (exit 0)', async (call, signal) => {
    const name = queueName(`intr-${call}`);
    const q = track(SageQueue.create<Buffer>(name, { capacity: 1 << 16, codec: 'raw', maxsize: 1 }));
    q.put(Buffer.from('fills it'));
    const r = await runBlocked(name, call, signal);
    expect(r.out).toContain('returned ERR_INTERRUPTED InterruptedError');
    expect(r.out).toContain(`handler ${signal}\nstopped`);
    expect(q.qsize()).toBe(1);
    expect(q.get(false).toString()).toBe('fills it');
  });

  it('any watched signal with a listener interrupts (SIGUSR2 here)', async () => {
    const name = queueName('intr-again');
    track(SageQueue.create<Buffer>(name, { capacity: 1 << 16, codec: 'raw' }));
    const r = await runBlocked(name, 'get', 'SIGUSR2');
    expect(r.out).toContain('returned ERR_INTERRUPTED');
    expect(r.out).toContain('handler SIGUSR2\nstopped');
  });
});
