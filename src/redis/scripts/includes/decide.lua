-- Moves users' records forward (decisions written after Postgres committed them) and takes them off the
-- waiting queue. A record only moves forward: a pending/accepted record is replaced, a decided one kept, so
-- a replayed batch or a late writer can never turn ISSUED back into ACCEPTED.
--- @include "record"

-- recordDecisions(usersKey, queueKey, stateKey, first): ARGV[first..] are pairs userId, record ("I|..." or
-- "X|..."); returns how many records moved forward. Counts the ISSUED ones in the state hash's `issued`.
local function recordDecisions(usersKey, queueKey, stateKey, first)
  -- HMGET and HSET a chunk of users at a time: one command call per chunk rather than two per user (the
  -- writers send thousands of decisions per batch). Chunks stay well inside Lua's unpack limit.
  local CHUNK = 1000
  local changed, issued = 0, 0
  local dequeue = {}
  for from = first, #ARGV, 2 * CHUNK do
    local last = math.min(from + 2 * CHUNK - 1, #ARGV)
    local users = {}
    for i = from, last, 2 do users[#users + 1] = ARGV[i] end
    local currents = redis.call('HMGET', usersKey, unpack(users))
    local writes, seen = {}, {}
    for j = 1, #users do
      local record = ARGV[from + 2 * j - 1]
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
    if #writes > 0 then redis.call('HSET', usersKey, unpack(writes)) end
    if #dequeue >= CHUNK then
      redis.call('ZREM', queueKey, unpack(dequeue))
      dequeue = {}
    end
  end
  if #dequeue > 0 then redis.call('ZREM', queueKey, unpack(dequeue)) end
  -- A lost state is left lost (a lone counter would hide the loss from the "stock is missing" rule); its
  -- rebuild counts the rows.
  if issued > 0 and redis.call('HEXISTS', stateKey, 'stock') == 1 then
    redis.call('HINCRBY', stateKey, 'issued', issued)
  end
  return changed
end
