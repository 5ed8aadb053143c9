// The books of an explicit-ack torture run (run.mjs --ack): reads the consumers' logs (see
// consumer-ack.mjs for their lines) and matches every delivery of every message.
//
// For each consumer killed by the controller, its log says exactly what it held at death: the
// messages of its last round without a settle line. The first of them was in the settle call in
// flight (with plan ackMany, the whole round was), so whether its ack went through is unknown; the
// ones after it were never settled: *held*, certainly unacked. Then, per message:
//   - every logged put was received at least once (0 lost);
//   - every delivery but the last was followed by another for a reason the logs show: it was
//     nacked, its settle threw LeaseLostError, or its consumer was killed holding it (held, or
//     in the settle call in flight); never after its ack returned (an A line), never while its
//     consumer lived without nacking it;
//   - the last delivery was acked (an A line), or it was in a dead consumer's settle call in
//     flight (then that ack went through: it was not delivered again); a held, nacked or lost
//     delivery that is the last one is a lost message;
//   - no two deliveries of a message carry the same delivery count (lease token).
// Deliveries whose R line is missing (a consumer killed between get and its log write) show as
// gaps in the delivery counts; each belongs to a consumer killed before it could log.
// The queue's own counters are then checked against this: acks = A lines + in-flight acks that
// went through + the controller's own; enqueued = distinct messages received + abandoned claims +
// the controller's own; nothing redeliverable or unacked after the drain.
import { eachLine } from './analyze.mjs';

const REC = 1;
const ACKED = 2;
const NACKED = 3;
const LOST = 4;
const PLAN_MANY = 1;
const P32 = 2 ** 32;
/** Bytes of one controller message (run.mjs finish(): makeMessage(CONTROLLER_ID, seq, 1000)). */
const CONTROLLER_RECORD = 16 + 1000 + 4;

/**
 * Returns { delivered, times, firstAt: Map(proc -> t), figures, checks } for the consumers of t.
 * logged: producer id -> number of logged puts; byProducer: id -> process.
 */
