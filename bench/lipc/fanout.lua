-- fanout (lipc): one parent publishes the small table to W forked workers
-- (every message to every worker; worker:drain() when a send returns
-- false) until the time is up, then the count; each worker checks every
-- message and acks with the count and the sum of the seqs. Timed from the
-- first send to the last ack; the figure is messages delivered (W x sent).
--   lipc fanout.lua <workers> [ms]   -> RESULT fanout <n> msg/s
local C = dofile((debug.getinfo(1, "S").source:match("^[@=]?(.*/)") or "./") .. "common.lua")
local fork = require "fork"

local argv = C.args(...)
local parent = fork.parent
if parent then
  local n, sum = 0, 0
  parent:send("ready")
  while true do
    local m = parent:receive()
    if m == nil then error("worker: disconnected after " .. n .. " messages") end
    if math.type(m) == "integer" then
      if m ~= n then error("worker: got " .. n .. " messages, the parent sent " .. m) end
      break
    end
    if m.seq ~= n + 1 or m.args[1] + m.args[2] + m.args[3] ~= 6 then error("worker: bad message") end
    n, sum = n + 1, sum + m.seq
  end
  parent:send(C.small(sum))
  parent:receive() -- returns nil once the parent disconnects
  return
end

local nw = math.tointeger(tonumber(argv[1])) or 4
local ms = C.count(argv[2], 1000)
local workers = {}
for i = 1, nw do workers[i] = C.check(fork(C.script(), {"worker"})) end
for i = 1, nw do
  if workers[i]:receive() ~= "ready" then error("parent: worker " .. i .. " did not start") end
end
local n = 0
local t0 = C.now()
local stop = t0 + ms * 1000000
repeat
  for _ = 1, 64 do
    n = n + 1
    local m = C.small(n)
    for i = 1, nw do
      local w = workers[i]
      if not w:send(m) then w:drain() end
    end
  end
until C.now() >= stop
for i = 1, nw do workers[i]:send(n) end
for i = 1, nw do
  local ack = workers[i]:receive()
  if ack == nil or ack.seq ~= n * (n + 1) // 2 then error("parent: bad ack from worker " .. i) end
end
local t1 = C.now()
C.result("fanout", nw * n / C.secs(t0, t1), "msg/s")
for i = 1, nw do workers[i]:disconnect() end
