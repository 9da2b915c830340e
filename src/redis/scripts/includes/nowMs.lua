-- The Redis server's clock in milliseconds: every process shares it, so no app clock decides an order.
local function nowMs()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end
