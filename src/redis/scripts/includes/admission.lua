-- The checks every admission script (admitStream-4.lua, admitQueue-4.lua) makes first, in this order (the
-- contract's: the window before the mode): the coupon has state in Redis, the sale is neither paused nor
-- ended, the user has no record yet, the window has opened or the pre-queue takes them (window.lua).
--- @include "nowMs"
--- @include "record"
--- @include "window"

-- The reply that ends the admission ({ -1 } state lost, { -2, record } already requested, or the window's
-- refusal or pre-queue reply), else nil with the stock and the request's time on Redis's clock.
local function admissionChecks(stateKey, usersKey, prequeueKey, userId)
  local stock = redis.call('HGET', stateKey, 'stock')
  if not stock then return { -1 } end

  local requestedAtMs = nowMs()
  local schedule = scheduleOf(stateKey)
  local closed = closedReply(schedule, requestedAtMs)
  if closed then return closed end

  local existing = redis.call('HGET', usersKey, userId)
  if existing then return { -2, existing } end

  local refused = openingReply(schedule, stateKey, usersKey, prequeueKey, userId, requestedAtMs, tonumber(stock))
  if refused then return refused end
  return nil, tonumber(stock), requestedAtMs
end
