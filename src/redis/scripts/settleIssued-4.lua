--[[
  The stream writers' one call after a batch committed in Postgres: records its decisions (ISSUED or
  SOLD_OUT, see includes/decide.lua), acknowledges its entries and trims what the group is done with (see
  includes/ackTrim.lua), then publishes the decisions. The decisions are in the users hash before the
  entries leave the stream. Publishing here spares the writer sending every decision a second time.

  KEYS[1] users hash: userId -> record
  KEYS[2] queue sorted set (absent in stream mode; markDecided's key, so one include serves both)
  KEYS[3] state hash: issued (count of ISSUED records written here, while the state is loaded)
  KEYS[4] the coupon's stream (one consumer group)

  ARGV[1] consumer group
  ARGV[2] n, the number of entry ids
  ARGV[3] decisions channel: every pair is published there as JSON {"couponId":..,"pairs":[...]}
          (core/decisions.ts DecisionMessage)
  ARGV[4] coupon id
  ARGV[5..4+n] the entry ids to acknowledge
  ARGV[5+n..] pairs: userId, record ("I|..." or "X|...")

  Returns { changed, acknowledged, trimmed }
]]
--- @include "decide"
--- @include "ackTrim"

local n = tonumber(ARGV[2])
local changed = recordDecisions(KEYS[1], KEYS[2], KEYS[3], 5 + n)
local settled = ackAndTrim(KEYS[4], ARGV[1], 5, 4 + n)

local pairs, count = {}, 0
for i = 5 + n, #ARGV do
  count = count + 1
  pairs[count] = ARGV[i]
end
if count > 0 then
  redis.call('PUBLISH', ARGV[3], cjson.encode({ couponId = tonumber(ARGV[4]), pairs = pairs }))
end
return { changed, settled[1], settled[2] }
