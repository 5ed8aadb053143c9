/**
 * Looking at shared-memory queues without attaching to them, and removing what dead processes
 * left behind: library API (SageQueue.inspect / inspectAll / gc), which the CLI calls.
 *
 * Inspecting maps a segment read-only in spirit: it takes no handle slot, so the inspector never
 * shows up as an attached process and never keeps a dead queue alive.
 */
import { unlinkSync } from 'node:fs';

import { checkBoolean, checkKnownKeys, checkOptions } from '../validate';
import { InvalidArgumentTypeError, SharedMemoryError } from '../errors';
import { native, NativeStatus } from '../native';
import type { NativeQueue, NativeStats } from '../native';
import { nativeError, statusError } from '../native/errors';
import { codecById } from './codecs';
import { listTables, removeStructureTable, removeStructureTables } from './structure-log';

/**
 * A queue's state as seen from outside: `alive` (some attached process is alive), `dead` (every
 * attached process died: garbage), `idle` (nobody attached), `initialising` (its creator is still
 * creating it), `broken` (could not be read: see `error`; a creator that died mid-creation
 * reports ERR_QUEUE_NOT_INITIALISED here, which is garbage too), `untrusted` (another user owns
 * it, or group/other may write it: shown read-only, its processes not probed, never collected;
 * see `untrusted` for why).
 */
export type QueueLiveness = 'alive' | 'dead' | 'idle' | 'initialising' | 'broken' | 'untrusted';

export interface QueueInspection {
  name: string;
  liveness: QueueLiveness;
  /** Null when the segment could not be read (see error). */
  stats: (NativeStats & { codecName: string }) | null;
  error: { code: string; message: string } | null;
  /** Milliseconds since the queue was created; null when unreadable. */
  ageMs: number | null;
  /** Attached processes that are alive / dead (both 0 when untrusted: nobody is probed). */
  alive: number;
  dead: number;
  /**
   * Null when the queue passes the default trust policy (owned by this user or root, not writable
   * by group/other); else ERR_QUEUE_UNTRUSTED_OWNER or ERR_QUEUE_SHARED_MODE. Everything in the
   * stats of an untrusted queue was written by someone this process does not trust.
   */
  untrusted: string | null;
}

export interface GcOptions {
  /** Also collect queues nobody is attached to (default false: an idle queue may be waiting for its first user). */
  includeIdle?: boolean;
  /** Report what would be removed, remove nothing (default false). */
  dryRun?: boolean;
  /** Consider only these names (e.g. the ones a user confirmed); each is inspected again before removal. */
  only?: readonly string[];
}

export interface GcResult {
  /** What was garbage when looked at (with dryRun: what would be removed). */
  candidates: QueueInspection[];
  removed: string[];
  /** Structure-table files (/dev/shm/sageq.<name>@<nonce>.structs) removed because their queue
   * was removed, is gone, or is another incarnation of that name (with dryRun: would be). */
  removedTables: string[];
  /**
   * Temporary names (files in /dev/shm, `sageq-tmp.<hex>.<queue>`) that creators killed before
   * linking their queue into place left behind: removed (with dryRun: would be). With `only`,
   * just those of the named queues.
   */
  temps: string[];
  failed: Array<{ name: string; code: string; message: string }>;
}

/** The state of the queue `name`, without attaching to it. Never throws for an unreadable segment. */
export function inspectQueue(name: string): QueueInspection {
  if (typeof name !== 'string') throw new InvalidArgumentTypeError('name', 'a string', name);
  try {
    const q = new (native().NativeQueue)(name, 'inspect', {}, () => undefined, 0);
    try {
      const s = q.stats() as NativeStats;
      const untrusted = s.untrusted ?? null;
      const alive = untrusted === null ? s.processes.filter((p) => p.alive).length : 0;
      const dead = untrusted === null ? s.processes.length - alive : 0;
      return {
        name,
        untrusted,
        liveness: untrusted !== null ? 'untrusted' : s.processes.length === 0 ? 'idle' : alive > 0 ? 'alive' : 'dead',
        stats: { ...s, codecName: codecById(s.codec)?.name ?? `unknown(${s.codec})` },
        error: null,
        ageMs: Date.now() - s.createdMs,
        alive,
        dead,
      };
    } finally {
      q.release();
    }
  } catch (e) {
    const err = nativeError(e, name) as Error & { code?: string };
    const code = err.code ?? 'ERR_SYSTEM';
    const liveness: QueueLiveness = code === 'ERR_QUEUE_INITIALISING' ? 'initialising' : 'broken';
    return { name, liveness, stats: null, error: { code, message: err.message }, ageMs: null, alive: 0, dead: 0, untrusted: null };
  }
}

/** The queue a temporary name (`sageq-tmp.<16 hex>.<queue>`, see GcResult.temps) was creating. */
export function tempQueueName(file: string): string {
  const prefix = native().capabilities().shmTempPrefix;
  return file.startsWith(prefix) ? file.slice(prefix.length + 17) : file;
}

