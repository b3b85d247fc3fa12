-- msg_size (lipc): fork this script; the parent sends strings of SIZE
-- bytes (worker:send, worker:drain() when it returns false), first a few
-- to warm both sides up (buffers grown, memory mapped), then for the time
-- given. After each part it sends the count so far as an integer and the
-- child, which checks every string's length and ends, answers with its own
-- count. Timed from the end of the warm-up to the second answer; MB = 10^6
-- bytes of payload. The strings are ASCII (MessagePack str). SIZE is
-- capped at 64 MiB - 16, the largest string under the default max_message.
--   lipc msg_size.lua <size> [ms]   -> RESULT msg_size <n> MB/s, RESULT msg_rate <n> msg/s
local C = dofile((debug.getinfo(1, "S").source:match("^[@=]?(.*/)") or "./") .. "common.lua")
local fork = require "fork"

local MAX = (64 << 20) - 16
local argv = C.args(...)
local parent = fork.parent
-- the child gets ("child", size)
local size = math.min(math.tointeger(tonumber(argv[parent and 2 or 1])) or 1024, MAX)

if parent then
  local n, last = 0, 97 + (size - 1) % 26
  while true do
    local m = parent:receive()
    if m == nil then return end -- the parent is done
    if math.type(m) == "integer" then
      if m ~= n then error("child: got " .. n .. " messages, the parent sent " .. m) end
      parent:send(n)
    else
      if #m ~= size or m:byte(1) ~= 97 or m:byte(size) ~= last then error("child: bad message") end
      n = n + 1
    end
  end
end

local ms = C.count(argv[2], 1000)
local s = string.rep("abcdefghijklmnopqrstuvwxyz", size // 26 + 1):sub(1, size)
local worker = C.check(fork(C.script(), {"child", tostring(size)}))
local n = 0

-- sends `count` strings, or strings until `stop` (hrtime), then the count;
-- returns when the child answered
local every = math.max(1, 65536 // size)
local function part(count, stop)
  repeat
    for _ = 1, every do
      if not worker:send(s) then worker:drain() end
    end
    n = n + every
  until (count and n >= count) or (stop and C.now() >= stop)
  worker:send(n)
  local ack = worker:receive()
  if ack ~= n then error("parent: bad ack " .. tostring(ack) .. " for " .. n) end
end

part(math.max(4, math.min(1000, (8 << 20) // size)))
local warm = n
local t0 = C.now()
part(nil, t0 + ms * 1000000)
local secs = C.secs(t0, C.now())
C.result("msg_size", (n - warm) * size / 1e6 / secs, "MB/s", 1)
C.result("msg_rate", (n - warm) / secs, "msg/s")
worker:disconnect()
