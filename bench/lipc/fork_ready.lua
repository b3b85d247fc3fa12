-- fork_ready (lipc): the time from fork() to the child's first message
-- (worker:receive() returning it); the child sends a small table as its first
-- statement and ends. The parent then waits for the disconnect (receive
-- returning nil) and the exit before the next run. Median of K runs.
--   lipc fork_ready.lua [runs]   -> RESULT fork_ready <ms> ms
local C = dofile((debug.getinfo(1, "S").source:match("^[@=]?(.*/)") or "./") .. "common.lua")
local fork = require "fork"

local parent = fork.parent
if parent then
  parent:send(C.small(1))
  return -- queued messages are flushed before the child exits (DESIGN 3)
end

local argv = C.args(...)
local k = C.count(argv[1], 20)
local times = {}
local script = C.script()
for i = 1, k do
  local t0 = C.now()
  local worker = C.check(fork(script, {"child"}))
  local m = worker:receive()
  times[i] = (C.now() - t0) / 1e6
  if m == nil or m.seq ~= 1 then error("bad ready message") end
  if worker:receive() ~= nil then error("unexpected second message") end
  if worker.wait then
    local code = worker:wait()
    if code ~= 0 then error("child exited with " .. tostring(code)) end
  end
end
table.sort(times)
C.result("fork_ready", times[k // 2 + 1], "ms", 3)
