--[[
  Counts one decided request of the `sync` mode in the coupon's state hash, after Postgres decided it.
  Issued: the stock and seq are set to Postgres's absolute values (taken under the coupon's row lock), so
  they converge even after a lost update. Never creates the state hash: a partial one would hide a loss
  from the "stock is missing -> rebuild" rule.

  KEYS[1] state hash: requested, soldOut, stock, seq

  ARGV[1] 'issued' or 'soldOut'
  ARGV[2] stock left in Postgres (issued only)
  ARGV[3] the position just issued (issued only)

  Returns { 1 } counted, or { -1 } the coupon has no state in Redis
]]
if redis.call('HEXISTS', KEYS[1], 'stock') == 0 then return { -1 } end
redis.call('HINCRBY', KEYS[1], 'requested', 1)
if ARGV[1] == 'soldOut' then
  redis.call('HINCRBY', KEYS[1], 'soldOut', 1)
else
  redis.call('HSET', KEYS[1], 'stock', ARGV[2], 'seq', ARGV[3])
end
return { 1 }
