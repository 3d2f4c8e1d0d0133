-- Settle a call: drop its hold, add the cost to every counter, write the
-- ledger entry, warn and start cap pauses with their notices. Idempotent.
-- KEYS and ARGV: scripts.py SETTLE. After the fixed arguments, per counter
-- its cap (-1: unchecked), key expiry and W warning thresholds (-1: none),
-- then the limits JSON (common.lua), decoded only when a notice may be due.
local S, L, W = number(ARGV[A_PAUSE_COUNT], 'pause count'), number(ARGV[A_COUNTER_COUNT], 'counter count'),
  number(ARGV[A_THRESHOLD_COUNT], 'threshold count')
local K_COUNTERS = K_PAUSES + S
local STRIDE = C_FIELDS + W
local A_LIMITS = A_PER_COUNTER + L * STRIDE
local now_ms, agent, request_id = ARGV[A_NOW_MS], ARGV[A_AGENT], ARGV[A_REQUEST_ID]

-- Reads and checks.
local call = redis.call('HMGET', KEYS[K_CALL], 'state', 'charged', 'counters', 'held', 'created', 'tags')
local state = call[1]  -- false when there is no call
if state == 'settled' then
  return {'duplicate', call[2]}
end
local held, charged, created, tags = 0, 0, '', ARGV[A_TAGS]
if state then
  if call[3] ~= ARGV[A_COUNTERS_JSON] then  -- the caller settles again with these counters
    return {'held_in_other_periods', call[3]}
  end
  held = number(call[4], 'held')
  charged = number(call[2], 'charged')
  created = call[5]
  tags = call[6]
  if ARGV[A_TAGS] ~= '{}' then
    local merged = cjson.decode(tags)
    for k, v in pairs(cjson.decode(ARGV[A_TAGS])) do merged[k] = v end
    tags = cjson.encode(merged)
  end
end
local amount = number(ARGV[A_ACTUAL], 'actual')
if amount < 0 then
  if state then amount = held else amount = number(ARGV[A_ESTIMATE], 'estimate') end
end
-- held: the hold goes, the cost comes. released: the cost only. expired:
-- the cost less what the expiry charged (counted once).
local reserved_delta = 0
if state == 'held' then reserved_delta = -held end
local spent_delta = amount - charged
number(ARGV[A_CALL_TTL_MS], 'call ttl')
number(ARGV[A_LEDGER_MAXLEN], 'ledger maxlen')
number(now_ms, 'now')
check_type(KEYS[K_HOLDS], 'zset')

local limits, due, exists, spent_before, reserved_before = nil, {}, {}, {}, {}
for i = 1, L do
  local key = KEYS[K_COUNTERS + i - 1]
  local at = A_PER_COUNTER + (i - 1) * STRIDE
  local before, reserved, found = balance(key)
  exists[i], spent_before[i], reserved_before[i] = found, before, reserved
  number(ARGV[at + C_EXPIRY], 'expiry')
  local spent = before + spent_delta
  local cap = number(ARGV[at + C_CAP], 'cap')
  if cap >= 0 then
    local notify = spent >= cap
    for w = 1, W do
      local threshold = number(ARGV[at + C_FIELDS + w - 1], 'threshold')
      if threshold >= 0 and before < threshold and threshold <= spent then notify = true end
    end
    if notify then
      limits = limits or cjson.decode(ARGV[A_LIMITS])
      local limit = limits[i]
      due[i] = notices_due(key, limit, before, spent, KEYS[K_PAUSES + number(limit.scope_index, 'scope index') - 1])
      if due[i].pause or #due[i].warnings > 0 then check_type(KEYS[K_OUTBOX], 'stream') end
    end
  end
end

-- Writes; the first, to the one key not checked (the ledger), writes nothing
-- if it fails. Ledger maxlen 0: a tag value's part of a call on Cluster,
-- whose entry the agent's slot writes.
if ARGV[A_LEDGER_MAXLEN] ~= '0' then
  redis.call('XADD', KEYS[K_LEDGER], 'MAXLEN', '~', ARGV[A_LEDGER_MAXLEN], '*', 'request_id', request_id,
             'agent_id', agent, 'kind', 'settle', 'cost_nanos', decimal(spent_delta), 'tags', tags, 'held_ms', created,
             'settled_ms', now_ms, 'pricing', ARGV[A_PRICING], 'day', ARGV[A_DAY], 'groups', ARGV[A_GROUPS],
             'event', ARGV[A_EVENT])
end
local started = {}
for i = 1, L do
  local key = KEYS[K_COUNTERS + i - 1]
  add_to_counter(key, spent_before[i], spent_delta, reserved_before[i], reserved_delta)
  -- The hold set the expiry of the counters it created; this sets it on
  -- any it creates.
  if state ~= 'held' or not exists[i] then
    redis.call('PEXPIREAT', key, ARGV[A_PER_COUNTER + (i - 1) * STRIDE + C_EXPIRY])
  end
  if due[i] then
    write_notices(i, key, limits[i], due[i], spent_before[i] + spent_delta, agent, KEYS[K_OUTBOX], now_ms, started)
  end
end
redis.call('HSET', KEYS[K_CALL], 'state', 'settled', 'charged', decimal(amount), 'tags', tags, 'ended', now_ms)
if not state then
  redis.call('HSET', KEYS[K_CALL], 'held', '0', 'counters', ARGV[A_COUNTERS_JSON], 'created', now_ms, 'deadline', now_ms)
end
redis.call('PEXPIRE', KEYS[K_CALL], ARGV[A_CALL_TTL_MS])
redis.call('ZREM', KEYS[K_HOLDS], agent .. ' ' .. request_id)
-- Then what the ledger entry recorded (for the cost event), then the pauses started.
local reply = {'settled', decimal(amount), decimal(spent_delta), tags, created}
for _, i in ipairs(started) do table.insert(reply, i) end
return reply
