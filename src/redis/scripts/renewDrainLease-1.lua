--[[
  Extends a drain lease (SET key token NX PX ms) between batches, only if this holder still owns it.

  KEYS[1] lease key
  ARGV[1] holder token
  ARGV[2] new time to live in milliseconds

  Returns { 1 } extended, { 0 } not held by this token (expired, or taken over)
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return { 1 }
end
return { 0 }
