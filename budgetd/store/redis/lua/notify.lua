-- Write a notice once. KEYS and ARGV: scripts.py NOTIFY.
number(ARGV[A_MARKER_TTL_MS], 'marker ttl')
check_type(KEYS[K_OUTBOX], 'stream')
if redis.call('SET', KEYS[K_MARKER], '1', 'NX', 'PX', ARGV[A_MARKER_TTL_MS]) then
  redis.call('XADD', KEYS[K_OUTBOX], 'MAXLEN', '~', '100000', '*', 'key', ARGV[A_NOTICE_KEY], 'payload', ARGV[A_NOTICE])
  return 1
end
return 0
