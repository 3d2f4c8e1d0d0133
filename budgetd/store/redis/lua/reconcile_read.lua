-- The stored reconciliation results of the days in [since_day, until_day],
-- of every provider or (with the provider argument) of one: the result's
-- JSON and the day's passes (JSON) of each, one after the other, unsorted.
-- Days compare byte by byte, as SQLite's and Python's strings do (Lua's <
-- follows the server's locale). KEYS and ARGV: scripts.py RECONCILE_READ.
local function at_most(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a <= #b
end
local since, until_day = ARGV[A_SINCE_DAY], ARGV[A_UNTIL_DAY]
local wanted = ARGV[A_PROVIDER]  -- nil: every provider
check_type(KEYS[K_DAYS], 'hash')
check_type(KEYS[K_PASSES], 'hash')
local days = redis.call('HGETALL', KEYS[K_DAYS])
local found = {}
for i = 1, #days, 2 do
  local provider, day = string.match(days[i], '^([^|]*)|(.*)$')
  if provider and (wanted == nil or provider == wanted) and at_most(since, day) and at_most(day, until_day) then
    found[#found + 1] = days[i + 1]
    found[#found + 1] = redis.call('HGET', KEYS[K_PASSES], days[i]) or '[]'
  end
end
return found
