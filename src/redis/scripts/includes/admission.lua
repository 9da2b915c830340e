-- The checks every admission script (admitStream-4.lua, admitQueue-4.lua) makes first, in this order (the
-- contract's: the window before the mode): the coupon has state in Redis, the sale is neither paused nor
-- ended, the user has no record yet, the window has opened or the pre-queue takes them (window.lua).
--- @include "nowMs"
--- @include "record"
--- @include "window"

-- Everything an admission reads from the state hash, in one HMGET: the schedule first (window.lua's `w`
-- layout), then stock, seq and wake.
local function admissionState(stateKey)
  return redis.call('HMGET', stateKey, 'opensAt', 'closesAt', 'paused', 'prequeueOpensAt', 'prequeueDone',
    'stock', 'seq', 'wake')
end
local STOCK, SEQ, WAKE = 6, 7, 8

-- The reply that ends the admission ({ -1 } state lost, { -2, record } already requested, or the window's
-- refusal or pre-queue reply), else nil with the stock and the state read (admissionState).
local function admissionChecks(stateKey, usersKey, prequeueKey, userId, requestedAtMs)
  local state = admissionState(stateKey)
  local stock = tonumber(state[STOCK])
  if not stock then return { -1 } end

  local closed = closedReply(state, requestedAtMs)
  if closed then return closed end

  local existing = redis.call('HGET', usersKey, userId)
  if existing then return { -2, existing } end

  local refused = openingReply(state, stateKey, usersKey, prequeueKey, userId, requestedAtMs, stock)
  if refused then return refused end
  return nil, stock, state
end

-- Runs `admitOne(userId, requestedAtMs)` for each user in ARGV[2..] (the caller sends at most 128), each
-- under pcall: a failing admission answers an error reply in its own place and the others still run. One
-- TIME for the call: it is atomic, so its admissions happen at one instant. The replies in ARGV's order.
local function admitEach(admitOne)
  local requestedAtMs = nowMs()
  local replies = {}
  for i = 2, #ARGV do
    local ok, reply = pcall(admitOne, ARGV[i], requestedAtMs)
    if ok then
      replies[i - 1] = reply
    elseif type(reply) == 'table' and reply.err then
      replies[i - 1] = reply
    else
      replies[i - 1] = { err = tostring(reply) }
    end
  end
  return replies
end