/** Every sage-queue segment on this machine, inspected, sorted by name. */
export function inspectAllQueues(): QueueInspection[] {
  return native().list().sort().map(inspectQueue);
}

/**
 * Whether gc may remove a queue: every attached process is dead, or its creator died
 * mid-creation (ERR_QUEUE_NOT_INITIALISED; a live creator still at work is `initialising`,
 * never garbage); idle queues only with `includeIdle`. An untrusted queue never is: what its
 * segment says about its processes was written by someone else.
 */
export function isGarbage(view: QueueInspection, includeIdle = false): boolean {
  switch (view.liveness) {
    case 'dead':
      return true;
    case 'idle':
      return includeIdle;
    case 'broken':
      return view.error?.code === 'ERR_QUEUE_NOT_INITIALISED';
    default:
      return false;
  }
}

/**
 * Removes the names of queues that dead processes left behind (see isGarbage). Each candidate is
 * inspected again just before its name is removed, so a queue that came back to life in the
 * meantime is kept. Handles still attached anywhere keep working.
 */
export function collectGarbage(options?: GcOptions): GcResult {
  const opts = checkOptions<GcOptions>(options);
  checkKnownKeys(opts, ['includeIdle', 'dryRun', 'only']);
  const includeIdle = checkBoolean(opts.includeIdle, 'options.includeIdle', false);
  const dryRun = checkBoolean(opts.dryRun, 'options.dryRun', false);
  if (opts.only !== undefined && (!Array.isArray(opts.only) || opts.only.some((n) => typeof n !== 'string'))) {
    throw new InvalidArgumentTypeError('options.only', 'an array of queue names', opts.only);
  }
  const views = opts.only === undefined ? inspectAllQueues() : [...opts.only].sort().map(inspectQueue);
  const candidates = views.filter((v) => isGarbage(v, includeIdle));
  const temps = native().collectTemps(opts.only === undefined ? undefined : [...opts.only], dryRun);
  const result: GcResult = { candidates, removed: [], removedTables: [], failed: [], temps };
  if (!dryRun) {
    for (const v of candidates) {
      if (!isGarbage(inspectQueue(v.name), includeIdle)) continue;
      try {
        native().unlink(v.name);
        result.removed.push(v.name);
        removeStructureTables(v.name);
      } catch (e) {
        const err = nativeError(e, v.name) as Error & { code?: string };
        result.failed.push({ name: v.name, code: err.code ?? 'ERR_SYSTEM', message: err.message });
      }
    }
  }
  result.removedTables = collectOrphanTables(opts.only, dryRun);
  return result;
}

/**
 * Removes the name `name` from /dev/shm and the queue's structure table (attached handles keep
 * working: they hold both open); false if there was no segment of that name.
 */
export function unlinkQueue(name: string): boolean {
  try {
    native().unlink(name);
  } catch (e) {
    const err = nativeError(e, name) as Error & { code?: string };
    if (err.code !== 'ERR_QUEUE_NOT_FOUND') throw err;
    removeStructureTables(name);
    return false;
  }
  removeStructureTables(name);
  return true;
}

/**
 * Structure tables whose queue is gone, or belong to an earlier incarnation of its name (another
 * nonce): nobody can use them any more. A queue still initialising has no nonce to compare yet,
 * so its tables are kept.
 */
function collectOrphanTables(only: readonly string[] | undefined, dryRun: boolean): string[] {
  const out: string[] = [];
  for (const t of listTables()) {
    if (only !== undefined && !only.includes(t.name)) continue;
    const view = inspectQueue(t.name);
    const nonce = view.stats?.nonce;
    const orphan = nonce !== undefined ? nonce !== t.nonce : view.error?.code === 'ERR_QUEUE_NOT_FOUND';
    if (!orphan) continue;
    if (!dryRun) {
      try {
        unlinkSync(`/dev/shm/${t.file}`);
      } catch {
        continue; // gone already, or not ours to remove
      }
    }
    out.push(t.file);
  }
  return out;
}

/**
 * Removes the name a handle opened, only if it still refers to that segment (same device and
 * inode), and that segment's structure table. A name already gone is not an error; a name that
 * now refers to another queue is left alone (and so is its table): SharedMemoryError
 * ERR_QUEUE_REPLACED.
 */
export function unlinkIfSame(q: NativeQueue, name: string): void {
  const nonce = q.info()?.nonce;
  const status = -q.unlinkIfSame();
  if (status === 0 || status === NativeStatus.NotFound) {
    if (nonce !== undefined) removeStructureTable(name, nonce);
    return;
  }
  if (status === NativeStatus.Replaced) {
    throw new SharedMemoryError(
      'ERR_QUEUE_REPLACED',
      `queue ${name} was not removed: its name now refers to another queue than the one this handle opened (created after it was removed); this handle was released. Use SageQueue.destroy(${JSON.stringify(name)}) to remove the new one`,
      name,
    );
  }
  throw statusError(status, name, false);
}
