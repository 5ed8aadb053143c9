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
    expect(Number.isFinite(out.ratio)).toBe(true);
    expect(out.ratio).toBeGreaterThan(0);
    expect(segments()).toEqual(before);
  });

  it('refuses a bad flag with one clear line and exit code 2', () => {
    const r = spawnSync(process.execPath, [demo, '--messages', 'lots'], { cwd: root, encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr.trim()).toBe('demo: --messages must be an integer >= 1 (got "lots")');
  });
});
