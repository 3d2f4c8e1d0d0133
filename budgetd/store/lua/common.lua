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

-- After a counter's spend went from before to spent: warn at each threshold
-- crossed (once: HSETNX on the counter), or pause the window if its spend
-- reached the cap, with their notices. A new pause adds i to started.
local function notify(i, key, limit, before, spent, pause_base, outbox, now_ms, started)
  local cap = tonumber(limit[4])
  if cap < 0 then return end
  if spent < cap then
    for _, w in ipairs(limit[9]) do
      if before < tonumber(w[1]) and tonumber(w[1]) <= spent and redis.call('HSETNX', key, 'warned:' .. w[2], '1') == 1 then
        emit(outbox, ARGV[tonumber(w[3])], w[4], spent, now_ms)
      end
    end
    return
  end
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

-- Add the deltas to every counter, with its warnings and pauses (notify).
-- Returns the (1-based) indexes of new pauses.
local function charge(counter_base, pause_base, outbox, limits, spent_delta, reserved_delta, now_ms)
  local started = {}
  for i, limit in ipairs(limits) do
    local key = KEYS[counter_base + i]
    local spent = redis.call('HINCRBY', key, 'spent', spent_delta)
    if reserved_delta ~= '0' then
      redis.call('HINCRBY', key, 'reserved', reserved_delta)
    end
    redis.call('PEXPIREAT', key, limit[5])
    notify(i, key, limit, spent - tonumber(spent_delta), spent, pause_base, outbox, now_ms, started)
  end
  return started
end

-- The same for a settle, the common case kept cheap: each counter's cap,
-- key expiry and W warning thresholds come as plain arguments from
-- ARGV[plain] on (2 + W per counter), and the limits JSON at ARGV[json_at]
-- is decoded only when a notice may be due. With held (the hold set the
-- counters' expiry) an expiry is set only where this may have created the
-- key (its spend was 0 before).
local function charge_plain(n, counter_base, pause_base, outbox, plain, W, json_at, spent_delta, reserved_delta,
                            now_ms, held)
  local started, limits = {}, nil
  local delta = tonumber(spent_delta)
  for i = 1, n do
    local key = KEYS[counter_base + i]
    local at = plain + (i - 1) * (2 + W)
    local spent = redis.call('HINCRBY', key, 'spent', spent_delta)
    if reserved_delta ~= '0' then
      redis.call('HINCRBY', key, 'reserved', reserved_delta)
    end
    if not held or spent == delta then
      redis.call('PEXPIREAT', key, ARGV[at + 1])
    end
    local cap = tonumber(ARGV[at])
    if cap >= 0 then
      local before = spent - delta
      local due = spent >= cap
      for w = 1, W do
        local threshold = tonumber(ARGV[at + 1 + w])
        if threshold >= 0 and before < threshold and threshold <= spent then due = true end
      end
      if due then
        limits = limits or cjson.decode(ARGV[json_at])
        notify(i, key, limits[i], before, spent, pause_base, outbox, now_ms, started)
      end
    end
  end
  return started
end
