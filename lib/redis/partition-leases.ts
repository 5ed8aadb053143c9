/**
 * Partition ownership for a PartitionedRedisQueue's consumer group: which consumer reads which
 * partition. One Lua script (one slot: the queue's `{<name>}` tag) runs each heartbeat atomically:
 *
 * - the consumer's membership is renewed in `{<name>}:members` (ZSET consumer → expiry on the
 *   Redis clock); members whose expiry passed are removed (dead consumers);
 * - every lease in `{<name>}:owners` (HASH partition → `<consumer>|<expiry ms>`) that expired or
 *   belongs to a consumer no longer a member is deleted (its partition is free);
 * - the consumer's fair share is computed from the live members sorted by name: with N
 *   partitions and M members, the first N mod M members get ceil(N/M), the others floor(N/M), so
 *   the shares add up to N;
 * - the consumer's leases are renewed, and free partitions are taken while it holds fewer than
 *   its share. It never takes a partition held by another live consumer: a consumer above its
 *   share (after a join) gives partitions back itself, once it stopped reading them (`drop`).
 *
 * The reply also lists the live members: a consumer taking a partition claims at once the entries
 * still pending there for consumers that are not (partition-reader.ts, sageqTakeover).
 *
 * A lease is trusted locally only until `sentAt + leaseMs` of the heartbeat that renewed it
 * (`validUntil`): the Redis expiry is at least that late, so a consumer that cannot renew stops
 * reading before anybody else may take its partitions.
 */
import { InvalidArgumentValueError } from '../errors';
import { RedisBackendError, RedisConn } from './connection';
import type { LuaScript } from './connection';
import { leaseKeys } from './partition-options';
import type { PartitionSettings } from './partition-options';

/**
 * KEYS: members, owners, meta. ARGV: consumer, leaseMs, partitions, mode ('beat' | 'leave'),
 * partitions to give back first... Reply (beat): { share, member count, owned count, owned
 * partition..., live member name... } (the names sorted); (leave): { 0, 0 }. Error
 * `PARTITIONS <n>` when the queue was declared with another count.
 */
const LEASE_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local me = ARGV[1]
local lease = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local declared = redis.call('HGET', KEYS[3], 'partitions')
if declared and tonumber(declared) ~= n then
  return redis.error_reply('PARTITIONS ' .. declared)
end
redis.call('HSET', KEYS[3], 'partitions', n)
redis.call('PEXPIRE', KEYS[3], lease * 10)
for i = 5, #ARGV do
  local v = redis.call('HGET', KEYS[2], ARGV[i])
  if v and string.match(v, '^(.*)|%d+$') == me then redis.call('HDEL', KEYS[2], ARGV[i]) end
end
if ARGV[4] == 'leave' then
  redis.call('ZREM', KEYS[1], me)
  return {0, 0}
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + lease, me)
redis.call('PEXPIRE', KEYS[1], lease * 10)
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
table.sort(members)
local live = {}
local rank = 0
for i, m in ipairs(members) do
  live[m] = true
  if m == me then rank = i - 1 end
end
local count = #members
local share = math.floor(n / count)
if rank < n % count then share = share + 1 end
local held = {}
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  local owner, exp = string.match(all[i + 1], '^(.*)|(%d+)$')
  if owner and tonumber(exp) > now and live[owner] then
    held[tonumber(all[i])] = owner
  else
    redis.call('HDEL', KEYS[2], all[i])
  end
