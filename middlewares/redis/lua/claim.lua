-- Claim up to ARGV[1] more messages of a reliable queue, oldest first, as BLMOVE does.
-- KEYS: queue, processing list, redeliveries hash.
-- A message re-queued from a consumer that died or hung holding it (it has a count in
-- the redeliveries hash) is a suspect and is handled alone: if it is poison, it takes
-- down only itself, and the messages claimed with it the first time are not counted
-- again. So no more are claimed after a suspect (the one BLMOVE just took, at the head
-- of the processing list), and claiming stops before the next suspect in the queue,
-- which BLMOVE then takes alone.
local suspects = redis.call('EXISTS', KEYS[3]) == 1
local function suspect(message)
  return message and redis.call('HEXISTS', KEYS[3], redis.sha1hex(message)) == 1
end
if suspects and suspect(redis.call('LINDEX', KEYS[2], 0)) then return {} end
local claimed = {}
for _ = 1, tonumber(ARGV[1]) do
  if suspects and suspect(redis.call('LINDEX', KEYS[1], -1)) then break end
  local message = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
  if not message then break end
  claimed[#claimed + 1] = message
end
return claimed
