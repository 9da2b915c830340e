--[[
  Admits users to a coupon in the `stream` and `kafka` modes, in one round trip and atomically (the
  users of one event-loop turn share the call, each admitted in turn as if alone): a new user reserves
  one unit of stock, gets the next position and is appended to the coupon's stream (the outbox the
  writers or the Kafka relay drain). Every check comes before the first write.

  KEYS[1] state hash: stock, seq (last position given), soldOut (requests refused as sold out), wake (set
          while the stream has entries its drainers were told about)
  KEYS[2] users hash: userId -> record "A|position|requestedAtMs||"
  KEYS[3] stream of accepted requests

  KEYS[4] pre-queue sorted set: userId scored by arrival (LATE_BASE + arrival after the start)

  ARGV[1] wake-up channel: the stream's key is published on it when `wake` was not set (the first entry
          since a drainer last cleared it), so idle coupons cost their drainers nothing

  ARGV[2..] the users to admit, in request order (at most 128)

  Returns one reply per user, in ARGV's order (an error reply in the place of an admission that failed):
    { position, requestedAtMs }  accepted
    { -1 }                       the coupon has no state in Redis (lost): rebuild it, then retry
    { -2, record }               the user already requested; their current record
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

  if call.stock <= 0 then
    call.soldOut = call.soldOut + 1
    return SOLD_OUT
  end

  local position = call.seq + 1
  local positionText = string.format('%d', position)
  redis.call('HSET', KEYS[2], userId, encodeRecord('A', positionText, call.nowText))
  -- One field "userId|position|requestedAtMs": a field per value cost Redis and the writers a string each.
  redis.call('XADD', KEYS[3], '*', 'e', streamEntryValue(userId, positionText, call.nowText))
  call.stock = call.stock - 1
  admitted(call, position)
  return { position, call.now }
end

local call = admissionCall(KEYS[1])
return finishAdmissions(call, admitEach(call, admitOne), KEYS[1], true, ARGV[1], KEYS[3])
