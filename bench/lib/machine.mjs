// What the figures were measured on (the machines are noisy: always print this beside them).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';

function readOr(file, fallback = '') {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return fallback;
  }
}

/** Absolute path of an executable on PATH, or null. */
export function which(cmd) {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (!dir) continue;
    const p = `${dir}/${cmd}`;
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      // keep looking
    }
  }
  return null;
}

/** CPUs this process may run on (the affinity mask), from /proc/self/status. */
function allowedCpus() {
  const m = /Cpus_allowed_list:\s*(\S+)/.exec(readOr('/proc/self/status'));
  if (!m) return null;
  const cpus = [];
  for (const part of m[1].split(',')) {
    const [a, b] = part.split('-').map(Number);
    for (let c = a; c <= (b ?? a); c++) cpus.push(c);
  }
  return cpus;
}

export function describeMachine() {
  const cpuinfo = readOr('/proc/cpuinfo');
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? os.cpus()[0]?.model ?? 'unknown';
  const flags = /^flags\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.split(/\s+/) ?? [];
  const logical = (cpuinfo.match(/^processor\s*:/gm) ?? []).length || os.cpus().length;
  const mhz = /^cpu MHz\s*:\s*(.+)$/m.exec(cpuinfo)?.[1];
  const vendor = readOr('/sys/class/dmi/id/sys_vendor').trim() || readOr('/sys/class/dmi/id/product_name').trim();
  let git = null;
  try {
    const commit = execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() !== '';
    git = { commit, dirty };
  } catch {
    // not a git checkout
  }
  return {
    cpuModel: model,
    cpuMHz: mhz ? Number(mhz) : null,
    logicalCpus: logical,
    allowedCpus: allowedCpus(),
    hypervisor: flags.includes('hypervisor'),
    platformVendor: vendor || null,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    v8: process.versions.v8,
    kernel: os.release(),
    arch: os.arch(),
    hostname: os.hostname(),
    git,
  };
}

function cpuTimes() {
  const line = readOr('/proc/stat').split('\n')[0] ?? '';
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  if (v.length < 5) return null;
  const idle = v[3] + (v[4] ?? 0); // idle + iowait
  return { idle, total: v.reduce((a, b) => a + b, 0) };
}

/**
 * How busy the machine is without us: share of all CPUs used by other processes over `ms`
 * (the benchmark must be idle meanwhile), and the load average. Other work on the machine makes
 * the figures noisy; this says how much there was.
 */
export async function sampleBackgroundLoad(ms = 500) {
  const a = cpuTimes();
  await new Promise((resolve) => setTimeout(resolve, ms));
  const b = cpuTimes();
  const busy = a && b && b.total > a.total ? 1 - (b.idle - a.idle) / (b.total - a.total) : null;
  const loadavg = os.loadavg().map((x) => Math.round(x * 100) / 100);
  return { busyPercent: busy === null ? null : Math.round(busy * 1000) / 10, loadavg, at: new Date().toISOString() };
}

export function loadLine(before, after) {
  const f = (s) => (s ? `${s.busyPercent ?? '?'}% CPU busy, load ${s.loadavg.join(' ')}` : 'n/a');
  return `Other load: before ${f(before)}${after ? `; after ${f(after)}` : ''}`;
}

export function machineLines(m, placement) {
  return [
    `CPU:       ${m.cpuModel}${m.cpuMHz ? ` @ ${Math.round(m.cpuMHz)} MHz` : ''} — ${m.logicalCpus} logical CPU(s)${m.hypervisor ? ', virtualised' : ''}${m.platformVendor ? ` (${m.platformVendor})` : ''}`,
    `Memory:    ${m.memoryGiB} GiB`,
    `Node:      ${m.node} (V8 ${m.v8}), ${m.arch}`,
    `Kernel:    Linux ${m.kernel}`,
    `Placement: ${placement}`,
    `Commit:    ${m.git ? `${m.git.commit}${m.git.dirty ? ' (with uncommitted changes)' : ''}` : 'n/a'}`,
  ];
}
