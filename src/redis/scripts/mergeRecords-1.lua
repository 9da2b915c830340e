--[[
  Merges user records into a coupon's users hash while its state is rebuilt (see restoreState-1.lua), in
  chunks so a large coupon never blocks Redis. A record only moves forward: a missing or undecided record
  takes the rebuilt one unless both are the same undecided status; a decided one (I or X) is kept.

  KEYS[1] users hash: userId -> record

  ARGV    pairs: userId, record

  Returns { merged } the number of records written
]]
--- @include "record"

local merged = 0
for i = 1, #ARGV, 2 do
  local user, record = ARGV[i], ARGV[i + 1]
  local current = redis.call('HGET', KEYS[1], user)
  local letter = recordLetter(current)
  if not current or (isUndecided(letter) and recordLetter(record) ~= letter) then
    redis.call('HSET', KEYS[1], user, record)
    merged = merged + 1
  end
end
return { merged }
