-- Take or renew the broadcast lease.
-- KEYS[1]: the lease. ARGV[1]: this node's id, ARGV[2]: the TTL in ms.
-- Returns 1 when this node holds the lease now.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
