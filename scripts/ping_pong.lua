-- ping_pong.lua - a parent and a forked copy of itself bounce a counter
-- N times and report the round trips per second.
--   lipc scripts/ping_pong.lua [N]
local lipc = require "lipc"
local fork = require "fork"

local parent = fork.parent
if parent then
  parent:on("message", function(n) parent:send(n + 1) end)
  return
end

local n = tonumber((...)) or 10000
local child = assert(fork(arg[0], {}))
local t0 = lipc.hrtime()
local v = 0
for _ = 1, n do
  child:send(v)
  v = child:receive()
end
local secs = (lipc.hrtime() - t0) / 1e9
assert(v == n, "lost a ping")
print(("ping-pong: %d round trips, %.0f rt/s"):format(n, n / secs))
child:disconnect()
