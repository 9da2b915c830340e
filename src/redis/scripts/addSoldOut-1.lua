--[[
  Adds refusals answered from a process's memory (see issuance/core/sold-out-memo.ts) to a coupon's
  `soldOut` counter, unless Redis lost the coupon's state: a lone counter would make a partial state
  hash that hides the loss from the "stock is missing → rebuild" check.

  KEYS[1] state hash: stock, soldOut

  ARGV[1] refusals to add

  Returns { soldOut } the counter after the addition, or { -1 } the coupon has no state in Redis
]]
if redis.call('HEXISTS', KEYS[1], 'stock') == 0 then return { -1 } end
return { redis.call('HINCRBY', KEYS[1], 'soldOut', ARGV[1]) }
