-- ipc_bulk (lipc): fork this script; the parent sends N messages
-- {seq = i, data = <1 MiB string>} (worker:send, worker:drain() when it
-- returns false), the child checks each and acks after the last. Timed from
-- the first send to the ack. MB = 10^6 bytes of payload. The data is ASCII,
-- so it travels as a MessagePack str 32.
--   lipc ipc_bulk.lua [messages]   -> RESULT ipc_bulk <n> MB/s
local C = dofile((debug.getinfo(1, "S").source:match("^[@=]?(.*/)") or "./") .. "common.lua")
local fork = require "fork"

local SIZE = 1 << 20
local argv = C.args(...)
local parent = fork.parent
if parent then
  local n = math.tointeger(tonumber(argv[2]))
  local bytes = 0
  for i = 1, n do
    local m = parent:receive()
    if m == nil then error("child: disconnected after " .. (i - 1) .. " messages") end
    local d = m.data
    if m.seq ~= i or #d ~= SIZE or d:byte(1) ~= 97 then error("child: bad message") end
    bytes = bytes + #d
  end
  parent:send({seq = bytes})
  parent:receive() -- returns nil once the parent disconnects
  return
end

local n = C.count(argv[1], 1000)
local data = string.rep("abcdefghijklmnopqrstuvwxyz", SIZE // 26 + 1):sub(1, SIZE)
local worker = C.check(fork(C.script(), {"child", tostring(n)}))
local t0 = C.now()
for i = 1, n do
  if not worker:send({seq = i, data = data}) then worker:drain() end
end
local ack = worker:receive()
local t1 = C.now()
if ack == nil or ack.seq ~= n * SIZE then error("parent: bad ack " .. tostring(ack and ack.seq)) end
C.result("ipc_bulk", n * SIZE / 1e6 / C.secs(t0, t1), "MB/s", 1)
worker:disconnect()
