-- What every admission script (admitStream-4.lua, admitQueue-4.lua) shares: the call's view of the coupon,
-- and the checks each user goes through first, in this order (the contract's: the window before the mode):
-- the coupon has state in Redis, the sale is neither paused nor ended, the user has no record yet, the
-- window has opened or the pre-queue takes them (window.lua).
--- @include "nowMs"
--- @include "record"
--- @include "window"

-- The call's view of the coupon. The state hash is read once (one HMGET: the schedule first, window.lua's `w`
-- layout, then stock, seq and wake) and written once at the end (finishAdmissions): the script is atomic,
-- and only its own admissions change stock, seq and soldOut, so it keeps them here. Per user that spared
-- two commands and the number-to-text conversions of four fields (Lua formats a number with printf's %.14g,
-- which was a tenth of Redis's time in the admission script). One TIME for the call: its admissions happen
-- at one instant; `nowText` is that instant as the records and stream entries write it.
local function admissionCall(stateKey)
  local state = redis.call('HMGET', stateKey, 'opensAt', 'closesAt', 'paused', 'prequeueOpensAt', 'prequeueDone',
    'stock', 'seq', 'wake')
  local now = nowMs()
  local call = {
    schedule = state,
    stock = tonumber(state[6]),
    seq = tonumber(state[7]) or 0,
    woken = state[8] ~= false,
    wake = false,
    admitted = 0,
    soldOut = 0,
    now = now,
    nowText = string.format('%d', now),
  }
  -- Answers every user of the call alike: the state is lost ({ -1 }), or the sale is paused or has ended.
  if not call.stock then
    call.refusal = { -1 }
  else
    call.refusal = closedReply(state, now)
  end
  return call
end

-- The reply that ends the user's admission ({ -2, record } already requested, or the window's refusal or
-- pre-queue reply), else nil: the mode's rules decide. Only for a call without a refusal.
local function userChecks(call, stateKey, usersKey, prequeueKey, userId)
  local existing = redis.call('HGET', usersKey, userId)
  if existing then return { -2, existing } end
  return openingReply(call.schedule, stateKey, usersKey, prequeueKey, userId, call.now, call.stock)
end

-- A user admitted at `position` (the call's seq moves on; a stream admission also took one unit of stock).
-- The first since the drainers last cleared `wake` has them woken, once, at the end of the call.
local function admitted(call, position)
  call.seq = position
  call.admitted = call.admitted + 1
  if not call.woken then
    call.woken = true
    call.wake = true
  end
end

-- The reply of a request refused as sold out; admitOne counts it in `call.soldOut` and returns this table.
local SOLD_OUT = { -3 }

-- Writes back what the call's admissions changed, once: seq and stock (`withStock`: the stream mode reserves
-- stock at admission), `wake` and its message on `wakeChannel` (naming `wokenKey`) when the call set it, and
-- the sold-out refusals. Should counting those fail (a corrupt counter), only the sold-out replies carry the
-- error, as if each had counted itself.
local function finishAdmissions(call, replies, stateKey, withStock, wakeChannel, wokenKey)
  local fields = { 'seq', call.seq }
  if withStock then
    fields[3] = 'stock'
    fields[4] = call.stock
  end
  if call.wake then
    fields[#fields + 1] = 'wake'
    fields[#fields + 1] = 1
  end
  if call.admitted > 0 then redis.call('HSET', stateKey, unpack(fields)) end
  if call.wake then redis.call('PUBLISH', wakeChannel, wokenKey) end
  if call.soldOut > 0 then
    local ok, failure = pcall(redis.call, 'HINCRBY', stateKey, 'soldOut', call.soldOut)
    if not ok then
      local reply = type(failure) == 'table' and failure.err and failure or { err = tostring(failure) }
      for i = 1, #replies do
        if replies[i] == SOLD_OUT then replies[i] = reply end
      end
    end
  end
  return replies
end

-- Runs `admitOne(call, userId)` for each user in ARGV[2..] (the caller sends at most 128), each under pcall:
-- a failing admission answers an error reply in its own place and the others still run. The replies in
-- ARGV's order.
local function admitEach(call, admitOne)
  local replies = {}
  for i = 2, #ARGV do
    local ok, reply
    if call.refusal then
      ok, reply = true, call.refusal
    else
      ok, reply = pcall(admitOne, call, ARGV[i])
    end
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
