-- The checks every admission script (admitStream-4.lua, admitQueue-4.lua) makes first, in this order: the
-- coupon has state in Redis, the user has no record yet, the window lets them in now (window.lua).
--- @include "nowMs"
--- @include "record"
--- @include "window"

-- The reply that ends the admission ({ -1 } state lost, { -2, record } already requested, or the window's
-- refusal or pre-queue reply), else nil with the stock and the request's time on Redis's clock.
local function admissionChecks(stateKey, usersKey, prequeueKey, userId)
  local stock = redis.call('HGET', stateKey, 'stock')
  if not stock then return { -1 } end

  local existing = redis.call('HGET', usersKey, userId)
  if existing then return { -2, existing } end

  local requestedAtMs = nowMs()
  local refused = windowReply(stateKey, usersKey, prequeueKey, userId, requestedAtMs, tonumber(stock))
  if refused then return refused end
  return nil, tonumber(stock), requestedAtMs
end
