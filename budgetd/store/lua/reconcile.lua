-- After a config change, one window: pause it if its spend reached the (new)
-- cap, or lift its cap pause if the cap is now above the spend.
-- KEYS: the scope's pause hash, the counter, outbox (stream).
-- ARGV: field (window:period), cap, since|reason, pause notice, resumed notice.
local spent = tonumber(redis.call('HGET', KEYS[2], 'spent') or '0')
if spent >= tonumber(ARGV[2]) then
  if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[3]) == 1 then
    emit(KEYS[3], ARGV[4], cjson.decode(ARGV[4])['key'], spent)
    return 'paused'
  end
elseif redis.call('HDEL', KEYS[1], ARGV[1]) == 1 then
  emit(KEYS[3], ARGV[5], cjson.decode(ARGV[5])['key'], spent)
  return 'resumed'
end
return ''