export function ackBooks(t, { consumers, producers, logged, byProducer }) {
  const msgs = new Map(); // key producer*2^32+seq -> [delivery]
  const times = [];
  const firstAt = new Map();
  let received = 0;
  let corrupted = 0;
  let orderViolations = 0;
  let ackedLines = 0;
  let nackedLines = 0;
  let lostLines = 0;
  let unmatchedSettles = 0;
  let unsettledAtExit = 0;
  let unsettledBeforeLastRound = 0;
  let killedHolding = 0;
  let heldAtDeath = 0;
  let inFlightAtDeath = 0;
  const corruptSamples = [];
  const anomalies = [];
  const note = (list, s) => list.length < 8 && list.push(s);

  for (const c of consumers) {
    const rounds = new Map(); // round -> [delivery]
    const last = new Map(); // producer -> last first-delivery seq
    let lastRound = 0;
    eachLine(c.logFile, (f, bad) => {
      if (bad) {
        corrupted++;
        note(corruptSamples, `consumer ${c.id}: ${f.join(' ')}`);
        return;
      }
      const [kind, round, p, s, d] = f;
      if (kind === REC) {
        const tus = f[6];
        const dv = { c, round, p, s, d, plan: f[5], status: 0 };
        received++;
        times.push(tus);
        if (!firstAt.has(c)) firstAt.set(c, tus);
        let list = rounds.get(round);
        if (list === undefined) rounds.set(round, (list = []));
        list.push(dv);
        lastRound = round;
        const key = p * P32 + s;
        let ds = msgs.get(key);
        if (ds === undefined) msgs.set(key, (ds = []));
        ds.push(dv);
        if (d === 1) {
          const prev = last.get(p);
          if (prev !== undefined && s <= prev) orderViolations++;
          last.set(p, s);
        }
        return;
      }
      const dv = rounds.get(round)?.find((x) => x.p === p && x.s === s && x.d === d && x.status === 0);
      if (dv === undefined) {
        unmatchedSettles++;
        note(anomalies, `consumer ${c.id}: settle line ${f.join(' ')} matches no received message`);
        return;
      }
      dv.status = kind;
      if (kind === ACKED) ackedLines++;
      else if (kind === NACKED) nackedLines++;
      else if (kind === LOST) lostLines++;
    });
    // What it held when it died (or, for a process that exited on its own, nothing).
    let holding = false;
    for (const [round, list] of rounds) {
      const open = list.filter((x) => x.status === 0);
      if (open.length === 0) continue;
      if (!c.killed) {
        unsettledAtExit += open.length;
        note(anomalies, `consumer ${c.id} exited with ${open.length} unsettled messages (round ${round})`);
        continue;
      }
      if (round !== lastRound) {
        unsettledBeforeLastRound += open.length;
        note(anomalies, `consumer ${c.id}: ${open.length} unsettled messages in round ${round}, before its last round ${lastRound}`);
      }
      holding = true;
      open.forEach((x, i) => {
        if (x.plan === PLAN_MANY || i === 0) {
          x.status = 'inflight';
          inFlightAtDeath++;
        } else {
          x.status = 'held';
          heldAtDeath++;
        }
      });
    }
    if (holding) killedHolding++;
  }

  // --- per message ---
  let distinct = 0;
  let redeliveredAfterNack = 0;
  let redeliveredAfterLeaseLost = 0;
  let redeliveredAfterDeath = 0; // held or in flight at its consumer's death
  let redeliveredAfterAck = 0;
  let sameToken = 0;
  let unloggedDeliveries = 0;
  let lostMessages = 0;
  let inFlightAcked = 0; // in a dead consumer's settle call, not delivered again: that ack went through
  let heldNotRedelivered = 0;
  let unexpected = 0;
  const lostSamples = [];
  const dupSamples = [];
  const unexpectedSamples = [];
  const describeD = (x) => `consumer ${x.c.id}${x.c.killed ? ' (killed)' : ''} round ${x.round} delivery ${x.d} ${typeof x.status === 'string' ? x.status : ['unsettled', 'R', 'acked', 'nacked', 'lease lost'][x.status]}`;
  for (const [key, ds] of msgs) {
    const p = Math.floor(key / P32);
    const s = key - p * P32;
    const prod = byProducer.get(p);
    const n = logged.get(p) ?? 0;
    if (prod === undefined || s > n || (s === n && !prod.killed)) {
      unexpected++;
      note(unexpectedSamples, `producer ${p} seq ${s} (logged ${n})`);
      continue;
    }
    distinct++;
    ds.sort((a, b) => a.d - b.d);
    const maxD = ds[ds.length - 1].d;
    const tokens = new Set(ds.map((x) => x.d));
    sameToken += ds.length - tokens.size;
    if (ds.length - tokens.size > 0) note(dupSamples, `producer ${p} seq ${s}: the same delivery count twice: ${ds.map(describeD).join('; ')}`);
    unloggedDeliveries += maxD - tokens.size;
    for (let i = 0; i < ds.length - 1; i++) {
      const x = ds[i];
      if (x.status === NACKED) redeliveredAfterNack++;
      else if (x.status === LOST) redeliveredAfterLeaseLost++;
      else if (x.status === 'held' || x.status === 'inflight') redeliveredAfterDeath++;
      else {
        redeliveredAfterAck++;
        note(dupSamples, `producer ${p} seq ${s} delivered again after ${describeD(x)}: ${ds.map(describeD).join('; ')}`);
      }
    }
    const z = ds[ds.length - 1];
    if (z.status === ACKED) continue;
    if (z.status === 'inflight') {
      inFlightAcked++;
      continue;
    }
    lostMessages++;
    if (z.status === 'held') heldNotRedelivered++;
    note(lostSamples, `producer ${p} seq ${s}: last delivery ${describeD(z)}, never delivered again`);
  }
  let neverReceived = 0;
  for (const pr of producers) {
    const n = logged.get(pr.id) ?? 0;
    for (let s = 0; s < n; s++) {
      if (!msgs.has(pr.id * P32 + s)) {
        neverReceived++;
        note(lostSamples, `producer ${pr.id} seq ${s}: put returned, never received`);
      }
    }
  }
  const duplicates = received - distinct - unexpected + unloggedDeliveries;

  // --- the queue's counters against the logs ---
  const s = t.finalStats;
  const L = s.leases ?? {};
  const drained = t.drainStats ?? {};
  const dL = drained.leases ?? {};
  const consumerKills = t.events.filter((e) => e.kind === 'kill' && e.role === 'consumer').length;
  const expectedAcks = ackedLines + inFlightAcked + t.own.acked;

  const figures = {
    received,
    distinctMessages: distinct,
    duplicates,
    redeliveredAfterNack,
    redeliveredAfterLeaseLost,
    redeliveredAfterDeath,
    redeliveredAfterAck,
    unloggedDeliveries,
    killedHolding,
    heldAtDeath,
    inFlightAtDeath,
    unackedAtDeath: heldAtDeath + inFlightAtDeath,
    inFlightAcked,
    ackedLines,
    nackedLines,
    lostLines,
    lost: lostMessages + neverReceived,
    corrupted,
    orderViolations,
    unexpected,
    acks: L.acks,
    nacks: L.nacks,
    staleSettles: L.staleSettles,
    redeliveries: L.redeliveries,
    expiredLeases: L.expiredLeases,
    deadLeases: L.deadLeases,
    lostInRead: s.lostInRead,
  };
  const checks = [];
  const check = (name, ok, detail) => checks.push({ name, ok: Boolean(ok), detail });
  check('ack: no corrupted message delivered', corrupted === 0 && t.own.bad === 0,
    corrupted ? corruptSamples.join('; ') : `${received} deliveries verified (header, length, CRC-32, payload)`);
  check('ack: no message lost (every put received, every message finally acked)', lostMessages === 0 && neverReceived === 0,
    `${neverReceived} logged puts never received, ${lostMessages} messages whose last delivery was not acked (${heldNotRedelivered} held by a dead consumer)${lostSamples.length ? `: ${lostSamples.join('; ')}` : ''}`);
  check('ack: a message is delivered again only when nacked or its consumer died before its ack returned', redeliveredAfterAck === 0 && sameToken === 0,
    `${duplicates} duplicate deliveries: ${redeliveredAfterDeath} after a death (of ${heldAtDeath + inFlightAtDeath} unacked at ${consumerKills} deaths: ${heldAtDeath} held, ${inFlightAtDeath} in a settle call), ` +
      `${redeliveredAfterNack} after a nack, ${redeliveredAfterLeaseLost} after a lost lease, ${unloggedDeliveries} deliveries never logged (killed between get and log); ` +
      `${redeliveredAfterAck} after an ack had returned, ${sameToken} with a repeated delivery count${dupSamples.length ? `: ${dupSamples.join('; ')}` : ''}`);
  check('ack: every delivered message was put', unexpected === 0, unexpected ? unexpectedSamples.join('; ') : 'yes');
  check('ack: the logs account for every settle', unmatchedSettles === 0 && unsettledAtExit === 0 && unsettledBeforeLastRound === 0,
    anomalies.join('; ') || `${ackedLines} acked, ${nackedLines} nacked, ${lostLines} lease lost; ${killedHolding} consumers killed holding leases`);
  check('ack: first deliveries reach each consumer in put order', orderViolations === 0, `${orderViolations} out of order`);
  check("ack: the queue's counters agree with the logs", L.acks === expectedAcks && s.enqueued === distinct + s.abandonedClaims + t.own.put && s.lostInRead === 0,
    `acks ${L.acks} (logs: ${ackedLines} + ${inFlightAcked} in flight at a death + ${t.own.acked} controller = ${expectedAcks}); ` +
      `enqueued ${s.enqueued} (logs: ${distinct} distinct + ${s.abandonedClaims} abandoned claims + ${t.own.put} controller); lostInRead ${s.lostInRead}; ` +
      `redeliveries ${L.redeliveries}, dead leases ${L.deadLeases}, expired ${L.expiredLeases}, stale settles ${L.staleSettles}`);
  // The controller fills the ring after the drain: it can only if no record is still leased.
  // (unackedBytes is shown, not checked: it counts from the ack floor, which moves on the next
  // successful get, so it still includes the last acked record until then.)
  const filled = (t.own.put * CONTROLLER_RECORD) / t.capacity;
  check('ack: nothing left unacked or redeliverable after the drain', drained.depth === 0 && dL.redeliverable === 0 && L.redeliverable === 0 && filled >= 0.9 && t.own.got === t.own.put && t.own.acked === t.own.put && t.own.errors.length === 0,
    `after the drain: depth ${drained.depth}, redeliverable ${dL.redeliverable}, unacked bytes ${dL.unackedBytes}; the controller then filled ${(filled * 100).toFixed(0)}% of the ring, ` +
      `got and acked ${t.own.acked}/${t.own.put}; at the end redeliverable ${L.redeliverable}, unacked bytes ${L.unackedBytes}` +
      (t.own.errors.length ? `; errors: ${t.own.errors.join('; ')}` : ''));
  return { delivered: received, times, firstAt, figures, checks };
}
