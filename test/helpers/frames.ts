/**
 * Typed access to test/fixtures/frames.cjs (the self-checking messages the children put and get)
 * and the bookkeeping the tests do on what consumers report.
 */
import { createRequire } from 'node:module';
import * as path from 'node:path';

export interface SizeSpec {
  min: number;
  max: number;
  bigEvery?: number;
  bigMin?: number;
  bigMax?: number;
}

export interface FrameCheck {
  ok: boolean;
  producer: number;
  seq: number;
  reason: string;
}

interface FramesModule {
  HEADER: number;
  makeFrame(producer: number, seq: number, payloadLength: number): Buffer;
  checkFrame(bytes: Uint8Array): FrameCheck;
  payloadSize(spec: SizeSpec, producer: number, seq: number): number;
}

const load = createRequire(__filename);
export const frames = load(path.join(__dirname, '..', 'fixtures', 'frames.cjs')) as FramesModule;

/** What the agent's `consume` op replies. */
export interface ConsumeResult {
  frames: Int32Array; // producer, seq, producer, seq, ...
  bad: Array<{ producer: number; seq: number; reason: string; length: number }>;
  count: number;
  endedBy: string;
  tEnd: number;
}

export type Delivery = Array<[producer: number, seq: number]>;

export function pairs(flat: Int32Array | number[]): Delivery {
  const out: Delivery = [];
  for (let i = 0; i + 1 < flat.length; i += 2) out.push([flat[i] as number, flat[i + 1] as number]);
  return out;
}

/**
 * Checks a set of consumers' deliveries against what was sent (`sent`: producer -> seqs).
 * Returns the problems found (empty when every message arrived exactly once, each consumer saw
 * every producer's messages in increasing seq order, and nothing unexpected arrived).
 */
export function auditDeliveries(deliveries: Delivery[], sent: Map<number, number[]>): { missing: string[]; duplicates: string[]; unexpected: string[]; disorder: string[] } {
  const seen = new Map<string, number>();
  const disorder: string[] = [];
  const unexpected: string[] = [];
  const expected = new Set<string>();
  for (const [p, seqs] of sent) for (const s of seqs) expected.add(`${p}:${s}`);
  deliveries.forEach((d, consumer) => {
    const last = new Map<number, number>();
    for (const [p, s] of d) {
      const key = `${p}:${s}`;
      seen.set(key, (seen.get(key) ?? 0) + 1);
      if (!expected.has(key)) unexpected.push(key);
      const prev = last.get(p);
      if (prev !== undefined && s <= prev) disorder.push(`consumer ${consumer}: producer ${p} seq ${s} after ${prev}`);
      last.set(p, s);
    }
  });
  const missing = [...expected].filter((k) => !seen.has(k));
  const duplicates = [...seen].filter(([, n]) => n > 1).map(([k, n]) => `${k} x${n}`);
  return { missing, duplicates, unexpected, disorder };
}

export function range(from: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => from + i);
}
