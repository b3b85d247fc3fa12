-- pool (lipc): fork.pool throughput. W workers (fork.serve), 4 x W tasks
-- calling pool:call in a loop until the time is up; each call carries a
-- number and its reply must be that number. With WORK_US > 0 the worker
-- spins that many microseconds of its own CPU time (os.clock) per call, the
-- same work the C limit (pool_limit) and Node's workers do.
--   lipc pool.lua <workers> <work_us> [ms]
--     -> RESULT pool <n> calls/s, pool_calls <n> calls, pool_parent_us <n> us/call
local C = dofile((debug.getinfo(1, "S").source:match("^[@=]?(.*/)") or "./") .. "common.lua")
local lipc = require "lipc"
local fork = require "fork"

local argv = C.args(...)
if fork.parent then
  local work = tonumber(argv[2]) / 1e6
  local clock = os.clock
  fork.serve(function(x)
    if work > 0 then
      local stop = clock() + work
      repeat until clock() >= stop
    end
    return x
  end)
  return
end

local workers = math.tointeger(tonumber(argv[1])) or 2
local work_us = tonumber(argv[2]) or 0
local ms = C.count(argv[3], 1000)
local pool = fork.pool(C.script(), {size = workers, args = {"worker", work_us}})
local callers = 4 * workers

-- runs `callers` tasks, each making calls until `stop` (hrtime) or `limit`
-- calls; returns the calls made
local function load(stop, limit)
  local calls, left, done = 0, callers, lipc.cond()
  for c = 1, callers do
    lipc.go(function()
      local i = c
      while calls < limit and (not stop or C.now() < stop) do
        local r = C.check(pool:call(i))
        if r ~= i then error("pool: reply " .. tostring(r) .. " for call " .. i) end
        calls = calls + 1
        i = i + callers
      end
      left = left - 1
      if left == 0 then done:signal() end
    end)
  end
  if left > 0 then done:wait() end
  return calls
end

load(nil, 4 * callers) -- every worker up and warm
local t0, cpu0 = C.now(), os.clock()
local n = load(t0 + ms * 1000000, math.huge)
C.result("pool", n / C.secs(t0, C.now()), "calls/s")
C.result("pool_calls", n, "calls") -- for per-call costs (callgrind)
-- the parent's CPU time (user + system) per call: its ceiling, were it
-- given a CPU of its own, is 10^6 / this
C.result("pool_parent_us", (os.clock() - cpu0) * 1e6 / n, "us/call", 2)
pool:close()
