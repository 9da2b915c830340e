--[[
  Changes a loaded coupon's schedule in its state hash: the issue window, the pause flag and the pre-queue
  (after an admin's change). The admission scripts read these fields against Redis's clock. Never creates
  the state (a rebuild writes the schedule from Postgres), and never undoes a pre-queue already moved.

  KEYS[1] state hash

  ARGV[1] opensAt (ms), ARGV[2] closesAt (ms), ARGV[3] paused ('1' or '0')
  ARGV[4] prequeueOpensAt (ms, '' for no pre-queue), ARGV[5] prequeueOrder ('arrival', 'shuffle' or '')

  Returns { 1 } written, { -1 } the coupon has no state in Redis (nothing to change)
]]
if redis.call('HEXISTS', KEYS[1], 'stock') == 0 then return { -1 } end
redis.call('HSET', KEYS[1], 'opensAt', ARGV[1], 'closesAt', ARGV[2], 'paused', ARGV[3])
if ARGV[4] == '' then
  redis.call('HDEL', KEYS[1], 'prequeueOpensAt', 'prequeueOrder')
else
  redis.call('HSET', KEYS[1], 'prequeueOpensAt', ARGV[4], 'prequeueOrder', ARGV[5])
end
return { 1 }
