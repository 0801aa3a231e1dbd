-- Put what a consumer holds back on the queue.
-- KEYS: processing list, queue, heartbeat, consumer set. ARGV: consumer id, force.
-- Without force, only a consumer whose heartbeat expired is emptied. The oldest claimed
-- message goes back to the consuming end first, so it is the next one handed out.
if ARGV[2] ~= '1' and redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
local moved = 0
while redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT') do moved = moved + 1 end
redis.call('SREM', KEYS[4], ARGV[1])
return moved
