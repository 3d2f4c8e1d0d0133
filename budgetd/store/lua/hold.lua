-- Hold an amount on every counter of a plan, or refuse: one atomic step.
-- KEYS: call, holds (zset), S pause hashes (one per scope), L counters.
-- ARGV: agent, request id, amount, now ms, deadline ms, tags json,
--       counters json, call ttl ms, S, L, limits json (common.lua), then the notices it refers to.
local S, L = tonumber(ARGV[9]), tonumber(ARGV[10])
local LIMITS = cjson.decode(ARGV[11])

local state = redis.call('HGET', KEYS[1], 'state')
if state then
  if state == 'held' then  -- a retry of a hold that went through
    return {'allowed', redis.call('HGET', KEYS[1], 'held'), redis.call('HGET', KEYS[1], 'deadline')}
  end
  return {'conflict', state}
end

local function balance(i)
  local c = redis.call('HMGET', KEYS[2 + S + i], 'spent', 'reserved')
  return tonumber(c[1] or '0'), tonumber(c[2] or '0')
end

local function left(i)
  local cap = tonumber(LIMITS[i][4])
  if cap < 0 then return '0' end
  local spent, reserved = balance(i)
  return string.format('%d', math.max(0, cap - spent - reserved))
end

local paused = false  -- nearly always: no scope has a pause hash at all
for s = 1, S do
  if redis.call('EXISTS', KEYS[2 + s]) == 1 then paused = true end
end
if paused then
  for s = 1, S do  -- manual pauses first
    local v = redis.call('HGET', KEYS[2 + s], 'manual')
    if v then return {'paused', tostring(s), '0', v, '0'} end
  end
  for i = 1, L do  -- then cap pauses of the current periods
    local s = tonumber(LIMITS[i][1])
    local v = redis.call('HGET', KEYS[2 + s], LIMITS[i][2] .. ':' .. LIMITS[i][3])
    if v then return {'paused', tostring(s), tostring(i), v, left(i)} end
  end
end

local amount = tonumber(ARGV[3])
for i = 1, L do
  local cap = tonumber(LIMITS[i][4])
  if cap >= 0 then
    local spent, reserved = balance(i)
    if spent + reserved + amount > cap then
      return {'cap', tostring(i), left(i)}
    end
  end
end

for i = 1, L do
  redis.call('HINCRBY', KEYS[2 + S + i], 'reserved', ARGV[3])
  redis.call('PEXPIREAT', KEYS[2 + S + i], LIMITS[i][5])
end
redis.call('HSET', KEYS[1], 'state', 'held', 'held', ARGV[3], 'charged', '0', 'counters', ARGV[7],
           'tags', ARGV[6], 'created', ARGV[4], 'deadline', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[8])
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1] .. ' ' .. ARGV[2])
return {'allowed', ARGV[3], ARGV[5]}
