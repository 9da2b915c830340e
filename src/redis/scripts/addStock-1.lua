--[[
  Adds units to a coupon's Redis stock after an admin raised its quantity in Postgres (PATCH
  /admin/coupons/{id}), atomically with every admission: the next admissions take the new units in arrival
  order. Only when the state is loaded: a lost state is rebuilt from Postgres's new quantity anyway, and a
  lone stock field would hide the loss. The state remembers the quantity it was given, so a repeated call
  for the same quantity adds nothing, and a late lowerQueueStock computed from the old quantity is ignored.

  KEYS[1] state hash: stock, quantity

  ARGV[1] the new quantity (Postgres, committed)
  ARGV[2] the quantity before the change (used when the state does not know its quantity yet)

  Returns { stock } the stock after the addition, or { -1 } the coupon has no state in Redis
]]
if redis.call('HEXISTS', KEYS[1], 'stock') == 0 then return { -1 } end
local newQuantity = tonumber(ARGV[1])
local known = tonumber(redis.call('HGET', KEYS[1], 'quantity') or ARGV[2])
if newQuantity <= known then return { tonumber(redis.call('HGET', KEYS[1], 'stock')) } end
redis.call('HSET', KEYS[1], 'quantity', newQuantity)
return { redis.call('HINCRBY', KEYS[1], 'stock', newQuantity - known) }
