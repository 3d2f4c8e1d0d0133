-- Shared by every script (prepended to each).
--
-- Limits arrive in ARGV as groups of LIMIT_ARGS values, starting at `first`:
--   1 scope index (1-based, into the pause hashes), 2 window, 3 period,
--   4 cap in nanodollars (-1: unchecked), 5 key expiry (unix ms),
--   6 pause reason, 7 the pause notice (JSON, spent_nanos left at 0),
--   8 warnings: JSON [[threshold nanos, fraction, notice JSON], ...].
-- Amounts are integer strings; HINCRBY keeps them exact in Redis. Lua
-- compares them as doubles, exact to 2^53 nanodollars (~$9M per counter).
local LIMIT_ARGS = 8

local function limit_arg(first, i, field)
  return ARGV[first + (i - 1) * LIMIT_ARGS + field]
end

-- Notices are built by the caller; here only the spend at this moment is filled in.
local function emit(outbox, notice, key, spent)
  local payload = string.gsub(notice, '"spent_nanos": 0', '"spent_nanos": ' .. string.format('%d', spent), 1)
  redis.call('XADD', outbox, 'MAXLEN', '~', '100000', '*', 'key', key, 'payload', payload)
end

-- Add the deltas to every counter; warn at each threshold crossed (once:
-- HSETNX on the counter) and pause each window whose spend reached its cap,
-- with their notices. Returns the (1-based) indexes of new pauses.
local function charge(counter_base, pause_base, outbox, first, count, spent_delta, reserved_delta, now_ms)
  local started = {}
  for i = 1, count do
    local key = KEYS[counter_base + i]
    local spent = redis.call('HINCRBY', key, 'spent', spent_delta)
    if reserved_delta ~= '0' then
      redis.call('HINCRBY', key, 'reserved', reserved_delta)
    end
    redis.call('PEXPIREAT', key, limit_arg(first, i, 5))
    local cap = tonumber(limit_arg(first, i, 4))
    local before = spent - tonumber(spent_delta)
    if cap >= 0 and spent < cap then
      for _, w in ipairs(cjson.decode(limit_arg(first, i, 8))) do
        if before < w[1] and w[1] <= spent and redis.call('HSETNX', key, 'warned:' .. w[2], '1') == 1 then
          emit(outbox, w[3], cjson.decode(w[3])['key'], spent)
        end
      end
    end
    if cap >= 0 and spent >= cap then
      local pauses = KEYS[pause_base + tonumber(limit_arg(first, i, 1))]
      local window = limit_arg(first, i, 2)
      local field = window .. ':' .. limit_arg(first, i, 3)
      if redis.call('HSETNX', pauses, field, now_ms .. '|' .. limit_arg(first, i, 6)) == 1 then
        -- A window keeps one cap pause: drop those of its earlier periods.
        for _, other in ipairs(redis.call('HKEYS', pauses)) do
          if other ~= field and string.sub(other, 1, #window + 1) == window .. ':' then
            redis.call('HDEL', pauses, other)
          end
        end
        local notice = limit_arg(first, i, 7)
        emit(outbox, notice, cjson.decode(notice)['key'], spent)
        table.insert(started, tostring(i))
      end
    end
  end
  return started
end
