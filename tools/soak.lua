-- soak.lua - the soak run of `make soak` (issue #7): a million messages
-- through a fork channel, 1 GiB through a TCP and through a Unix socket
-- stream, 10 000 sequential spawns. RSS is sampled after a warm-up and at
-- the end of each phase, fds and children before and after; a summary
-- table is printed and the exit status is 1 when a bound is broken.
--
--   build/lipc tools/soak.lua          (SOAK_SCALE=0.1 for a short run)
local lipc = require "lipc"
local fork = require "fork"
local net = require "net"
local pipe = require "pipe"
local spawn = require "spawn"

local SCALE = tonumber(os.getenv("SOAK_SCALE")) or 1
local RSS_BOUND_KIB = 16 * 1024     -- growth allowed per phase after warm-up
local MESSAGES = math.floor(1000000 * SCALE)
local BYTES = math.floor((1 << 30) * SCALE)
local SPAWNS = math.floor(10000 * SCALE)

local function rss_kib(pid)
  local f = io.open("/proc/" .. (pid or lipc.pid) .. "/status")
  if not f then return 0 end
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s+(%d+)"))
end

-- Our open fds (the listing's own pipe end not counted).
local function fd_count()
  local p = assert(io.popen("ls /proc/" .. lipc.pid .. "/fd"))
  local n = 0
  for _ in p:lines() do n = n + 1 end
  p:close()
  return n - 1
end

-- Our children, zombies included (read from /proc, forking nothing
-- while counting).
local function child_count()
  local p = assert(io.popen("ls /proc"))
  local pids = {}
  for l in p:lines() do
    if l:match("^%d+$") then pids[#pids + 1] = l end
  end
  p:close()
  local n = 0
  for _, pid in ipairs(pids) do
    local f = io.open("/proc/" .. pid .. "/stat")
    if f then
      local s = f:read("a") or ""
      f:close()
      local ppid = s:match("^%d+ %b() %S+ (%d+)")
      if tonumber(ppid) == lipc.pid then n = n + 1 end
    end
  end
  return n
end

local rows = {}
local failed = false

local function row(name, amount, secs, before, after, extra)
  local growth = after - before
  local ok = growth <= RSS_BOUND_KIB
  failed = failed or not ok
  rows[#rows + 1] = {name, amount, ("%.2f"):format(secs),
                     ("%.1f"):format(before / 1024), ("%.1f"):format(after / 1024),
                     ("%+.1f"):format(growth / 1024), extra or "", ok and "ok" or "FAIL"}
end

local function elapsed(t0)
  return (lipc.hrtime() - t0) / 1e9
end

-- 1. messages through a fork channel, in order, none lost
local function phase_fork()
  local dir = assert(lipc.mkdtemp("/tmp/lipc-soak-"))
  local path = dir .. "/child.lua"
  local f = assert(io.open(path, "w"))
  f:write([[
    local parent = require("fork").parent
    local n = tonumber(arg[1])
    for i = 1, n do
      local m = parent:receive()
      if m[1] ~= i then error("out of order at " .. i) end
      if i == 20000 then parent:send({"warm"}) end
    end
    local st = io.open("/proc/self/status"):read("a")
    parent:send({"done", tonumber(st:match("VmRSS:%s+(%d+)"))})
    parent:receive()
  ]])
  f:close()
  local child = assert(fork(path, {tostring(MESSAGES)}))
  local t0 = lipc.hrtime()
  local before
  for i = 1, MESSAGES do
    if not child:send({i, "payload"}) then child:drain() end
    if i == 20000 then
      assert(child:receive()[1] == "warm")
      before = rss_kib()
    end
  end
  local done = child:receive()
  local secs = elapsed(t0)
  assert(done and done[1] == "done", "the child did not receive everything")
  local after = rss_kib()
  child:send("bye")
  child:wait()
  os.remove(path)
  os.remove(dir)
  row("fork channel", ("%d msgs"):format(MESSAGES), secs, before or after, after,
      ("%.0f msg/s, child RSS %.1f MiB"):format(MESSAGES / secs, done[2] / 1024))
end

-- 2./3. bytes through a stream server: the reader counts, the writer
-- honours backpressure
local function phase_stream(name, server_mod, listen_args, connect)
  local received = 0
  local finished = lipc.cond()
  local srv = server_mod.create_server(function(sock)
    sock:on("data", function(chunk) received = received + #chunk end)
    sock:on("end", function() sock:close(); finished:signal() end)
  end)
  assert(srv:listen(table.unpack(listen_args)))
  local client = assert(connect(srv))
  local chunk = ("z"):rep(64 * 1024)
  local t0 = lipc.hrtime()
  local before
  local sent = 0
  while sent < BYTES do
    if not client:write(chunk) then client:drain() end
    sent = sent + #chunk
    if not before and sent >= 64 << 20 then before = rss_kib() end
  end
  client:shutdown()
  while received < sent do finished:wait(1000) end
  local secs = elapsed(t0)
  local after = rss_kib()
  client:close()
  srv:close()
  assert(received == sent, "lost bytes")
  row(name, ("%d MiB"):format(sent >> 20), secs, before or after, after,
      ("%.0f MiB/s"):format(sent / secs / 1048576))
end

-- 4. sequential spawns: fds and children back where they were
local function phase_spawn()
  lipc.sleep(200)                     -- closes of the stream phases settle
  local fds0, kids0 = fd_count(), child_count()
  local t0 = lipc.hrtime()
  local before
  for i = 1, SPAWNS do
    local child = spawn("true")
    child:wait()
    child:close()
    if i == 200 then before = rss_kib() end
  end
  local secs = elapsed(t0)
  lipc.sleep(50)
  local fds1, kids1 = fd_count(), child_count()
  local after = rss_kib()
  failed = failed or fds1 > fds0 or kids1 > kids0     -- a leak is growth
  row("spawn", ("%d spawns"):format(SPAWNS), secs, before or after, after,
      ("fds %d -> %d, children %d -> %d"):format(fds0, fds1, kids0, kids1))
end

-- Warm-up: what libuv and the runtime open once and keep (the signal
-- pipe behind the SIGCHLD watcher, the fd libuv reserves against EMFILE)
-- is not a leak; the baseline is taken after it.
do
  local c = spawn("true")
  c:wait()
  c:close()
  local s = assert(net.create_server():listen(0))
  local k = assert(net.connect(s:address().port))
  local a = assert(s:accept())
  a:close()
  k:close()
  s:close()
  lipc.sleep(20)
end
local fds_start, kids_start = fd_count(), child_count()
phase_fork()
phase_stream("TCP stream", net, {0}, function(srv) return net.connect(srv:address().port) end)
local sock_dir = assert(lipc.mkdtemp("/tmp/lipc-soak-"))
phase_stream("Unix stream", pipe, {sock_dir .. "/s.sock"},
             function(srv) return pipe.connect(srv:address()) end)
os.remove(sock_dir)
phase_spawn()
lipc.sleep(50)
local fds_end, kids_end = fd_count(), child_count()
failed = failed or fds_end > fds_start or kids_end > kids_start

local head = {"phase", "amount", "secs", "RSS before MiB", "RSS after MiB", "growth MiB",
              "detail", "result"}
local widths = {}
for i, h in ipairs(head) do
  widths[i] = #h
  for _, r in ipairs(rows) do widths[i] = math.max(widths[i], #r[i]) end
end
local function line(r)
  local cells = {}
  for i, c in ipairs(r) do cells[i] = c .. (" "):rep(widths[i] - #c) end
  print("| " .. table.concat(cells, " | ") .. " |")
end
line(head)
local sep = {}
for i = 1, #head do sep[i] = ("-"):rep(widths[i]) end
line(sep)
for _, r in ipairs(rows) do line(r) end
print(("whole run: fds %d -> %d, children %d -> %d; RSS bound %d MiB per phase after warm-up")
  :format(fds_start, fds_end, kids_start, kids_end, RSS_BOUND_KIB // 1024))
print(failed and "soak: FAIL" or "soak: ok")
lipc.exit(failed and 1 or 0)
