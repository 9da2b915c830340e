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

-- HMGET and HSET a chunk of users at a time: one command call per chunk rather than two per user (the
-- writers send thousands of decisions per batch). Chunks stay well inside Lua's unpack limit.
local CHUNK = 1000
local changed, issued = 0, 0
local dequeue = {}
for first = 1, #ARGV, 2 * CHUNK do
  local last = math.min(first + 2 * CHUNK - 1, #ARGV)
  local users = {}
  for i = first, last, 2 do users[#users + 1] = ARGV[i] end
  local currents = redis.call('HMGET', KEYS[1], unpack(users))
  local writes, seen = {}, {}
  for j = 1, #users do
    local record = ARGV[first + 2 * j - 1]
    local letter = recordLetter(currents[j])
    -- A user twice in one chunk: the first decision wins, as if written one after the other.
    if seen[users[j]] then
      letter = 'decided'
    elseif not currents[j] or isUndecided(letter) then
      seen[users[j]] = true
      writes[#writes + 1] = users[j]
      writes[#writes + 1] = record
      changed = changed + 1
      if recordLetter(record) == 'I' then issued = issued + 1 end
    end
    -- 'A' records are stream/kafka admissions, never queued: spare the ZREM on the writers' hot path.
    if letter ~= 'A' then dequeue[#dequeue + 1] = users[j] end
  end
  if #writes > 0 then redis.call('HSET', KEYS[1], unpack(writes)) end
  if #dequeue >= CHUNK then
    redis.call('ZREM', KEYS[2], unpack(dequeue))
    dequeue = {}
  end
end
if #dequeue > 0 then redis.call('ZREM', KEYS[2], unpack(dequeue)) end
-- A lost state is left lost (a lone counter would hide the loss from the "stock is missing" rule); its
-- rebuild counts the rows.
if issued > 0 and redis.call('HEXISTS', KEYS[3], 'stock') == 1 then
  redis.call('HINCRBY', KEYS[3], 'issued', issued)
end
return { changed }
