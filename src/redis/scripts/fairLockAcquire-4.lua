--[[
  One attempt to take a coupon's fair (FIFO) lock of the `sync` mode. A caller gets an arrival number on
  its first attempt and waits in line until it is the head and the lock is free: nobody can jump the
  line, not even a newcomer arriving while the lock happens to be free. Each attempt refreshes the
  caller's deadline; a head whose deadline passed stopped polling (its process died) and is dropped.

  KEYS[1] lock: holder token, with a lease (PX) so a dead holder blocks the coupon for at most the lease
  KEYS[2] waiters sorted set: token -> arrival number (the head is the lowest)
  KEYS[3] deadlines sorted set: token -> ms after which a silent waiter is dropped
  KEYS[4] arrivals counter (the last arrival number given)

  ARGV[1] token (unique per acquisition)
  ARGV[2] arrival number from an earlier attempt, or 0 on the first attempt
  ARGV[3] lease ms
  ARGV[4] waiter ttl ms
  ARGV[5] pub/sub channel for "your turn" notices (message: the head's token)

  Returns
    { 1, arrival }        the lock is now held by this token
    { 0, arrival, rank }  still waiting; rank 0 means next in line
]]
--- @include "nowMs"

local token = ARGV[1]
local arrival = tonumber(ARGV[2])
local now = nowMs()

-- A retry whose earlier reply was lost may already hold the lock.
if redis.call('GET', KEYS[1]) == token then return { 1, arrival } end

if arrival == 0 then arrival = redis.call('INCR', KEYS[4]) end
-- Joins the line, or keeps its place; a live waiter dropped as silent (a long pause) rejoins at its arrival.
redis.call('ZADD', KEYS[2], arrival, token)
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), token)

-- Drops silent heads; stops at this caller at the latest, whose deadline was just refreshed.
local purged = false
while true do
  local head = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  if not head then break end
  local deadline = tonumber(redis.call('ZSCORE', KEYS[3], head))
  if deadline and deadline > now then break end
  redis.call('ZREM', KEYS[2], head)
  redis.call('ZREM', KEYS[3], head)
  purged = true
end

if redis.call('EXISTS', KEYS[1]) == 0 then
  local head = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  if head == token then
    redis.call('ZREM', KEYS[2], token)
    redis.call('ZREM', KEYS[3], token)
    redis.call('SET', KEYS[1], token, 'PX', ARGV[3])
    return { 1, arrival }
  end
  -- The new head may be asleep until its next poll: wake it now.
  if purged then redis.call('PUBLISH', ARGV[5], head) end
end
return { 0, arrival, redis.call('ZRANK', KEYS[2], token) }
