-- Acknowledges a written batch of a coupon's stream and trims, in one call, every entry the group is done
-- with: XTRIM MINID up to the smaller of the oldest entry still pending (read, not yet written) and the
-- entry after the group's last delivered one. An entry below that bound was delivered and is no longer
-- pending, so it is written (or dead-lettered); nothing pending or never read is trimmed. Trimming frees
-- whole listpack nodes, where XDEL marked each entry deleted one by one. For a stream with one group.

local function parseStreamId(id)
  local dash = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
end

local function isBeforeId(aMs, aSeq, bMs, bSeq)
  return aMs < bMs or (aMs == bMs and aSeq < bSeq)
end

-- ackAndTrim(stream, group, first, last): XACKs ARGV[first..last]; returns { acknowledged, trimmed }.
local function ackAndTrim(stream, group, first, last)
  -- A chunk of ids per XACK: unpack fails past about 8,000 values, and a batch may be larger.
  local CHUNK = 1000
  local acknowledged = 0
  for from = first, last, CHUNK do
    local to = math.min(from + CHUNK - 1, last)
    acknowledged = acknowledged + redis.call('XACK', stream, group, unpack(ARGV, from, to))
  end

  -- The entry after the group's last delivered one (no group: nothing is trimmed).
  local boundMs, boundSeq
  local groups = redis.call('XINFO', 'GROUPS', stream)
  for _, info in ipairs(groups) do
    local fields = {}
    for i = 1, #info, 2 do fields[info[i]] = info[i + 1] end
    if fields['name'] == group then boundMs, boundSeq = parseStreamId(fields['last-delivered-id']) end
  end
  if not boundMs then return { acknowledged, 0 } end
  boundSeq = boundSeq + 1

  local pending = redis.call('XPENDING', stream, group)
  if pending[2] then
    local ms, seq = parseStreamId(pending[2])
    if isBeforeId(ms, seq, boundMs, boundSeq) then boundMs, boundSeq = ms, seq end
  end

  local trimmed = redis.call('XTRIM', stream, 'MINID', string.format('%d-%d', boundMs, boundSeq))
  return { acknowledged, trimmed }
end
