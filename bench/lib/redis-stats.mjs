// What a redis-server did during a bench row, and what it does alone: redis-benchmark of it
// (parsed from --csv), its CPU time (INFO cpu) and its time per command (INFO commandstats).
import { spawnSync } from 'node:child_process';

/**
 * redis-benchmark of the same server (50 clients in C, 64 B values, `-P 32`): what the server
 * alone does. Its `--csv` output is one quoted header line then `"test","rps",...` rows.
 */
export function redisBenchmark(port, n) {
  const value = 'x'.repeat(64);
  const rows = [];
  for (const [name, args] of [
    ['redis-benchmark XADD 64 B -P 32 (server ceiling)', ['XADD', `rb-${process.pid}`, 'MAXLEN', '~', '100000', '*', 'v', value]],
    ['redis-benchmark LPUSH 64 B -P 32 (server ceiling)', ['-t', 'lpush', '-d', '64']],
  ]) {
    const r = spawnSync('redis-benchmark', ['-p', String(port), '-P', '32', '-n', String(n), '--csv', ...args], { encoding: 'utf8', timeout: 60_000 });
    let rps = 0;
    for (const line of String(r.stdout).split('\n')) {
      const cols = line.split(',').map((c) => c.replace(/^"|"$/g, ''));
      if (cols.length >= 2 && cols[0] !== 'test' && Number.isFinite(Number(cols[1]))) rps = Math.round(Number(cols[1]));
    }
    rows.push({ name, msgsPerSec: rps, p50us: 0, p99us: 0 });
  }
  return rows;
}

/** CPU time redis-server has used (INFO cpu: used_cpu_user + used_cpu_sys), µs. */
export async function serverCpuUs(client) {
  const info = String(await client.info('cpu'));
  const get = (k) => Number(new RegExp(`^${k}:([\\d.]+)`, 'm').exec(info)?.[1] ?? 0);
  return (get('used_cpu_user') + get('used_cpu_sys')) * 1e6;
}

/** INFO commandstats: { command: { calls, usec } } (commands run from Lua scripts counted too). */
export async function commandStats(client) {
  const out = {};
  for (const line of String(await client.info('commandstats')).split('\n')) {
    const m = /^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/.exec(line);
    if (m) out[m[1]] = { calls: Number(m[2]), usec: Number(m[3]) };
  }
  return out;
}

/**
 * Where the server's time went for `n` messages: µs per message per command (EVALSHA includes
 * the commands its script runs, which are listed too), and the total of top-level commands.
 */
export function serverTime(before, after, n) {
  const per = {};
  for (const [cmd, a] of Object.entries(after)) {
    const b = before[cmd] ?? { calls: 0, usec: 0 };
    if (a.calls === b.calls || cmd === 'info') continue;
    per[cmd] = { callsPer1k: Number((((a.calls - b.calls) * 1000) / n).toFixed(1)), usPerMsg: Number(((a.usec - b.usec) / n).toFixed(2)) };
  }
  return per;
}
