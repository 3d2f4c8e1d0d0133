-- Hold an amount on every counter of a plan, or refuse: one atomic step.
-- KEYS and ARGV: scripts.py HOLD. After the fixed arguments, per counter
-- its cap (-1: unchecked) and key expiry, then the pause fields JSON,
-- decoded only when a pause exists: per counter [scope index, the field of
-- its cap pause in that scope's pause hash (window:period)].
local S, L = number(ARGV[A_PAUSE_COUNT], 'pause count'), number(ARGV[A_COUNTER_COUNT], 'counter count')
local K_COUNTERS = K_PAUSES + S
local A_PAUSE_FIELDS = A_PER_COUNTER + L * C_FIELDS
local function cap_of(i) return number(ARGV[A_PER_COUNTER + (i - 1) * C_FIELDS + C_CAP], 'cap') end
local function expiry_of(i) return ARGV[A_PER_COUNTER + (i - 1) * C_FIELDS + C_EXPIRY] end

-- Reads and checks.
local state = redis.call('HGET', KEYS[K_CALL], 'state')
if state then
  if state == 'held' then  -- a retry of a hold that went through
    return {'allowed', redis.call('HGET', KEYS[K_CALL], 'held'), redis.call('HGET', KEYS[K_CALL], 'deadline')}
  end
  return {'conflict', state}
end

local spent, reserved, exists = {}, {}, {}
for i = 1, L do
  spent[i], reserved[i], exists[i] = balance(KEYS[K_COUNTERS + i - 1])
end
local function left(i)
  local cap = cap_of(i)
  if cap < 0 then return '0' end
  return decimal(math.max(0, cap - spent[i] - reserved[i]))
end

local paused = false  -- nearly always: no scope has a pause hash at all
for s = 1, S do
  if redis.call('EXISTS', KEYS[K_PAUSES + s - 1]) == 1 then paused = true end
end
if paused then
  local pause_fields = cjson.decode(ARGV[A_PAUSE_FIELDS])
  for s = 1, S do  -- manual pauses first
    local v = redis.call('HGET', KEYS[K_PAUSES + s - 1], 'manual')
    if v then return {'paused', tostring(s), '0', v, '0'} end
  end
  for i = 1, L do  -- then cap pauses of the current periods
    local s = number(pause_fields[i][1], 'scope index')
    local v = redis.call('HGET', KEYS[K_PAUSES + s - 1], pause_fields[i][2])
    if v then return {'paused', tostring(s), tostring(i), v, left(i)} end
  end
end

local amount = number(ARGV[A_AMOUNT], 'amount')
-- Refused by reservations alone ('1'): with every other hold released the
-- amount fits every window, so the caller may wait for headroom (rules.py).
local function waitable()
  for j = 1, L do
    local cap = cap_of(j)
    if cap >= 0 and spent[j] + amount > cap then return '0' end
  end
  return '1'
end
for i = 1, L do
  local cap = cap_of(i)
  if cap >= 0 and spent[i] + reserved[i] + amount > cap then
    return {'cap', tostring(i), left(i), waitable()}
  end
  number(expiry_of(i), 'expiry')
end
number(ARGV[A_DEADLINE_MS], 'deadline')
number(ARGV[A_CALL_TTL_MS], 'call ttl')

-- Writes; the first, to the one key not checked, writes nothing if it fails.
redis.call('ZADD', KEYS[K_HOLDS], ARGV[A_DEADLINE_MS], ARGV[A_AGENT] .. ' ' .. ARGV[A_REQUEST_ID])
for i = 1, L do
  redis.call('HINCRBY', KEYS[K_COUNTERS + i - 1], 'reserved', ARGV[A_AMOUNT])
  -- An expiry for a counter this creates; one that existed has it.
  if not exists[i] then
    redis.call('PEXPIREAT', KEYS[K_COUNTERS + i - 1], expiry_of(i))
  end
end
redis.call('HSET', KEYS[K_CALL], 'state', 'held', 'held', ARGV[A_AMOUNT], 'charged', '0',
           'counters', ARGV[A_COUNTERS_JSON], 'tags', ARGV[A_TAGS], 'created', ARGV[A_NOW_MS],
           'deadline', ARGV[A_DEADLINE_MS])
redis.call('PEXPIRE', KEYS[K_CALL], ARGV[A_CALL_TTL_MS])
return {'allowed', ARGV[A_AMOUNT], ARGV[A_DEADLINE_MS]}
