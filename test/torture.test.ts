/**
 * The short kill-9 torture run (test/torture/run.mjs --quick, about 25 s) inside `npm test`: real
 * processes, real SIGKILL/SIGSTOP, one shared queue. Each invariant the harness checks is its own
 * test here. The quick run writes its report to a temp file: docs/reliability.md (the long run's
 * figures) must come out untouched.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const REPO = path.resolve(__dirname, '..');
const RUN = path.join(REPO, 'test', 'torture', 'run.mjs');
const REPORT = path.join(REPO, 'docs', 'reliability.md');

interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

interface Result {
  figures: Record<string, number>;
  checks: Check[];
  queue: string;
  workDir: string;
  wallSeconds: number;
}

const CHECKS = [
  'no corrupted message delivered',
  'no message delivered twice',
  "each consumer sees each producer's messages in order",
  'every delivered message was put',
  'the queue drains completely',
  'only a dying consumer loses a message, at most one each',
  'every logged put is delivered or one of those lost messages',
  'lostInRead counts every consumer killed while reading, and nothing else',
  'abandoned claims: every producer killed mid-put, only killed producers',
  'a lock holder killed inside its critical section is recovered',
  'no deadlock: progress resumes after every kill',
  'no stall outside SIGSTOPs and backpressure phases',
  'backpressure: producers block on a full queue while consumers stop',
  'producer memory stays bounded',
  'every child process behaved (no unexpected exit)',
];

function digest(file: string): string | null {
  return existsSync(file) ? createHash('sha256').update(readFileSync(file)).digest('hex') : null;
}

function tortureDirs(): string[] {
  return readdirSync(os.tmpdir()).filter((n) => n.startsWith('sage-torture-'));
}

let result: Result;
let exitCode: number | null = null;
let stderr = '';
let scratch = '';
let reportBefore: string | null = null;
let dirsBefore: string[] = [];

beforeAll(async () => {
  scratch = mkdtempSync(path.join(os.tmpdir(), 'sage-torture-test-'));
  reportBefore = digest(REPORT);
  dirsBefore = tortureDirs();
  const json = path.join(scratch, 'result.json');
  const child = spawn(process.execPath, [RUN, '--quick', '--quiet', '--json', json], { cwd: REPO, stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => {
    stderr += d;
  });
  const timer = setTimeout(() => child.kill('SIGTERM'), 85_000); // the harness cleans up on SIGTERM
  exitCode = await new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  clearTimeout(timer);
  if (!existsSync(json)) throw new Error(`the torture harness wrote no result (exit ${exitCode}):\n${stderr}`);
  result = JSON.parse(readFileSync(json, 'utf8')) as Result;
}, 90_000);

afterAll(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

describe('kill-9 torture (quick run)', () => {
  it.each(CHECKS)('invariant holds: %s', (name) => {
    const check = result.checks.find((c) => c.name === name);
    expect(check, `the harness reported no check named "${name}"`).toBeDefined();
    expect(check?.ok, `${name}: ${check?.detail}`).toBe(true);
  });

  it('the harness exits 0 and every check it made is one of those above', () => {
    expect(exitCode, stderr).toBe(0);
    expect(result.checks.map((c) => c.name).sort()).toEqual([...CHECKS].sort());
  });

  it('the run really tortured the queue: dozens of SIGKILLs of both roles, SIGSTOPs, a backpressure phase, many messages', () => {
    const f = result.figures;
    expect(f.producerKills).toBeGreaterThanOrEqual(10);
    expect(f.consumerKills).toBeGreaterThanOrEqual(10);
    expect(f.stops).toBeGreaterThanOrEqual(5);
    expect(f.pauses).toBeGreaterThanOrEqual(1);
    expect(f.delivered).toBeGreaterThanOrEqual(10_000);
    expect(f.killsMeasured).toBeGreaterThanOrEqual(10);
    expect(f.killsAtHookPoints).toBeGreaterThanOrEqual(5); // processes killed at exact points of put/get
  });

  it('the quick run leaves docs/reliability.md alone, and no process, segment or temp dir behind', () => {
    expect(digest(REPORT)).toBe(reportBefore);
    expect(existsSync(`/dev/shm/sageq.${result.queue}`)).toBe(false);
    expect(existsSync(result.workDir)).toBe(false);
    expect(tortureDirs().filter((d) => !dirsBefore.includes(d) && !d.startsWith('sage-torture-test-'))).toEqual([]);
    const leftovers = readdirSync('/proc')
      .filter((p) => /^\d+$/.test(p))
      .filter((p) => {
        try {
          return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(result.queue);
        } catch {
          return false;
        }
      });
    expect(leftovers).toEqual([]);
  });
});
