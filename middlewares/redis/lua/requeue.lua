-- Put what a consumer holds back on the queue, or aside on the dead-letter list.
-- KEYS: processing list, queue, heartbeat, consumer set, redeliveries hash, dead list.
-- ARGV: consumer id, force, delivery limit (0: do not count, the consumer did not die
--       handling these: it is leaving, or Redis lost the scripts).
-- Without force, only a consumer whose heartbeat expired is emptied. The oldest claimed
-- message goes back to the consuming end first, so it is the next one handed out.
-- Each message is counted (by digest: identical messages share a count); one that has
-- now been re-queued from a dying consumer as often as the limit goes to the dead list
-- instead of being handed out again. Returns {re-queued, dead-lettered}.
if ARGV[2] ~= '1' and redis.call('EXISTS', KEYS[3]) == 1 then return {-1, 0} end
local limit = tonumber(ARGV[3])
local requeued, dead = 0, 0
while true do
  local message = redis.call('LPOP', KEYS[1])
  if not message then break end
  local count = 0
  if limit > 0 then
    count = redis.call('HINCRBY', KEYS[5], redis.sha1hex(message), 1)
  end
  if limit > 0 and count >= limit then
    redis.call('HDEL', KEYS[5], redis.sha1hex(message))
    redis.call('LPUSH', KEYS[6], message)
    dead = dead + 1
  else
    redis.call('RPUSH', KEYS[2], message)
    requeued = requeued + 1
  end
end
redis.call('SREM', KEYS[4], ARGV[1])
return {requeued, dead}
