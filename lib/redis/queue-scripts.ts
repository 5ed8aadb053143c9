/**
 * The Lua scripts of RedisQueue, each beside the reply it promises and the parser that checks
 * that shape before the queue reads it (a reply of another shape is RedisBackendError
 * ERR_REDIS_REPLY, never a misread). test/redis/redis-queue.test.ts runs them against a real
 * redis-server (sageqTakeover, used by PartitionedRedisQueue only: test/redis/partition-takeover.test.ts).
 */
import { describe } from '../errors';
import { RedisBackendError } from './connection';
import type { LuaScript } from './connection';
import type { RawEntry } from './queue-entries';


/**
 * Lua lines that record a mutating script's outcome under its sequence number `seq` in the
 * outcomes hash (so a resend after a reconnect returns it instead of applying twice), drop the
 * outcome ARGV[2] sequence numbers older, and refresh the hash's TTL (ARGV[3] ms).
 */
function recordOutcome(outcomesKey: string, value: string): string {
  return [
    `redis.call('HSET', ${outcomesKey}, seq, ${value})`,
    `redis.call('HDEL', ${outcomesKey}, tostring(tonumber(seq) - tonumber(ARGV[2])))`,
    `redis.call('PEXPIRE', ${outcomesKey}, ARGV[3])`,
  ].join('\n');
}

/**
 * Append. KEYS: stream, closed marker, session hash. ARGV: seq, window, session ttl ms, maxsize
 * (0 = none), head (1 = first in this producer's wait line: may pass the \`blocked\` flag), field,
 * then the values: one argument each (sageqPut), or packed (sageqPutPacked: their byte lengths,
 * comma-separated, then all of them concatenated in one argument — one bulk string to write and
 * parse instead of one per value). Reply: integer, entries appended (>= 0, fewer than given when
 * maxsize stops them), or -1 when the queue is closed. A resent seq returns the first outcome
 * without appending.
 */
function putLua(packed: boolean): string {
  const values = packed
    ? `local lens = {}
  for l in string.gmatch(ARGV[7], '%d+') do lens[#lens + 1] = tonumber(l) end
  local n = #lens`
    : 'local n = #ARGV - 6';
  const append = packed
    ? `local blob = ARGV[8]
  local pos = 1
  for i = 1, room do
    local next = pos + lens[i]
    redis.call('XADD', KEYS[1], '*', ARGV[6], string.sub(blob, pos, next - 1))
    pos = next
  end`
    : `for i = 1, room do
    redis.call('XADD', KEYS[1], '*', ARGV[6], ARGV[6 + i])
  end`;
  return `
local seq = ARGV[1]
local done = redis.call('HGET', KEYS[3], seq)
if done then
  -- A resend: this write (replicated after the first one) lets a WAIT that follows cover both.
  redis.call('PEXPIRE', KEYS[3], ARGV[3])
  return tonumber(done)
end
local added
if redis.call('EXISTS', KEYS[2]) == 1 then
  added = -1
else
  ${values}
  local room = n
  local maxsize = tonumber(ARGV[4])
  if maxsize > 0 then
    if ARGV[5] ~= '1' and redis.call('HEXISTS', KEYS[3], 'blocked') == 1 then
      room = 0
    else
      room = math.min(n, math.max(0, maxsize - redis.call('XLEN', KEYS[1])))
    end
    if room < n then
      redis.call('HSET', KEYS[3], 'blocked', '1')
    elseif ARGV[5] == '1' then
      redis.call('HDEL', KEYS[3], 'blocked')
    end
  end
  ${append}
  added = room
end
${recordOutcome('KEYS[3]', 'added')}
return added
`;
}

/**
 * Non-blocking read of new entries (creates the group at 0 when it is missing).
 * KEYS: stream, closed marker. ARGV: group, consumer, count.
 * Reply, packed (4 bulk strings whatever the count, not 3 per entry): { closed (0|1), the ids
 * comma-separated, the byte lengths of each entry's field and value comma-separated, every
 * field and value concatenated }.
 */
const READ_LUA = `
local closed = redis.call('EXISTS', KEYS[2])
local r = redis.pcall('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3], 'STREAMS', KEYS[1], '>')
if type(r) == 'table' and r.err then
  if string.find(r.err, 'NOGROUP', 1, true) then
    redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
    r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3], 'STREAMS', KEYS[1], '>')
  else
    return redis.error_reply(r.err)
  end
end
local ids, lens, parts = {}, {}, {}
if r then
  for _, e in ipairs(r[1][2]) do
    local f = e[2]
    if type(f) == 'table' and #f >= 2 then
      ids[#ids + 1] = e[1]
      lens[#lens + 1] = #f[1]
      lens[#lens + 1] = #f[2]
      parts[#parts + 1] = f[1]
      parts[#parts + 1] = f[2]
    end
  end
end
return {closed, table.concat(ids, ','), table.concat(lens, ','), table.concat(parts)}
`;

