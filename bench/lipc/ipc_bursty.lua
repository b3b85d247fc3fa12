-- ipc_bursty (lipc only): a round trip every millisecond, the traffic
-- where a poll after each message finds nothing. The parent sends a small
-- table, waits for the reply, sleeps 1 ms, N times. The figure is the CPU
-- both processes ran per round trip (lower is better).
--   lipc ipc_bursty.lua [round_trips]   -> RESULT ipc_bursty <us> us/rt
local C = dofile((debug.getinfo(1, "S").source:match("^[@=]?(.*/)") or "./") .. "common.lua")
local lipc = require "lipc"
local fork = require "fork"

local parent = fork.parent
if parent then
  while true do
    local m = parent:receive()
    if m == nil then break end
    parent:send(C.small(m.seq))
  end
  return
end

local argv = C.args(...)
local n = C.count(argv[1], 2000)
local worker = C.check(fork(C.script(), {"child"}))
worker:send(C.small(0))
worker:receive()
local p0, c0 = C.cpu_ns(), C.cpu_ns(worker.pid)
if not (p0 and c0) then error("no /proc/<pid>/schedstat here") end
for i = 1, n do
  worker:send(C.small(i))
  local r = worker:receive()
  if r == nil or r.seq ~= i then error("parent: bad reply") end
  lipc.sleep(1)
end
local p1, c1 = C.cpu_ns(), C.cpu_ns(worker.pid)
C.result("ipc_bursty", (p1 - p0 + c1 - c0) / n / 1000, "us/rt", 2)
worker:disconnect()