end
local mine = {}
for p = 0, n - 1 do
  if held[p] == me then mine[#mine + 1] = p end
end
-- Free partitions are taken from a start that depends on the rank, so joiners spread out.
local start = (rank * math.max(1, share)) % n
for k = 0, n - 1 do
  if #mine >= share then break end
  local p = (start + k) % n
  if held[p] == nil then
    mine[#mine + 1] = p
    held[p] = me
  end
end
local value = me .. '|' .. (now + lease)
for _, p in ipairs(mine) do redis.call('HSET', KEYS[2], p, value) end
if #mine > 0 then redis.call('PEXPIRE', KEYS[2], lease * 10) end
local out = {share, count, #mine}
for _, p in ipairs(mine) do out[#out + 1] = p end
for _, m in ipairs(members) do out[#out + 1] = m end
return out
`;

export const LEASE_SCRIPTS: readonly LuaScript[] = [{ name: 'sageqLease', numberOfKeys: 3, lua: LEASE_LUA }];

/** What one heartbeat found: this consumer's fair share, how many live members, the partitions it holds, the live members' names. */
export interface LeaseView {
  share: number;
  members: number;
  owned: number[];
  /** The live members (this consumer among them), sorted: a consumer of the group not listed died or left. */
  live: string[];
}

const isCount = (x: unknown): x is number => typeof x === 'number' && Number.isInteger(x) && x >= 0;

/** Checks the heartbeat reply's shape; ERR_REDIS_REPLY otherwise. */
export function parseLeaseReply(reply: unknown, partitions: number): LeaseView {
  const bad = (why: string): RedisBackendError =>
    new RedisBackendError('ERR_REDIS_REPLY', `sageqLease: unexpected reply ${JSON.stringify(reply)?.slice(0, 200)} (${why})`, true);
  if (!Array.isArray(reply) || reply.length < 3) throw bad('not an array of at least 3');
  const [share, members, ownedCount] = reply as unknown[];
  if (!isCount(share) || !isCount(members) || !isCount(ownedCount)) throw bad('counts are not integers >= 0');
  if (members < 1 || reply.length !== 3 + ownedCount + members) throw bad(`length ${reply.length} for ${ownedCount} partitions and ${members} members`);
  const owned = reply.slice(3, 3 + ownedCount) as unknown[];
  if (!owned.every((p) => isCount(p) && p < partitions)) throw bad(`a partition outside 0..${partitions - 1}`);
  const live = reply.slice(3 + ownedCount) as unknown[];
  if (!live.every((m) => typeof m === 'string' && m.length > 0)) throw bad('a member name that is not a non-empty string');
  return { share, members, owned: owned as number[], live: live as string[] };
}

/** The heartbeat side of one consumer: renews its membership and leases, reports changes. */
export class PartitionLeases {
  readonly #s: PartitionSettings;
  readonly #conn: RedisConn;
  readonly #keys: { members: string; owners: string; meta: string };
  readonly #onBeat: (view: LeaseView) => void;
  readonly #onError: (e: unknown) => void;
  #timer: NodeJS.Timeout | undefined;
  #running = false;
  #stopped = false;
  #beating: Promise<LeaseView> | undefined;
  /** Local time until which the leases of the last successful heartbeat are certainly held. */
  validUntil = 0;
  last: LeaseView | undefined;

  constructor(settings: PartitionSettings, onBeat: (view: LeaseView) => void, onError: (e: unknown) => void) {
    this.#s = settings;
    this.#keys = leaseKeys(settings.name);
    this.#onBeat = onBeat;
    this.#onError = onError;
    this.#conn = new RedisConn({
      url: settings.url, password: settings.password, connectionName: `sageq-lease-${settings.name.slice(0, 40)}`, scripts: LEASE_SCRIPTS, autoPipelining: false,
    });
  }

  /** Joins the group (first heartbeat now), then beats every heartbeatMs (sooner while below the share). */
  start(): Promise<LeaseView> {
    if (!this.#running) {
      this.#running = true;
      return this.beat([]);
    }
    return this.#beating ?? (this.last === undefined ? this.beat([]) : Promise.resolve(this.last));
  }

  /** One heartbeat now, giving back `drop` first; reschedules the next. */
  beat(drop: readonly number[]): Promise<LeaseView> {
    const run = async (): Promise<LeaseView> => {
      const s = this.#s;
      const sentAt = Date.now();
      let view: LeaseView;
      try {
        const reply = await this.#conn.call(
          'sageqLease',
          () => this.#conn.script<unknown>('sageqLease', [this.#keys.members, this.#keys.owners, this.#keys.meta], [s.consumer, s.leaseMs, s.partitions, 'beat', ...drop], false),
          sentAt + Math.min(s.unavailableMs, s.leaseMs),
          s.commandTimeoutMs,
        );
        view = parseLeaseReply(reply, s.partitions);
      } catch (e) {
        throw mismatch(e) ?? e;
      }
      if (this.#stopped) return view;
      this.validUntil = sentAt + s.leaseMs;
      this.last = view;
      this.#onBeat(view);
      return view;
    };
    const prev = this.#beating ?? Promise.resolve(undefined);
    const p = prev.catch(() => undefined).then(run);
    this.#beating = p;
    const done = (): void => {
      if (this.#beating === p) this.#beating = undefined;
      this.#schedule();
    };
    p.then(done, (e: unknown) => {
      done();
      if (!this.#stopped) this.#onError(e);
    });
    return p;
  }

  #schedule(): void {
    if (this.#stopped || this.#beating !== undefined) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    const below = this.last !== undefined && this.last.owned.length < this.last.share;
    const ms = below ? Math.max(20, Math.floor(this.#s.heartbeatMs / 4)) : this.#s.heartbeatMs;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.beat([]).catch(() => undefined);
    }, ms);
    this.#timer.unref();
  }

  /** True while the leases are certainly held for at least `marginMs` more. */
  valid(marginMs: number): boolean {
    return Date.now() + marginMs < this.validUntil;
  }

  /** Gives back every partition in `drop`, leaves the group, closes the connection. Best effort. */
  async leave(drop: readonly number[]): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.validUntil = 0;
    await this.#beating?.catch(() => undefined);
    const s = this.#s;
    if (this.#running && this.#conn.ready) {
      await this.#conn
        .call('sageqLease leave', () => this.#conn.script<unknown>('sageqLease', [this.#keys.members, this.#keys.owners, this.#keys.meta], [s.consumer, s.leaseMs, s.partitions, 'leave', ...drop], false), Date.now() + 1000, Math.min(s.commandTimeoutMs, 1000))
        .catch(() => undefined);
    }
    await this.#conn.quit(500);
  }
}

/** The script's PARTITIONS error: the queue exists with another partition count. */
function mismatch(e: unknown): InvalidArgumentValueError | undefined {
  const m = e instanceof RedisBackendError ? /PARTITIONS (\d+)/.exec(e.message) : null;
  if (m === null) return undefined;
  return new InvalidArgumentValueError(
    `options.partitions does not match the queue: its consumers use ${m[1]} partitions (every handle of a partitioned queue must give the same number)`,
    Number(m[1]),
    'ERR_PARTITIONS_MISMATCH',
  );
}
