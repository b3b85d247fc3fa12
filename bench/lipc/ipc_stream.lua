-- ipc_stream (lipc): fork this script; the parent sends N small tables one
-- way (worker:send; when it returns false - over the high-water mark - the
-- parent waits in worker:drain()), the child receives them all and sends one
-- ack whose seq is the sum of the seqs it saw. Timed from the first send to
-- the ack. Frames sent in one loop turn are meant to be coalesced into one
-- write (DESIGN 5): that is what this case measures.
--   lipc ipc_stream.lua [messages]   -> RESULT ipc_stream <n> msg/s
local C = dofile((debug.getinfo(1, "S").source:match("^[@=]?(.*/)") or "./") .. "common.lua")
local fork = require "fork"

local argv = C.args(...)
local parent = fork.parent
if parent then
  local n = math.tointeger(tonumber(argv[2]))
  local sum = 0
  for i = 1, n do
    local m = parent:receive()
    if m == nil then error("child: disconnected after " .. (i - 1) .. " messages") end
    if m.args[1] + m.args[2] + m.args[3] ~= 6 then error("child: bad message") end
    sum = sum + m.seq
  end
  parent:send(C.small(sum))
  parent:receive() -- returns nil once the parent disconnects
  return
end

local n = C.count(argv[1], 1000000)
local worker = C.check(fork(C.script(), {"child", tostring(n)}))
local t0 = C.now()
for i = 1, n do
  if not worker:send(C.small(i)) then worker:drain() end
end
local ack = worker:receive()
local t1 = C.now()
if ack == nil or ack.seq ~= n * (n + 1) // 2 then
  error("parent: bad ack " .. tostring(ack and ack.seq))
end
C.result("ipc_stream", n / C.secs(t0, t1), "msg/s")
worker:disconnect()