/**
 * Shared by the reclaim and takeover scripts (KEYS[1] the stream, KEYS[2] its dead-letter stream,
 * ARGV[1] the group): an entry now delivered more than maxDeliveries times goes to the dead-letter
 * stream (XACK + XDEL here; returns 1), any other is appended to `out` as id, deliveries, field,
 * value (returns 0).
 */
const DELIVER_OR_DEAD_LETTER_LUA = `
local function deliverOrDeadLetter(out, id, deliveries, f, maxDeliveries, deadMaxLen, at)
  if deliveries > maxDeliveries then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', deadMaxLen, '*', f[1], f[2], 'x-id', id, 'x-deliveries', deliveries,
      'x-reason', 'delivered ' .. deliveries .. ' times (maxDeliveries ' .. maxDeliveries .. ')', 'x-group', ARGV[1], 'x-at', at)
    redis.call('XACK', KEYS[1], ARGV[1], id)
    redis.call('XDEL', KEYS[1], id)
    return 1
  end
  out[#out + 1] = id
  out[#out + 1] = deliveries
  out[#out + 1] = f[1]
  out[#out + 1] = f[2]
  return 0
end
`;

/**
 * Reclaims entries idle for at least min-idle from any consumer (XAUTOCLAIM); entries delivered
 * more than maxDeliveries times go to the dead-letter stream instead.
 * KEYS: stream, dead-letter stream. ARGV: group, consumer, minIdle, cursor, count, maxDeliveries,
 * deadMaxLen, now ms. Reply: { nextCursor, deadLettered, id1, deliveries1, field1, value1, ... }.
 */
const RECLAIM_LUA = `${DELIVER_OR_DEAD_LETTER_LUA}
local r = redis.pcall('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'COUNT', ARGV[5])
if type(r) == 'table' and r.err then
  if string.find(r.err, 'NOGROUP', 1, true) then
    redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
    return {'0-0', 0}
  end
  return redis.error_reply(r.err)
end
local maxDeliveries = tonumber(ARGV[6])
local out = {r[1], 0}
local dead = 0
for _, e in ipairs(r[2]) do
  local id = e[1]
  local f = e[2]
  if type(f) == 'table' and #f >= 2 then
    local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
    local deliveries = 1
    if p[1] then deliveries = tonumber(p[1][4]) end
    dead = dead + deliverOrDeadLetter(out, id, deliveries, f, maxDeliveries, ARGV[7], ARGV[8])
  end
end
out[2] = dead
return out
`;

/**
 * For PartitionedRedisQueue, when a consumer takes a partition: claims to this consumer every
 * entry pending for a consumer of the group that is neither this one nor a live member (one that
 * died or left), whatever its idle time, so it is redelivered before anything newer of the stream;
 * entries then delivered more than maxDeliveries times go to the dead-letter stream as in
 * RECLAIM_LUA. Deleted entries are skipped (their pending record is acknowledged away).
 * KEYS: stream, dead-letter stream. ARGV: group, consumer, count, maxDeliveries, deadMaxLen, now
 * ms, live members... Reply: { more (0|1: call again), deadLettered, id1, deliveries1, field1,
 * value1, ... } (at most `count` entries examined per call).
 */
const TAKEOVER_LUA = `${DELIVER_OR_DEAD_LETTER_LUA}
local s = redis.pcall('XPENDING', KEYS[1], ARGV[1])
if type(s) == 'table' and s.err then
  if string.find(s.err, 'NOGROUP', 1, true) then
    redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
    return {0, 0}
  end
  return redis.error_reply(s.err)
end
local live = {}
live[ARGV[2]] = true
for i = 7, #ARGV do live[ARGV[i]] = true end
local budget = tonumber(ARGV[3])
local maxDeliveries = tonumber(ARGV[4])
local out = {0, 0}
local dead = 0
local consumers = s[4]
if type(consumers) == 'table' then
  for _, c in ipairs(consumers) do
    local name = c[1]
    if not live[name] then
      if budget <= 0 then
        out[1] = 1
        break
      end
      local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', budget, name)
      if #p >= budget then out[1] = 1 end
      budget = budget - #p
      for _, e in ipairs(p) do
        local id = e[1]
        local deliveries = tonumber(e[4]) + 1
        local r = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id)
        local f = r[1] and r[1][2]
        if type(f) ~= 'table' or #f < 2 then
          -- Deleted (Redis 7 drops its pending record itself; older versions keep it): skipped.
          redis.call('XACK', KEYS[1], ARGV[1], id)
        else
          dead = dead + deliverOrDeadLetter(out, id, deliveries, f, maxDeliveries, ARGV[5], ARGV[6])
        end
      end
    end
  end
end
out[2] = dead
return out
`;

