-- ipc_bursty (lipc only): a round trip every millisecond, the traffic
-- where a poll after each message finds nothing. The parent sends a small
-- table, waits for the reply, sleeps 1 ms, N times. The figure is the CPU
-- both processes ran per round trip (lower is better).
--   lipc ipc_bursty.lua [round_trips]   -> RESULT ipc_bursty <us> us/rt
local C = dofile((debug.getinfo(1, "S").source:match("^[@=]?(.*/)") or "./") .. "common.lua")
local lipc = require "lipc"
local fork = require "fork"

if C.serve_child(function(m) return C.small(m.seq) end) then return end

local argv = C.args(...)
local n = C.count(argv[1], 2000)
local worker = C.check(fork(C.script(), {"child"}))
C.round_trip(worker, 0)
local cpu0 = C.cpu_pair_ns(worker.pid)
for i = 1, n do
  C.round_trip(worker, i)
  lipc.sleep(1)
end
local cpu1 = C.cpu_pair_ns(worker.pid)
C.result("ipc_bursty", (cpu1 - cpu0) / n / 1000, "us/rt", 2)
worker:disconnect()
