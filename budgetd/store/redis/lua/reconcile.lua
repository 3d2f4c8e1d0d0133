-- After a config change, every capped window of a plan in one step: pause a
-- window whose spend reached its (new) cap, or lift its cap pause if the cap
-- is now above the spend, with their notices. KEYS and ARGV: scripts.py
-- RECONCILE; the counters' keys follow the pause hashes, one per window, and
-- the windows JSON has one object per window:
--   scope_index, scope, window, period, cap (-1: uncapped, so a pause only
--   lifts), pause_value (since|reason), and the fields of its two notices
--   that the window does not give: paused {key, reason, extra, cap_nanos},
--   resumed {key, extra, cap_nanos}.
-- Returns 2 per window: what was done ('paused', 'resumed', 'lifted' when
-- its resumed notice was already written by another window of this call,
-- or ''), and the window's spend.
local S = number(ARGV[A_PAUSE_COUNT], 'pause count')
local K_COUNTERS = K_PAUSES + S
local now_ms, agent = ARGV[A_NOW_MS], ARGV[A_AGENT]
number(now_ms, 'now')
local windows = cjson.decode(ARGV[A_WINDOWS])

-- Reads and checks.
check_type(KEYS[K_OUTBOX], 'stream')
local spent, action, pauses = {}, {}, {}
for i, w in ipairs(windows) do
  spent[i] = balance(KEYS[K_COUNTERS + i - 1])
  pauses[i] = KEYS[K_PAUSES + number(w.scope_index, 'scope index') - 1]
  check_type(pauses[i], 'hash')
  local paused = redis.call('HEXISTS', pauses[i], w.window .. ':' .. w.period) == 1
  local cap = number(w.cap, 'cap')
  if cap >= 0 and spent[i] >= cap then
    if not paused then action[i] = 'paused' end
  elseif paused then
    action[i] = 'resumed'
  end
end

-- Writes.
local function notice(w, kind, fields, spent_nanos)
  return {agent_id = agent, scope = w.scope, window = w.window, period = w.period, at_ms = now_ms, kind = kind,
          key = fields.key, reason = fields.reason or '', extra = fields.extra, cap_nanos = fields.cap_nanos,
          spent_nanos = spent_nanos}
end
local reply, emitted = {}, {}
for i, w in ipairs(windows) do
  local done = ''
  if action[i] == 'paused' then
    redis.call('HSET', pauses[i], w.window .. ':' .. w.period, w.pause_value)
    emit(KEYS[K_OUTBOX], notice(w, 'paused', w.paused, decimal(spent[i])))
    done = 'paused'
  elseif action[i] == 'resumed' then
    redis.call('HDEL', pauses[i], w.window .. ':' .. w.period)
    done = 'lifted'
    -- A scope's resumed notice has one key for every window (as in the
    -- SQLite store's outbox): written once.
    if not emitted[w.resumed.key] then
      emitted[w.resumed.key] = true
      emit(KEYS[K_OUTBOX], notice(w, 'resumed', w.resumed, '0'))
      done = 'resumed'
    end
  end
  table.insert(reply, done)
  table.insert(reply, decimal(spent[i]))
end
return reply
