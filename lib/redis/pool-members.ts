/**
 * What a RedisWorkerPool's primary sees of its workers: every `watchMs` one Lua script reads the
 * inbound queue's coordination keys (the members ZSET and the owners HASH that the workers'
 * heartbeats keep, see partition-leases.ts) with the Redis clock, and the changes since the last
 * read become events:
 *
 * - a member with a live membership not seen before: 'worker-ready';
 * - a member gone: 'worker-exit' with reason 'left' when it removed itself before its membership
 *   expired (release()), 'lost' when its membership expired without a heartbeat (the process died,
 *   hung, or lost Redis) — its partitions and held jobs then move to the others;
 * - the partitions' owners (a partition is owned while its lease is live).
 */
import { RedisConn } from './connection';
import type { LuaScript } from './connection';
import { leaseKeys } from './partition-options';

/** KEYS: members, owners. Reply: { now ms, {member, expiry, ...}, {partition, owner|expiry, ...} }. */
const WATCH_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return {now, redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES'), redis.call('HGETALL', KEYS[2])}
`;

const WATCH_SCRIPTS: readonly LuaScript[] = [{ name: 'sageqPoolWatch', numberOfKeys: 2, lua: WATCH_LUA }];

/** A worker of a RedisWorkerPool as the primary sees it. */
export interface RedisPoolMember {
  /** Its consumer name in the group. */
  consumer: string;
  /** Host and pid, when the consumer name is the default `<host>:<pid>:<random>`. */
  host: string | undefined;
  pid: number | undefined;
  /** The partitions it holds now. */
  partitions: number[];
}

/** A worker joined (its first heartbeat). */
export interface RedisPoolWorkerInfo {
  consumer: string;
  host: string | undefined;
  pid: number | undefined;
}

/** A worker left the pool: 'left' (released itself) or 'lost' (its membership expired: dead, hung or cut off). */
export interface RedisPoolExitInfo extends RedisPoolWorkerInfo {
  reason: 'left' | 'lost';
}

/** What one read found. */
export interface MembersView {
  /** Live members (membership not expired), sorted. */
  members: RedisPoolMember[];
  /** Per partition: its live owner, or null. */
  owners: Array<string | null>;
}

export interface MembersEvents {
  ready(info: RedisPoolWorkerInfo): void;
  exit(info: RedisPoolExitInfo): void;
  view(view: MembersView): void;
  error(e: unknown): void;
}

const DEFAULT_NAME = /^(.*):(\d+):[0-9a-f]{8}$/;

function workerInfo(consumer: string): RedisPoolWorkerInfo {
  const m = DEFAULT_NAME.exec(consumer);
  return { consumer, host: m?.[1], pid: m === null ? undefined : Number(m[2]) };
}

function parseWatchReply(reply: unknown, partitions: number): { now: number; expiries: Map<string, number>; owners: Array<string | null> } {
  if (!Array.isArray(reply) || reply.length !== 3 || typeof reply[0] !== 'number' || !Array.isArray(reply[1]) || !Array.isArray(reply[2])) {
    throw new Error(`sageqPoolWatch: unexpected reply ${JSON.stringify(reply)?.slice(0, 200)}`);
  }
  const now = reply[0];
  const expiries = new Map<string, number>();
  const z = reply[1] as unknown[];
  for (let i = 0; i + 1 < z.length; i += 2) expiries.set(String(z[i]), Number(z[i + 1]));
  const owners: Array<string | null> = new Array<string | null>(partitions).fill(null);
  const h = reply[2] as unknown[];
  for (let i = 0; i + 1 < h.length; i += 2) {
    const p = Number(h[i]);
    const m = /^(.*)\|(\d+)$/.exec(String(h[i + 1]));
    if (m === null || !Number.isInteger(p) || p < 0 || p >= partitions) continue;
    if (Number(m[2]) > now && (expiries.get(m[1] as string) ?? 0) > now) owners[p] = m[1] as string;
  }
  return { now, expiries, owners };
}

/** Polls the membership of one pool (see the file comment). */
export class PoolMembers {
  readonly #conn: RedisConn;
  readonly #keys: { members: string; owners: string };
  readonly #partitions: number;
  readonly #watchMs: number;
  readonly #commandTimeoutMs: number;
  readonly #on: MembersEvents;
  /** Live members seen at the last read, with their membership expiry (Redis clock). */
  #known = new Map<string, number>();
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #reading: Promise<void> | undefined;
  last: MembersView = { members: [], owners: [] };

  constructor(o: { url: string; password: string | undefined; name: string; partitions: number; watchMs: number; commandTimeoutMs: number; on: MembersEvents }) {
    const keys = leaseKeys(o.name);
    this.#keys = { members: keys.members, owners: keys.owners };
    this.#partitions = o.partitions;
    this.#watchMs = o.watchMs;
    this.#commandTimeoutMs = o.commandTimeoutMs;
    this.#on = o.on;
    this.last = { members: [], owners: new Array<string | null>(o.partitions).fill(null) };
    this.#conn = new RedisConn({ url: o.url, password: o.password, connectionName: `sageq-pool-${o.name.slice(0, 40)}`, scripts: WATCH_SCRIPTS, autoPipelining: false });
  }

  /** Reads now, then every watchMs. */
  start(): void {
    void this.read();
  }

  /** One read now (a read already running is joined); the events fire before it resolves. */
  read(): Promise<void> {
    this.#reading ??= this.#read().finally(() => {
      this.#reading = undefined;
      this.#schedule();
    });
    return this.#reading;
  }

  async #read(): Promise<void> {
    if (this.#stopped) return;
    let parsed: ReturnType<typeof parseWatchReply>;
    try {
      const reply = await this.#conn.call(
        'sageqPoolWatch',
        () => this.#conn.script<unknown>('sageqPoolWatch', [this.#keys.members, this.#keys.owners], [], false),
        Date.now() + this.#commandTimeoutMs,
        this.#commandTimeoutMs,
      );
      parsed = parseWatchReply(reply, this.#partitions);
    } catch (e) {
      if (!this.#stopped) this.#on.error(e);
      return;
    }
    if (this.#stopped) return;
    const { now, expiries, owners } = parsed;
    const live = new Map<string, number>();
    for (const [m, exp] of expiries) if (exp > now) live.set(m, exp);
    for (const [m, exp] of this.#known) {
      if (live.has(m)) continue;
      // Gone from the set before its expiry: it removed itself. Expired (still listed, or removed
      // by a heartbeat's cleanup after the expiry): lost.
      const reason = !expiries.has(m) && exp > now ? 'left' : 'lost';
      this.#on.exit({ ...workerInfo(m), reason });
    }
    for (const m of live.keys()) if (!this.#known.has(m)) this.#on.ready(workerInfo(m));
    this.#known = live;
    const members = [...live.keys()].sort().map((consumer) => ({
      ...workerInfo(consumer),
      partitions: owners.flatMap((o, p) => (o === consumer ? [p] : [])),
    }));
    this.last = { members, owners };
    this.#on.view(this.last);
  }

  #schedule(): void {
    if (this.#stopped || this.#timer !== undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.read();
    }, this.#watchMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#reading?.catch(() => undefined);
    await this.#conn.quit(500);
  }
}
