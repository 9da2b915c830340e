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
-- ZADD takes score, member: the pairs arrive as member, rank (a chunk is bounded, far below unpack's limit).
local args = { 'XX' }
for i = 2, #ARGV, 2 do
  args[#args + 1] = ARGV[i + 1]
  args[#args + 1] = ARGV[i]
end
if #args > 1 then redis.call('ZADD', KEYS[2], unpack(args)) end
if ARGV[1] == '1' then redis.call('HSET', KEYS[1], 'shuffled', 1) end
return { (#args - 1) / 2 }
