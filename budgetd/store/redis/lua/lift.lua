-- Drop lapsed cap pauses of one scope; when none is left, write the resumed
-- notice (once). KEYS and ARGV: scripts.py LIFT; the fields to drop are the
-- arguments from A_FIELDS on.
number(ARGV[A_MARKER_TTL_MS], 'marker ttl')
check_type(KEYS[K_PAUSES], 'hash')
check_type(KEYS[K_OUTBOX], 'stream')
local left = redis.call('HLEN', KEYS[K_PAUSES])
for i = A_FIELDS, #ARGV do left = left - redis.call('HEXISTS', KEYS[K_PAUSES], ARGV[i]) end
local marked = redis.call('EXISTS', KEYS[K_MARKER]) == 1

for i = A_FIELDS, #ARGV do redis.call('HDEL', KEYS[K_PAUSES], ARGV[i]) end
if left > 0 or marked then return 0 end
redis.call('SET', KEYS[K_MARKER], '1', 'PX', ARGV[A_MARKER_TTL_MS])
redis.call('XADD', KEYS[K_OUTBOX], 'MAXLEN', '~', '100000', '*', 'key', ARGV[A_NOTICE_KEY], 'payload', ARGV[A_NOTICE])
return 1
