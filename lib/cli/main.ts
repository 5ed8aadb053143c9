#!/usr/bin/env node
/**
 * The `sage-queue` command: list, inspect and clean up shared-memory queues, and run the demo and
 * the benchmark. Human tables by default, `--json` everywhere. Exit codes: 0 ok, 1 a queue is
 * missing or an operation failed, 2 bad usage (unknown command or option, invalid name).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { createInterface } from 'node:readline/promises';

import { Command, CommanderError, Option } from 'commander';

import { native } from '../native';
import { CliError, EXIT_FAILED, EXIT_USAGE, jsonError } from './cli-error';
import { bytes, duration, paint, table } from './format';
import { metricsCommand } from './metrics-command';
import { collectGarbage, inspectAllQueues, inspectQueue, tempQueueName } from '../queue/inspect';
import type { QueueInspection as QueueView } from '../queue/inspect';
import { SageQueue } from '../queue/sage-queue';

/**
 * Whether human output highlights states (dead in red, alive in green): only when stdout is a
 * terminal, and never when NO_COLOR is set (https://no-color.org) or TERM is dumb.
 */
function useColor(): boolean {
  return process.stdout.isTTY === true && !process.env.NO_COLOR && process.env.TERM !== 'dumb';
}

function checkName(name: string): string {
  if (!native().validName(name)) {
    throw new CliError(
      `invalid queue name ${JSON.stringify(name.length > 60 ? `${name.slice(0, 60)}…` : name)}: use 1-200 letters, digits, '.', '_' or '-', without '..'`,
      EXIT_USAGE,
      'ERR_INVALID_QUEUE_NAME',
    );
  }
  return name;
}

/**
 * The --json form of an inspection: `codec` is the codec's name (`codecId` its number in the
 * segment; `codecName` kept for scripts written before).
 */
function jsonView(v: QueueView): unknown {
  if (v.stats === null) return v;
  return { ...v, stats: { ...v.stats, codec: v.stats.codecName, codecId: v.stats.codec } };
}

function print(json: boolean, value: unknown, human: () => string): void {
  process.stdout.write(`${json ? JSON.stringify(value, null, 2) : human()}\n`);
}

function processesText(v: QueueView, color = false): string {
  if (v.stats === null) return '-';
  if (v.stats.processes.length === 0) return 'none';
  // An untrusted segment's processes are not probed: their liveness is unknown, not DEAD.
  const unknown = v.untrusted !== null;
  return v.stats.processes
    .map((p) => {
      const text = `${p.pid}(${p.roles.join('+') || 'idle'}${unknown ? ',?' : p.alive ? '' : ',DEAD'})`;
      return p.alive || unknown ? text : paint(text, 'red', color);
    })
    .join(' ');
}

function trustText(v: QueueView): string {
  const s = v.stats;
  const owner = s === null ? '' : ` (owner uid ${s.fileUid}, mode 0${s.fileMode.toString(8)})`;
  if (v.untrusted === 'ERR_QUEUE_UNTRUSTED_OWNER') return `UNTRUSTED: owned by another user${owner}`;
  if (v.untrusted === 'ERR_QUEUE_SHARED_MODE') return `UNTRUSTED: writable by group/other${owner}`;
  return `trusted${owner}`;
}

function stateText(v: QueueView, color = false): string {
  if (v.error !== null) return paint(v.error.code.replace(/^ERR_/, '').toLowerCase(), 'red', color);
  if (v.untrusted !== null) return paint('UNTRUSTED', 'red', color);
  if (v.stats?.closed) return paint('closed', 'yellow', color);
  if (v.stats !== null && v.stats.processes.length > 0 && v.alive === 0) return paint('abandoned', 'red', color);
  return paint('open', 'green', color);
}

