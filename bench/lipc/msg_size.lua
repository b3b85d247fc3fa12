-- msg_size (lipc): fork this script; the parent sends strings of SIZE
-- bytes (worker:send, worker:drain() when it returns false) until the time
-- is up, then the count as an integer; the child receives them, checks
-- each one's length and ends, and acks with the count. Timed from the
-- first send to the ack; MB = 10^6 bytes of payload. The strings are
-- ASCII (MessagePack str). SIZE is capped at 64 MiB - 16, the largest
-- string under the default max_message.
--   lipc msg_size.lua <size> [ms]   -> RESULT msg_size <n> MB/s, RESULT msg_rate <n> msg/s
local C = dofile((debug.getinfo(1, "S").source:match("^[@=]?(.*/)") or "./") .. "common.lua")
local fork = require "fork"

local MAX = (64 << 20) - 16
local argv = C.args(...)
local parent = fork.parent
-- the child gets ("child", size)
local size = math.min(math.tointeger(tonumber(argv[parent and 2 or 1])) or 1024, MAX)

local function data()
  return string.rep("abcdefghijklmnopqrstuvwxyz", size // 26 + 1):sub(1, size)
end

if parent then
  local n, last = 0, 97 + (size - 1) % 26
  parent:send("ready")
  while true do
    local m = parent:receive()
    if m == nil then error("child: disconnected after " .. n .. " messages") end
    if math.type(m) == "integer" then
      if m ~= n then error("child: got " .. n .. " messages, the parent sent " .. m) end
      break
    end
    if #m ~= size or m:byte(1) ~= 97 or m:byte(size) ~= last then error("child: bad message") end
    n = n + 1
  end
  parent:send(n)
  parent:receive() -- returns nil once the parent disconnects
  return
end

local ms = C.count(argv[2], 1000)
local s = data()
local worker = C.check(fork(C.script(), {"child", tostring(size)}))
if worker:receive() ~= "ready" then error("parent: the child did not start") end
local every = math.max(1, 65536 // size)
local n = 0
local t0 = C.now()
local stop = t0 + ms * 1000000
repeat
  for _ = 1, every do
    if not worker:send(s) then worker:drain() end
  end
  n = n + every
until C.now() >= stop
worker:send(n)
local ack = worker:receive()
local t1 = C.now()
if ack ~= n then error("parent: bad ack " .. tostring(ack)) end
local secs = C.secs(t0, t1)
C.result("msg_size", n * size / 1e6 / secs, "MB/s", 1)
C.result("msg_rate", n / secs, "msg/s")
worker:disconnect()
