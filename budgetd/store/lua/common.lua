-- Shared by every script (prepended to each).
--
-- Limits arrive in ARGV as groups of LIMIT_ARGS values, starting at `first`:
--   scope index (1-based, into the pause hashes), window, period,
--   cap in nanodollars (-1: unchecked), key expiry (unix ms), pause reason.
-- Amounts are integer strings; HINCRBY keeps them exact in Redis. Lua
-- compares them as doubles, exact to 2^53 nanodollars (~$9M per counter).
local LIMIT_ARGS = 6

local function limit_arg(first, i, field)
  return ARGV[first + (i - 1) * LIMIT_ARGS + field]
end

-- Add the deltas to every counter; start a cap pause for each window whose
-- spend reached its cap. Returns the (1-based) indexes of new pauses.
local function charge(counter_base, pause_base, first, count, spent_delta, reserved_delta, now_ms)
  local started = {}
  for i = 1, count do
    local key = KEYS[counter_base + i]
    local spent = redis.call('HINCRBY', key, 'spent', spent_delta)
    if reserved_delta ~= '0' then
      redis.call('HINCRBY', key, 'reserved', reserved_delta)
    end
    redis.call('PEXPIREAT', key, limit_arg(first, i, 5))
    local cap = tonumber(limit_arg(first, i, 4))
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
        table.insert(started, tostring(i))
      end
    end
  end
  return started
end
