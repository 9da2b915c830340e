--[[
  Moves the next batch of a coupon's pre-queue into the mode's normal admission, at the start, in one
  atomic step: each entry taken off the pre-queue is admitted in the same script (stream: a unit reserved,
  the next position, an outbox entry; queue: the next position on the waiting queue) or resolved SOLD_OUT
  when the stock is gone (ZPOPMIN and the admissions in the same script). The pre-queue itself is the cursor: a crash or failover between two batches
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
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
local popped = redis.call('ZPOPMIN', KEYS[3], tonumber(ARGV[2]))
local reply = { #popped / 2, 0 }
local records, places = {}, {}
local admitted, soldOut = 0, 0
for i = 1, #popped, 2 do
  local userId = popped[i]
  local record = redis.call('HGET', KEYS[2], userId)
  if recordLetter(record) == 'W' then
    local requestedAt = recordRequestedAt(record)
    places[#places + 1] = userId
    places[#places + 1] = string.match(record, '^W|([^|]*)')
    local decided
    if stock <= 0 then
      decided = encodeRecord('X', 0, requestedAt, '', now)
      soldOut = soldOut + 1
      reply[#reply + 1] = userId
      reply[#reply + 1] = decided
    else
      seq = seq + 1
      admitted = admitted + 1
      if ARGV[1] == 'stream' then
        stock = stock - 1
        decided = encodeRecord('A', seq, requestedAt)
        redis.call('XADD', KEYS[4], '*', 'e', streamEntryValue(userId, seq, requestedAt))
      else
        decided = encodeRecord('P', seq, requestedAt)
        redis.call('ZADD', KEYS[4], 'NX', seq, userId)
      end
    end
    records[#records + 1] = userId
    records[#records + 1] = decided
  end
end
-- One write per key for the whole batch (the batch is bounded, so unpack stays far below Lua's limits).
if #records > 0 then
  redis.call('HSET', KEYS[2], unpack(records))
  redis.call('HSET', KEYS[5], unpack(places))
  redis.call('HSET', KEYS[1], 'seq', seq, 'stock', stock)
end
if soldOut > 0 then redis.call('HINCRBY', KEYS[1], 'soldOut', soldOut) end

local left = redis.call('ZCARD', KEYS[3])
reply[2] = left
if left == 0 and not state[5] then redis.call('HSET', KEYS[1], 'prequeueDone', 1) end
if admitted > 0 and redis.call('HSETNX', KEYS[1], 'wake', 1) == 1 then redis.call('PUBLISH', ARGV[3], KEYS[4]) end
return reply
