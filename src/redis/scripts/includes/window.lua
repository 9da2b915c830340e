-- The coupon's issue window, pause flag and pre-queue, as fields of its state hash (written by
-- restoreState-1.lua and setSchedule-1.lua), checked against Redis's clock: no process clock decides who is
-- early or late. Needs the "record" include.

-- Pre-queue entries that came after the start, while the pre-queue was still being moved, are scored from
-- here: behind every entry from before the start, in their own arrival order.
local LATE_BASE = 1000000000000

-- Puts the user in the coupon's pre-queue (sorted set scored by arrival) with a WAITING record.
local function enterPrequeue(stateKey, usersKey, prequeueKey, userId, now, late)
  local place = redis.call('HINCRBY', stateKey, 'prequeueSeq', 1)
  local score = place
  if late then score = LATE_BASE + place end
  redis.call('ZADD', prequeueKey, 'NX', score, userId)
  redis.call('HSET', usersKey, userId, encodeRecord('W', place, now))
  return { -7, place, now }
end

-- The schedule `w` below is the state hash's fields opensAt, closesAt, paused, prequeueOpensAt and
-- prequeueDone, in this order, as its first five values (admission.lua reads them in its one HMGET).

-- { -6 } paused or { -5 } ended, else nil: checked before anything else about the user, so after the end
-- (or while paused) everyone, holder or not, gets the same answer.
local function closedReply(w, now)
  if w[3] == '1' then return { -6 } end
  local closesAt = tonumber(w[2])
  if closesAt and now >= closesAt then return { -5 } end
  return nil
end

-- nil when the request (of a user with no record, in a sale neither paused nor ended: closedReply) is
-- admitted by the mode's usual rules now; else the reply that refuses it ({ -4 } not started) or that
-- pre-queued it ({ -7, place, requestedAtMs }).
local function openingReply(w, stateKey, usersKey, prequeueKey, userId, now, stock)
  local opensAt = tonumber(w[1])
  local prequeueOpensAt = tonumber(w[4])
  if opensAt and now < opensAt then
    if prequeueOpensAt and now >= prequeueOpensAt then
      return enterPrequeue(stateKey, usersKey, prequeueKey, userId, now, false)
    end
    return { -4 }
  end
  -- Started, but the pre-queue is not all moved yet: in line right behind it (unless the stock is gone).
  if prequeueOpensAt and not w[5] and stock > 0 then
    return enterPrequeue(stateKey, usersKey, prequeueKey, userId, now, true)
  end
  return nil
end
