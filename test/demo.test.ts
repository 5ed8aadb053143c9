import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.resolve(__dirname, '..');
const demo = path.join(root, 'examples', 'demo.mjs');

function segments(): string[] {
  return readdirSync('/dev/shm').filter((f) => f.startsWith('sageq.demo-'));
}

describe('npm run demo', () => {
  it('delivers every packet exactly once in per-key order, runs and verifies the process.send twin and reports the ratio (speed is judged in npm run bench), and leaves no segment', () => {
    const before = segments();
    const r = spawnSync(process.execPath, [demo, '--messages', '30000', '--workers', '2', '--json'], { cwd: root, encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.ok).toBe(true);
    expect(out.sage.verification).toMatchObject({ sent: 30000, received: 30000, delivered: 30000, dupes: 0, outOfOrder: 0, ok: true });
    expect(out.processSend.verification.ok).toBe(true);
    expect(out.sage.perWorker.reduce((a: number, b: number) => a + b, 0)).toBe(30000);
    expect(out.sage.perWorker.every((n: number) => n > 0)).toBe(true);
    // The primary's CPU per packet is reported for both transports (a measurement, not a bound).
    for (const r of [out.sage, out.processSend]) expect(r.primaryCpuNsPerPacket).toBeGreaterThan(0);
    expect(Number.isFinite(out.ratio)).toBe(true);
    expect(out.ratio).toBeGreaterThan(0);
    expect(segments()).toEqual(before);
  });

  it('--ack --kill-worker: worker 0 dies after answering a batch it had not acked; every packet is delivered, and every duplicate is one of its unacked jobs', () => {
    const before = segments();
    const r = spawnSync(process.execPath, [demo, '--messages', '30000', '--workers', '2', '--ack', '--kill-worker', '--skip-baseline', '--json'], {
      cwd: root,
      encoding: 'utf8',
      timeout: 90_000,
    });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.ok).toBe(true);
    expect(out.sage.killed?.pid).toEqual(expect.any(Number));
    const v = out.sage.verification;
    expect(v).toMatchObject({ sent: 30000, delivered: 30000, unexplainedDupes: 0, ok: true });
    // It died holding the batch it had just answered: at least one duplicate, at most a batch (256).
    expect(v.dupes).toBeGreaterThan(0);
    expect(v.dupes).toBeLessThanOrEqual(256);
    expect(v.received).toBe(30000 + v.dupes);
    const leases = out.sage.leases as Array<{ deadLeases: number; redeliveries: number; acks: number }>;
    expect(leases.reduce((n, l) => n + l.deadLeases, 0)).toBeGreaterThanOrEqual(v.dupes);
    // Each job acked exactly once: the killed worker's unacked ones by its replacement.
    expect(leases.reduce((n, l) => n + l.acks, 0)).toBe(30000);
    expect(leases.reduce((n, l) => n + l.redeliveries, 0)).toBeGreaterThanOrEqual(v.dupes);
    expect(segments()).toEqual(before);
  });

  it('on a terminal (a real pty, via script(1)) draws a cli-progress bar per transport on stderr, each ending full at 100%', () => {
    if (spawnSync('script', ['--version'], { stdio: 'ignore' }).status !== 0) return; // no script(1): nothing to drive a pty with
    const before = segments();
    const command = [process.execPath, demo, '--messages', '20000', '--workers', '2'].map((a) => `'${a}'`).join(' ');
    const env = { ...process.env, TERM: 'xterm-256color' };
    const r = spawnSync('script', ['-q', '-e', '-c', command, '/dev/null'], { cwd: root, env, encoding: 'utf8', timeout: 90_000 });
    expect(r.status, r.stdout).toBe(0);
    // cli-progress's legacy preset: '=' done, '-' to do; the library, not a hand-written bar
    const full = `[${'='.repeat(30)}] 100%`;
    expect(r.stdout).toContain(`sage-queue   ${full}`);
    expect(r.stdout).toContain(`process.send ${full}`);
    expect(r.stdout).toMatch(/\] 100% {2}\d+k pkt\/s/);
    expect(segments()).toEqual(before);
  });

  it('refuses a bad flag with one clear line and exit code 2', () => {
    const r = spawnSync(process.execPath, [demo, '--messages', 'lots'], { cwd: root, encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr.trim()).toBe('demo: --messages must be an integer >= 1 (got "lots")');
  });
});
