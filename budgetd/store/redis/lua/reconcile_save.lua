-- A reconciliation result saved for its provider and day: its JSON under
-- the day's field, the day's passes made the union of those stored and the
-- result's (a pass once done stays done), and the owner's leases of the day
-- dropped. Replies the number of passes done.
-- KEYS and ARGV: scripts.py RECONCILE_SAVE.
check_type(KEYS[K_DAYS], 'hash')
check_type(KEYS[K_PASSES], 'hash')
check_type(KEYS[K_LEASES], 'hash')
local passes, seen = {}, {}
local function add(names)
  for _, name in ipairs(names) do
    if type(name) ~= 'string' then error('budgetd: a pass is not a string: ' .. tostring(name)) end
    if not seen[name] then
      seen[name] = true
      passes[#passes + 1] = name
    end
  end
end
local stored = redis.call('HGET', KEYS[K_PASSES], ARGV[A_FIELD])
if stored then add(cjson.decode(stored)) end
add(cjson.decode(ARGV[A_PASSES]))
table.sort(passes)
local leases = redis.call('HGETALL', KEYS[K_LEASES])

redis.call('HSET', KEYS[K_DAYS], ARGV[A_FIELD], ARGV[A_RESULT])
redis.call('HSET', KEYS[K_PASSES], ARGV[A_FIELD], #passes > 0 and cjson.encode(passes) or '[]')
for i = 1, #leases, 2 do
  if string.match(leases[i + 1], '^%-?%d+|(.*)$') == ARGV[A_OWNER] then
    redis.call('HDEL', KEYS[K_LEASES], leases[i])
  end
end
return #passes
