/**
 * The Lua scripts of StatefulRouteStore, with the reply shape each one promises. The store checks
 * every reply against its shape before reading it (so a script and its caller cannot drift apart
 * silently), and test/redis-route-store.test.ts runs every script in every branch against the
 * same shapes.
 *
 * Conventions, the same in every script:
 * - "no pod" is Lua `false`, which Redis sends as a nil bulk reply and ioredis gives as `null`.
 *   There is no other encoding of "no pod": pod ids are non-empty strings, so "0", "-1" and ""
 *   never mean "none".
 * - Booleans are the integers 0 and 1.
 * - Times are milliseconds of the Redis server clock (TIME), so staleness does not depend on the
 *   clocks of the machines that report or read.
 * - A link is a hash at `{<ns>:lk:<uid>}` with fields pod, kind ('p' persistent | 't' temporary,
 *   which has a PTTL) and since (ms). Link scripts touch only that key (one Cluster slot per user).
 * - Pod states live in three hashes sharing the tag `{<ns>:pods}`: `:svc` (pod → JSON
 *   {"state":"ready","at":ms}), `:load` (pod → {"load":0.25,"at":ms}), `:work` (pod →
 *   {"at":ms,"workload":<any JSON>}). The link-to-least-loaded script gets the `svc` and `load`
 *   values of the candidate pods as arguments, exactly as stored, and parses them with cjson; it
 *   does not read the pod hashes itself, which would be a cross-slot access on Redis Cluster.
 */

/** One element of a reply array. */
export type ReplyElement =
  /** non-empty string (a pod id) */
  | 'pod'
  /** non-empty string or null ("no pod") */
  | 'pod?'
  /** 0 or 1 */
  | 'bool'
  /** integer */
  | 'int'
  /** string or null */
  | 'str?'
  /** array of strings of even length (HGETALL) */
  | 'flat';

export interface RouteStoreScript {
  readonly name: string;
  readonly numberOfKeys: number;
  readonly lua: string;
  /** The reply is always an array of exactly these elements. */
  readonly reply: readonly ReplyElement[];
}

const PRELUDE = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function write_link(key, pod, persistent, ttl, now)
  redis.call('HSET', key, 'pod', pod, 'kind', (persistent == '1') and 'p' or 't', 'since', now)
  if persistent == '1' then
    redis.call('PERSIST', key)
  else
    redis.call('PEXPIRE', key, ttl)
  end
end
local function flag(b)
  if b then return 1 end
  return 0
end
`;

function script(name: string, numberOfKeys: number, reply: readonly ReplyElement[], body: string): RouteStoreScript {
  return Object.freeze({ name, numberOfKeys, reply: Object.freeze([...reply]), lua: `${PRELUDE}\n${body}` });
}

/** Link scripts: KEYS[1] = the user's link key. Link writes: ARGV pod, persistent ('1'|'0'), ttlMs. */
export const ROUTE_STORE_SCRIPTS = Object.freeze({
  /** Sets the link whatever was there. Reply: { previousPod?, previousWasPersistent }. */
  set: script('srsSet', 1, ['pod?', 'bool'], `
local cur = redis.call('HMGET', KEYS[1], 'pod', 'kind')
write_link(KEYS[1], ARGV[1], ARGV[2], ARGV[3], now_ms())
return {cur[1], flag(cur[2] == 'p')}
`),

  /** Sets the link only when there is none. Reply: { linkedPod, created, persistent }. */
  setIfAbsent: script('srsSetIfAbsent', 1, ['pod', 'bool', 'bool'], `
local cur = redis.call('HMGET', KEYS[1], 'pod', 'kind')
if cur[1] then return {cur[1], 0, flag(cur[2] == 'p')} end
write_link(KEYS[1], ARGV[1], ARGV[2], ARGV[3], now_ms())
return {ARGV[1], 1, flag(ARGV[2] == '1')}
`),

  /**
   * Sets the link unless another pod holds a persistent one (never steals it).
   * Reply: { set, previousPod?, previousWasPersistent }.
   */
  trySet: script('srsTrySet', 1, ['bool', 'pod?', 'bool'], `
