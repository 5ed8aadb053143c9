/**
 * The producer side of a RedisQueue handle: puts issued in the same tick go out together (one
 * script call per CHUNK entries), and puts that find the queue full wait in a lane, oldest first,
 * retried with backoff until there is room, their timeout passes, or the queue is closed.
 *
 * A put whose timeout passes while Redis cannot be reached rejects RedisBackendError
 * ERR_REDIS_UNAVAILABLE (nothing was sent), not QueueFullError.
 */
import { QueueClosedError, QueueFullError, QueueReleasedError } from '../errors';
import { RedisBackendError } from './connection';
import { CHUNK, SESSION_TTL_MS, SESSION_WINDOW } from './queue-backend';
import type { QueueBackend } from './queue-backend';
import { FIELD_OF_CODEC } from './queue-entries';
import type { WaitOptions as Wait } from '../queue/skeleton';
import { parsePutReply } from './queue-scripts';

interface DirectPut {
  payloads: Uint8Array[];
  wait: Wait;
  deadline: number | undefined;
  what: string;
  resolve(n: number): void;
  reject(e: unknown): void;
}

interface PutJob {
  payloads: Uint8Array[];
  deadline: number | undefined;
  done: number;
  inFlight: boolean;
  failure: unknown;
  settled: boolean;
  resolve(n: number): void;
  reject(e: unknown): void;
  cleanup(): void;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A failure with nothing sent: Redis was not reachable before the call gave up waiting. */
function isUnsent(e: unknown): boolean {
  return e instanceof RedisBackendError && e.code === 'ERR_REDIS_UNAVAILABLE' && !e.maybeApplied;
}

export class QueueProducer {
  readonly #b: QueueBackend;
  readonly #field: string;
  readonly #lane: PutJob[] = [];
  readonly #direct: DirectPut[] = [];
  #directScheduled = false;
  #laneRunning = false;

  constructor(backend: QueueBackend) {
    this.#b = backend;
    this.#field = FIELD_OF_CODEC[backend.settings.codec.name];
  }

  /** Throws when puts are refused now (released, or closed). */
  checkWritable(): void {
    this.#b.checkNotReleased();
    if (this.#b.closed) throw new QueueClosedError('the queue is closed: puts are refused');
  }

  /** Sends payloads[from..] in chunks, pipelined; returns how many were appended (stops at the first short chunk). */
  async #append(payloads: Uint8Array[], from: number, head: boolean, deadline: number | undefined): Promise<{ added: number; closed: boolean }> {
    const s = this.#b.settings;
    const calls: Array<Promise<number>> = [];
    for (let at = from, first = true; at < payloads.length; at += CHUNK, first = false) {
      const chunk = payloads.slice(at, at + CHUNK);
      const headFlag = head && first ? '1' : '0';
      // One bulk string for the chunk's values (and one for their lengths): ioredis writes 3
      // pieces per separate argument, which cost more than the copy.
      const lengths = chunk.map((p) => p.length).join(',');
      const blob = Buffer.concat(chunk);
      calls.push(
        this.#b.withSeq((seq) =>
          this.#b.scriptWait<number>('sageqPutPacked', [s.stream, s.closedKey, s.sessionKey], [seq, SESSION_WINDOW, SESSION_TTL_MS, s.maxsize, headFlag, this.#field, lengths, blob], deadline),
        ),
      );
    }
    const results = await Promise.allSettled(calls);
    let added = 0;
    // ERR_REDIS_NOT_REPLICATED: the chunk was appended (counted in `written`) but not confirmed.
    let notReplicated: RedisBackendError | undefined;
    let confirmed = 0;
    for (let i = 0; i < results.length; i++) {
      const r = results[i] as PromiseSettledResult<number>;
      let reply: unknown;
      if (r.status === 'rejected') {
        const e = r.reason as { code?: unknown; reply?: unknown };
        if (e instanceof RedisBackendError && e.code === 'ERR_REDIS_NOT_REPLICATED') {
          if (notReplicated === undefined) {
            notReplicated = e;
            confirmed = from + added;
          }
          reply = (e as { reply?: unknown }).reply;
        } else {
          if (added > 0 || i > 0) throw Object.assign(r.reason as Error, { written: from + added });
          throw r.reason;
        }
      } else {
        reply = r.value;
      }
      const n = parsePutReply(reply);
      if (n === -1) {
        if (notReplicated !== undefined) break;
        return { added, closed: true };
      }
      added += n;
      const size = Math.min(CHUNK, payloads.length - (from + i * CHUNK));
      if (n < size) break; // the rest of this pipeline was refused (the producer is blocked)
    }
    if (notReplicated !== undefined) throw Object.assign(notReplicated, { written: from + added, confirmed });
    return { added, closed: false };
  }

