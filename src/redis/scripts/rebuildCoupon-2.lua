--[[
  Restores a coupon's Redis state from Postgres (plus what its stream still holds) after Redis lost it.
  Called in chunks: each call merges user records (never moving one backwards), and the last call,
  with a stock, recreates the state hash, which is what lets admissions run again.

  KEYS[1] state hash
  KEYS[2] users hash

  ARGV[1] stock to restore, or '' for a chunk of users only
  ARGV[2] seq (the highest position already given)
  ARGV[3] issued (rows in Postgres)
  ARGV[4..] pairs: userId, record

  Returns { 1 } the state was restored by this call, { 0 } otherwise (a chunk, or another process won)
]]
for i = 4, #ARGV, 2 do
  local user, record = ARGV[i], ARGV[i + 1]
  local current = redis.call('HGET', KEYS[2], user)
  local letter = current and string.sub(current, 1, 1)
  if not current or ((letter == 'P' or letter == 'A') and string.sub(record, 1, 1) ~= letter) then
    redis.call('HSET', KEYS[2], user, record)
  end
end
if ARGV[1] == '' or redis.call('HEXISTS', KEYS[1], 'stock') == 1 then return { 0 } end
redis.call('HSET', KEYS[1], 'stock', ARGV[1], 'seq', ARGV[2], 'issued', ARGV[3], 'rebuiltAt', redis.call('TIME')[1])
return { 1 }