local cur = redis.call('HMGET', KEYS[1], 'pod', 'kind')
if cur[1] and cur[2] == 'p' and cur[1] ~= ARGV[1] then return {0, cur[1], 1} end
write_link(KEYS[1], ARGV[1], ARGV[2], ARGV[3], now_ms())
return {1, cur[1], flag(cur[2] == 'p')}
`),

  /** Removes the link. Reply: { previousPod?, previousWasPersistent }. */
  remove: script('srsRemove', 1, ['pod?', 'bool'], `
local cur = redis.call('HMGET', KEYS[1], 'pod', 'kind')
redis.call('DEL', KEYS[1])
return {cur[1], flag(cur[2] == 'p')}
`),

  /** Removes the link only if it points to ARGV[1]. Reply: { removed, podStillLinked? }. */
  compareAndRemove: script('srsCompareAndRemove', 1, ['bool', 'pod?'], `
local cur = redis.call('HGET', KEYS[1], 'pod')
if cur == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return {1, false}
end
return {0, cur}
`),

  /** Reply: { pod?, persistent, pttlMs (-1 persistent, -2 none), sinceMs (0 when none) }. */
  get: script('srsGet', 1, ['pod?', 'bool', 'int', 'int'], `
local cur = redis.call('HMGET', KEYS[1], 'pod', 'kind', 'since')
if not cur[1] then return {false, 0, -2, 0} end
return {cur[1], flag(cur[2] == 'p'), redis.call('PTTL', KEYS[1]), tonumber(cur[3]) or 0}
`),

  /** Extends a temporary link to ARGV[1] by ARGV[2] ms. Reply: { refreshed, linkedPod? }. */
  refresh: script('srsRefresh', 1, ['bool', 'pod?'], `
local cur = redis.call('HMGET', KEYS[1], 'pod', 'kind')
if cur[1] == ARGV[1] and cur[2] == 't' then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, cur[1]}
end
return {0, cur[1]}
`),

  /**
   * Links the user to the least-loaded ready candidate unless a link exists (then returns it).
   * ARGV: uid, persistent, ttlMs, loadStaleMs, then per candidate: pod, svc JSON, load JSON ('' if
   * none). Ready = svc.state == 'ready'. A load report older than loadStaleMs (or missing, or
   * unparsable) is ignored: that pod ranks after every pod with a fresh report. Ties go to the
   * highest-random-weight pod for the user (sha1 of uid and pod), so they spread evenly.
   * Reply: { linkedPod? (null: no link and no ready candidate), created, persistent }.
   */
  linkLeastLoaded: script('srsLinkLeastLoaded', 1, ['pod?', 'bool', 'bool'], `
local cur = redis.call('HMGET', KEYS[1], 'pod', 'kind')
if cur[1] then return {cur[1], 0, flag(cur[2] == 'p')} end
local now = now_ms()
local stale = tonumber(ARGV[4])
local best, best_score, best_tie = nil, nil, nil
for i = 5, #ARGV - 2, 3 do
  local pod, svc_raw, load_raw = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local ok_s, svc = pcall(cjson.decode, svc_raw)
  if ok_s and type(svc) == 'table' and svc.state == 'ready' then
    local score = math.huge
    if load_raw ~= '' then
      local ok_l, l = pcall(cjson.decode, load_raw)
      if ok_l and type(l) == 'table' and type(l.load) == 'number' and type(l.at) == 'number' and now - l.at <= stale then
        score = l.load
      end
    end
    local tie = redis.sha1hex(ARGV[1] .. '|' .. pod)
    if best == nil or score < best_score or (score == best_score and tie < best_tie) then
      best, best_score, best_tie = pod, score, tie
    end
  end
end
if best == nil then return {false, 0, 0} end
write_link(KEYS[1], best, ARGV[2], ARGV[3], now)
return {best, 1, flag(ARGV[2] == '1')}
`),

  /**
   * Pod scripts: KEYS = svc, load, work hashes (tag {<ns>:pods}).
   * Sets a pod's service state (ARGV pod, state, event channel) and publishes the change.
   * Reply: { previousState?, atMs }.
   */
  setService: script('srsSetService', 3, ['str?', 'int'], `
