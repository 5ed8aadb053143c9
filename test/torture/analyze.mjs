// Reads the logs of a torture run and checks its invariants. Returns { figures, checks, ... }.
//
// Accounting. Producers log a seq only after put returned, consumers log an id before anything
// else once get returned. The queue's own counters (stats) close the books at the end, after the
// controller has forced a reclaim over the whole ring:
//   enqueued = delivered (consumer logs) + lostInRead + lostAfterGet + abandonedClaims + own
// where lostInRead are messages a consumer was copying out when it died (the queue counts them)
// and lostAfterGet those whose get had returned in a consumer that died before its log write
// (derived from the equation). Each consumer death can lose at most one message (gets of one).
// Every logged put that was not delivered must be one of those lost messages.
import { readFileSync } from 'node:fs';

import { ackBooks } from './analyze-ack.mjs';

const RECOVERY_WINDOW_US = 250_000;
// Puts that may still land in the last 40% of a backpressure phase, beyond one ring's worth: a
// replacement producer's first small message can fit where the others' larger ones could not.
// (One ring's worth can appear late: reclaim stops at the first record a consumer still holds,
// and a consumer killed holding one frees everything behind it at once, when a producer next
// looks. Against tens of thousands in that time when consumers consume.)
const LATE_PUTS_BOUND = 50;
const GAP_BOUND_MS = 2000;
const RSS_BOUND_MIB = 300;
const RSS_GROWTH_BOUND_MIB = 32;

/** Calls fn(fields, isBad) for each complete line of a log: numbers split on spaces. */
export function eachLine(file, fn) {
  let buf;
  try {
    buf = readFileSync(file);
  } catch {
    return;
  }
  let start = 0;
  for (let i = 0; i < buf.length; i++) {
    if (buf[i] !== 10) continue;
    if (buf[start] === 66 /* B */) {
      fn(buf.toString('latin1', start, i).split(' '), true);
    } else {
      const nums = [];
      let n = 0;
      let any = false;
      for (let k = start; k < i; k++) {
        const c = buf[k];
        if (c === 32) {
          nums.push(any ? n : NaN);
          n = 0;
          any = false;
        } else if (c >= 48 && c <= 57) {
          n = n * 10 + (c - 48);
          any = true;
        } else {
          n = NaN; // '-' (peekId's -1 for a short message) or anything else: not an id
        }
      }
      nums.push(any ? n : NaN);
      fn(nums, false);
    }
    start = i + 1;
  }
  // A last line without '\n' was cut by a SIGKILL mid-write: ignored (its put/get is accounted
  // for as "in flight" like any other at the moment of death).
}

function overlaps(a0, a1, windows) {
  for (const [w0, w1] of windows) if (a0 < w1 && a1 > w0) return true;
  return false;
}

