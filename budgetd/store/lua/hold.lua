-- Hold an amount on every counter of a plan, or refuse: one atomic step.
-- KEYS: call, holds (zset), S pause hashes (one per scope), L counters.
-- ARGV: agent, request id, amount, now ms, deadline ms, tags json,
--       counters json, call ttl ms, S, L, then per counter its cap and key
--       expiry, then the limits json (common.lua; read only when a pause exists).
local S, L = tonumber(ARGV[9]), tonumber(ARGV[10])
local function cap_of(i) return tonumber(ARGV[9 + 2 * i]) end
local function expiry_of(i) return ARGV[10 + 2 * i] end

local state = redis.call('HGET', KEYS[1], 'state')
if state then
  if state == 'held' then  -- a retry of a hold that went through
    return {'allowed', redis.call('HGET', KEYS[1], 'held'), redis.call('HGET', KEYS[1], 'deadline')}
  end
  return {'conflict', state}
end

local function balance(i)  -- spent, reserved, and whether the counter exists
  local c = redis.call('HMGET', KEYS[2 + S + i], 'spent', 'reserved')
  return tonumber(c[1] or '0'), tonumber(c[2] or '0'), (c[1] or c[2]) ~= false
end

local function left(i)
  local cap = cap_of(i)
  if cap < 0 then return '0' end
  local spent, reserved = balance(i)
  return string.format('%d', math.max(0, cap - spent - reserved))
end

local paused = false  -- nearly always: no scope has a pause hash at all
for s = 1, S do
  if redis.call('EXISTS', KEYS[2 + s]) == 1 then paused = true end
end
if paused then
  local limits = cjson.decode(ARGV[11 + 2 * L])
  for s = 1, S do  -- manual pauses first
    local v = redis.call('HGET', KEYS[2 + s], 'manual')
    if v then return {'paused', tostring(s), '0', v, '0'} end
  end
  for i = 1, L do  -- then cap pauses of the current periods
    local s = tonumber(limits[i][1])
    local v = redis.call('HGET', KEYS[2 + s], limits[i][2] .. ':' .. limits[i][3])
    if v then return {'paused', tostring(s), tostring(i), v, left(i)} end
  end
end

local amount = tonumber(ARGV[3])
local exists = {}  -- of the counters read: does the key exist (and so have its expiry)?
for i = 1, L do
  local cap = cap_of(i)
  if cap >= 0 then
    local spent, reserved, found = balance(i)
    if spent + reserved + amount > cap then
      return {'cap', tostring(i), left(i)}
    end
    exists[i] = found
  end
end

for i = 1, L do
  local reserved = redis.call('HINCRBY', KEYS[2 + S + i], 'reserved', ARGV[3])
  -- An expiry for a counter this may have created; one that existed has it.
  if exists[i] == false or (exists[i] == nil and reserved == amount) then
    redis.call('PEXPIREAT', KEYS[2 + S + i], expiry_of(i))
  end
end
redis.call('HSET', KEYS[1], 'state', 'held', 'held', ARGV[3], 'charged', '0', 'counters', ARGV[7],
           'tags', ARGV[6], 'created', ARGV[4], 'deadline', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[8])
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1] .. ' ' .. ARGV[2])
return {'allowed', ARGV[3], ARGV[5]}