local prev_raw = redis.call('HGET', KEYS[1], ARGV[1])
local prev = false
if prev_raw then
  local ok, p = pcall(cjson.decode, prev_raw)
  if ok and type(p) == 'table' and type(p.state) == 'string' then prev = p.state end
end
local now = now_ms()
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode({state = ARGV[2], at = now}))
if prev ~= ARGV[2] then
  redis.call('PUBLISH', ARGV[3], cjson.encode({pod = ARGV[1], state = ARGV[2], prev = prev or '', at = now}))
end
return {prev, now}
`),

  /** Records a pod's load (ARGV pod, load). Reply: { atMs }. */
  reportLoad: script('srsReportLoad', 3, ['int'], `
local load = tonumber(ARGV[2])
if not load then return redis.error_reply('ERR load must be a number') end
local now = now_ms()
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode({load = load, at = now}))
return {now}
`),

  /** Records a pod's workload (ARGV pod, workload as JSON text). Reply: { atMs }. */
  setWorkload: script('srsSetWorkload', 3, ['int'], `
local ok = pcall(cjson.decode, ARGV[2])
if not ok then return redis.error_reply('ERR workload must be JSON text') end
local now = now_ms()
redis.call('HSET', KEYS[3], ARGV[1], '{"at":' .. string.format('%d', now) .. ',"workload":' .. ARGV[2] .. '}')
return {now}
`),

  /** Every pod's raw state. Reply: { nowMs, svc HGETALL, load HGETALL, work HGETALL }. */
  getPods: script('srsGetPods', 3, ['int', 'flat', 'flat', 'flat'], `
return {now_ms(), redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3])}
`),

  /** Forgets a pod (ARGV pod, event channel) and publishes it. Reply: { existed }. */
  removePod: script('srsRemovePod', 3, ['bool'], `
local prev_raw = redis.call('HGET', KEYS[1], ARGV[1])
local n = redis.call('HDEL', KEYS[1], ARGV[1]) + redis.call('HDEL', KEYS[2], ARGV[1]) + redis.call('HDEL', KEYS[3], ARGV[1])
if n > 0 then
  local prev = ''
  if prev_raw then
    local ok, p = pcall(cjson.decode, prev_raw)
    if ok and type(p) == 'table' and type(p.state) == 'string' then prev = p.state end
  end
  redis.call('PUBLISH', ARGV[2], cjson.encode({pod = ARGV[1], state = 'removed', prev = prev, at = now_ms()}))
end
return {flag(n > 0)}
`),
});

export type RouteStoreScriptName = keyof typeof ROUTE_STORE_SCRIPTS;

function elementOk(kind: ReplyElement, v: unknown): boolean {
  switch (kind) {
    case 'pod':
      return typeof v === 'string' && v.length > 0;
    case 'pod?':
      return v === null || (typeof v === 'string' && v.length > 0);
    case 'bool':
      return v === 0 || v === 1;
    case 'int':
      return typeof v === 'number' && Number.isInteger(v);
    case 'str?':
      return v === null || typeof v === 'string';
    case 'flat':
      return Array.isArray(v) && v.length % 2 === 0 && v.every((x) => typeof x === 'string');
    default:
      return false;
  }
}

/** Why a reply does not have the script's declared shape, or undefined when it does. */
export function replyShapeProblem(name: RouteStoreScriptName, reply: unknown): string | undefined {
  const shape = ROUTE_STORE_SCRIPTS[name].reply;
  if (!Array.isArray(reply)) return `expected an array of ${shape.length}, got ${typeof reply}`;
  if (reply.length !== shape.length) return `expected ${shape.length} elements [${shape.join(', ')}], got ${reply.length}: ${JSON.stringify(reply)}`;
  for (let i = 0; i < shape.length; i++) {
    if (!elementOk(shape[i] as ReplyElement, reply[i])) return `element ${i} should be ${shape[i]}, got ${JSON.stringify(reply[i])}`;
  }
  return undefined;
}
