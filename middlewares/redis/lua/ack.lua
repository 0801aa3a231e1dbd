-- Acknowledge claimed messages of a reliable queue and write their answers, atomically.
-- KEYS: processing list, counters hash, redeliveries hash, then every other key named by
--       an index in ARGV (0: none).
-- ARGV: reply TTL (s), log length, consumer id, guarded ('1': at-least-once, '0':
--       at-most-once), then 8 values per message: raw, reply key index, reply, log key
--       index, log entry, store key index, store op, store op argument.
-- The LREM guard makes all of it happen once: a message that was re-queued meanwhile
-- belongs to its new holder, which answers it instead. Unguarded (at-most-once) the
-- message was popped for good, so there is no processing list to guard with. A store operation (an
-- InsultService request) runs here, with the reply, so a crash can never apply an add
-- without answering it or apply it twice; the counter is raised here for the same
-- reason, so a node's count is exact. Reply keys were checked by the consumer: they are
-- in the namespace's reply area (Keys.is_reply_key).
local function run_store_op(op, key, argument)
  if op == 'add_insult' then
    return redis.call('SADD', key, argument) == 1 and 'true' or 'false'
  elseif op == 'random_insult' then
    return cjson.encode(redis.call('SRANDMEMBER', key) or '')
  end
  local members = redis.call('SMEMBERS', key)
  if #members == 0 then return '[]' end
  table.sort(members)
  return cjson.encode(members)
end

-- Only messages re-queued from a dying consumer have a redelivery count; there are
-- none most of the time, and then acknowledging costs no digest.
local guarded = ARGV[4] == '1'
local counted = guarded and redis.call('EXISTS', KEYS[3]) == 1
local acked = 0
for i = 5, #ARGV, 8 do
  if not guarded or redis.call('LREM', KEYS[1], -1, ARGV[i]) == 1 then
    acked = acked + 1
    if counted then redis.call('HDEL', KEYS[3], redis.sha1hex(ARGV[i])) end
    local reply = ARGV[i + 2]
    local store_key = tonumber(ARGV[i + 5])
    if store_key > 0 then
      reply = reply .. run_store_op(ARGV[i + 6], KEYS[store_key], ARGV[i + 7]) .. '}'
    end
    local reply_key = tonumber(ARGV[i + 1])
    if reply_key > 0 then
      -- pcall: a reply key someone made another type must not stop the other acks; and
      -- the expiry is only set on a list the reply was actually pushed on.
      if type(redis.pcall('LPUSH', KEYS[reply_key], reply)) == 'number' then
        redis.call('EXPIRE', KEYS[reply_key], ARGV[1])
      end
    end
    local log_key = tonumber(ARGV[i + 3])
    if log_key > 0 then
      redis.call('LPUSH', KEYS[log_key], ARGV[i + 4])
      redis.call('LTRIM', KEYS[log_key], 0, tonumber(ARGV[2]) - 1)
    end
  end
end
if acked > 0 then redis.call('HINCRBY', KEYS[2], ARGV[3], acked) end
return acked
