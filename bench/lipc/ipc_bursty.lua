-- ipc_bursty (lipc only): a round trip every millisecond, the traffic
-- where a poll after each message finds nothing. The parent sends a small
-- table, waits for the reply, sleeps 1 ms, N times. The figure is the CPU
-- both processes ran per round trip (lower is better); a second line,
-- ipc_bursty_poll, the part of it spent in polls that found nothing.
--   lipc ipc_bursty.lua [round_trips]   -> RESULT ipc_bursty <us> us/rt
local C = dofile((debug.getinfo(1, "S").source:match("^[@=]?(.*/)") or "./") .. "common.lua")
local lipc = require "lipc"
local fork = require "fork"

if C.serve_child(function(m)
  if m.poll then return {empty_us = lipc.poll().empty_us} end
  return C.small(m.seq)
end) then return end

local argv = C.args(...)
local n = C.count(argv[1], 2000)
local worker = C.check(fork(C.script(), {"child"}))
C.round_trip(worker, 0)
-- the poll's own cost: time in polling turns that found nothing, in
-- both processes (lipc.poll().empty_us), exact where the CPU figure
-- moves by tens of percent from run to run on a shared host
local function empty_us()
  worker:send({poll = true})
  return lipc.poll().empty_us + worker:receive().empty_us
end
local cpu0, e0 = C.cpu_pair_ns(worker.pid), empty_us()
for i = 1, n do
  C.round_trip(worker, i)
  lipc.sleep(1)
end
local cpu1, e1 = C.cpu_pair_ns(worker.pid), empty_us()
C.result("ipc_bursty", (cpu1 - cpu0) / n / 1000, "us/rt", 2)
C.result("ipc_bursty_poll", (e1 - e0) / n, "us/rt", 2)
worker:disconnect()
