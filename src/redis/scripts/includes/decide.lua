-- Moves users' records forward (decisions written after Postgres committed them) and takes them off the
-- waiting queue. A record only moves forward: a pending/accepted record is replaced, a decided one kept, so
-- a replayed batch or a late writer can never turn ISSUED back into ACCEPTED.
--- @include "record"

-- recordDecisions(usersKey, queueKey, stateKey, first): ARGV[first..] are pairs userId, record ("I|..." or
-- "X|..."); returns how many records moved forward. Counts the ISSUED ones in the state hash's `issued`.
local function recordDecisions(usersKey, queueKey, stateKey, first)
  -- HMGET and HSET a chunk of users at a time: one command call per chunk rather than two per user (the
  -- writers send thousands of decisions per batch). Chunks stay well inside Lua's unpack limit. The loop
  -- keeps its own counts and compares status bytes (no `#t`, no one-letter strings): it runs per decision.
  local CHUNK = 1000
  local byte = string.byte
  local W, P, A, I = byte('W'), byte('P'), byte('A'), byte('I')
  local changed, issued = 0, 0
  local dequeue, queued = {}, 0
  local argc = #ARGV
  for from = first, argc, 2 * CHUNK do
    local last = math.min(from + 2 * CHUNK - 1, argc)
    local users, count = {}, 0
    for i = from, last, 2 do
      count = count + 1
      users[count] = ARGV[i]
    end
    local currents = redis.call('HMGET', usersKey, unpack(users))
    local writes, written, seen = {}, 0, {}
    for j = 1, count do
      local user, current = users[j], currents[j]
      local letter = current and byte(current, 1)
      -- A user twice in one chunk: the first decision wins, as if written one after the other.
      if seen[user] then
        letter = nil
        queued = queued + 1
        dequeue[queued] = user
      else
        if not current or letter == W or letter == P or letter == A then
          local record = ARGV[from + 2 * j - 1]
          seen[user] = true
          writes[written + 1] = user
          writes[written + 2] = record
          written = written + 2
          changed = changed + 1
          if byte(record, 1) == I then issued = issued + 1 end
        end
        -- 'A' records are stream/kafka admissions, never queued: spare the ZREM on the writers' hot path.
        if letter ~= A then
          queued = queued + 1
          dequeue[queued] = user
        end
      end
    end
    if written > 0 then redis.call('HSET', usersKey, unpack(writes, 1, written)) end
    if queued >= CHUNK then
      redis.call('ZREM', queueKey, unpack(dequeue, 1, queued))
      dequeue, queued = {}, 0
    end
  end
  if queued > 0 then redis.call('ZREM', queueKey, unpack(dequeue, 1, queued)) end
  -- A lost state is left lost (a lone counter would hide the loss from the "stock is missing" rule); its
  -- rebuild counts the rows.
  if issued > 0 and redis.call('HEXISTS', stateKey, 'stock') == 1 then
    redis.call('HINCRBY', stateKey, 'issued', issued)
  end
  return changed
end
