/**
 * BatchProcessor with `cutWhenIdle`: a batch is cut at the end of the event-loop turn when no
 * batch is in flight (a lone item does not wait for timeoutMs), items gather while a batch is in
 * flight and go as one batch when it completes, and batchSize / timeoutMs / maxBatches remain
 * upper bounds. Without the option nothing changes (see batch-processor.test.ts).
 */
import { describe, expect, it } from 'vitest';

import { BatchProcessor, MessageDispatcher } from '../../lib/index';
import type { FlushReason } from '../../lib/index';

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Seen { items: number[]; reason: FlushReason }

/** A processor whose batches stay in flight until released (in order). */
function held(options: { batchSize?: number; timeoutMs?: number; maxBatches?: number } = {}) {
  const seen: Seen[] = [];
  const releases: Array<() => void> = [];
  const p = new BatchProcessor<number>({
    cutWhenIdle: true,
    timeoutMs: 60_000,
    ...options,
    process: (items, info) => {
      seen.push({ items: [...items], reason: info.reason });
      return new Promise<void>((r) => releases.push(r));
    },
  });
  const releaseAll = async (): Promise<void> => {
    while (releases.length > 0) {
      for (const r of releases.splice(0)) r();
      await turn();
    }
  };
  return { p, seen, releases, releaseAll };
}

describe('BatchProcessor cutWhenIdle', () => {
  it('dispatches a lone item at the end of the turn when nothing is in flight, without waiting for timeoutMs (60 s here)', async () => {
    const { p, seen, releaseAll } = held();
    p.addNow(1);
    expect(seen).toEqual([]); // not inside add(): items of the same turn join it
    await turn();
    expect(seen).toEqual([{ items: [1], reason: 'idle' }]);
    await releaseAll();
    await p.close();
    expect(p.stats().flushes).toEqual({ size: 0, timeout: 0, flush: 0, close: 0, idle: 1 });
  });

  it('puts the items of one turn in one batch', async () => {
    const { p, seen, releaseAll } = held();
    for (let i = 0; i < 5; i++) p.addNow(i);
    await turn();
    expect(seen).toEqual([{ items: [0, 1, 2, 3, 4], reason: 'idle' }]);
    await releaseAll();
    await p.close();
  });

  it('gathers items while a batch is in flight and cuts them as one batch when it completes', async () => {
    const { p, seen, releases, releaseAll } = held();
    p.addNow(0);
    await turn();
    for (let i = 1; i <= 50; i++) {
      p.addNow(i);
      if (i % 10 === 0) await turn(); // several turns pass: still in flight, so nothing is cut
    }
    await turn();
    expect(seen.map((s) => s.items.length)).toEqual([1]);
    (releases.shift() as () => void)();
    await turn();
    expect(seen[1]).toEqual({ items: Array.from({ length: 50 }, (_, i) => i + 1), reason: 'idle' });
    await releaseAll();
    await p.close();
  });

  it('still fills batches up to batchSize under load', async () => {
    const { p, seen, releaseAll } = held({ batchSize: 10 });
    for (let i = 0; i < 25; i++) p.addNow(i);
    await turn();
    expect(seen.map((s) => [s.items.length, s.reason])).toEqual([[10, 'size'], [10, 'size']]);
    await releaseAll(); // the last two complete: the remaining 5 go then
    expect(seen.map((s) => [s.items.length, s.reason])).toEqual([[10, 'size'], [10, 'size'], [5, 'idle']]);
    await p.close();
  });

  it('keeps at most maxBatches in flight', async () => {
    const { p, seen, releases, releaseAll } = held({ batchSize: 1, maxBatches: 3 });
    for (let i = 0; i < 20; i++) p.addNow(i);
    await turn();
    expect(seen.length).toBe(3);
    expect(releases.length).toBe(3);
    await releaseAll();
    expect(seen.length).toBe(20);
    expect(seen.flatMap((s) => s.items)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    await p.close();
  });

  it('cuts after timeoutMs at the latest even while a batch is in flight', async () => {
    const { p, seen, releaseAll } = held({ timeoutMs: 20 });
    p.addNow(0);
    await turn();
    p.addNow(1); // the first batch never completes before the timeout
    await sleep(200);
    expect(seen).toEqual([{ items: [0], reason: 'idle' }, { items: [1], reason: 'timeout' }]);
    await releaseAll();
    await p.close();
  });

  it('validates the option, and counts idle flushes only when it is on', async () => {
    expect(() => new BatchProcessor({ process: () => undefined, cutWhenIdle: 'yes' as never })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => new MessageDispatcher({ process: () => undefined, cutWhenIdle: 1 as never }).dispatch('a', 1)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(new BatchProcessor({ process: () => undefined }).stats().flushes).toEqual({ size: 0, timeout: 0, flush: 0, close: 0 });
  });

  it('MessageDispatcher passes the option to every destination', async () => {
    const got: string[] = [];
    const d = new MessageDispatcher<number>({ cutWhenIdle: true, timeoutMs: 60_000, process: (dest, b) => void got.push(`${dest}:${b.join(',')}`) });
    await d.dispatch('a', 1);
    await d.dispatch('b', 2);
    await d.dispatch('a', 3);
    await turn();
    expect(got.sort()).toEqual(['a:1,3', 'b:2']);
    expect(d.stats().flushes.idle).toBe(2);
    await d.close();
  });
});
