-- hostile_peers.lua - what one hostile (or merely fast) peer costs the
-- others: the figures of docs/reliability.md's "Hostile peers" table.
--
--   lipc bench/lipc/hostile_peers.lua ATTACK [size]
--
-- The process under test serves a TCP channel server. A bystander (a forked
-- child) pings it over its fork channel every 5 ms during the attack; an
-- attacker (another forked child) connects and writes the attack's raw
-- bytes. One line: the attack, the longest time the process served no I/O
-- (the longest gap between two pings it answered), its peak RSS (VmHWM),
-- the bystander's worst round trip, and what became of the attack.
--
-- ATTACK:
--   sleep0       a task loops lipc.sleep(0) for 2 s (no attacker)
--   hash         a map of `size` (default 65536) integer keys i * (2^k - 1)
--   hash_float   a map of `size` (default 16384) float keys, no integers,
--                that all land in one node too
--   empty_maps   `size` MB (default 8) of empty maps: [{}, {}, ...]
--   small_ints   `size` MB (default 8) of small integers: [1, 1, ...]
--   json_maps    `size` MB (default 8) of JSON `[{},{},...]` on a JSON channel
--   json_ints    `size` MB (default 7, within max_decoded) of JSON `[1,1,...]`
--   fd_junk      over an IPC channel, `size` (default 60) frames each with 250
--                fds that no marker claims (spec/fd_peer.c is the attacker)
--   fd_blocking  over an IPC channel, a blocking TCP listener; the process
--                takes it and serves 2 connections on it
local lipc = require "lipc"
local fork = require "fork"
local net = require "net"

local role = ...

local function be32(n)
  return string.char(n >> 24 & 255, n >> 16 & 255, n >> 8 & 255, n & 255)
end

-- MessagePack headers (big-endian counts).
local function map32(n) return "\xdf" .. be32(n) end
local function arr32(n) return "\xdd" .. be32(n) end
local function int64(i) return "\xd3" .. string.pack(">i8", i) end
local function f64(x) return "\xcb" .. string.pack(">d", x) end

