--[[
  Acknowledges a written batch of a coupon's stream and trims, in one call, every entry the group is done
  with: XTRIM MINID up to the smaller of the oldest entry still pending (read, not yet written) and the
  entry after the group's last delivered one. An entry below that bound was delivered and is no longer
  pending, so it is written (or dead-lettered); nothing pending or never read is trimmed. Trimming frees
  whole listpack nodes, where XDEL marked each entry deleted one by one.

  The stream has one consumer group (stream mode: the writers; the Kafka relay keeps its entries).

  KEYS[1] the coupon's stream
  ARGV[1] consumer group
  ARGV[2..] the entry ids to acknowledge

  Returns { acknowledged, trimmed }
]]
local function parseId(id)
  local dash = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
end

local function isBefore(aMs, aSeq, bMs, bSeq)
  return aMs < bMs or (aMs == bMs and aSeq < bSeq)
end

local acknowledged = redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 2))

-- The entry after the group's last delivered one (no group: nothing is trimmed).
local boundMs, boundSeq
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
for _, group in ipairs(groups) do
  local fields = {}
  for i = 1, #group, 2 do fields[group[i]] = group[i + 1] end
  if fields['name'] == ARGV[1] then boundMs, boundSeq = parseId(fields['last-delivered-id']) end
end
if not boundMs then return { acknowledged, 0 } end
boundSeq = boundSeq + 1

local pending = redis.call('XPENDING', KEYS[1], ARGV[1])
if pending[2] then
  local ms, seq = parseId(pending[2])
  if isBefore(ms, seq, boundMs, boundSeq) then boundMs, boundSeq = ms, seq end
end

local trimmed = redis.call('XTRIM', KEYS[1], 'MINID', string.format('%d-%d', boundMs, boundSeq))
return { acknowledged, trimmed }
