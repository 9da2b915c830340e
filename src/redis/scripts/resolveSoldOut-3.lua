--[[
  Resolves waiting users SOLD_OUT once Postgres has no stock left (queue mode). Only users scored up to
  ARGV[2] are taken: the caller has checked exactly those against Postgres (holders of a row, left by a
  crash between commit and move, were recorded ISSUED first). A record only moves forward: a decided
  one is kept and the user just leaves the queue.

  KEYS[1] queue sorted set: userId scored by position
  KEYS[2] users hash: userId -> record
  KEYS[3] state hash: resolvedSoldOut (count of users resolved here)

  ARGV[1] the most users to take
  ARGV[2] the highest score to take

  Returns { userId, record, ... } the users resolved by this call with their new "X|..." records
]]
--- @include "nowMs"
--- @include "record"

local waiting = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[1]))
local decidedAtMs = nowMs()
local resolved = {}
for i = 1, #waiting, 2 do
  local user, position = waiting[i], waiting[i + 1]
  local current = redis.call('HGET', KEYS[2], user)
  if not current or recordLetter(current) == 'P' then
    local requestedAtMs = current and recordRequestedAt(current) or ''
    if requestedAtMs == '' then requestedAtMs = '0' end
    local record = encodeRecord('X', position, requestedAtMs, nil, decidedAtMs)
    redis.call('HSET', KEYS[2], user, record)
    resolved[#resolved + 1] = user
    resolved[#resolved + 1] = record
  end
  redis.call('ZREM', KEYS[1], user)
end
if #resolved > 0 then redis.call('HINCRBY', KEYS[3], 'resolvedSoldOut', #resolved / 2) end
return resolved
