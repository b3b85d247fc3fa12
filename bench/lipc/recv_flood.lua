-- recv_flood.lua - receive backpressure: a peer floods a channel whose
-- receiver takes nothing for a while, then takes everything. The figures
-- of docs/reliability.md's receive-backpressure rows.
--
--   lipc bench/lipc/recv_flood.lua TRANSPORT DIR [MiB] [hold_ms]
--
-- TRANSPORT: fork (the child's fork channel), unix or tcp (a channel over a
-- socket the child connects to ours). DIR: in (the child floods us) or out
-- (we flood the child). The sender sends MiB (default 256) of 1 KB
-- messages as fast as drain() lets it; the receiver waits hold_ms (default
-- 2000) before it takes any, then takes them all, checking their order.
-- One line: the receiver's peak RSS (VmHWM), how often the sender's send
-- returned false, and the time from the first send to the last message.
local lipc = require "lipc"
local fork = require "fork"

local role = ...

local function vmhwm_mb()
  for l in io.lines("/proc/self/status") do
    local kb = l:match("^VmHWM:%s+(%d+)")
    if kb then return tonumber(kb) / 1024 end
  end
end

local function send_all(ch, n)
  local pad, waits = ("x"):rep(1000), 0
  for i = 1, n do
    if not ch:send({i = i, pad = pad}) then
      waits = waits + 1
      if not ch:drain() then error("recv_flood: channel closed at " .. i) end
    end
  end
  ch:send({done = true, waits = waits})
end

local function take_all(ch, n, hold_ms)
  lipc.sleep(hold_ms)
  for i = 1, n do
    local m = ch:receive()
    if type(m) ~= "table" or m.i ~= i then error("recv_flood: message " .. i .. " out of order") end
  end
  local last = ch:receive()
  return {hwm = vmhwm_mb(), waits = last and last.waits}
end

if role == "child" then
  local _, transport, dir, n, hold_ms, addr = ...
  n, hold_ms = tonumber(n), tonumber(hold_ms)
  local ch = fork.parent
  if transport ~= "fork" then
    local mod = require(transport == "tcp" and "net" or "pipe")
    local sock = assert(mod.connect(transport == "tcp" and {port = tonumber(addr)} or addr))
    ch = sock:channel()
  end
  if dir == "in" then
    send_all(ch, n)
  else
    ch:send(take_all(ch, n, hold_ms))
  end
  ch:disconnect()
  return
end

local transport, dir = role, select(2, ...)
local mib, hold_ms = tonumber((select(3, ...))) or 256, tonumber((select(4, ...))) or 2000
assert(transport == "fork" or transport == "unix" or transport == "tcp", "TRANSPORT: fork, unix or tcp")
assert(dir == "in" or dir == "out", "DIR: in or out")
local n = mib * 1024
local srv, addr
if transport == "tcp" then
  srv = assert(require("net").create_server():listen(0))
  addr = srv:address().port
elseif transport == "unix" then
  addr = lipc.mkdtemp("/tmp/recv-flood-") .. "/s.sock"
  srv = assert(require("pipe").create_server():listen(addr))
end
local child = assert(fork(arg[0], {"child", transport, dir, n, hold_ms, addr or ""}))
local ch = child
if srv then ch = assert(srv:accept()):channel() end
local t0 = lipc.hrtime()
local r
if dir == "in" then
  r = take_all(ch, n, hold_ms)
else
  send_all(ch, n)
  r = ch:receive()
end
local secs = (lipc.hrtime() - t0) / 1e9
print(("RESULT recv_flood %s %s %d MiB: receiver peak RSS %.1f MB, sender send()=false %d times, %.2f s")
  :format(transport, dir, mib, r.hwm, r.waits or -1, secs))
if ch ~= child then ch:disconnect() end
child:wait()
if srv then srv:close() end
if transport == "unix" then os.remove(addr); os.remove((addr:gsub("/s%.sock$", ""))) end
