--[[
  The `sync` mode's window check: whether the coupon's issue window is open on Redis's clock (no process
  clock decides), and that clock's time, which the issue's transaction then uses as the request's time.

  KEYS[1] state hash (opensAt, closesAt, paused)

  Returns
    { nowMs }  open
    { -1 }     the coupon has no state in Redis (rebuild it, then retry)
    { -4 }     not started, { -5 } ended, { -6 } paused
]]
--- @include "nowMs"

local w = redis.call('HMGET', KEYS[1], 'stock', 'opensAt', 'closesAt', 'paused')
if not w[1] then return { -1 } end
if w[4] == '1' then return { -6 } end
local now = nowMs()
if w[2] and now < tonumber(w[2]) then return { -4 } end
if w[3] and now >= tonumber(w[3]) then return { -5 } end
return { now }
