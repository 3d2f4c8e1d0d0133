-- Write a notice once. KEYS: dedupe marker, outbox (stream).
-- ARGV: notice JSON, notice key, marker ttl ms.
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[3]) then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', '100000', '*', 'key', ARGV[2], 'payload', ARGV[1])
  return 1
end
return 0