  /**
   * Puts issued in the same tick while no put waits for room go out together: one script call
   * (per CHUNK entries) for all of them, in call order.
   */
  put(payloads: Uint8Array[], wait: Wait, what: string): Promise<number> {
    if (payloads.length === 0) return Promise.resolve(0);
    const deadline = wait.timeoutMs === undefined ? undefined : Date.now() + wait.timeoutMs;
    if (this.#lane.length > 0) return this.#enterLane(payloads, 0, wait, deadline, what);
    return new Promise<number>((resolve, reject) => {
      this.#direct.push({ payloads, wait, deadline, what, resolve, reject });
      if (!this.#directScheduled) {
        this.#directScheduled = true;
        queueMicrotask(() => void this.#flushDirect());
      }
    });
  }

  async #flushDirect(): Promise<void> {
    this.#directScheduled = false;
    const jobs = this.#direct.splice(0);
    if (jobs.length === 0) return;
    if (this.#lane.length > 0 || this.#b.closed || this.#b.released) {
      for (const j of jobs) this.#enterLane(j.payloads, 0, j.wait, j.deadline, j.what).then(j.resolve, j.reject);
      return;
    }
    const all = jobs.length === 1 ? (jobs[0] as DirectPut).payloads : jobs.flatMap((j) => j.payloads);
    let added: number;
    let closed = false;
    let failure: unknown;
    // No call waits for a connection longer than the earliest put's timeout; a put with a later
    // (or no) timeout that finds Redis unreachable then goes on waiting in the lane.
    let deadline: number | undefined;
    for (const j of jobs) if (j.deadline !== undefined) deadline = Math.min(deadline ?? Infinity, j.deadline);
    try {
      const r = await this.#append(all, 0, false, deadline);
      added = r.added;
      closed = r.closed;
    } catch (e) {
      failure = e;
      added = typeof (e as { written?: unknown }).written === 'number' ? (e as { written: number }).written : 0;
    }
    if (closed) this.#b.closedSeen = true;
    // ERR_REDIS_NOT_REPLICATED: the puts wholly before the unconfirmed chunk resolve; the others
    // reject with `written` = how many of their items were appended (on the master only).
    const unconfirmed = failure instanceof RedisBackendError && failure.code === 'ERR_REDIS_NOT_REPLICATED' ? failure : undefined;
    let left = unconfirmed === undefined ? added : (unconfirmed as unknown as { confirmed: number }).confirmed;
    let start = 0;
    for (const j of jobs) {
      const n = j.payloads.length;
      start += n;
      if (unconfirmed !== undefined && left < n) {
        const appended = Math.max(0, Math.min(n, added - (start - n)));
        left = 0;
        const e = new RedisBackendError(unconfirmed.code, unconfirmed.message, true);
        e.replicas = unconfirmed.replicas;
        j.reject(Object.assign(e, { written: appended }));
        continue;
      }
      if (left >= n) {
        left -= n;
        j.resolve(n);
        continue;
      }
      const done = left;
      left = 0;
      if (failure !== undefined && done === 0 && isUnsent(failure) && (j.deadline === undefined || j.deadline > Date.now())) {
        this.#enterLane(j.payloads, 0, j.wait, j.deadline, j.what).then(j.resolve, j.reject);
      } else if (failure !== undefined) {
        j.reject(Object.assign(failure as object, { written: done }));
      } else if (closed) {
        j.reject(Object.assign(new QueueClosedError('the queue is closed: puts are refused'), { written: done }));
      } else if (j.wait.timeoutMs === 0) {
        j.reject(Object.assign(new QueueFullError(`${j.what} timed out after 0 ms: the queue is full (maxsize ${this.#b.settings.maxsize})`, true), { written: done }));
      } else {
        this.#enterLane(j.payloads, done, j.wait, j.deadline, j.what).then(j.resolve, j.reject);
      }
    }
  }

  /** Queues a put behind the others that wait for room (FIFO per handle). */
  #enterLane(payloads: Uint8Array[], done: number, wait: Wait, deadline: number | undefined, what: string): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const onAbort = (): void => fail(wait.signal?.reason);
      const job: PutJob = {
        payloads,
        deadline,
        done,
        inFlight: false,
        failure: undefined,
        settled: false,
        resolve: (n) => {
          if (job.settled) return;
          job.settled = true;
          job.cleanup();
          resolve(n);
        },
        reject: (e) => {
          if (job.settled) return;
          job.settled = true;
          job.cleanup();
          reject(e);
        },
        cleanup: () => {
          if (timer !== undefined) clearTimeout(timer);
          wait.signal?.removeEventListener('abort', onAbort);
          const i = this.#lane.indexOf(job);
          if (i >= 0) this.#lane.splice(i, 1);
        },
      };
      const fail = (e: unknown): void => {
        if (job.inFlight) job.failure ??= e;
        else job.reject(e);
      };
      if (this.#b.released || this.#b.closed) {
        const err = this.#b.released ? new QueueReleasedError() : new QueueClosedError('the queue is closed: puts are refused');
        job.reject(Object.assign(err, { written: done }));
        return;
      }
      if (wait.signal?.aborted) {
        job.reject(wait.signal.reason);
        return;
      }
      if (deadline !== undefined) {
        timer = setTimeout(() => {
          const error = this.#b.unreachable(what) ?? new QueueFullError(`${what} timed out after ${wait.timeoutMs} ms: the queue is still full (maxsize ${this.#b.settings.maxsize})`, true);
          fail(Object.assign(error, { written: job.done }));
        }, Math.max(0, deadline - Date.now()));
      }
      wait.signal?.addEventListener('abort', onAbort, { once: true });
      this.#lane.push(job);
      void this.#runLane();
    });
  }

  /** Puts that found the queue full wait here, oldest first, each retried with backoff. */
  async #runLane(): Promise<void> {
    if (this.#laneRunning) return;
    this.#laneRunning = true;
    let backoff = 2;
    try {
      while (this.#lane.length > 0) {
        const job = this.#lane[0] as PutJob;
        if (this.#b.released || this.#b.closed) {
          for (const j of [...this.#lane]) {
            const err = this.#b.released ? new QueueReleasedError() : new QueueClosedError('the queue is closed: puts are refused');
            j.reject(Object.assign(err, { written: j.done }));
          }
          break;
        }
        job.inFlight = true;
        let r: { added: number; closed: boolean };
        try {
          r = await this.#append(job.payloads, job.done, true, job.deadline);
        } catch (e) {
          job.inFlight = false;
          const written = (e as { written?: number }).written;
          if (typeof written === 'number') job.done = written;
          job.reject(Object.assign(e as object, { written: job.done }));
          continue;
        }
        job.inFlight = false;
        job.done += r.added;
        if (r.closed) {
          this.#b.closedSeen = true;
          continue; // the loop rejects everything left
        }
        if (job.done === job.payloads.length) {
          job.resolve(job.done);
          backoff = 2;
          continue;
        }
        if (job.failure !== undefined) {
          const f = job.failure;
          if (f instanceof QueueFullError || f instanceof RedisBackendError) Object.assign(f, { written: job.done });
          job.reject(f);
          continue;
        }
        if (r.added > 0) backoff = 2;
        await sleep(backoff);
        backoff = Math.min(backoff * 2, 100);
      }
    } finally {
      this.#laneRunning = false;
    }
  }

  /** close(): puts waiting for room reject QueueClosedError (one in flight when its call returns). */
  rejectWaiting(makeError: () => Error): void {
    for (const job of [...this.#lane]) {
      if (!job.inFlight) job.reject(Object.assign(makeError(), { written: job.done }));
      else job.failure ??= makeError();
    }
  }

  /** release(): every put waiting for room rejects now. */
  rejectAll(makeError: () => Error): void {
    for (const job of [...this.#lane]) job.reject(Object.assign(makeError(), { written: job.done }));
  }
}