/**
 * Settles entries this consumer holds: ack (XACK + XDEL), nack (made reclaimable at once: XCLAIM
 * to itself with IDLE = claimIdleMs, JUSTID so the delivery count is not raised) or dead (copied
 * to the dead-letter stream with the reason, then XACK + XDEL). An entry that is not pending for
 * this consumer (reclaimed by another, or already settled) is left alone.
 * KEYS: stream, session hash, dead-letter stream. ARGV: seq, window, session ttl ms, op, group,
 * consumer, claimIdleMs, deadMaxLen, reason, now ms, ids... (or all the ids comma-separated in
 * one argument). Reply: a string of '1' (settled
 * here) and '0' (not pending for this consumer), one per id. A resent seq returns the first reply.
 */
const SETTLE_LUA = `
local seq = ARGV[1]
local done = redis.call('HGET', KEYS[2], seq)
if done then return done end
local op = ARGV[4]
local group = ARGV[5]
local consumer = ARGV[6]
local flags = {}
-- The ids: one per argument, or all in ARGV[11] comma-separated (one bulk string to send).
local ids = {}
if #ARGV == 11 and string.find(ARGV[11], ',', 1, true) then
  for id in string.gmatch(ARGV[11], '[^,]+') do ids[#ids + 1] = id end
else
  for i = 11, #ARGV do ids[#ids + 1] = ARGV[i] end
end
if op == 'ack' and #ids > 1 then
  -- Many acks: one XPENDING over the ids' range for this consumer, then one XACK for those it
  -- holds; an id the range reply did not list (cut off by the count) is checked alone. Then the
  -- acked entries are deleted: those older than every entry still pending in the group (and not
  -- newer than one delivered: ids are delivered in order) by one XTRIM MINID — every entry below
  -- that bound was delivered and is no longer pending, so acked, and acked entries are deleted
  -- anyway — and any others by XDEL. The range's ends are found with one parse of each id.
  local msOf, seqOf = {}, {}
  local lo, hi, loMs, loSeq, hiMs, hiSeq
  for i = 1, #ids do
    local id = ids[i]
    local d = string.find(id, '-', 1, true)
    local ms, sq
    if d then
      ms, sq = tonumber(string.sub(id, 1, d - 1)), tonumber(string.sub(id, d + 1))
    else
      ms, sq = tonumber(id), 0
    end
    msOf[i], seqOf[i] = ms, sq
    if lo == nil or ms < loMs or (ms == loMs and sq < loSeq) then lo, loMs, loSeq = id, ms, sq end
    if hi == nil or ms > hiMs or (ms == hiMs and sq > hiSeq) then hi, hiMs, hiSeq = id, ms, sq end
  end
  local n = #ids
  local held = {}
  local listed = 0
  local p = redis.pcall('XPENDING', KEYS[1], group, lo, hi, n, consumer)
  if type(p) == 'table' and not p.err then
    for _, e in ipairs(p) do held[e[1]] = true end
    listed = #p
  end
  local mine, mineAt = {}, {}
  local topMs, topSeq
  for i = 1, n do
    local id = ids[i]
    local ok = held[id]
    if not ok and listed >= n then
      local q = redis.pcall('XPENDING', KEYS[1], group, id, id, 1, consumer)
      ok = type(q) == 'table' and not q.err and q[1] ~= nil
    end
    if ok then
      mine[#mine + 1] = id
      mineAt[#mineAt + 1] = i
      if topMs == nil or msOf[i] > topMs or (msOf[i] == topMs and seqOf[i] > topSeq) then topMs, topSeq = msOf[i], seqOf[i] end
      flags[#flags + 1] = '1'
    else
      flags[#flags + 1] = '0'
    end
  end
  for at = 1, #mine, 1000 do
    redis.call('XACK', KEYS[1], group, unpack(mine, at, math.min(#mine, at + 999)))
  end
  if #mine > 0 then
    -- The bound: the oldest entry still pending in the group, or just past the newest acked here.
    local boundMs, boundSeq = topMs, topSeq + 1
    local summary = redis.call('XPENDING', KEYS[1], group)
    local oldest = summary[2]
    if oldest then
      local d = string.find(oldest, '-', 1, true)
      local ms, sq = tonumber(string.sub(oldest, 1, d - 1)), tonumber(string.sub(oldest, d + 1))
      if ms < boundMs or (ms == boundMs and sq < boundSeq) then boundMs, boundSeq = ms, sq end
    end
    local rest = mine
    -- (Ids past 1e14 do not survive the number round trip exactly: those are deleted one by one.)
    if boundMs < 1e14 and boundSeq < 1e14 then
      redis.call('XTRIM', KEYS[1], 'MINID', string.format('%d-%d', boundMs, boundSeq))
      rest = {}
      for k = 1, #mine do
        local i = mineAt[k]
        if msOf[i] > boundMs or (msOf[i] == boundMs and seqOf[i] >= boundSeq) then rest[#rest + 1] = mine[k] end
      end
    end
    for at = 1, #rest, 1000 do
      redis.call('XDEL', KEYS[1], unpack(rest, at, math.min(#rest, at + 999)))
    end
  end
  local s = table.concat(flags)
  ${recordOutcome('KEYS[2]', 's')}
  return s
end
for i = 1, #ids do
  local id = ids[i]
  local p = redis.pcall('XPENDING', KEYS[1], group, id, id, 1, consumer)
  if type(p) == 'table' and not p.err and p[1] then
    if op == 'ack' then
      redis.call('XACK', KEYS[1], group, id)
      redis.call('XDEL', KEYS[1], id)
    elseif op == 'nack' then
      redis.call('XCLAIM', KEYS[1], group, consumer, 0, id, 'IDLE', ARGV[7], 'JUSTID')
    else
      local e = redis.call('XRANGE', KEYS[1], id, id)
      if e[1] and #e[1][2] >= 2 then
        local f = e[1][2]
        redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[8], '*', f[1], f[2], 'x-id', id, 'x-deliveries', p[1][4],
          'x-reason', ARGV[9], 'x-group', group, 'x-at', ARGV[10])
      end
      redis.call('XACK', KEYS[1], group, id)
      redis.call('XDEL', KEYS[1], id)
    end
    flags[#flags + 1] = '1'
  else
    flags[#flags + 1] = '0'
  end
end
local s = table.concat(flags)
${recordOutcome('KEYS[2]', 's')}
return s
`;

