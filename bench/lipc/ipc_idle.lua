-- ipc_idle (lipc only): what an idle process with open channels costs.
-- The parent forks this script, makes the channel hot (200 round trips),
-- then both sides sit with nothing to read for N milliseconds. The figure
-- is the CPU both processes ran in that time, as a share of one CPU.
--   lipc ipc_idle.lua [ms]   -> RESULT ipc_idle <percent> %
local C = dofile((debug.getinfo(1, "S").source:match("^[@=]?(.*/)") or "./") .. "common.lua")
local lipc = require "lipc"
local fork = require "fork"

if C.serve_child(function(m) return m end) then return end

local argv = C.args(...)
local ms = C.count(argv[1], 10000)
local worker = C.check(fork(C.script(), {"child"}))
for i = 1, 200 do C.round_trip(worker, i) end
lipc.sleep(20) -- the last poll window ends
local cpu0 = C.cpu_pair_ns(worker.pid)
local t0 = C.now()
lipc.sleep(ms)
local cpu1 = C.cpu_pair_ns(worker.pid)
local t1 = C.now()
C.result("ipc_idle", (cpu1 - cpu0) / (t1 - t0) * 100, "%", 4)
worker:disconnect()