function lsCommand(opts: { json: boolean }): void {
  const views = inspectAllQueues();
  const color = useColor();
  print(opts.json, views.map(jsonView), () => {
    if (views.length === 0) return 'no sage-queue segments in /dev/shm';
    return table(
      ['NAME', 'DEPTH', 'BYTES', 'CAPACITY', 'STATE', 'AGE', 'PROCESSES (pid(roles))'],
      views.map((v) => [
        v.name,
        v.stats ? String(v.stats.depth) : '-',
        v.stats ? bytes(v.stats.depthBytes) : '-',
        v.stats ? bytes(v.stats.capacity) : '-',
        stateText(v, color),
        v.ageMs === null ? '-' : duration(v.ageMs),
        processesText(v, color),
      ]),
    );
  });
}

function statText(v: QueueView, color: boolean): string {
  const s = v.stats;
  if (s === null) return `${v.name}: ${v.error?.message}`;
  const rows: Array<[string, string]> = [
    ['name', s.name],
    ['state', stateText(v, color)],
    ['depth', `${s.depth} messages, ${bytes(s.depthBytes)} (${bytes(s.usedBytes)} not yet reusable)`],
    ['capacity', `${bytes(s.capacity)}, messages up to ${bytes(s.maxMessageSize)}${s.maxsize ? `, at most ${s.maxsize} messages` : ''}`],
    ['codec', s.codecName],
    ['mode', `0${s.mode.toString(8)} (as created)`],
    ['trust', trustText(v)],
    ['age', duration(v.ageMs ?? 0)],
    ['enqueued', String(s.enqueued)],
    ['dequeued', String(s.dequeued)],
    ['waiting', `${s.dataWaiters} for data, ${s.spaceWaiters} for space`],
    ['wake syscalls', `${s.wakeCalls} (${s.enqueued ? (s.wakeCalls / s.enqueued).toFixed(4) : '0'} per message), ${s.waits} sleeps`],
    ...(s.leases === null
      ? []
      : ([
          ['acks', `explicit: lease ${duration(s.leases.ackTimeoutMs)}, dead-letter after ${s.leases.maxDeliveries} deliveries`],
          ['leases', `${s.leases.acks} acked, ${s.leases.nacks} nacked, ${s.leases.redeliveries} redelivered (${s.leases.expiredLeases} expired, ${s.leases.deadLeases} from dead consumers), ${s.leases.redeliverable} waiting again, ${s.leases.staleSettles} stale acks refused; ${bytes(s.leases.unackedBytes)} held by unacked messages`],
        ] as Array<[string, string]>)),
    ['recovered', `${s.abandonedClaims} abandoned claims, ${s.lostInRead} lost in read, ${s.lockRecoveries} lock recoveries, ${s.slotsReaped} dead handles reaped, ${s.waiterHeals} waiter heals`],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  const head = rows.map(([k, val]) => `${k.padEnd(width)}  ${val}`).join('\n');
  const procs = s.processes.length
    ? table(['SLOT', 'PID', 'ROLES', 'ALIVE', 'ATTACHED', 'WAITING'], s.processes.map((p) => [String(p.slot), String(p.pid), p.roles.join(',') || '-', p.alive ? paint('yes', 'green', color) : paint('DEAD', 'red', color), duration(Date.now() - p.attachedMs), String(p.waiting)]))
    : 'no process attached';
  return `${head}\n\n${procs}`;
}

async function statCommand(name: string, opts: { json: boolean; watch: boolean; interval: string }): Promise<void> {
  checkName(name);
  const interval = Number(opts.interval);
  if (!Number.isSafeInteger(interval) || interval < 50) throw new CliError(`--interval must be an integer >= 50 (ms); got ${JSON.stringify(opts.interval)}`, EXIT_USAGE, 'ERR_INVALID_INTERVAL');
  const once = (): QueueView => {
    const v = inspectQueue(name);
    if (v.error?.code === 'ERR_QUEUE_NOT_FOUND') throw new CliError(`no queue named ${JSON.stringify(name)}`, EXIT_FAILED, 'ERR_QUEUE_NOT_FOUND');
    return v;
  };
  const color = useColor();
  const v = once();
  print(opts.json, jsonView(v), () => statText(v, color));
  if (v.stats === null) process.exitCode = EXIT_FAILED;
  if (!opts.watch) return;
  for (;;) {
    await new Promise((r) => setTimeout(r, interval));
    const next = once();
    if (!opts.json && process.stdout.isTTY) process.stdout.write('\x1b[H\x1b[2J');
    print(opts.json, jsonView(next), () => statText(next, color));
  }
}

function rmCommand(names: string[], opts: { json: boolean }): void {
  const results = names.map((n) => {
    checkName(n);
    try {
      if (SageQueue.destroy(n)) return { name: n, removed: true };
      return { name: n, removed: false, code: 'ERR_QUEUE_NOT_FOUND', message: `no queue named ${JSON.stringify(n)}` };
    } catch (e) {
      const err = e as { code?: string; message?: string };
      return { name: n, removed: false, code: err.code ?? 'ERR_SYSTEM', message: err.message ?? String(e) };
    }
  });
  if (opts.json) {
    print(true, results, () => '');
  } else {
    for (const r of results) {
      if (r.removed) process.stdout.write(`removed ${r.name}\n`);
      else process.stderr.write(`sage-queue: ${r.message}\n`);
    }
  }
  if (results.some((r) => !r.removed)) process.exitCode = EXIT_FAILED;
}

async function gcCommand(opts: { json: boolean; yes: boolean; dryRun: boolean; includeIdle: boolean }): Promise<void> {
  if (!opts.yes && !opts.dryRun && !process.stdin.isTTY) {
    throw new CliError('gc needs confirmation: run it in a terminal, or pass --yes (see --dry-run)', EXIT_USAGE, 'ERR_CONFIRMATION_REQUIRED');
  }
  const plan = collectGarbage({ includeIdle: opts.includeIdle, dryRun: true });
  const garbage = plan.candidates;
  const describe = (v: QueueView): string =>
    v.error ? `${v.name} (${v.error.code})` : `${v.name} (${v.stats?.depth} messages; ${v.stats?.processes.length ? `processes ${processesText(v)}` : 'no process attached'})`;
  // Temporary names of creators killed before their queue was linked into place.
  const lines = [...garbage.map((v) => `  ${describe(v)}`), ...plan.temps.map((t) => `  ${t} (left by a creator that died)`)];
  if (lines.length === 0) {
    print(opts.json, { removed: [], candidates: [], temps: [] }, () => `nothing to collect: no queue whose attached processes are all dead${opts.includeIdle ? ', and none idle' : ''}`);
    return;
  }
  if (opts.dryRun) {
    print(opts.json, { removed: [], candidates: garbage.map((v) => v.name), temps: plan.temps }, () => `would remove:\n${lines.join('\n')}`);
    return;
  }
  if (!opts.yes) {
    process.stdout.write(`remove these?\n${lines.join('\n')}\n`);
    const rl = createInterface({ input: process.stdin, output: process.stdout });
    const answer = (await rl.question('[y/N] ')).trim().toLowerCase();
    rl.close();
    if (answer !== 'y' && answer !== 'yes') {
      print(opts.json, { removed: [], candidates: garbage.map((v) => v.name), temps: plan.temps }, () => 'nothing removed');
      return;
    }
  }
  // Removes only what is still garbage now (each is inspected again just before removal; a
  // temporary name only if its creator's lock is still free).
  const only = [...new Set([...garbage.map((v) => v.name), ...plan.temps.map(tempQueueName)])];
  const { removed, failed, temps } = collectGarbage({ includeIdle: opts.includeIdle, only });
  print(opts.json, { removed, failed, temps }, () =>
    [...removed.map((n) => `removed ${n}`), ...temps.map((t) => `removed ${t}`), ...failed.map((f) => `sage-queue: could not remove ${f.name}: ${f.message}`)].join('\n'),
  );
  if (failed.length > 0) process.exitCode = EXIT_FAILED;
}

/** Runs a script shipped with the package (the demo, the benchmark), passing the arguments on. */
function runScript(relative: string, args: string[]): void {
  const script = path.join(__dirname, '..', '..', relative);
  if (!existsSync(script)) throw new CliError(`${relative} is not part of this installation`, EXIT_FAILED, 'ERR_NOT_INSTALLED');
  const r = spawnSync(process.execPath, [script, ...args], { stdio: 'inherit' });
  process.exitCode = r.status ?? EXIT_FAILED;
}

/** The package's version (package.json two levels up from dist/cli/ and from lib/cli/). */
function packageVersion(): string {
  try {
    return (JSON.parse(readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

export async function main(argv: string[]): Promise<number> {
  // Under --json, failures are JSON on stdout ({ error: { code, message, exitCode } }), usage errors included.
  const jsonMode = argv.slice(2).includes('--json');
  let usageMessage = '';
  const program = new Command('sage-queue')
    .description('Inspect and manage sage-queue shared-memory queues (/dev/shm/sageq.*).')
    .version(packageVersion(), '-V, --version', 'print the version of sage-queue')
    .exitOverride()
    .configureOutput({
      writeErr: (text) => {
        if (jsonMode) usageMessage ||= text.trim().split('\n')[0] ?? '';
        else process.stderr.write(text);
      },
    })
    .showHelpAfterError('(see sage-queue --help)')
    .addHelpText('after', '\nExit codes: 0 ok, 1 a queue is missing or an operation failed, 2 bad usage.');
  const json = new Option('--json', 'machine-readable output');
  program.command('ls').description('list every queue: depth, capacity, state, attached processes (alive or DEAD)').addOption(json).action(lsCommand);
  program
    .command('stat')
    .description('full statistics of one queue')
    .argument('<name>', 'queue name')
    .addOption(json)
    .option('-w, --watch', 'refresh until interrupted', false)
    .option('--interval <ms>', 'refresh interval with --watch', '1000')
    .action(statCommand);
  program.command('rm').description('remove queues by name (attached processes keep working until they release)').argument('<names...>', 'queue names').addOption(json).action(rmCommand);
  program
    .command('gc')
    .description('remove queues whose attached processes are all dead (and segments whose creator died while creating them)')
    .addOption(json)
    .option('-y, --yes', 'do not ask for confirmation', false)
    .option('-n, --dry-run', 'only list what would be removed', false)
    .option('--include-idle', 'also remove queues that no process is attached to', false)
    .action(gcCommand);
  program
    .command('metrics')
    .description('serve Prometheus metrics of every queue on this machine at http://HOST:PORT/metrics (read from shared memory, nothing attaches)')
    .addOption(json)
    .option('-p, --port <port>', 'TCP port (0: any free port, printed at start)', '9464')
    .option('--host <address>', 'address to listen on', '127.0.0.1')
    .action(metricsCommand);
  program
    .command('demo')
    .description('run the demo pipeline (options after --, e.g. sage-queue demo -- --messages 100000)')
    .allowUnknownOption()
    .helpOption(false)
    .argument('[args...]')
    .action((args: string[]) => runScript('examples/demo.mjs', args));
  program
    .command('bench')
    .description('run the benchmark (options after --, e.g. sage-queue bench -- --quick)')
    .allowUnknownOption()
    .helpOption(false)
    .argument('[args...]')
    .action((args: string[]) => runScript('bench/run.mjs', args));

  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    let failure: { code: string; message: string; exitCode: number };
    if (e instanceof CommanderError) {
      // --help and --version exit 0; every other parse error is a usage error.
      if (e.exitCode === 0) return 0;
      failure = { code: 'ERR_USAGE', message: (usageMessage || e.message).replace(/^error: /, ''), exitCode: EXIT_USAGE };
      if (!jsonMode) return EXIT_USAGE; // commander has printed the message and the hint
    } else if (e instanceof CliError) {
      failure = { code: e.code, message: e.message, exitCode: e.exitCode };
    } else {
      const err = e as { code?: unknown; message?: string };
      failure = { code: typeof err.code === 'string' ? err.code : 'ERR_FAILED', message: err.message ?? String(e), exitCode: EXIT_FAILED };
    }
    if (jsonMode) process.stdout.write(`${JSON.stringify(jsonError(failure.code, failure.message, failure.exitCode), null, 2)}\n`);
    else process.stderr.write(`sage-queue: ${failure.message}\n`);
    return failure.exitCode;
  }
}

if (require.main === module) {
  main(process.argv).then((code) => {
    process.exitCode = code;
  });
}