/**
 * Counts. KEYS: stream, closed marker, dead-letter stream. ARGV: group.
 * Reply: { length, pending, closed (0|1), deadLetters }.
 */
const INFO_LUA = `
local len = redis.call('XLEN', KEYS[1])
local pending = 0
local p = redis.pcall('XPENDING', KEYS[1], ARGV[1])
if type(p) == 'table' and not p.err then pending = p[1] end
return {len, pending, redis.call('EXISTS', KEYS[2]), redis.call('XLEN', KEYS[3])}
`;

/** The queue's scripts (exported for the reply-shape and key tests). @internal */
export const QUEUE_SCRIPTS: readonly LuaScript[] = [
  { name: 'sageqPut', numberOfKeys: 3, lua: putLua(false) },
  { name: 'sageqRead', numberOfKeys: 2, lua: READ_LUA },
  { name: 'sageqReclaim', numberOfKeys: 2, lua: RECLAIM_LUA },
  { name: 'sageqSettle', numberOfKeys: 3, lua: SETTLE_LUA },
  { name: 'sageqInfo', numberOfKeys: 3, lua: INFO_LUA },
  { name: 'sageqPutPacked', numberOfKeys: 3, lua: putLua(true) },
  { name: 'sageqTakeover', numberOfKeys: 2, lua: TAKEOVER_LUA },
];

// ------------------------------------------------------------------------------------------------
// Reply parsers

function badReply(script: string, reply: unknown, expected: string): RedisBackendError {
  return new RedisBackendError('ERR_REDIS_REPLY', `${script} replied ${describe(reply)}${expected}`, true);
}

/** sageqPut: entries appended (>= 0), or -1 when the queue is closed. */
export function parsePutReply(reply: unknown): number {
  const n = Number(reply);
  if (!Number.isInteger(n) || n < -1) throw badReply('sageqPut', reply, ', not an integer >= -1');
  return n;
}

