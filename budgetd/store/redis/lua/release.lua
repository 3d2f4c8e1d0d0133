-- Drop a live hold; with a record (a failed call), write its ledger entry
-- of cost 0 in the same step. KEYS and ARGV: scripts.py RELEASE.
local L = number(ARGV[A_COUNTER_COUNT], 'counter count')

-- Reads and checks.
local call = redis.call('HMGET', KEYS[K_CALL], 'state', 'counters', 'held', 'tags', 'created')
if call[1] ~= 'held' then return {'none'} end
if call[2] ~= ARGV[A_COUNTERS_JSON] then return {'held_in_other_periods', call[2]} end
local back = decimal(-number(call[3], 'held'))
for i = 1, L do balance(KEYS[K_COUNTERS + i - 1]) end
check_type(KEYS[K_HOLDS], 'zset')
local record = nil
if ARGV[A_RECORD] ~= '' then
  record = cjson.decode(ARGV[A_RECORD])
  number(ARGV[A_LEDGER_MAXLEN], 'ledger maxlen')
  check_type(KEYS[K_LEDGER], 'stream')
end

-- Writes.
for i = 1, L do
  redis.call('HINCRBY', KEYS[K_COUNTERS + i - 1], 'reserved', back)
end
redis.call('HSET', KEYS[K_CALL], 'state', 'released', 'ended', ARGV[A_NOW_MS])
redis.call('ZREM', KEYS[K_HOLDS], ARGV[A_AGENT] .. ' ' .. ARGV[A_REQUEST_ID])
if record then
  redis.call('XADD', KEYS[K_LEDGER], 'MAXLEN', '~', ARGV[A_LEDGER_MAXLEN], '*', 'request_id', ARGV[A_REQUEST_ID],
             'agent_id', ARGV[A_AGENT], 'kind', 'release', 'cost_nanos', '0', 'tags', call[4] or '{}',
             'held_ms', call[5] or '', 'settled_ms', ARGV[A_NOW_MS], 'pricing', '', 'day', record.day,
             'groups', record.groups, 'event', record.event)
  return {'released', call[4] or '{}', call[5] or ''}
end
return {'released'}