function percentile(sorted, p) {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

export function analyze(t) {
  const producers = t.procs.filter((p) => p.role === 'producer');
  const consumers = t.procs.filter((p) => p.role === 'consumer');
  const byProducer = new Map(producers.map((p) => [p.id, p]));

  // --- producers: what was put (logged after put returned) ---
  const logged = new Map();
  const firstAt = new Map(); // process -> time of its first logged put or delivery (us)
  let producerLogAnomalies = 0;
  for (const p of producers) {
    let n = 0;
    eachLine(p.logFile, (f) => {
      if (f[0] !== n) producerLogAnomalies++;
      if (n === 0) firstAt.set(p, f[1]);
      n++;
    });
    logged.set(p.id, n);
  }
  const messagesPut = [...logged.values()].reduce((a, b) => a + b, 0);

  // --- consumers: what was delivered (explicit-ack mode: analyze-ack.mjs) ---
  const ack = t.o.ack ? ackBooks(t, { consumers, producers, logged, byProducer }) : null;
  if (ack) for (const [c, tus] of ack.firstAt) firstAt.set(c, tus);
  const seen = new Map(); // producer id -> Uint8Array of delivery counts by seq
  for (const p of producers) seen.set(p.id, new Uint8Array((logged.get(p.id) ?? 0) + 1));
  let delivered = 0;
  let corrupted = 0;
  let duplicates = 0;
  let orderViolations = 0;
  let unexpected = 0;
  let unloggedDelivered = 0;
  const corruptSamples = [];
  const unexpectedSamples = [];
  const times = ack ? ack.times : [];
  if (ack) delivered = ack.delivered;
  for (const c of ack ? [] : consumers) {
    const last = new Map();
    eachLine(c.logFile, (f, bad) => {
      if (bad) {
        corrupted++;
        if (corruptSamples.length < 5) corruptSamples.push(`consumer ${c.id}: ${f.join(' ')}`);
        return;
      }
      const [pid, seq, tus] = f;
      delivered++;
      times.push(tus);
      if (!firstAt.has(c)) firstAt.set(c, tus);
      const prod = byProducer.get(pid);
      const counts = seen.get(pid);
      const n = logged.get(pid) ?? 0;
      if (prod === undefined || counts === undefined || !(seq <= n) || (seq === n && !prod.killed)) {
        unexpected++;
        if (unexpectedSamples.length < 5) unexpectedSamples.push(`consumer ${c.id}: producer ${pid} seq ${seq} (logged ${n})`);
        return;
      }
      if (seq === n) unloggedDelivered++;
      if (counts[seq] > 0) duplicates++;
      counts[seq] = Math.min(255, counts[seq] + 1);
      const prev = last.get(pid);
      if (prev !== undefined && seq <= prev) orderViolations++;
      last.set(pid, seq);
    });
  }
  let missingLogged = 0;
  let inFlightUndelivered = 0; // killed producers whose put in flight was not delivered
  const missingSamples = [];
  for (const p of producers) {
    const counts = seen.get(p.id);
    const n = logged.get(p.id);
    for (let s = 0; s < n; s++) {
      if (counts[s] === 0) {
        missingLogged++;
        if (missingSamples.length < 10) missingSamples.push(`producer ${p.id} seq ${s}`);
      }
    }
    if (p.killed && counts[n] === 0) inFlightUndelivered++;
  }

  // --- events ---
  const ev = t.events;
  const kills = ev.filter((e) => e.kind === 'kill');
  const stops = ev.filter((e) => e.kind === 'stop');
  const killsOf = (role) => kills.filter((e) => e.role === role).length;
  const producerKills = killsOf('producer');
  const consumerKills = killsOf('consumer');
  const pauseWindows = t.pauses.map((p) => [p.start, p.end + 20_000]); // + consumers' 10 ms poll
  // SIGSTOPped processes, and processes parked at a test hook until their kill, hold up the queue
  // by design (FIFO waits for a live producer's claim; reclaim for a live reader).
  const parks = ev.filter((e) => e.kind === 'park');
  const stopWindows = [...stops, ...parks].map((s) => {
    const end = ev.find((e) => e.t >= s.t && e.role === s.role && e.id === s.id && (e.kind === 'cont' || e.kind === 'kill'));
    return [s.t, end ? end.t : t.faultEnd ?? Infinity];
  });
  const hookKills = {};
  for (const k of kills) if (k.hook) hookKills[k.hook] = (hookKills[k.hook] ?? 0) + 1;
  const hooked = (...points) => points.reduce((n, p) => n + (hookKills[p] ?? 0), 0);
  const readKills = hooked('after-take', 'mid-read');
  const claimKills = hooked('after-claim', 'mid-copy', 'before-commit', 'in-prod-lock');
  const lockKills = hooked('in-prod-lock', 'in-cons-lock');

  // A role is "starved" over [a, b] when none of its processes was working all along: from its
  // first logged put (producers) or delivery (consumers) to its death. Then the gap is the
  // replacements' Node start-up after every process of that role was killed, not the queue.
  const lifetimes = (role) =>
    t.procs.filter((p) => p.role === role && firstAt.has(p)).map((p) => [firstAt.get(p), p.killedAt ?? p.ended ?? Infinity]);
  const prodLife = lifetimes('producer');
  const consLife = lifetimes('consumer');
  const covered = (a, b, lives) => lives.some(([from, to]) => from <= a && to >= b);
  const starved = (a, b) => !covered(a, b, prodLife) || !covered(a, b, consLife);

  // --- progress: gaps between consecutive deliveries during the fault phase ---
  const d = Float64Array.from(times).sort();
  const gaps = []; // [start, end] in us, only the notable ones
  let worstStallAny = 0;
  let worstStallOutsidePause = 0;
  let worstStallClean = 0;
  for (let i = 1; i < d.length; i++) {
    const a = d[i - 1];
    const b = d[i];
    if (a < t.faultStart || b > t.faultEnd) continue;
    const g = b - a;
    if (g > worstStallAny) worstStallAny = g;
    const inPause = overlaps(a, b, pauseWindows);
    const inStop = overlaps(a, b, stopWindows);
    if (!inPause && g > worstStallOutsidePause) worstStallOutsidePause = g;
    if (g > 5000) {
      const noProcess = starved(a, b);
      if (!inPause && !inStop && !noProcess && g > worstStallClean) worstStallClean = g;
      gaps.push({ a, b, g, inPause, inStop, starved: noProcess });
    }
  }
  // Recovery after each kill: the longest delivery gap overlapping [kill, kill + 250 ms], among
  // gaps that no SIGSTOP or backpressure phase explains.
  const recoveries = [];
  let worstRecoveryAny = 0;
  let killsMeasured = 0;
  for (const k of kills) {
    if (k.t < t.faultStart || k.t > t.faultEnd - RECOVERY_WINDOW_US) continue;
    if (overlaps(k.t, k.t + 1, pauseWindows)) continue; // no deliveries by design
    // first delivery after the kill, and the delivery before it
    let lo = 0;
    let hi = d.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (d[mid] <= k.t) lo = mid + 1;
      else hi = mid;
    }
    if (lo === 0 || lo >= d.length) continue;
    killsMeasured++;
    let worst = 0;
    let worstAny = 0;
    for (let i = lo; i < d.length && d[i - 1] <= k.t + RECOVERY_WINDOW_US; i++) {
      const a = d[i - 1];
      const b = d[i];
      const g = b - a;
      if (g > worstAny) worstAny = g;
      if (g > worst && !overlaps(a, b, pauseWindows) && !overlaps(a, b, stopWindows) && !starved(a, b)) worst = g;
    }
    recoveries.push(worst / 1000);
    worstRecoveryAny = Math.max(worstRecoveryAny, worstAny / 1000);
  }
  recoveries.sort((a, b) => a - b);

  // --- memory and backpressure ---
  const prodRss = t.rss.filter((r) => r.role === 'producer').map((r) => r.kib / 1024);
  const maxProducerRssMiB = prodRss.length ? Math.max(...prodRss) : 0;
  let maxRssGrowthInPauseMiB = 0;
  const producerById = new Map(producers.map((p) => [String(p.id), p]));
  const pauses = t.pauses.map((p) => {
    for (const [id, start] of Object.entries(p.rssStart)) {
      const end = p.rssEnd[id];
      // Only producers that were already at work a second before the phase: a process still
      // starting up grows by tens of MiB (Node bootstrap, JIT) whatever the queue does.
      const first = firstAt.get(producerById.get(id));
      if (first === undefined || first > p.start - 1_000_000) continue;
      if (start !== undefined && end !== undefined) maxRssGrowthInPauseMiB = Math.max(maxRssGrowthInPauseMiB, (end - start) / 1024);
    }
    return {
      ms: p.ms,
      maxUsedFraction: p.maxUsed / t.capacity,
      maxDepth: p.maxDepth,
      producersWaitedForSpace: p.spaceWaitersSeen,
      putsInLast40Percent: p.enqueuedEnd - p.enqueuedLate,
    };
  });

  // --- the books ---
  const s = t.finalStats;
  const lostInRead = s.lostInRead;
  const abandoned = s.abandonedClaims;
  const lostAfterGet = s.enqueued - abandoned - lostInRead - delivered - t.own.got;
  const lost = lostInRead + lostAfterGet;
  const lostUnlogged = lost - missingLogged;
  const faultSeconds = (t.faultEnd - t.faultStart) / 1e6;

  const figures = {
    seed: t.o.seed,
    faultSeconds,
    producersAtOnce: t.o.producers,
    consumersAtOnce: t.o.consumers,
    capacityBytes: t.capacity,
    rounds: kills.length + stops.length,
    kills: kills.length,
    producerKills,
    consumerKills,
    killsOfStoppedProcesses: kills.filter((k) => k.wasStopped).length,
    producerKillsWhileBlockedOnFullQueue: kills.filter((k) => k.paused && k.role === 'producer').length,
    stops: stops.length,
    killsAtHookPoints: kills.filter((k) => k.hook).length,
    hookKills,
    pauses: t.pauses.length,
    processesStarted: t.procs.length,
    messagesPut,
    delivered,
    messagesPerSecond: delivered / Math.max(1e-9, (t.drainedAt - t.faultStart) / 1e6),
    corrupted,
    duplicates,
    orderViolations,
    unexpected,
    missingLogged,
    unloggedDelivered,
    lostInRead,
    lostAfterGet,
    lostUnlogged,
    abandonedClaims: abandoned,
    lockRecoveries: s.lockRecoveries,
    slotsReaped: s.slotsReaped,
    waiterHeals: s.waiterHeals,
    enqueued: s.enqueued,
    dequeued: s.dequeued,
    depthAfterDrain: t.depthAfterDrain,
    controllerMessages: t.own.put,
    killsMeasured,
    worstRecoveryMs: recoveries.length ? recoveries[recoveries.length - 1] : 0,
    medianRecoveryMs: percentile(recoveries, 0.5),
    p99RecoveryMs: percentile(recoveries, 0.99),
    worstRecoveryIncludingStopsMs: worstRecoveryAny,
    worstStallMs: worstStallClean / 1000,
    worstStallOutsidePausesMs: worstStallOutsidePause / 1000,
    worstStallAnyMs: worstStallAny / 1000,
    maxProducerRssMiB,
    maxRssGrowthInPauseMiB,
  };
  if (ack) {
    // The auto-mode books (one delivery per message, losses counted from the counters) do not apply.
    for (const k of ['duplicates', 'orderViolations', 'unexpected', 'missingLogged', 'unloggedDelivered', 'lostAfterGet', 'lostUnlogged']) delete figures[k];
    Object.assign(figures, ack.figures, { ackMode: 'explicit' });
  }

  const checks = [];
  const check = (name, ok, detail) => checks.push({ name, ok: Boolean(ok), detail });
  if (ack) {
    checks.push(...ack.checks);
    check('every producer logged its puts in order', producerLogAnomalies === 0, `${producerLogAnomalies} producer log anomalies`);
  } else {
    check('no corrupted message delivered', corrupted === 0 && t.own.bad === 0, corrupted ? corruptSamples.join('; ') : `${delivered} delivered messages verified (header, length, CRC-32, payload)`);
    check('no message delivered twice', duplicates === 0, `${duplicates} duplicates`);
    check("each consumer sees each producer's messages in order", orderViolations === 0, `${orderViolations} out of order`);
    check('every delivered message was put', unexpected === 0 && producerLogAnomalies === 0,
      unexpected || producerLogAnomalies ? `${unexpected} unexpected ids (${unexpectedSamples.join('; ')}), ${producerLogAnomalies} producer log anomalies` : `${unloggedDelivered} delivered from puts in flight when their producer was killed`);
    check('the queue drains completely', t.depthAfterDrain === 0 && s.enqueued === s.dequeued && t.own.got === t.own.put && t.own.errors.length === 0,
      `depth after drain ${t.depthAfterDrain}; enqueued ${s.enqueued}, dequeued ${s.dequeued}; controller ${t.own.got}/${t.own.put}` +
        (t.own.errors.length ? `; errors: ${t.own.errors.join('; ')}` : ''));
    check('only a dying consumer loses a message, at most one each', lostAfterGet >= 0 && lost <= consumerKills,
      `${lost} lost (${lostInRead} lostInRead + ${lostAfterGet} after get returned) for ${consumerKills} consumer kills`);
    check('every logged put is delivered or one of those lost messages', missingLogged <= lost && lostUnlogged <= inFlightUndelivered,
      `${missingLogged} logged puts undelivered, ${lost} lost; the other ${lostUnlogged} lost were puts in flight at a producer kill (${inFlightUndelivered} such puts undelivered)${missingSamples.length && missingLogged > lost ? `: ${missingSamples.join(', ')}` : ''}`);
    check('lostInRead counts every consumer killed while reading, and nothing else', lostInRead >= readKills && lostInRead - readKills <= consumerKills - readKills,
      `lostInRead ${lostInRead}; ${readKills} consumers killed parked at after-take/mid-read, ${consumerKills - readKills} other consumer kills`);
  }
  check('abandoned claims: every producer killed mid-put, only killed producers', abandoned >= claimKills && abandoned <= producerKills,
    `${abandoned} abandoned claims; ${claimKills} producers killed parked between claim and commit, ${producerKills} producer kills`);
  check('a lock holder killed inside its critical section is recovered', s.lockRecoveries >= lockKills,
    `${s.lockRecoveries} lock recoveries for ${lockKills} kills parked inside a lock`);
  check('no deadlock: progress resumes after every kill', killsMeasured > 0 && figures.worstRecoveryMs < GAP_BOUND_MS,
    `worst ${figures.worstRecoveryMs.toFixed(1)} ms over ${killsMeasured} kills (bound ${GAP_BOUND_MS} ms)`);
  check('no stall outside SIGSTOPs and backpressure phases', figures.worstStallMs < GAP_BOUND_MS, `worst ${figures.worstStallMs.toFixed(1)} ms (bound ${GAP_BOUND_MS} ms)`);
  check('backpressure: producers block on a full queue while consumers stop', pauses.length > 0 && pauses.every((p) => (p.producersWaitedForSpace || p.maxUsedFraction > 0.9) && p.putsInLast40Percent <= p.maxDepth + LATE_PUTS_BOUND),
    pauses.map((p) => `${(p.maxUsedFraction * 100).toFixed(0)}% full (${p.maxDepth} messages), ${p.putsInLast40Percent} puts late`).join('; ') || 'no pause phase');
  check('producer memory stays bounded', maxProducerRssMiB < RSS_BOUND_MIB && maxRssGrowthInPauseMiB < RSS_GROWTH_BOUND_MIB,
    `max RSS ${maxProducerRssMiB.toFixed(1)} MiB (bound ${RSS_BOUND_MIB}), max growth while blocked ${maxRssGrowthInPauseMiB.toFixed(1)} MiB (bound ${RSS_GROWTH_BOUND_MIB})`);
  check('every child process behaved (no unexpected exit)', t.harnessErrors.length === 0, t.harnessErrors.slice(0, 5).join(' | ') || 'none');

  gaps.sort((x, y) => y.g - x.g);
  // What happened around a gap: the faults from 300 ms before it to its end.
  const around = (g) =>
    ev
      .filter((e) => e.t >= g.a - 300_000 && e.t <= g.b && e.kind !== 'spawn')
      .map((e) => `${e.kind}${e.role ? ` ${e.role} ${e.id}` : ''} @${((e.t - g.a) / 1000).toFixed(0)}ms`)
      .join(', ');
  return {
    figures,
    checks,
    pauses,
    longestGaps: gaps.slice(0, 8).map((g) => ({
      ms: g.g / 1000,
      atSeconds: (g.a - t.faultStart) / 1e6,
      duringStop: g.inStop,
      duringPause: g.inPause,
      noEstablishedProcess: g.starved,
      events: around(g),
    })),
  };
}
