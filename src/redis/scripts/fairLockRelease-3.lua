--[[
  Releases a coupon's fair lock if this token still holds it, or takes a waiter that gives up out of
  line; then tells the next live waiter that it may take the lock.

  KEYS[1] lock: holder token (PX lease)
  KEYS[2] waiters sorted set: token -> arrival number
  KEYS[3] deadlines sorted set: token -> ms after which a silent waiter is dropped

  ARGV[1] token
  ARGV[2] pub/sub channel for "your turn" notices (message: the head's token)

  Returns { 1 } the lock was held by this token and is released, { 0 } otherwise (lease ran out, or a waiter)
]]
--- @include "nowMs"

local released = 0
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  released = 1
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])

if redis.call('EXISTS', KEYS[1]) == 1 then return { released } end
local now = nowMs()
-- Skips silent heads, so the notice reaches a waiter that is still there.
while true do
  local head = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  if not head then break end
  local deadline = tonumber(redis.call('ZSCORE', KEYS[3], head))
  if deadline and deadline > now then
    redis.call('PUBLISH', ARGV[2], head)
    break
  end
  redis.call('ZREM', KEYS[2], head)
  redis.call('ZREM', KEYS[3], head)
end
return { released }
