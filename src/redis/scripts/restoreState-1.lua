--[[
  Recreates a coupon's state hash after its records were merged (mergeRecords-1.lua): the last step of a
  rebuild, and what lets admissions run again (a state hash with a stock is what "loaded" means). Never
  overwrites a state another process restored first.

  KEYS[1] state hash

  ARGV[1] stock to restore
  ARGV[2] seq (the highest position already given)
  ARGV[3] issued (rows in Postgres)

  Returns { 1 } the state was restored by this call, { 0 } it was already there
]]
if redis.call('HEXISTS', KEYS[1], 'stock') == 1 then return { 0 } end
redis.call('HSET', KEYS[1], 'stock', ARGV[1], 'seq', ARGV[2], 'issued', ARGV[3], 'rebuiltAt', redis.call('TIME')[1])
return { 1 }
