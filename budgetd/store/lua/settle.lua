-- Settle a call: drop its hold, add the cost to every counter, write the
-- ledger entry, start cap pauses. Idempotent. One atomic step.
-- KEYS: call, holds (zset), ledger (stream), outbox (stream), S pause hashes, L counters.
-- ARGV: agent, request id, actual (-1: the amount held), now ms, tags json,
--       counters json, estimate (no hold), call ttl ms, S, L, ledger maxlen,
--       pricing json, day, groups json, W (warning thresholds per counter), then per counter
--       its cap, key expiry and W thresholds, limits json (common.lua), then the notices it refers to.
local S, L, W = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[15])

local call = redis.call('HMGET', KEYS[1], 'state', 'charged', 'counters', 'held', 'created', 'tags')
local state = call[1]  -- false when there is no call
if state == 'settled' then
  return {'duplicate', call[2]}
end
local held, charged, created, tags = 0, 0, '', ARGV[5]
if state then
  if call[3] ~= ARGV[6] then  -- held in other periods: the caller retries with these
    return {'rekey', call[3]}
  end
  held = tonumber(call[4])
  charged = tonumber(call[2])
  created = call[5]
  tags = call[6]
  if ARGV[5] ~= '{}' then
    local merged = cjson.decode(tags)
    for k, v in pairs(cjson.decode(ARGV[5])) do merged[k] = v end
    tags = cjson.encode(merged)
  end
end

local amount = tonumber(ARGV[3])
if amount < 0 then
  if state then amount = held else amount = tonumber(ARGV[7]) end
end
-- held: the hold goes, the cost comes. released: the cost only. expired:
-- the cost less what the expiry charged (counted once).
local reserved_delta = '0'
if state == 'held' then reserved_delta = string.format('%d', -held) end
local spent_delta = string.format('%d', amount - charged)
local started = charge_plain(L, 4 + S, 4, KEYS[4], 16, W, 16 + L * (2 + W), spent_delta, reserved_delta, ARGV[4],
                             state == 'held')

redis.call('HSET', KEYS[1], 'state', 'settled', 'charged', string.format('%d', amount), 'tags', tags,
           'ended', ARGV[4])
if not state then
  redis.call('HSET', KEYS[1], 'held', '0', 'counters', ARGV[6], 'created', ARGV[4], 'deadline', ARGV[4])
end
redis.call('PEXPIRE', KEYS[1], ARGV[8])
redis.call('ZREM', KEYS[2], ARGV[1] .. ' ' .. ARGV[2])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[11], '*', 'request_id', ARGV[2], 'agent_id', ARGV[1],
           'kind', 'settle', 'cost_nanos', spent_delta, 'tags', tags, 'held_ms', created, 'settled_ms', ARGV[4],
           'pricing', ARGV[12], 'day', ARGV[13], 'groups', ARGV[14])
local reply = {'settled', string.format('%d', amount)}
for _, i in ipairs(started) do table.insert(reply, i) end
return reply
