-- Lease one scheduled pass of a provider's day (budgetd/reconcile) to an
-- owner, unless the pass is done (among the day's passes) or leased to
-- another owner whose lease has not run out (now_ms < its end). The same
-- owner claiming again renews its lease. 1: leased, 0: not.
-- A lease is "until_ms|owner" under the pass in the day's lease hash; the
-- end in the value decides (callers' clocks), the hash's expiry (Redis's
-- clock, a while after the longest lease given) only keeps it tidy.
-- KEYS and ARGV: scripts.py RECONCILE_CLAIM.
local now = number(ARGV[A_NOW_MS], 'now')
local lease_ms = number(ARGV[A_LEASE_MS], 'lease')
local keep_ms = number(ARGV[A_KEEP_MS], 'keep')
check_type(KEYS[K_PASSES], 'hash')
check_type(KEYS[K_LEASES], 'hash')
local done = redis.call('HGET', KEYS[K_PASSES], ARGV[A_FIELD])
if done then
  for _, name in ipairs(cjson.decode(done)) do
    if name == ARGV[A_PASS] then return 0 end
  end
end
local lease = redis.call('HGET', KEYS[K_LEASES], ARGV[A_PASS])
if lease then
  local until_ms, holder = string.match(lease, '^(%-?%d+)|(.*)$')
  if until_ms and holder ~= ARGV[A_OWNER] and now < tonumber(until_ms) then return 0 end
end
local ttl = redis.call('PTTL', KEYS[K_LEASES])

redis.call('HSET', KEYS[K_LEASES], ARGV[A_PASS], decimal(now + lease_ms) .. '|' .. ARGV[A_OWNER])
if ttl < lease_ms + keep_ms then redis.call('PEXPIRE', KEYS[K_LEASES], decimal(lease_ms + keep_ms)) end
return 1
