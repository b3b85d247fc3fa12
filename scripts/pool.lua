-- pool.lua - a worker pool: four workers square numbers; calls made from
-- many tasks at once are spread over them. One job crashes its worker,
-- which is replaced; the call fails with a clear error.
--   lipc scripts/pool.lua
local lipc = require "lipc"
local fork = require "fork"

local dir = arg and arg[0] and arg[0]:match("^(.*)/[^/]*$") or "scripts"
local pool = fork.pool(dir .. "/pool_worker.lua", {size = 4})
local results, done, left = {}, lipc.cond(), 20
for i = 1, 20 do
  lipc.go(function()
    results[i] = pool:call({square = i})
    left = left - 1
    if left == 0 then done:signal() end
  end)
end
if left > 0 then done:wait() end
local sum = 0
for i = 1, 20 do sum = sum + results[i] end
print("sum of squares 1..20 = " .. sum)
local r, err, code = pool:call({crash = true})
print("crash call: " .. tostring(r) .. ", " .. tostring(code) .. ", " .. tostring(err ~= nil))
print("after crash: " .. pool:call({square = 12}))
pool:close()
print("pool closed")
