/**
 * The short kill-9 torture runs inside `npm test`, one after the other: test/torture/run.mjs
 * --quick (about 25 s, an auto-ack queue) and --quick --ack (about 14 s, an explicit-ack queue
 * whose consumers are killed holding leases). Real processes, real SIGKILL/SIGSTOP, one shared
 * queue each. Each invariant the harness checks is its own test here. The quick runs write their
 * results to a temp dir: docs/reliability.md (the long run's figures) must come out untouched.
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

const ACK_CHECKS = [
  'ack: no corrupted message delivered',
  'ack: no message lost (every put received, every message finally acked)',
  'ack: a message is delivered again only when nacked or its consumer died before its ack returned',
  'ack: every delivered message was put',
  'ack: the logs account for every settle',
  'ack: first deliveries reach each consumer in put order',
  "ack: the queue's counters agree with the logs",
  'ack: nothing left unacked or redeliverable after the drain',
  'every producer logged its puts in order',
  'abandoned claims: every producer killed mid-put, only killed producers',
  'a lock holder killed inside its critical section is recovered',
  'no deadlock: progress resumes after every kill',
  'no stall outside SIGSTOPs and backpressure phases',
  'backpressure: producers block on a full queue while consumers stop',
  'producer memory stays bounded',
  'every child process behaved (no unexpected exit)',
];

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

interface Run {
  result: Result;
  exitCode: number | null;
  stderr: string;
}

let scratch = '';
let reportBefore: string | null = null;
let dirsBefore: string[] = [];

/** Runs the harness with `args` (it cleans up on SIGTERM, sent if it overruns `limitMs`). */
async function torture(args: string[], limitMs: number): Promise<Run> {
  const json = path.join(scratch, `result-${args.join('')}.json`);
  let stderr = '';
  const child = spawn(process.execPath, [RUN, ...args, '--quiet', '--json', json], { cwd: REPO, stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => {
    stderr += d;
  });
  const timer = setTimeout(() => child.kill('SIGTERM'), limitMs);
  const exitCode = await new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  clearTimeout(timer);
  if (!existsSync(json)) throw new Error(`the torture harness wrote no result (exit ${exitCode}):\n${stderr}`);
  return { result: JSON.parse(readFileSync(json, 'utf8')) as Result, exitCode, stderr };
}

function leftoverProcesses(queue: string): string[] {
  return readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(queue);
      } catch {
        return false;
      }
    });
}

function expectCleanedUp(run: Run): void {
  expect(digest(REPORT)).toBe(reportBefore);
  expect(existsSync(`/dev/shm/sageq.${run.result.queue}`)).toBe(false);
  expect(existsSync(run.result.workDir)).toBe(false);
  expect(tortureDirs().filter((d) => !dirsBefore.includes(d) && !d.startsWith('sage-torture-test-'))).toEqual([]);
  expect(leftoverProcesses(run.result.queue)).toEqual([]);
}

beforeAll(() => {
  scratch = mkdtempSync(path.join(os.tmpdir(), 'sage-torture-test-'));
  reportBefore = digest(REPORT);
  dirsBefore = tortureDirs();
});

afterAll(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

describe('kill-9 torture (quick run)', () => {
  let run: Run;
  beforeAll(async () => {
    run = await torture(['--quick'], 85_000);
  }, 90_000);

  it.each(CHECKS)('invariant holds: %s', (name) => {
    const check = run.result.checks.find((c) => c.name === name);
    expect(check, `the harness reported no check named "${name}"`).toBeDefined();
    expect(check?.ok, `${name}: ${check?.detail}`).toBe(true);
  });

  it('the harness exits 0 and every check it made is one of those above', () => {
    expect(run.exitCode, run.stderr).toBe(0);
    expect(run.result.checks.map((c) => c.name).sort()).toEqual([...CHECKS].sort());
  });

  it('the run really tortured the queue: dozens of SIGKILLs of both roles, SIGSTOPs, a backpressure phase, many messages', () => {
    const f = run.result.figures;
    expect(f.producerKills).toBeGreaterThanOrEqual(10);
    expect(f.consumerKills).toBeGreaterThanOrEqual(10);
    expect(f.stops).toBeGreaterThanOrEqual(5);
    expect(f.pauses).toBeGreaterThanOrEqual(1);
    expect(f.delivered).toBeGreaterThanOrEqual(10_000);
    expect(f.killsMeasured).toBeGreaterThanOrEqual(10);
    expect(f.killsAtHookPoints).toBeGreaterThanOrEqual(5); // processes killed at exact points of put/get
  });

  it('the quick run leaves docs/reliability.md alone, and no process, segment or temp dir behind', () => {
    expectCleanedUp(run);
  });
});

describe('kill-9 torture of explicit acks (quick run, --ack)', () => {
  let run: Run;
  beforeAll(async () => {
    run = await torture(['--quick', '--ack', '--seconds', '12'], 60_000);
  }, 65_000);

  it.each(ACK_CHECKS)('invariant holds: %s', (name) => {
    const check = run.result.checks.find((c) => c.name === name);
    expect(check, `the harness reported no check named "${name}"`).toBeDefined();
    expect(check?.ok, `${name}: ${check?.detail}`).toBe(true);
  });

  it('the harness exits 0 and every check it made is one of those above', () => {
    expect(run.exitCode, run.stderr).toBe(0);
    expect(run.result.checks.map((c) => c.name).sort()).toEqual([...ACK_CHECKS].sort());
  });

  it('the run really tortured the acks: consumers killed holding leases, their messages delivered again, nacks, ackMany', () => {
    const f = run.result.figures;
    expect(f.consumerKills).toBeGreaterThanOrEqual(10);
    expect(f.producerKills).toBeGreaterThanOrEqual(5);
    expect(f.killedHolding).toBeGreaterThanOrEqual(1); // killed with messages received and not yet acked
    expect(f.redeliveredAfterDeath).toBeGreaterThanOrEqual(1);
    expect(f.redeliveredAfterNack).toBeGreaterThanOrEqual(10);
    expect(f.deadLeases).toBeGreaterThanOrEqual(1);
    expect(f.received).toBeGreaterThanOrEqual(1_000);
    expect(f.killsMeasured).toBeGreaterThanOrEqual(5);
  });

  it('the ack run leaves docs/reliability.md alone, and no process, segment or temp dir behind', () => {
    expectCleanedUp(run);
  });
});
