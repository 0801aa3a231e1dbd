-- Claim up to ARGV[1] more messages of a reliable queue, oldest first, as BLMOVE does.
-- KEYS: queue, processing list.
local claimed = {}
for _ = 1, tonumber(ARGV[1]) do
  local message = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
  if not message then break end
  claimed[#claimed + 1] = message
end
return claimed
