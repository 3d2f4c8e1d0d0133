-- After a config change, every capped window of a plan in one step: pause a
-- window whose spend reached its (new) cap, or lift its cap pause if the cap
-- is now above the spend, with their notices. Every read comes first, so a
-- failing read writes nothing; the writes cannot fail half way for one window.
-- KEYS: outbox (stream), S pause hashes (one per scope), L counters (the windows).
-- ARGV: now ms, S, then 8 per window: scope index (into the pause hashes),
--       field (window:period), cap (-1: uncapped, so a pause only lifts), since|reason, pause notice, its key,
--       resumed notice, its key.
-- Returns 2 per window: what was done ('paused', 'resumed', 'lifted' when
-- its resumed notice was already written by another window of this call,
-- or ''), and the window's spend.
local now_ms, S = ARGV[1], tonumber(ARGV[2])
local L = #KEYS - 1 - S

local spent, action = {}, {}
for i = 1, L do
  local at = 2 + (i - 1) * 8
  spent[i] = tonumber(redis.call('HGET', KEYS[1 + S + i], 'spent') or '0')
  local paused = redis.call('HEXISTS', KEYS[1 + tonumber(ARGV[at + 1])], ARGV[at + 2]) == 1
  local cap = tonumber(ARGV[at + 3])
  if cap >= 0 and spent[i] >= cap then
    if not paused then action[i] = 'paused' end
  elseif paused then
    action[i] = 'resumed'
  end
end

local reply, emitted = {}, {}
for i = 1, L do
  local at = 2 + (i - 1) * 8
  local pauses = KEYS[1 + tonumber(ARGV[at + 1])]
  local done = ''
  if action[i] == 'paused' then
    redis.call('HSET', pauses, ARGV[at + 2], ARGV[at + 4])
    emit(KEYS[1], ARGV[at + 5], ARGV[at + 6], spent[i], now_ms)
    done = 'paused'
  elseif action[i] == 'resumed' then
    redis.call('HDEL', pauses, ARGV[at + 2])
    done = 'lifted'
    -- A scope's resumed notice has one key for every window (as in the
    -- SQLite store's outbox): written once.
    if not emitted[ARGV[at + 8]] then
      emitted[ARGV[at + 8]] = true
      emit(KEYS[1], ARGV[at + 7], ARGV[at + 8], 0, now_ms)
      done = 'resumed'
    end
  end
  table.insert(reply, done)
  table.insert(reply, string.format('%d', spent[i]))
end
return reply
