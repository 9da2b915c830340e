--[[
  Acknowledges a written batch of a coupon's stream and trims every entry the group is done with (see
  includes/ackTrim.lua: nothing pending or never read is trimmed).

  The stream has one consumer group (stream mode: the writers; the Kafka relay keeps its entries).

  KEYS[1] the coupon's stream
  ARGV[1] consumer group
  ARGV[2..] the entry ids to acknowledge

  Returns { acknowledged, trimmed }
]]
--- @include "ackTrim"

return ackAndTrim(KEYS[1], ARGV[1], 2, #ARGV)
