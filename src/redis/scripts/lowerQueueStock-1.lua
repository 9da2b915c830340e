--[[
  Lowers a queue-mode coupon's Redis stock to what Postgres has left, so admission answers SOLD_OUT at
  once when it reaches 0. Never raises it (a late drainer may hold an older count) and never creates
  the state hash (a missing state means "rebuild from Postgres", which a lone stock field would hide).

  KEYS[1] state hash: stock

  ARGV[1] stock remaining in Postgres

  Returns { stock } the stock now in Redis, or { -1 } the coupon has no state in Redis
]]
local current = redis.call('HGET', KEYS[1], 'stock')
if not current then return { -1 } end
local stock = tonumber(ARGV[1])
if stock < tonumber(current) then
  redis.call('HSET', KEYS[1], 'stock', stock)
  return { stock }
end
return { tonumber(current) }
