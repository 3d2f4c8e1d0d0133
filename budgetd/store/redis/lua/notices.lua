-- The notices of a cap, built in the script from fields (so that one
-- atomic step writes the change and its notice): loaded after common.lua by
-- the scripts that may write them.

-- JSON of a string as Python's json.dumps writes it, for ASCII text (ids
-- match the config's id pattern; reasons and keys are made of them).
local ESCAPES = {['"'] = '\\"', ['\\'] = '\\\\', ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t',
                 ['\b'] = '\\b', ['\f'] = '\\f'}
local function quote(s)
  local escaped = string.gsub(s, '[%z\1-\31"\\]', function(c)
    return ESCAPES[c] or string.format('\\u%04x', string.byte(c))
  end)
  return '"' .. escaped .. '"'
end

-- A notice as Notice.to_json writes it (notices/model.py: its fields in
-- sorted order, ", " and ": " between), from a table of its fields; extra
-- is JSON already, amounts and times are numbers or integer strings.
local function notice_json(n)
  return '{"agent_id": ' .. quote(n.agent_id) .. ', "at_ms": ' .. n.at_ms .. ', "cap_nanos": ' .. n.cap_nanos
    .. ', "extra": ' .. n.extra .. ', "key": ' .. quote(n.key) .. ', "kind": ' .. quote(n.kind)
    .. ', "period": ' .. quote(n.period) .. ', "reason": ' .. quote(n.reason) .. ', "scope": ' .. quote(n.scope)
    .. ', "spent_nanos": ' .. n.spent_nanos .. ', "window": ' .. quote(n.window) .. '}'
end

local function emit(outbox, n)
  redis.call('XADD', outbox, 'MAXLEN', '~', '100000', '*', 'key', n.key, 'payload', notice_json(n))
end

-- What a change of one counter's spend from before to spent starts: a
-- pause of its window if the spend reached the cap (unless the window is
-- paused already), else a warning for each threshold crossed (unless
-- given already: a 'warned:<fraction>' field on the counter). Reads only;
-- the writes are write_notices'.
local function notices_due(key, limit, before, spent, pauses)
  local cap = number(limit.cap, 'cap')
  local due = {warnings = {}}
  if cap < 0 then return due end
  if spent >= cap then
    local field = limit.window .. ':' .. limit.period
    if redis.call('HEXISTS', pauses, field) == 0 then
      due.pause = {pauses = pauses, field = field, others = {}}
      -- A window keeps one cap pause: those of its earlier periods go.
      for _, other in ipairs(redis.call('HKEYS', pauses)) do
        if string.sub(other, 1, #limit.window + 1) == limit.window .. ':' then table.insert(due.pause.others, other) end
      end
    end
    return due
  end
  for _, w in ipairs(limit.warnings) do
    local threshold = number(w.threshold, 'threshold')
    if before < threshold and threshold <= spent and redis.call('HEXISTS', key, 'warned:' .. w.fraction) == 0 then
      table.insert(due.warnings, w)
    end
  end
  return due
end

-- Write what notices_due found for counter i (after its spend is written),
-- adding i to started for a new pause.
local function write_notices(i, key, limit, due, spent, agent, outbox, now_ms, started)
  local base = {agent_id = agent, scope = limit.scope, window = limit.window, period = limit.period,
                cap_nanos = limit.cap, spent_nanos = decimal(spent), at_ms = now_ms}
  if due.pause then
    for _, other in ipairs(due.pause.others) do redis.call('HDEL', due.pause.pauses, other) end
    redis.call('HSET', due.pause.pauses, due.pause.field, now_ms .. '|' .. limit.pause_reason)
    base.key = 'paused:' .. limit.scope .. ':' .. limit.window .. ':' .. limit.period
    base.kind, base.reason, base.extra = 'paused', limit.pause_reason, '{"by": "cap"}'
    emit(outbox, base)
    table.insert(started, tostring(i))
  end
  for _, w in ipairs(due.warnings) do
    redis.call('HSET', key, 'warned:' .. w.fraction, '1')
    base.key = 'warning:' .. limit.scope .. ':' .. limit.window .. ':' .. limit.period .. ':' .. w.fraction
    base.kind, base.reason, base.extra = 'warning', w.reason, '{"threshold": ' .. quote(w.fraction) .. '}'
    emit(outbox, base)
  end
end
