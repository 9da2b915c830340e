--[[
  Records decisions (ISSUED or SOLD_OUT) after Postgres committed them, and takes the users off the
  waiting queue (see includes/decide.lua: a record only moves forward).

  KEYS[1] users hash: userId -> record
  KEYS[2] queue sorted set (queue mode; absent in the other modes)
  KEYS[3] state hash: issued (count of ISSUED records written here, while the state is loaded)

  ARGV    pairs: userId, record ("I|..." or "X|...")

  Returns { changed } the number of records that moved forward.
]]
--- @include "decide"

return { recordDecisions(KEYS[1], KEYS[2], KEYS[3], 1) }
