-- ipc_pingpong (lipc): fork this script; the parent sends a small table with
-- worker:send, the child receives it and sends it back, the parent receives
-- and checks the reply, then sends the next. Timed from the first send to
-- the last reply.
--   lipc ipc_pingpong.lua [round_trips]   -> RESULT ipc_pingpong <n> rt/s
local C = dofile((debug.getinfo(1, "S").source:match("^[@=]?(.*/)") or "./") .. "common.lua")
local fork = require "fork"

if C.serve_child(function(m)
  if m.args[1] + m.args[2] + m.args[3] ~= 6 then error("child: bad message") end
  return C.small(m.seq)
end) then return end

local argv = C.args(...)
local n = C.count(argv[1], 50000)
local worker = C.check(fork(C.script(), {"child"}))
local t0 = C.now()
for i = 1, n do C.round_trip(worker, i) end
local t1 = C.now()
C.result("ipc_pingpong", n / C.secs(t0, t1), "rt/s")
worker:disconnect()