-- The attack's bytes, as they go on the wire, and the channel options.
local function payload(attack, size)
  if attack == "hash" or attack == "hash_float" then
    -- Lua puts integer key k in node k % (nodes - 1) of the map's nodes
    -- (a power of two), and a float x = m * 2^e (0.5 <= m < 1) that is no
    -- integer in (e + m * 2^31) % (nodes - 1)
    local n = size or (attack == "hash" and 65536 or 16384)
    local nodes, parts = 1, {}
    while nodes < n do nodes = nodes * 2 end
    for i = 1, n do
      local k = attack == "hash" and int64(i * (nodes - 1))
        or f64(1 + i * (nodes - 1) / 2 ^ 30) -- e = 1: all the same node
      parts[i] = k .. "\xc3" -- the value: true
    end
    local p = map32(n) .. table.concat(parts)
    return be32(#p) .. p, {}
  end
  local mb = size or 8
  if attack == "empty_maps" then
    local n = mb * 1024 * 1024 - 5
    local p = arr32(n) .. string.rep("\x80", n)
    return be32(#p) .. p, {}
  elseif attack == "small_ints" then
    local n = mb * 1024 * 1024 - 5
    local p = arr32(n) .. string.rep("\x01", n)
    return be32(#p) .. p, {}
  elseif attack == "json_ints" then
    local n = ((size or 7) * 1024 * 1024 - 2) // 2
    return "[" .. string.rep("1,", n - 1) .. "1]\n", {serialization = "json"}
  elseif attack == "json_maps" then
    local n = (mb * 1024 * 1024 - 2) // 3
    return "[" .. string.rep("{},", n - 1) .. "{}]\n", {serialization = "json"}
  end
  error("unknown attack " .. tostring(attack))
end

if role == "bystander" then
  local parent = fork.parent
  local rtts, stop = {}, false
  parent:on("message", function(m) if m == "stop" then stop = true end end)
  while not stop do
    local t0 = lipc.hrtime()
    parent:send("ping")
    -- the pong comes back as a message too: wait for it
    local got = false
    local c = lipc.cond()
    parent:once("message", function() got = true; c:signal() end)
    if not got then c:wait(60000) end
    rtts[#rtts + 1] = (lipc.hrtime() - t0) / 1e6
    lipc.sleep(5)
  end
  table.sort(rtts)
  parent:send({max = rtts[#rtts] or 0, p50 = rtts[(#rtts + 1) // 2] or 0, n = #rtts})
  parent:disconnect()
  return
end

if role == "attacker" then
  local port, attack, size = select(2, ...)
  local bytes = payload(attack, tonumber(size))
  local sock = assert(net.connect({host = "127.0.0.1", port = tonumber(port)}))
  sock:write(bytes)
  sock:read_all() -- until the server closes the connection
  sock:close()
  return
end

local attack, size = ...
size = tonumber(size)
local fd_dir -- fd_*: where the attacker is built
local self_path = arg and arg[0] or "bench/lipc/hostile_peers.lua"

local function peak_rss_mib()
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmHWM:%s+(%d+)")) / 1024
end

if attack and attack:match("^fd_") then
  fd_dir = lipc.mkdtemp("/tmp/lipc-fd-peer-")
  local src = self_path:gsub("hostile_peers%.lua$", "../../spec/fd_peer.c")
  assert(os.execute(("cc -std=c11 -D_GNU_SOURCE -O2 -o %s/fd_peer %s"):format(fd_dir, src)))
end

-- The bystander: answered at once; the gaps between pings are the time
-- the loop served nobody.
local by = assert(fork(self_path, {"bystander"}))
local last, max_gap, stats = nil, 0, nil
local done = lipc.cond()
by:on("message", function(m)
  if m == "ping" then
    local now = lipc.hrtime()
    if last then max_gap = math.max(max_gap, (now - last) / 1e6) end
    last = now
    by:send("pong")
  else
    stats = m
    done:signal()
  end
end)
lipc.sleep(100) -- a few pings before the attack

-- An attacker that passes fds: spec/fd_peer.c on fd 3 of an "ipc" stdio
-- entry (built before the bystander starts); returns the channel over the
-- other end.
local function fd_attacker(steps)
  local child = assert(require("spawn")(fd_dir .. "/fd_peer", steps,
    {stdio = {"ignore", "inherit", "inherit", "ipc"}}))
  return child.stdio[4]:channel(), child
end

local function nfds()
  local n = 0
  for _ in pairs(lipc.fds()) do n = n + 1 end
  return n
end

local outcome = "-"
if attack == "fd_junk" then
  local steps = {}
  for i = 1, size or 60 do steps[i] = "junk:250" end
  steps[#steps + 1] = "send:none:0"
  steps[#steps + 1] = "wait"
  local fds0 = nfds()
  local ch, child = fd_attacker(steps)
  local m
  repeat m = ch:receive() until m == "none" or m == nil
  outcome = ("%d fds more held after %d x 250"):format(nfds() - fds0 - 1, #steps - 2)
  ch:close()
  child:wait()
elseif attack == "fd_blocking" then
  local ch, child = fd_attacker({"send:tcp-server:1", "wait"})
  local _, srv = ch:receive()
  local served, c = 0, lipc.cond()
  srv:on("connection", function(s) served = served + 1; s:close(); c:signal() end)
  local port = srv:address().port
  local socks = {}
  for i = 1, 2 do socks[i] = assert(net.connect({host = "127.0.0.1", port = port})) end
  while served < 2 do c:wait() end
  for _, s in ipairs(socks) do s:close() end
  srv:close()
  ch:close()
  child:wait()
  outcome = served .. " connections served"
elseif attack == "sleep0" then
  local t0, turns = lipc.hrtime(), 0
  while lipc.hrtime() - t0 < 2e9 do
    lipc.sleep(0)
    turns = turns + 1
  end
  outcome = turns .. " sleeps"
else
  local _, opts = payload(attack, size) -- checks the name early
  local finished = lipc.cond()
  local srv = net.create_server(function(sock)
    local ch = sock:channel(opts)
    ch:on("message", function(m)
      outcome = "accepted (" .. type(m) .. ")"
      finished:signal()
      sock:close()
    end)
    ch:on("error", function(msg)
      outcome = "refused: " .. tostring(msg):sub(1, 60)
      finished:signal()
      sock:close()
    end)
  end)
  assert(srv:listen(0, "127.0.0.1"))
  local attacker = assert(fork(self_path, {"attacker", srv:address().port, attack, size}))
  finished:wait()
  lipc.sleep(50)
  srv:close()
  attacker:wait()
end
lipc.sleep(50)
by:send("stop")
done:wait(60000)
by:wait()
if fd_dir then os.execute("rm -rf " .. fd_dir) end
print(string.format(
  "%-11s blocked %8.0f ms  peak RSS %6.0f MiB  bystander max %8.0f ms (p50 %.1f ms, %d pings)  %s",
  attack, max_gap, peak_rss_mib(), stats and stats.max or -1, stats and stats.p50 or -1,
  stats and stats.n or 0, outcome))
