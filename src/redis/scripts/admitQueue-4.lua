--[[
  Admits users to a coupon's waiting queue in the `queue` mode, in one round trip and atomically (the
  users of one event-loop turn share the call, each admitted in turn as if alone).
  Unlike `stream` no stock is reserved here: the scheduler issues from the queue head while Postgres
  has stock, and lowers the state's stock as it goes, so only once it reaches 0 are requests refused.
  The score is the Redis-side sequence (never an app clock), so queue order is admission order.

  KEYS[1] state hash: stock (Postgres remaining, kept by the scheduler), seq (last position), soldOut,
          wake (set while the queue has users the scheduler was told about)
  KEYS[2] users hash: userId -> record "P|position|requestedAtMs||"
  KEYS[3] queue sorted set: userId scored by position

  KEYS[4] pre-queue sorted set: userId scored by arrival (LATE_BASE + arrival after the start)

  ARGV[1] wake-up channel: the queue's key is published on it when `wake` was not set (the first user
          since the scheduler last cleared it), so idle coupons cost the scheduler nothing

  ARGV[2..] the users to admit, in request order (at most 128)

  Returns one reply per user, in ARGV's order (an error reply in the place of an admission that failed):
    { position, requestedAtMs }  queued
    { -1 }                       the coupon has no state in Redis (lost): rebuild it, then retry
    { -2, record }               the user already requested (queued, issued or sold out); their record
    { -3 }                       sold out
    { -4 }                       the issue window has not opened (Redis TIME) and no pre-queue is open
    { -5 }                       the issue window has closed
    { -6 }                       the coupon is paused
    { -7, place, requestedAtMs } pre-queued (WAITING): moved into admission at the start
]]
--- @include "admission"

local function admitOne(call, userId)
  local refused = userChecks(call, KEYS[1], KEYS[2], KEYS[4], userId)
  if refused then return refused end

  -- Still queued although its record was lost: restore the record rather than queue them twice.
  local queued = redis.call('ZSCORE', KEYS[3], userId)
  if queued then
    local record = encodeRecord('P', queued, call.nowText)
    redis.call('HSET', KEYS[2], userId, record)
    return { -2, record }
  end

  if call.stock <= 0 then
    call.soldOut = call.soldOut + 1
    return SOLD_OUT
  end

  local position = call.seq + 1
  redis.call('ZADD', KEYS[3], 'NX', position, userId)
  redis.call('HSET', KEYS[2], userId, encodeRecord('P', string.format('%d', position), call.nowText))
  admitted(call, position)
  return { position, call.now }
end

local call = admissionCall(KEYS[1])
return finishAdmissions(call, admitEach(call, admitOne), KEYS[1], false, ARGV[1], KEYS[3])
