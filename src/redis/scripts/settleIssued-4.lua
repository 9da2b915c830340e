--[[
  The stream writers' one call after a batch committed in Postgres: records its decisions (ISSUED or
  SOLD_OUT, see includes/decide.lua), then acknowledges its entries and trims what the group is done with
  (see includes/ackTrim.lua). The decisions are in the users hash before the entries leave the stream.

  KEYS[1] users hash: userId -> record
  KEYS[2] queue sorted set (absent in stream mode; markDecided's key, so one include serves both)
  KEYS[3] state hash: issued (count of ISSUED records written here, while the state is loaded)
  KEYS[4] the coupon's stream (one consumer group)

  ARGV[1] consumer group
  ARGV[2] n, the number of entry ids that follow
  ARGV[3..2+n] the entry ids to acknowledge
  ARGV[3+n..] pairs: userId, record ("I|..." or "X|...")

  Returns { changed, acknowledged, trimmed }
]]
--- @include "decide"
--- @include "ackTrim"

local n = tonumber(ARGV[2])
local changed = recordDecisions(KEYS[1], KEYS[2], KEYS[3], 3 + n)
local settled = ackAndTrim(KEYS[4], ARGV[1], 3, 2 + n)
return { changed, settled[1], settled[2] }
