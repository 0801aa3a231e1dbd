-- Count one delivery to a subscriber of a direct middleware.
-- KEYS[1]: the subscribers hash (address -> consecutive failures).
-- ARGV[1]: the address, ARGV[2]: '1' if the delivery failed, ARGV[3]: most failures.
-- An address no longer subscribed is left alone (it must not come back); one reaching
-- the most failures is removed and 1 returned.
local failures = redis.call('HGET', KEYS[1], ARGV[1])
if not failures then return 0 end
if ARGV[2] == '0' then
  if failures ~= '0' then redis.call('HSET', KEYS[1], ARGV[1], 0) end
  return 0
end
if redis.call('HINCRBY', KEYS[1], ARGV[1], 1) >= tonumber(ARGV[3]) then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 1
end
return 0
