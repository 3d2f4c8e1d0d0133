-- A manual pause, or (ARGV[1] == 'resume') lifting every pause of a scope,
-- with its notice. KEYS: the scope's pause hash, outbox (stream).
-- ARGV: 'pause' | 'resume', value (since|reason), notice JSON, notice key.
if ARGV[1] == 'pause' then
  redis.call('HSET', KEYS[1], 'manual', ARGV[2])
elseif redis.call('DEL', KEYS[1]) == 0 then
  return 0
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', '100000', '*', 'key', ARGV[4], 'payload', ARGV[3])
return 1
