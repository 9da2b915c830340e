--[[
  Lowers a queue-mode coupon's Redis stock to what Postgres has left, so admission answers SOLD_OUT at
  once when it reaches 0. Never raises it (a late drainer may hold an older count) and never creates
  the state hash (a missing state means "rebuild from Postgres", which a lone stock field would hide).
  A count read under a quantity older than the state's (an admin added stock since, addStock-1.lua) is
  ignored: it would take the new units back.

  KEYS[1] state hash: stock, quantity

  ARGV[1] stock remaining in Postgres
  ARGV[2] (optional) the quantity that count was read under

  Returns { stock } the stock now in Redis, or { -1 } the coupon has no state in Redis
]]
local current = redis.call('HGET', KEYS[1], 'stock')
if not current then return { -1 } end
local known = redis.call('HGET', KEYS[1], 'quantity')
if ARGV[2] and known and tonumber(ARGV[2]) < tonumber(known) then return { tonumber(current) } end
local stock = tonumber(ARGV[1])
if stock < tonumber(current) then
  redis.call('HSET', KEYS[1], 'stock', stock)
  return { stock }
end
return { tonumber(current) }
