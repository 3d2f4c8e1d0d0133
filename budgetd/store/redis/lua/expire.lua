-- Expire one hold past its deadline: release it, or charge it as spent
-- (and pause a window whose cap that reaches). KEYS and ARGV: scripts.py
-- EXPIRE; the limits JSON (common.lua) has one entry per counter.
local S, L = number(ARGV[A_PAUSE_COUNT], 'pause count'), number(ARGV[A_COUNTER_COUNT], 'counter count')
local K_COUNTERS = K_PAUSES + S
local now_ms, agent, request_id = ARGV[A_NOW_MS], ARGV[A_AGENT], ARGV[A_REQUEST_ID]
local member = agent .. ' ' .. request_id

-- Reads and checks.
check_type(KEYS[K_HOLDS], 'zset')
local call = redis.call('HMGET', KEYS[K_CALL], 'state', 'deadline', 'counters', 'held', 'tags', 'created')
if call[1] ~= 'held' then  -- settled or released meanwhile
  redis.call('ZREM', KEYS[K_HOLDS], member)
  return {'skip'}
end
if number(call[2], 'deadline') > number(now_ms, 'now') then return {'skip'} end
if call[3] ~= ARGV[A_COUNTERS_JSON] then return {'skip'} end
local held = number(call[4], 'held')
local charged = 0
if ARGV[A_CHARGE] == '1' then charged = held end
local limits = cjson.decode(ARGV[A_LIMITS])
check_type(KEYS[K_LEDGER], 'stream')
local due, spent_after = {}, {}
for i = 1, L do
  local key = KEYS[K_COUNTERS + i - 1]
  local before = balance(key)
  number(limits[i].expiry, 'expiry')
  spent_after[i] = before + charged
  due[i] = notices_due(key, limits[i], before, spent_after[i],
                       KEYS[K_PAUSES + number(limits[i].scope_index, 'scope index') - 1])
  if due[i].pause or #due[i].warnings > 0 then check_type(KEYS[K_OUTBOX], 'stream') end
end

-- Writes.
local started = {}
for i = 1, L do
  local key = KEYS[K_COUNTERS + i - 1]
  redis.call('HINCRBY', key, 'spent', decimal(charged))
  redis.call('HINCRBY', key, 'reserved', decimal(-held))
  redis.call('PEXPIREAT', key, limits[i].expiry)
  write_notices(i, key, limits[i], due[i], spent_after[i], agent, KEYS[K_OUTBOX], now_ms, started)
end
redis.call('HSET', KEYS[K_CALL], 'state', 'expired', 'charged', decimal(charged), 'ended', now_ms)
redis.call('ZREM', KEYS[K_HOLDS], member)
if charged ~= 0 and ARGV[A_LEDGER_MAXLEN] ~= '0' then  -- 0: a tag value's part (see settle.lua)
  redis.call('XADD', KEYS[K_LEDGER], 'MAXLEN', '~', ARGV[A_LEDGER_MAXLEN], '*', 'request_id', request_id,
             'agent_id', agent, 'kind', 'expiry', 'cost_nanos', decimal(charged), 'tags', call[5],
             'held_ms', call[6], 'settled_ms', now_ms, 'pricing', '', 'day', ARGV[A_DAY], 'groups', ARGV[A_GROUPS])
  return {'expired', call[5] or '{}', call[6] or '', decimal(charged)}  -- what the entry recorded
end
return {'expired'}
