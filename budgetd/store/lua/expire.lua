-- Expire one hold past its deadline: release it, or charge it as spent.
-- KEYS: call, holds (zset), ledger (stream), outbox (stream), S pause hashes, L counters.
-- ARGV: agent, request id, now ms, charge (1/0), counters json, S, L,
--       ledger maxlen, day, groups json, limits json (common.lua), then the notices it refers to.
local S, L = tonumber(ARGV[6]), tonumber(ARGV[7])
local member = ARGV[1] .. ' ' .. ARGV[2]

local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'held' then  -- settled or released meanwhile
  redis.call('ZREM', KEYS[2], member)
  return {'skip'}
end
if tonumber(redis.call('HGET', KEYS[1], 'deadline')) > tonumber(ARGV[3]) then return {'skip'} end
if redis.call('HGET', KEYS[1], 'counters') ~= ARGV[5] then return {'skip'} end

local held = redis.call('HGET', KEYS[1], 'held')
local charged = '0'
if ARGV[4] == '1' then charged = held end
charge(4 + S, 4, KEYS[4], cjson.decode(ARGV[11]), charged, string.format('%d', -tonumber(held)), ARGV[3])
redis.call('HSET', KEYS[1], 'state', 'expired', 'charged', charged, 'ended', ARGV[3])
redis.call('ZREM', KEYS[2], member)
if charged ~= '0' then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[8], '*', 'request_id', ARGV[2], 'agent_id', ARGV[1],
             'kind', 'expiry', 'cost_nanos', charged, 'tags', redis.call('HGET', KEYS[1], 'tags'),
             'held_ms', redis.call('HGET', KEYS[1], 'created'), 'settled_ms', ARGV[3], 'pricing', '',
             'day', ARGV[9], 'groups', ARGV[10])
end
return {'expired'}
