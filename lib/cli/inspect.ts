/** Read-only views of queues for the CLI: stats without attaching (so the tool never shows up
 * as an attached process, and never keeps a dead queue alive). */
import { codecById } from '../queue/codecs';
import { native } from '../native';
import type { NativeStats } from '../native';

export interface QueueView {
  name: string;
  /** Null when the segment could not be read (see error). */
  stats: (NativeStats & { codecName: string }) | null;
  error: { code: string; message: string } | null;
  ageMs: number | null;
  alive: number;
  dead: number;
}

export function inspectQueue(name: string): QueueView {
  const addon = native();
  try {
    const q = new addon.NativeQueue(name, 'inspect', {}, () => undefined, 0);
    try {
      const s = q.stats() as NativeStats;
      const alive = s.processes.filter((p) => p.alive).length;
      return {
        name,
        stats: { ...s, codecName: codecById(s.codec)?.name ?? `unknown(${s.codec})` },
        error: null,
        ageMs: Date.now() - s.createdMs,
        alive,
        dead: s.processes.length - alive,
      };
    } finally {
      q.release();
    }
  } catch (e) {
    const err = e as { code?: string; message?: string };
    return { name, stats: null, error: { code: err.code ?? 'ERR_SYSTEM', message: err.message ?? String(e) }, ageMs: null, alive: 0, dead: 0 };
  }
}

export function listQueues(): QueueView[] {
  return native().list().sort().map(inspectQueue);
}

/**
 * Segments `gc` may remove: every attached process is dead, or the creator died mid-creation
 * (ERR_QUEUE_NOT_INITIALISED; a live creator still at work reports ERR_QUEUE_INITIALISING).
 */
export function isGarbage(v: QueueView, includeIdle: boolean): boolean {
  if (v.error !== null) return v.error.code === 'ERR_QUEUE_NOT_INITIALISED';
  if (v.stats === null) return false;
  if (v.stats.processes.length === 0) return includeIdle;
  return v.alive === 0;
}
