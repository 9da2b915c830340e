-- A user's issuance record in the users hash: "S|position|requestedAtMs|userCouponId|decidedAtMs", S one of
-- W (waiting in the pre-queue, the position field its arrival place), P (pending), A (accepted), I (issued), X (sold out). The TypeScript side of the codec is in
-- issuance/core/record.ts; a record only ever moves forward (P/A -> I or X).
local function encodeRecord(letter, position, requestedAtMs, userCouponId, decidedAtMs)
  return letter .. '|' .. position .. '|' .. requestedAtMs .. '|' .. (userCouponId or '') .. '|' .. (decidedAtMs or '')
end

-- A stream entry's one field value, "userId|position|requestedAtMs" (user ids hold no '|'): written by the
-- admissions, read by issuance/stream/stream-entries.ts.
local function streamEntryValue(userId, position, requestedAtMs)
  return userId .. '|' .. position .. '|' .. requestedAtMs
end

-- The record's status letter, or nil for no record.
local function recordLetter(record)
  return record and string.sub(record, 1, 1)
end

-- True while the request waits for a decision (W, P or A): only such a record may be replaced.
local function isUndecided(letter)
  return letter == 'W' or letter == 'P' or letter == 'A'
end

-- The record's requestedAtMs field ('' when the record has none).
local function recordRequestedAt(record)
  return string.match(record, '^.|[^|]*|([^|]*)') or ''
end
