--[[
  Moves the next batch of a coupon's pre-queue into the mode's normal admission, at the start, in one
  atomic step: each entry taken off the pre-queue is admitted in the same script (stream: a unit reserved,
  the next position, an outbox entry; queue: the next position on the waiting queue) or resolved SOLD_OUT
  when the stock is gone. The pre-queue itself is the cursor: a crash or failover between two batches
  admits none twice and loses none. Entries are taken lowest score first: arrival order, or the shuffled
  ranks rankPrequeue-2.lua wrote, then those who came after the start.

  KEYS[1] state hash (stock, seq, opensAt, prequeueOrder, shuffled, prequeueDone, soldOut)
  KEYS[2] users hash
  KEYS[3] pre-queue sorted set
  KEYS[4] the mode's outbox: the stream (ARGV[1] 'stream') or the waiting queue (ARGV[1] 'queue')
  KEYS[5] places hash: userId -> pre-queue arrival place, kept for the public order log

  ARGV[1] 'stream' or 'queue'
  ARGV[2] batch size
  ARGV[3] wake-up channel (the outbox's key is published when `wake` was not set)

  Returns
    { moved, left, userId, record, ... }  moved this batch; `left` still pre-queued; the SOLD_OUT decisions
    { -1 }                                the coupon has no state in Redis
    { -4 }                                not started yet (Redis TIME)
    { -8 }                                shuffle order not written yet (rankPrequeue-2.lua first)
]]
--- @include "nowMs"
--- @include "record"

local state = redis.call('HMGET', KEYS[1], 'stock', 'opensAt', 'prequeueOrder', 'shuffled', 'prequeueDone')
if not state[1] then return { -1 } end
local now = nowMs()
if state[2] and now < tonumber(state[2]) then return { -4 } end
if state[3] == 'shuffle' and not state[4] then return { -8 } end

local stock = tonumber(state[1])
local batch = redis.call('ZRANGE', KEYS[3], 0, tonumber(ARGV[2]) - 1)
local reply = { #batch, 0 }
for _, userId in ipairs(batch) do
  redis.call('ZREM', KEYS[3], userId)
  local record = redis.call('HGET', KEYS[2], userId)
  if recordLetter(record) == 'W' then
    local requestedAt = recordRequestedAt(record)
    redis.call('HSET', KEYS[5], userId, string.match(record, '^W|([^|]*)'))
    if stock <= 0 then
      local decided = encodeRecord('X', 0, requestedAt, '', now)
      redis.call('HSET', KEYS[2], userId, decided)
      redis.call('HINCRBY', KEYS[1], 'soldOut', 1)
      table.insert(reply, userId)
      table.insert(reply, decided)
    else
      local position = redis.call('HINCRBY', KEYS[1], 'seq', 1)
      if ARGV[1] == 'stream' then
        stock = redis.call('HINCRBY', KEYS[1], 'stock', -1)
        redis.call('HSET', KEYS[2], userId, encodeRecord('A', position, requestedAt))
        redis.call('XADD', KEYS[4], '*', 'u', userId, 'p', position, 't', requestedAt)
      else
        redis.call('ZADD', KEYS[4], 'NX', position, userId)
        redis.call('HSET', KEYS[2], userId, encodeRecord('P', position, requestedAt))
      end
    end
  end
end

local left = redis.call('ZCARD', KEYS[3])
reply[2] = left
if left == 0 and not state[5] then redis.call('HSET', KEYS[1], 'prequeueDone', 1) end
if #batch > 0 and redis.call('HSETNX', KEYS[1], 'wake', 1) == 1 then redis.call('PUBLISH', ARGV[3], KEYS[4]) end
return reply
