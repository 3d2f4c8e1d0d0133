-- Drop a live hold. KEYS: call, holds (zset), L counters.
-- ARGV: agent, request id, counters json, now ms, L.
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'held' then return {'none'} end
local counters = redis.call('HGET', KEYS[1], 'counters')
if counters ~= ARGV[3] then return {'rekey', counters} end
local back = string.format('%d', -tonumber(redis.call('HGET', KEYS[1], 'held')))
for i = 1, tonumber(ARGV[5]) do
  redis.call('HINCRBY', KEYS[2 + i], 'reserved', back)
end
redis.call('HSET', KEYS[1], 'state', 'released', 'ended', ARGV[4])
redis.call('ZREM', KEYS[2], ARGV[1] .. ' ' .. ARGV[2])
return {'released'}
