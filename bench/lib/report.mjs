// Turns per-round figures into medians, same-round ratios, the human table (Markdown, so it can be
// pasted into docs/benchmarks.md as is) and the JSON result document.
import { INFO_RATIOS, LATENCY_ROWS, PAYLOADS, TARGETS, THROUGHPUT_ROWS } from './cases.mjs';

export function median(values) {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

/** One figure of one round of a case. */
export function figure(run, metric) {
  if (!run || !run.ok) return null;
  if (metric === 'wakesPerMsg') return typeof run.wakeCalls === 'number' && run.dequeued > 0 ? run.wakeCalls / run.dequeued : null;
  if (metric === 'waitsPerMsg') return typeof run.waits === 'number' && run.dequeued > 0 ? run.waits / run.dequeued : null;
  const v = run[metric];
  return typeof v === 'number' ? v : null;
}

/** A round's record is usable when every message arrived, in order. */
export function checkRun(c, r) {
  if (c.kind === 'stream') {
    if (typeof r.sent === 'number' && r.received !== r.sent) return `received ${r.received} of ${r.sent} messages`;
    if (r.outOfOrder) return `${r.outOfOrder} messages out of order`;
  } else if (r.outOfOrder) {
    return `${r.outOfOrder} echoes did not match`;
  }
  return null;
}

export function summarizeCase(c, runs) {
  const ok = runs.filter((r) => r.ok);
  const s = { rounds: runs.length, okRounds: ok.length };
  const spread = (metric) => {
    const v = ok.map((r) => figure(r, metric)).filter((x) => x !== null);
    return v.length ? { median: median(v), min: Math.min(...v), max: Math.max(...v) } : null;
  };
  if (c.kind === 'stream') {
    s.msgsPerSec = spread('msgsPerSec');
    s.wakesPerMsg = spread('wakesPerMsg');
    s.waitsPerMsg = spread('waitsPerMsg');
    s.mbPerSec = s.msgsPerSec && c.size ? (s.msgsPerSec.median * c.size) / 1e6 : null;
  } else {
    s.p50Us = spread('p50Us');
    s.p99Us = spread('p99Us');
    s.samples = spread('samples');
  }
  const errors = runs.filter((r) => !r.ok).map((r) => r.error);
  if (errors.length) s.errors = errors;
  return s;
}

function compare(op, v, bound) {
  switch (op) {
    case '>':
      return v > bound;
    case '>=':
      return v >= bound;
    case '<':
      return v < bound;
    case '<=':
      return v <= bound;
    default:
      throw new Error(op);
  }
}

/** Ratios computed within each round, then the median over rounds. */
export function evaluateRatios(defs, results, rounds) {
  return defs.map((t) => {
    const perRound = [];
    for (let r = 0; r < rounds; r++) {
      if (t.value) {
        perRound.push(figure(results[t.value.id]?.[r], t.value.metric));
      } else {
        const num = figure(results[t.num.id]?.[r], t.num.metric);
        const den = figure(results[t.den.id]?.[r], t.den.metric);
        perRound.push(num !== null && den !== null && den > 0 ? num / den : null);
      }
    }
    const m = median(perRound);
    const out = { key: t.key, label: t.label, measured: m, perRound };
    if (t.op) {
      out.want = `${t.op} ${t.bound}`;
      out.met = m === null ? null : compare(t.op, m, t.bound);
    }
    if (t.value) out.of = t.value;
    else {
      out.numerator = t.num;
      out.denominator = t.den;
    }
    return out;
  });
}

// ---- formatting -------------------------------------------------------------------------------

export function fmtRate(v) {
  if (v === null || v === undefined) return '—';
  if (v >= 1e6) return `${(v / 1e6).toFixed(v >= 1e7 ? 1 : 2)} M`;
  if (v >= 1e3) return `${(v / 1e3).toFixed(v >= 1e5 ? 0 : 1)} k`;
  return v.toFixed(0);
}

export function fmtUs(v) {
  if (v === null || v === undefined) return '—';
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}

function fmtNs(v) {
  if (v === null || v === undefined) return '—';
  return v >= 10000 ? `${(v / 1000).toFixed(1)} µs` : `${Math.round(v)}`;
}

function fmtRatio(t) {
  if (t.measured === null) return 'n/a';
  if (t.of) return t.measured.toFixed(4);
  return `${t.measured >= 10 ? t.measured.toFixed(1) : t.measured.toFixed(2)}×`;
}

function spreadNote(s) {
  if (!s || s.median === 0 || s.min === s.max) return '';
  const pct = ((s.max - s.min) / 2 / s.median) * 100;
  return pct >= 0.5 ? ` ±${pct.toFixed(0)}%` : '';
}

function table(header, rows) {
  const lines = [`| ${header.join(' | ')} |`, `|${header.map((h, i) => (i === 0 ? '---' : '---:')).join('|')}|`];
  for (const r of rows) lines.push(`| ${r.join(' | ')} |`);
  return lines;
}

export function renderTables(doc) {
  const out = [];
  const rounds = doc.settings.rounds;
  out.push(`### Targets (ratio within each round, median of ${rounds} round${rounds > 1 ? 's' : ''})`, '');
  const rounds_ = (t) => t.perRound.map((v) => (v === null ? '—' : fmtRatio({ ...t, measured: v }))).join(' / ');
  out.push(
    ...table(
      ['Target', 'Measured', 'Want', 'Met', 'Each round'],
      doc.targets.map((t) => [t.label, fmtRatio(t), t.want.replace('>=', '≥').replace('<=', '≤'), t.met === null ? 'n/a' : t.met ? 'yes' : '**no**', rounds_(t)]),
    ),
  );
  out.push('', 'Other same-round ratios:', '');
  out.push(...table(['Comparison', 'Ratio', 'Each round'], doc.infoRatios.map((t) => [t.label, fmtRatio(t), rounds_(t)])));

  out.push('', `### Throughput, messages/s (median of ${rounds}; one producer process → one consumer process)`, '');
  const cols = ['64', '4096', 'obj'];
  const tpRows = THROUGHPUT_ROWS.map((r) => {
    const cells = cols.map((col) => {
      const s = doc.cases[`throughput/${r.row}/${col}`]?.summary;
      if (!r.cols.includes(col)) return '';
      if (!s?.msgsPerSec) return s?.errors ? 'failed' : '—';
      return `${fmtRate(s.msgsPerSec.median)}${spreadNote(s.msgsPerSec)}`;
    });
    const w = doc.cases[`throughput/${r.row}/64`]?.summary?.wakesPerMsg;
    return [r.label, ...cells, w ? w.median.toFixed(4) : ''];
  });
  out.push(...table(['Transport', ...cols.map((c) => PAYLOADS[c].label), 'wakes/msg (64 B)'], tpRows));

  out.push('', `### CPU per message in the streams (median of ${rounds}; from getrusage, whole stream incl. warm-up)`, '');
  out.push(
    'CPU ns/msg = user + system time ÷ messages; busy = CPU time ÷ wall time (a blocked side that spins counts as busy). ' +
      'Involuntary switches = times another process took the CPU: a sign of a noisy machine.',
    '',
  );
  const cpuRows = [];
  for (const r of THROUGHPUT_ROWS) {
    for (const col of ['64', '4096']) {
      const runs = doc.cases[`throughput/${r.row}/${col}`]?.runs?.filter((x) => x.ok && x.producer && x.consumer);
      if (!runs?.length) continue;
      const side = (k) => {
        const ns = median(runs.map((x) => x[k].userNsPerMsg + x[k].sysNsPerMsg));
        const busy = median(runs.map((x) => x[k].cpuBusy));
        return `${fmtNs(ns)} (${Math.round(busy * 100)}%)`;
      };
      const faults = median(runs.map((x) => (x.consumer.minorFaults * 1000) / Math.max(1, x.received)));
      const invol = median(runs.map((x) => x.producer.involuntarySwitches + x.consumer.involuntarySwitches));
      cpuRows.push([`${r.label}, ${PAYLOADS[col].label}`, side('producer'), side('consumer'), faults.toFixed(2), String(Math.round(invol))]);
    }
  }
  out.push(...table(['Stream', 'producer CPU ns/msg (busy)', 'consumer CPU ns/msg (busy)', 'consumer page faults / 1000 msgs', 'involuntary switches'], cpuRows));

  out.push('', `### Ping-pong round trip, 64 B, µs (median over ${rounds} round${rounds > 1 ? 's' : ''} of each round's percentile)`, '');
  const latRows = LATENCY_ROWS.map((r) => {
    const s = doc.cases[`latency/${r.row}`]?.summary;
    if (!s?.p50Us) return [r.label, s?.errors ? 'failed' : '—', '', ''];
    return [r.label, fmtUs(s.p50Us.median), fmtUs(s.p99Us.median), fmtRate(s.samples.median)];
  });
  out.push(...table(['Transport / mode', 'p50', 'p99', 'round trips/round'], latRows));

  const failures = Object.entries(doc.cases).filter(([, v]) => v.summary.errors);
  if (failures.length) {
    out.push('', '### Failures', '');
    for (const [id, v] of failures) out.push(`- ${id}: ${v.summary.errors.join('; ')}`);
  }
  return out;
}
