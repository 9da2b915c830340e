--[[
  Writes the shuffled order of a coupon's pre-queue (computed from the revealed seed, see docs/api.md
  "Pre-queue"): each entry from before the start gets its rank as its score. Deterministic, so running it
  again after a crash writes the same ranks; the last chunk marks the state `shuffled`, which lets
  movePrequeue-4.lua start. Entries that came after the start (scored from LATE_BASE) are never ranked.

  KEYS[1] state hash
  KEYS[2] pre-queue sorted set

  ARGV[1] '1' when this is the last chunk
  ARGV[2..] userId, rank, userId, rank, ...

  Returns { ranked }
]]
local ranked = 0
for i = 2, #ARGV, 2 do
  if redis.call('ZADD', KEYS[2], 'XX', 'CH', ARGV[i + 1], ARGV[i]) >= 0 then ranked = ranked + 1 end
end
if ARGV[1] == '1' then redis.call('HSET', KEYS[1], 'shuffled', 1) end
return { ranked }
