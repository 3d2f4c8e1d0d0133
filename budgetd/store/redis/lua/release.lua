-- Drop a live hold. KEYS and ARGV: scripts.py RELEASE.
local L = number(ARGV[A_COUNTER_COUNT], 'counter count')

-- Reads and checks.
local call = redis.call('HMGET', KEYS[K_CALL], 'state', 'counters', 'held')
if call[1] ~= 'held' then return {'none'} end
if call[2] ~= ARGV[A_COUNTERS_JSON] then return {'held_in_other_periods', call[2]} end
local back = decimal(-number(call[3], 'held'))
for i = 1, L do balance(KEYS[K_COUNTERS + i - 1]) end
check_type(KEYS[K_HOLDS], 'zset')

-- Writes.
for i = 1, L do
  redis.call('HINCRBY', KEYS[K_COUNTERS + i - 1], 'reserved', back)
end
redis.call('HSET', KEYS[K_CALL], 'state', 'released', 'ended', ARGV[A_NOW_MS])
redis.call('ZREM', KEYS[K_HOLDS], ARGV[A_AGENT] .. ' ' .. ARGV[A_REQUEST_ID])
return {'released'}
