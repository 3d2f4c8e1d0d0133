-- Shared by every script: loaded after the prelude of the script's KEYS and
-- ARGV names (scripts.py) and before the script itself.
--
-- A script either completes or leaves nothing: Redis keeps the writes of a
-- script that fails half way, so each script reads and checks everything
-- first (every key it writes, every number it is given) and only then
-- writes, with writes that cannot fail on what was checked.
--
-- Amounts are integer strings. Lua compares and adds them as doubles, exact
-- to 2^53 nanodollars (~$9M per counter); past that add_to_counter leaves
-- the sums to HINCRBY, exact in Redis.

local function number(value, what)
  local n = tonumber(value)
  if n == nil then error('budgetd: ' .. what .. ' is not a number: ' .. tostring(value)) end
  return n
end

local function decimal(n) return string.format('%d', n) end

-- TYPE of a key the script will write, before it writes anything: a write
-- to a key of another type would fail after earlier writes.
local function check_type(key, wanted)
  local found = redis.call('TYPE', key).ok
  if found ~= 'none' and found ~= wanted then
    error('budgetd: ' .. key .. ' is a ' .. found .. ', not a ' .. wanted)
  end
end

-- A counter's spent and reserved (0 when absent), checked to be integers
-- (HINCRBY on them cannot fail then), and whether the key exists.
local function balance(key)
  local c = redis.call('HMGET', key, 'spent', 'reserved')
  local spent, reserved = tonumber(c[1] or 0), tonumber(c[2] or 0)
  if spent == nil or reserved == nil then error('budgetd: ' .. key .. ' holds an amount that is not a number') end
  return spent, reserved, (c[1] or c[2]) ~= false
end

-- Add the deltas to a counter whose spent and reserved were read (balance).
-- One HSET of the sums while doubles hold them exactly; past 2^53 HINCRBY,
-- which adds exactly in Redis. A zero reserved delta leaves that field as it is.
local EXACT = 2 ^ 53
local function add_to_counter(key, spent, spent_delta, reserved, reserved_delta)
  local spent_after, reserved_after = spent + spent_delta, reserved + reserved_delta
  if math.abs(spent_after) < EXACT and math.abs(reserved_after) < EXACT then
    if reserved_delta == 0 then
      redis.call('HSET', key, 'spent', decimal(spent_after))
    else
      redis.call('HSET', key, 'spent', decimal(spent_after), 'reserved', decimal(reserved_after))
    end
    return
  end
  redis.call('HINCRBY', key, 'spent', decimal(spent_delta))
  if reserved_delta ~= 0 then redis.call('HINCRBY', key, 'reserved', decimal(reserved_delta)) end
end

-- The limits (JSON, decoded only when a notice may be due), one object per
-- counter, in the order of the counter keys:
--   scope_index (into the pause hashes), scope, window, period,
--   cap (nanodollars, -1: unchecked), expiry (of the key, unix ms), pause_reason,
--   warnings: [{threshold (nanodollars), fraction, reason}, ...].
-- The notices of a cap (notices/model.py paused_at_cap and warning) are
-- built from these fields when they fire (notices.lua).
