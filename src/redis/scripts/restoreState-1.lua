--[[
  Recreates a coupon's state hash after its records were merged (mergeRecords-1.lua): the last step of a
  rebuild, and what lets admissions run again (a state hash with a stock is what "loaded" means). Never
  overwrites a state another process restored first. The schedule (window, pause, pre-queue) is written
  with it, so the admission scripts check the window against Redis's clock.

  KEYS[1] state hash

  ARGV[1] stock to restore
  ARGV[2] seq (the highest position already given)
  ARGV[3] issued (rows in Postgres)
  ARGV[4] opensAt (ms), ARGV[5] closesAt (ms), ARGV[6] paused ('1' or '0') (optional: no window check)
  ARGV[7] prequeueOpensAt (ms, '' for no pre-queue), ARGV[8] prequeueOrder ('arrival', 'shuffle' or '')

  Returns { 1 } the state was restored by this call, { 0 } it was already there
]]
if redis.call('HEXISTS', KEYS[1], 'stock') == 1 then return { 0 } end
redis.call('HSET', KEYS[1], 'stock', ARGV[1], 'seq', ARGV[2], 'issued', ARGV[3], 'rebuiltAt', redis.call('TIME')[1])
if ARGV[4] then redis.call('HSET', KEYS[1], 'opensAt', ARGV[4], 'closesAt', ARGV[5], 'paused', ARGV[6]) end
if ARGV[7] and ARGV[7] ~= '' then
  redis.call('HSET', KEYS[1], 'prequeueOpensAt', ARGV[7], 'prequeueOrder', ARGV[8])
end
return { 1 }
