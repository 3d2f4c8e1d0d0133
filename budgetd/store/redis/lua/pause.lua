-- A manual pause, or (action 'resume') lifting every pause of a scope, with
-- its notice. KEYS and ARGV: scripts.py PAUSE.
check_type(KEYS[K_PAUSES], 'hash')
check_type(KEYS[K_OUTBOX], 'stream')
if ARGV[A_ACTION] == 'pause' then
  redis.call('HSET', KEYS[K_PAUSES], 'manual', ARGV[A_VALUE])
elseif redis.call('DEL', KEYS[K_PAUSES]) == 0 then
  return 0
end
redis.call('XADD', KEYS[K_OUTBOX], 'MAXLEN', '~', '100000', '*', 'key', ARGV[A_NOTICE_KEY], 'payload', ARGV[A_NOTICE])
return 1
