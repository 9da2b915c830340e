--[[
  Closes a coupon nobody has requested to admissions, before it is deleted (DELETE /admin/coupons/{id}):
  atomically with every admission, either some request already reached Redis (refused: the coupon has a
  requester whose answer must hold), or the stock is set to 0 so every later admission answers sold out
  and none is accepted for a coupon about to vanish. A coupon without state here (sync, or never loaded)
  is left to Postgres's check.

  KEYS[1] state hash: stock, seq, soldOut, requested
  KEYS[2] users hash

  Returns { 1 } closed, { 0 } someone requested it, { -1 } the coupon has no state in Redis
]]
if redis.call('HEXISTS', KEYS[1], 'stock') == 0 then return { -1 } end
local function count(field) return tonumber(redis.call('HGET', KEYS[1], field) or '0') end
if count('seq') > 0 or count('soldOut') > 0 or count('requested') > 0 or redis.call('HLEN', KEYS[2]) > 0 then
  return { 0 }
end
redis.call('HSET', KEYS[1], 'stock', 0, 'retiring', 1)
return { 1 }