/** sageqRead: the closed flag and the new entries (their values are views into the reply). */
export function parseReadReply(reply: unknown, now: number): { closed: boolean; entries: RawEntry[] } {
  if (!Array.isArray(reply) || reply.length !== 4 || !Buffer.isBuffer(reply[3])) throw badReply('sageqRead', reply, '');
  const [closed, idList, lenList, blob] = reply as [unknown, Buffer | string, Buffer | string, Buffer];
  const entries: RawEntry[] = [];
  const idText = idList.toString();
  if (idText.length > 0) {
    const ids = idText.split(',');
    const lens = lenList.toString().split(',');
    if (lens.length !== ids.length * 2) throw badReply('sageqRead', reply, `: ${ids.length} ids, ${lens.length} lengths`);
    let at = 0;
    for (let i = 0; i < ids.length; i++) {
      const fieldEnd = at + Number(lens[2 * i]);
      const valueEnd = fieldEnd + Number(lens[2 * i + 1]);
      if (!(valueEnd <= blob.length)) throw badReply('sageqRead', reply, ': lengths past the end of the values');
      entries.push({ id: ids[i] as string, deliveries: 1, field: blob.toString('utf8', at, fieldEnd), value: blob.subarray(fieldEnd, valueEnd), readAt: now });
      at = valueEnd;
    }
    if (at !== blob.length) throw badReply('sageqRead', reply, ': lengths do not cover the values');
  }
  return { closed: Number(closed) === 1, entries };
}

/** sageqReclaim: the next XAUTOCLAIM cursor and the entries reclaimed (dead-lettered ones are not among them). */
export function parseReclaimReply(reply: unknown, now: number): { cursor: string; entries: RawEntry[] } {
  if (!Array.isArray(reply) || reply.length < 2 || (reply.length - 2) % 4 !== 0) throw badReply('sageqReclaim', reply, '');
  const entries: RawEntry[] = [];
  for (let i = 2; i < reply.length; i += 4) {
    entries.push({ id: String(reply[i]), deliveries: Number(reply[i + 1]), field: String(reply[i + 2]), value: reply[i + 3] as Buffer, readAt: now });
  }
  return { cursor: String(reply[0]), entries };
}

/** sageqTakeover: whether to call again, how many were dead-lettered, and the entries claimed. */
export function parseTakeoverReply(reply: unknown, now: number): { more: boolean; deadLettered: number; entries: RawEntry[] } {
  if (!Array.isArray(reply) || reply.length < 2 || (reply.length - 2) % 4 !== 0) throw badReply('sageqTakeover', reply, '');
  const more = Number(reply[0]);
  const deadLettered = Number(reply[1]);
  if ((more !== 0 && more !== 1) || !Number.isInteger(deadLettered) || deadLettered < 0) throw badReply('sageqTakeover', reply, ': bad counts');
  const entries: RawEntry[] = [];
  for (let i = 2; i < reply.length; i += 4) {
    const id = String(reply[i]);
    const deliveries = Number(reply[i + 1]);
    const value: unknown = reply[i + 3];
    if (!/^\d+-\d+$/.test(id) || !Number.isInteger(deliveries) || deliveries < 1 || !Buffer.isBuffer(value)) throw badReply('sageqTakeover', reply, `: bad entry at ${i}`);
    entries.push({ id, deliveries, field: String(reply[i + 2]), value, readAt: now });
  }
  return { more: more === 1, deadLettered, entries };
}

/** Orders stream ids (`<ms>-<seq>`) as the stream does. */
export function compareStreamIds(a: string, b: string): number {
  const [am, as] = a.split('-').map(BigInt) as [bigint, bigint];
  const [bm, bs] = b.split('-').map(BigInt) as [bigint, bigint];
  if (am !== bm) return am < bm ? -1 : 1;
  return as === bs ? 0 : as < bs ? -1 : 1;
}

/** sageqSettle: one '1' (settled here) or '0' (not pending for this consumer) per id. */
export function parseSettleReply(reply: Buffer | string, ids: number): string {
  const s = reply.toString();
  if (s.length !== ids || /[^01]/.test(s)) throw badReply('sageqSettle', s, ` for ${ids} ids`);
  return s;
}

/** Counts of a RedisQueue, from one script call. */
export interface RedisQueueStats {
  /** Entries in the stream: waiting plus delivered and not yet acknowledged. What maxsize bounds. */
  length: number;
  /** Delivered to a consumer, not yet acknowledged. */
  pending: number;
  /** Not yet delivered to any consumer. */
  waiting: number;
  deadLetters: number;
  closed: boolean;
}

/** sageqInfo: { length, pending, closed, deadLetters }. */
export function parseInfoReply(reply: unknown): RedisQueueStats {
  if (!Array.isArray(reply) || reply.length !== 4 || !reply.every((x) => typeof x === 'number')) throw badReply('sageqInfo', reply, '');
  const [length, pending, closed, deadLetters] = reply as [number, number, number, number];
  return { length, pending, waiting: Math.max(0, length - pending), deadLetters, closed: closed === 1 };
}
