-- Drop lapsed cap pauses of one scope; when none is left, write the resumed
-- notice (once). KEYS: the scope's pause hash, dedupe marker, outbox.
-- ARGV: notice JSON, notice key, marker ttl ms, then the fields to drop.
for i = 4, #ARGV do redis.call('HDEL', KEYS[1], ARGV[i]) end
if redis.call('HLEN', KEYS[1]) > 0 then return 0 end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[3]) then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', '100000', '*', 'key', ARGV[2], 'payload', ARGV[1])
  return 1
end
return 0
