--[[
  Releases a lease (SET key token NX PX ms) only if this holder still owns it.

  KEYS[1] lease key
  ARGV[1] holder token

  Returns { 1 } released, { 0 } not held by this token (expired, or taken over)
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return { 1 }
end
return { 0 }
