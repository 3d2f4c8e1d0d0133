-- A claimed notice's outcome in one step: finished (XACK) or left pending
-- for a retry (its idle time set so that it is reclaimed at about the
-- retry's time), and what recent_notices reads of it in the outcomes hash
-- (the stream and its group keep no state, error or time of their own).
-- The hash's value: "state|attempts|done_ms|error" (done_ms "" while pending).
-- KEYS and ARGV: scripts.py OUTCOME.
check_type(KEYS[K_OUTBOX], 'stream')
check_type(KEYS[K_OUTCOMES], 'hash')
number(ARGV[A_ATTEMPTS], 'attempts')
number(ARGV[A_IDLE_MS], 'idle')
local id, err = ARGV[A_ENTRY_ID], ARGV[A_ERROR]
if err == '' then  -- a success keeps the error of an earlier try: why it took more than one
  local before = redis.call('HGET', KEYS[K_OUTCOMES], id)
  if before then err = string.match(before, '^[^|]*|[^|]*|[^|]*|(.*)$') or '' end
end
if ARGV[A_STATE] == 'pending' then
  redis.call('XCLAIM', KEYS[K_OUTBOX], ARGV[A_GROUP], 'retry', 0, id, 'IDLE', ARGV[A_IDLE_MS], 'JUSTID')
else
  redis.call('XACK', KEYS[K_OUTBOX], ARGV[A_GROUP], id)
end
redis.call('HSET', KEYS[K_OUTCOMES], id, ARGV[A_STATE] .. '|' .. ARGV[A_ATTEMPTS] .. '|' .. ARGV[A_DONE_MS] .. '|' .. err)
return redis.call('HLEN', KEYS[K_OUTCOMES])
