-- Shared by every script (prepended to each).
--
-- Limits arrive as one JSON array in one ARGV (the caller caches it per
-- plan, so a call sends one string instead of eight per counter), one entry
-- per counter, every value a string:
--   1 scope index (1-based, into the pause hashes), 2 window, 3 period,
--   4 cap in nanodollars (-1: unchecked), 5 key expiry (unix ms),
--   6 pause reason, 7 the pause notice's position in ARGV (0: none), 8 its key,
--   9 warnings: [[threshold nanos, fraction, notice's position in ARGV, its key], ...].
-- A notice's text (JSON, spent_nanos and at_ms left at 0) is its own ARGV
-- after the limits, so that decoding the limits does not parse the notices.
-- Amounts are integer strings; HINCRBY keeps them exact in Redis. Lua
-- compares them as doubles, exact to 2^53 nanodollars (~$9M per counter).

-- Notices are built by the caller; here only the spend and the time of this
-- moment are filled in.
local function emit(outbox, notice, key, spent, now_ms)
  local payload = string.gsub(notice, '"spent_nanos": 0', '"spent_nanos": ' .. string.format('%d', spent), 1)
  payload = string.gsub(payload, '"at_ms": 0', '"at_ms": ' .. now_ms, 1)
  redis.call('XADD', outbox, 'MAXLEN', '~', '100000', '*', 'key', key, 'payload', payload)
end

-- Add the deltas to every counter; warn at each threshold crossed (once:
-- HSETNX on the counter) and pause each window whose spend reached its cap,
-- with their notices. Returns the (1-based) indexes of new pauses.
local function charge(counter_base, pause_base, outbox, limits, spent_delta, reserved_delta, now_ms)
  local started = {}
  for i, limit in ipairs(limits) do
    local key = KEYS[counter_base + i]
    local spent = redis.call('HINCRBY', key, 'spent', spent_delta)
    if reserved_delta ~= '0' then
      redis.call('HINCRBY', key, 'reserved', reserved_delta)
    end
    redis.call('PEXPIREAT', key, limit[5])
    local cap = tonumber(limit[4])
    local before = spent - tonumber(spent_delta)
    if cap >= 0 and spent < cap then
      for _, w in ipairs(limit[9]) do
        if before < tonumber(w[1]) and tonumber(w[1]) <= spent and redis.call('HSETNX', key, 'warned:' .. w[2], '1') == 1 then
          emit(outbox, ARGV[tonumber(w[3])], w[4], spent, now_ms)
        end
      end
    end
    if cap >= 0 and spent >= cap then
      local pauses = KEYS[pause_base + tonumber(limit[1])]
      local window = limit[2]
      local field = window .. ':' .. limit[3]
      if redis.call('HSETNX', pauses, field, now_ms .. '|' .. limit[6]) == 1 then
        -- A window keeps one cap pause: drop those of its earlier periods.
        for _, other in ipairs(redis.call('HKEYS', pauses)) do
          if other ~= field and string.sub(other, 1, #window + 1) == window .. ':' then
            redis.call('HDEL', pauses, other)
          end
        end
        emit(outbox, ARGV[tonumber(limit[7])], limit[8], spent, now_ms)
        table.insert(started, tostring(i))
      end
    end
  end
  return started
end
