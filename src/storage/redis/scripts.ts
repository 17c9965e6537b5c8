/**
 * Lua scripts of the Redis store. Redis runs each script atomically, and each
 * touches keys of one Cluster slot only (see keys.ts). Scripts use
 * `ZRANGE ... BYSCORE`, so Redis 6.2 or newer is required.
 */

export interface ScriptDefinition {
  numberOfKeys: number;
  lua: string;
}

/**
 * KEYS: lock, fence, state. ARGV: token, ttlMs, idleTtlMs.
 * Returns [fence, state]: the new fence and the stored engine state (nil when
 * none), or [0] when another holder has the lock.
 *
 * The fence is at least the Redis server time in ms. So after Redis lost its
 * data, or restarted from an older snapshot whose counter is behind the fence
 * in the database, the database still accepts the writes of later holders.
 * Fences keep growing across such a loss as long as the user
 * averaged fewer than one lock per millisecond and the Redis clock did not go
 * back.
 *
 * Each acquisition resets the TTL of the fence and of the state to
 * idleTtlMs, so the keys of a user who takes no lock for that long expire.
 * An expired fence is safe for the same reason as a lost one. Redis treats
 * the key as missing only once its clock passes the last acquisition's time
 * plus idleTtlMs, and TIME reads the same clock, so the next fence is at
 * least that sum. A
 * fence runs ahead of the clock only by the number of locks that the user
 * took beyond one per millisecond. So the new fence exceeds every earlier
 * one unless the user took idleTtlMs such extra locks (604,800,000 with the
 * default of 7 days) or the Redis clock went back by about idleTtlMs. A
 * holder whose lock expired therefore carries a smaller fence than the
 * holder after it, and PostgreSQL rejects its writes once that holder wrote.
 */
export const acquireUserLockScript: ScriptDefinition = {
  numberOfKeys: 3,
  lua: `
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {0}
end
local fence = redis.call('INCR', KEYS[2])
local time = redis.call('TIME')
local nowMs = time[1] .. string.format('%03d', math.floor(tonumber(time[2]) / 1000))
if fence < tonumber(nowMs) then
  redis.call('SET', KEYS[2], nowMs)
  fence = tonumber(nowMs)
end
-- INCR of a missing key and SET leave the fence without a TTL, so it gets one here.
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
return {fence, redis.call('GET', KEYS[3])}
`,
};

/** KEYS: lock. ARGV: token. Deletes the lock if the token matches. Returns 1 if it did, else 0. */
export const releaseUserLockScript: ScriptDefinition = {
  numberOfKeys: 1,
  lua: `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`,
};

/** KEYS: lock. ARGV: token, ttlMs. Resets the TTL if the token matches. Returns 1 if it did, else 0. */
export const extendUserLockScript: ScriptDefinition = {
  numberOfKeys: 1,
  lua: `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`,
};

/**
 * KEYS: lock, state. ARGV: token, state, idleTtlMs. Writes the state with a
 * TTL of idleTtlMs if the token matches. Returns 1 if it did, else 0.
 */
export const saveUserStateScript: ScriptDefinition = {
  numberOfKeys: 2,
  lua: `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 1
`,
};

/**
 * KEYS: deadlines. ARGV: nowMs, leaseMs, limit.
 * Returns up to `limit` members that are due: a deadline (a score from 0 to
 * nowMs), or a claim at least leaseMs old. A claim at time t is stored as the
 * score -(t + 1), below every deadline, so each returned member gets the
 * score -(nowMs + 1) in the same step, and no other caller takes it until its
 * lease ends. Reads of due users still see claimed users as due, because a
 * negative score is below any now.
 */
export const claimDueUsersScript: ScriptDefinition = {
  numberOfKeys: 1,
  lua: `
-- Claims made at nowMs - leaseMs or earlier have expired, and their scores
-- are at least leaseMs - nowMs - 1. Deadlines are at least 0.
local minScore = string.format('%d', math.min(0, tonumber(ARGV[2]) - tonumber(ARGV[1]) - 1))
local due = redis.call('ZRANGE', KEYS[1], minScore, ARGV[1], 'BYSCORE', 'LIMIT', 0, ARGV[3])
local claimed = string.format('%d', -tonumber(ARGV[1]) - 1)
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], 'XX', claimed, member)
end
return due
`,
};

/**
 * KEYS: counter. ARGV: windowMs. Returns { count, ttlMs }.
 * The first hit starts the window. A counter found without a TTL gets one, so
 * every counter expires.
 */
export const incrementWindowCounterScript: ScriptDefinition = {
  numberOfKeys: 1,
  lua: `
local count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return { count, ttl }
`,
};

/**
 * KEYS: counter. Takes one hit back: returns { count, ttlMs } after the
 * decrement, and deletes the counter at zero. A missing counter stays missing.
 */
export const decrementWindowCounterScript: ScriptDefinition = {
  numberOfKeys: 1,
  lua: `
if redis.call('EXISTS', KEYS[1]) == 0 then
  return { 0, 0 }
end
local count = redis.call('DECR', KEYS[1])
if count <= 0 then
  redis.call('DEL', KEYS[1])
  return { 0, 0 }
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  ttl = 0
end
return { count, ttl }
`,
};

/**
 * KEYS: running set. ARGV: member, ttlMs. Drops the members whose time is
 * up, adds the member with an expiry of now + ttlMs on the Redis server's
 * clock, and returns how many members remain. The key lives as long as its
 * newest member.
 */
export const addRunningScript: ScriptDefinition = {
  numberOfKeys: 1,
  lua: `
local time = redis.call('TIME')
local nowMs = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', nowMs)
redis.call('ZADD', KEYS[1], nowMs + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('ZCARD', KEYS[1])
`,
};

/** KEYS: counter. Returns { count, ttlMs }, both 0 when the counter does not exist. */
export const getWindowCounterScript: ScriptDefinition = {
  numberOfKeys: 1,
  lua: `
local count = redis.call('GET', KEYS[1])
if not count then
  return { 0, 0 }
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  ttl = 0
end
return { tonumber(count), ttl }
`,
};
