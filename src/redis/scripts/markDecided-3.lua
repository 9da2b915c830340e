--[[
  Records decisions (ISSUED or SOLD_OUT) after Postgres committed them, and takes the users off the
  waiting queue. A record only moves forward: a pending/accepted record is replaced, a decided one kept,
  so a replayed batch or a late writer can never turn ISSUED back into ACCEPTED.

  KEYS[1] users hash: userId -> record
  KEYS[2] queue sorted set (queue mode; absent in the other modes)
  KEYS[3] state hash: issued (count of ISSUED records written here, while the state is loaded)

  ARGV    pairs: userId, record ("I|..." or "X|...")

  Returns { changed } the number of records that moved forward.
]]
--- @include "record"

local changed, issued = 0, 0
for i = 1, #ARGV, 2 do
  local user, record = ARGV[i], ARGV[i + 1]
  local current = redis.call('HGET', KEYS[1], user)
  local letter = recordLetter(current)
  if not current or isUndecided(letter) then
    redis.call('HSET', KEYS[1], user, record)
    changed = changed + 1
    if recordLetter(record) == 'I' then issued = issued + 1 end
  end
  -- 'A' records are stream/kafka admissions, never queued: spare the ZREM on the writers' hot path.
  if letter ~= 'A' then redis.call('ZREM', KEYS[2], user) end
end
-- A lost state is left lost (a lone counter would hide the loss from the "stock is missing" rule); its
-- rebuild counts the rows.
if issued > 0 and redis.call('HEXISTS', KEYS[3], 'stock') == 1 then
  redis.call('HINCRBY', KEYS[3], 'issued', issued)
end
return { changed }
