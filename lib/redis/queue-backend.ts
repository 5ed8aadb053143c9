/**
 * What a RedisQueue handle shares between its producer and consumer sides: its two connections
 * (commands, and blocking reads), calls with bounded waits, the sequence numbers that make its
 * mutating scripts idempotent across ioredis resends, the settle script, and the handle's state
 * flags (closed here, closed seen in Redis, released).
 */
import { QueueReleasedError } from '../errors';
import { RedisBackendError, RedisConn, withTimeout } from './connection';
import type { ClientCommand, RedisCommands } from './connection';
import type { QueueSettings } from './queue-options';
import { QUEUE_SCRIPTS, parseSettleReply } from './queue-scripts';

/** Mutating calls in flight per instance; the session hash remembers this many outcomes. */
export const SESSION_WINDOW = 4096;
export const SESSION_TTL_MS = 10 * 60 * 1000;
/** Entries per script call. */
export const CHUNK = 512;

export type SettleOp = 'ack' | 'nack' | 'dead';
type ScriptArg = string | number | Buffer | Uint8Array;

export class QueueBackend {
  readonly settings: QueueSettings;
  /** close() was called on this handle. */
  closedLocal = false;
  /** The close marker was seen in Redis. */
  closedSeen = false;
  released = false;
  groupReady = false;
  /** A blocking XREADGROUP is in flight on the blocking connection. */
  blockingRead = false;
  #cmd: RedisConn | undefined;
  #blk: RedisConn | undefined;
  #seq = 0;
  #inflight = 0;
  readonly #slotWaiters: Array<() => void> = [];

  constructor(settings: QueueSettings) {
    this.settings = settings;
  }

  get closed(): boolean {
    return this.closedLocal || this.closedSeen;
  }

  checkNotReleased(): void {
    if (this.released) throw new QueueReleasedError('this RedisQueue was released; open the queue again to use it');
  }

