-- ipc_idle (lipc only): what an idle process with open channels costs.
-- The parent forks this script, makes the channel hot (200 round trips),
-- then both sides sit with nothing to read for N milliseconds. The figure
-- is the CPU both processes ran in that time, as a share of one CPU.
--   lipc ipc_idle.lua [ms]   -> RESULT ipc_idle <percent> %
local C = dofile((debug.getinfo(1, "S").source:match("^[@=]?(.*/)") or "./") .. "common.lua")
local lipc = require "lipc"
local fork = require "fork"

local parent = fork.parent
if parent then
  while true do
    local m = parent:receive()
    if m == nil then break end
    parent:send(m)
  end
  return
end

local argv = C.args(...)
local ms = C.count(argv[1], 10000)
local worker = C.check(fork(C.script(), {"child"}))
for i = 1, 200 do
  worker:send(C.small(i))
  local r = worker:receive()
  if r == nil or r.seq ~= i then error("parent: bad reply") end
end
lipc.sleep(20) -- the last poll window ends
local p0, c0 = C.cpu_ns(), C.cpu_ns(worker.pid)
if not (p0 and c0) then error("no /proc/<pid>/schedstat here") end
local t0 = C.now()
lipc.sleep(ms)
local p1, c1 = C.cpu_ns(), C.cpu_ns(worker.pid)
local t1 = C.now()
C.result("ipc_idle", (p1 - p0 + c1 - c0) / (t1 - t0) * 100, "%", 4)
worker:disconnect()
