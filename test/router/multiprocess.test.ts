/**
 * The router against real consumer processes: a consumer stopped with SIGSTOP must not stall
 * routing to the others. Its target is ejected after a few timed-out sends, every packet is
 * delivered elsewhere, no route() call outlasts its time bound, and after SIGCONT (and the probe
 * time) traffic returns to it.
 */
import { afterEach, describe, expect, it } from 'vitest';

import { BaseRouter, LocalQueue, Packet, systemClock } from '../../lib/index';
import type { Connection, DeadLetter, RouteReport } from '../../lib/index';
import { cleanup, sleep, startConsumers, stopConsumers, until } from '../helpers/harness';

// Cleanup: children are continued and killed, handles released, segments destroyed — after every
// test, whether it passed or not.
afterEach(cleanup);

// ---------------------------------------------------------------------------------------------

describe('router with a stopped consumer process', () => {
  it('a SIGSTOPped consumer does not stall routing: its target is ejected, every packet is delivered to the others within the time bound, and after SIGCONT traffic returns to it', async () => {
    const MAXSIZE = 20;
    const SEND_TIMEOUT = 100;
    const MAX_RETRIES = 2;
    const RETRY_BASE = 5;
    const RETRY_MAX = 20;
    const EJECT_BASE = 1500;
    const CONCURRENCY = 4;
    // Each attempt waits at most SEND_TIMEOUT; between attempts a backoff of at most
    // min(RETRY_MAX, RETRY_BASE·2^n); the dead-letter put is in-process. Plus scheduling slack
    // on a loaded 2-core machine.
    const backoffs = Array.from({ length: MAX_RETRIES }, (_, n) => Math.min(RETRY_MAX, RETRY_BASE * 2 ** n)).reduce((a, b) => a + b, 0);
    const BOUND = (MAX_RETRIES + 1) * SEND_TIMEOUT + backoffs + 250;

    const { queues, consumers } = await startConsumers('stop', [0, 0, 0], { capacity: 1 << 16, maxsize: MAXSIZE, codec: 'v8' });

    const dlq = new LocalQueue<DeadLetter>();
    const router = new BaseRouter({
      name: 'mp',
      strategy: 'round_robin',
      sendTimeoutMs: SEND_TIMEOUT,
      maxRetries: MAX_RETRIES,
      retryBaseMs: RETRY_BASE,
      retryMaxMs: RETRY_MAX,
      ejectAfterFailures: 2,
      ejectBaseMs: EJECT_BASE,
      deadLetterQueue: dlq,
    });
    const conns = queues.map((q, i) => router.addConnection({ broadcastIndex: 0, parallelIndex: i, targetName: `c${i}`, targetHandle: q }));
    const stopped = conns[1] as Connection;

    let next = 0;
    const durations: number[] = [];
    const reports: RouteReport[] = [];
    /** Routes `count` packets with CONCURRENCY route() calls in flight; returns the first seq. */
    const routeMany = async (count: number): Promise<number> => {
      const first = next;
      const end = next + count;
      await Promise.all(
        Array.from({ length: CONCURRENCY }, async () => {
          while (next < end) {
            const seq = next++;
            const t0 = performance.now();
            const r = await router.route(new Packet({ seq }));
            durations.push(performance.now() - t0);
            reports.push(r);
          }
        }),
      );
      return first;
    };

    // Phase 1: everyone consumes.
    await routeMany(150);
    expect(reports.every((r) => r.ok)).toBe(true);

    // Phase 2: consumer 1 stops. Its queue fills, sends to it time out, it is ejected.
    consumers[1]?.proc.kill('SIGSTOP');
    const t2 = performance.now();
    await routeMany(600);
    const phase2Ms = performance.now() - t2;
    expect(stopped.health.timesEjected).toBeGreaterThanOrEqual(1);
    expect(stopped.health.state).toBe('ejected');
    expect(stopped.health.lastError).toContain('ERR_QUEUE_FULL');
    expect(queues[1]?.bufferLoad()).toBe(1);
    expect(reports.every((r) => r.ok)).toBe(true); // every packet delivered (to the others when needed)
    expect(dlq.qsize()).toBe(0);
    const maxDuration = Math.max(...durations);
    expect(maxDuration).toBeLessThanOrEqual(BOUND);

    // Phase 3: consumer 1 continues; it drains its backlog, and once the probe time has come the
    // next packet for it is a probe that succeeds.
    consumers[1]?.proc.kill('SIGCONT');
    await until(() => queues[1]?.bufferLoad() === 0, 'the continued consumer to drain its queue', 10_000, 5);
    const probeAt = stopped.health.nextProbeAt as number;
    const wait = probeAt - systemClock.now();
    if (wait > 0) await sleep(wait + 5);
    const phase3First = await routeMany(300);
    expect(reports.every((r) => r.ok)).toBe(true);
    expect(stopped.health.state).toBe('healthy');
    expect(Math.max(...durations)).toBeLessThanOrEqual(BOUND);

    // Every packet exactly once, across the three consumers.
    const seqs = await stopConsumers(router, consumers, 5000, 20_000);
    const all = seqs.flat().sort((a, b) => a - b);
    expect(all.length).toBe(next);
    expect(all.every((s, i) => s === i)).toBe(true);
    const afterContinue = (seqs[1] as number[]).filter((s) => s >= phase3First).length;
    expect(afterContinue).toBeGreaterThan(50); // round robin gives it about a third of phase 3 again
    const stats = router.stats();
    expect(stats).toMatchObject({ delivered: next, deadLettered: 0, failed: 0 });
    console.log(
      `[SIGSTOP] ${next} packets; phase 2 (stopped) ${phase2Ms.toFixed(0)} ms, ejected ${stopped.health.timesEjected}x; ` +
        `per consumer ${seqs.map((s) => s.length).join(' / ')}; stopped consumer got ${afterContinue} of phase 3; ` +
        `route() max ${Math.max(...durations).toFixed(1)} ms (bound ${BOUND} ms), p99 ${durations.sort((a, b) => a - b)[Math.floor(durations.length * 0.99)]?.toFixed(1)} ms; ` +
        `retried ${stats.retried}`,
    );
  }, 40_000);
});