  #conn(kind: 'cmd' | 'blk'): RedisConn {
    this.checkNotReleased();
    const s = this.settings;
    if (kind === 'cmd') {
      this.#cmd ??= new RedisConn({ url: s.url, password: s.password, connectionName: `sageq-c-${s.blockName.slice(8)}`, scripts: QUEUE_SCRIPTS, autoPipelining: true });
      return this.#cmd;
    }
    this.#blk ??= new RedisConn({ url: s.url, password: s.password, connectionName: s.blockName, scripts: [], autoPipelining: false });
    return this.#blk;
  }

  /** A command on one of the connections; waits for a connection until `deadline` or unavailableTimeoutMs, whichever is first. */
  call<T>(kind: 'cmd' | 'blk', what: string, fn: (c: RedisCommands) => Promise<T>, replyTimeoutMs = this.settings.commandTimeoutMs, deadline?: number): Promise<T> {
    let conn: RedisConn;
    try {
      conn = this.#conn(kind);
    } catch (e) {
      return Promise.reject(e);
    }
    const limit = Date.now() + this.settings.unavailableMs;
    return conn.call(what, fn, deadline === undefined ? limit : Math.min(deadline, limit), replyTimeoutMs);
  }

  /** One of QUEUE_SCRIPTS on the command connection, with Buffer replies. */
  script<R>(name: string, keys: readonly string[], args: readonly ScriptArg[], deadline?: number): Promise<R> {
    let conn: RedisConn;
    try {
      conn = this.#conn('cmd');
    } catch (e) {
      return Promise.reject(e);
    }
    const limit = Date.now() + this.settings.unavailableMs;
    return conn.call(name, () => conn.script<R>(name, keys, args, true), deadline === undefined ? limit : Math.min(deadline, limit), this.settings.commandTimeoutMs);
  }

  /**
   * A put script followed by WAIT on the same connection (`waitReplicas`): the script's reply, or
   * ERR_REDIS_NOT_REPLICATED (with `replicas`, and `reply` so the caller can count what was
   * appended) when too few replicas acknowledged it in time.
   */
  async scriptWait<R>(name: string, keys: readonly string[], args: readonly ScriptArg[], deadline?: number): Promise<R> {
    const w = this.settings.waitReplicas;
    if (w === undefined) return this.script<R>(name, keys, args, deadline);
    const conn = this.#conn('cmd');
    const limit = Date.now() + this.settings.unavailableMs;
    const r = await conn.call(`${name} + WAIT`, () => conn.scriptThenWait<R>(name, keys, args, w.replicas, w.timeoutMs), deadline === undefined ? limit : Math.min(deadline, limit), this.settings.commandTimeoutMs + w.timeoutMs);
    if (r.replicas < w.replicas) {
      const e = new RedisBackendError(
        'ERR_REDIS_NOT_REPLICATED',
        `${name}: applied on the master, but only ${r.replicas} of ${w.replicas} replicas acknowledged it within ${w.timeoutMs} ms; a failover now may lose it (putting it again may duplicate it)`,
        true,
      );
      e.replicas = r.replicas;
      throw Object.assign(e, { reply: r.reply });
    }
    return r.reply;
  }

  /** A fresh sequence number (for a call that must be repeatable with the same one). */
  nextSeq(): number {
    return ++this.#seq;
  }

  /** Mutating scripts carry a sequence number; at most SESSION_WINDOW are in flight. */
  async withSeq<R>(fn: (seq: number) => Promise<R>): Promise<R> {
    while (this.#inflight >= SESSION_WINDOW) await new Promise<void>((resolve) => this.#slotWaiters.push(resolve));
    this.#inflight++;
    try {
      return await fn(++this.#seq);
    } finally {
      this.#inflight--;
      this.#slotWaiters.shift()?.();
    }
  }

  /**
   * Settles entries this consumer holds (sageqSettle, the ids comma-separated in one argument);
   * returns one '1'/'0' flag per id.
   * `fixedSeq` repeats an earlier call whose outcome is unknown (Redis answers what it did then).
   */
  async settle(op: SettleOp, ids: string[], reason: string, fixedSeq?: number): Promise<string> {
    if (ids.length === 0) return '';
    const s = this.settings;
    const flags = await this.withSeq((next) =>
      this.script<Buffer | string>('sageqSettle', [s.stream, s.sessionKey, s.deadLetterStream], [
        fixedSeq ?? next, SESSION_WINDOW, SESSION_TTL_MS, op, s.group, s.consumer, s.claimIdleMs, s.deadMaxLen, reason, Date.now(), ids.join(','),
      ]),
    );
    return parseSettleReply(flags, ids.length);
  }

  async ensureGroup(): Promise<void> {
    if (this.groupReady) return;
    try {
      await this.call('cmd', 'XGROUP CREATE', (c) => c.xgroup('CREATE', this.settings.stream, this.settings.group, '0', 'MKSTREAM'));
    } catch (e) {
      if (!(e instanceof RedisBackendError && /BUSYGROUP/.test(e.message))) throw e;
    }
    this.groupReady = true;
  }

  /**
   * Why a wait that just ended without result could not have succeeded: ERR_REDIS_UNAVAILABLE
   * (or ERR_REDIS_AUTH) when a connection this handle uses is not up, else undefined (Redis was
   * reachable: the queue really was empty or full).
   */
  unreachable(what: string): RedisBackendError | undefined {
    for (const conn of [this.#cmd, this.#blk]) {
      if (conn !== undefined && !conn.ended && !conn.ready) return conn.unavailableError(what);
    }
    return undefined;
  }

  /** Drops the blocking connection (a read that outlived its BLOCK: the connection is likely dead). */
  resetBlocking(): void {
    this.#blk?.client.disconnect(true);
  }

  get commandConnected(): boolean {
    return this.#cmd !== undefined && this.#cmd.ready;
  }

  /** Wakes blocked XREADGROUP calls of readers whose connection name starts with `prefix` (any process), best effort. */
  async unblockReaders(prefix: string): Promise<void> {
    try {
      const conn = this.#conn('cmd');
      // On a Cluster the readers are blocked on the master of the stream's slot: ask each master.
      const nodes = await this.call('cmd', 'CLIENT LIST', async () => conn.masters());
      await Promise.all(
        nodes.map(async (node) => {
          const list = String(await withTimeout((node as unknown as ClientCommand<string>).client('LIST', 'TYPE', 'normal'), this.settings.commandTimeoutMs, 'CLIENT LIST'));
          const ids: string[] = [];
          for (const line of list.split('\n')) {
            const name = / name=(\S*)/.exec(line)?.[1];
            const id = /^id=(\d+)/.exec(line)?.[1];
            if (id !== undefined && name !== undefined && name.startsWith(prefix)) ids.push(id);
          }
          await Promise.all(ids.map((id) => withTimeout((node as unknown as ClientCommand<number>).client('UNBLOCK', id), this.settings.commandTimeoutMs, 'CLIENT UNBLOCK')));
        }),
      );
    } catch {
      /* no permission for CLIENT LIST/UNBLOCK: blocked readers see the marker within blockSliceMs */
    }
  }

  /** Marks the handle released, wakes calls waiting for a sequence slot, closes both connections. */
  async shutdown(): Promise<void> {
    this.released = true;
    for (const w of this.#slotWaiters.splice(0)) w();
    this.#blk?.disconnect();
    await this.#cmd?.quit(500);
  }
}
