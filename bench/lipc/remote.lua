-- remote (lipc): ipc_pingpong's and ipc_stream's work to a worker reached
-- through a launcher, to see what the launcher costs (bench/remote.sh runs
-- it through a local fork, `sh` and ssh to 127.0.0.1).
--   lipc remote.lua pingpong|stream <count> [launcher argv...]
--     -> RESULT remote_pingpong <n> rt/s | RESULT remote_stream <n> msg/s
-- Without a launcher the worker is a local fork. LIPC_REMOTE_EXEC: the
-- lipc on the far side (default: this one). The worker's part is this
-- same file, sent over the channel: it needs nothing else there.
local lipc = require "lipc"
local fork = require "fork"

local function small(seq) return {seq = seq, op = "add", args = {1, 2, 3}} end

local parent = fork.parent
if parent then -- the worker
  local mode, n = ...
  if mode == "pingpong" then
    for m in function() return parent:receive() end do
      if m.args[1] + m.args[2] + m.args[3] ~= 6 then error("worker: bad message") end
      parent:send(small(m.seq))
    end
  else
    local sum = 0
    for _ = 1, math.tointeger(tonumber(n)) do
      local m = parent:receive()
      if m == nil then error("worker: disconnected") end
      sum = sum + m.seq
    end
    parent:send(small(sum))
    parent:receive()
  end
  return
end

local mode, count = ...
local n = math.tointeger(tonumber(count))
if (mode ~= "pingpong" and mode ~= "stream") or not n then
  io.stderr:write("usage: lipc remote.lua pingpong|stream <count> [launcher argv...]\n")
  lipc.exit(2)
end
local via = {select(3, ...)}
local exe = os.getenv("LIPC_REMOTE_EXEC") or lipc.argv[1]
local script = arg[0]
local opts = #via > 0 and {via = via, exec_path = exe} or {exec_path = exe}
local worker = assert(fork(script, {mode, tostring(n)}, opts))
local t0 = lipc.hrtime()
if mode == "pingpong" then
  for i = 1, n do
    worker:send(small(i))
    local r = worker:receive()
    if r == nil or r.seq ~= i then error("parent: bad reply") end
  end
else
  for i = 1, n do
    if not worker:send(small(i)) then worker:drain() end
  end
  local ack = worker:receive()
  if ack == nil or ack.seq ~= n * (n + 1) // 2 then error("parent: bad ack") end
end
local secs = (lipc.hrtime() - t0) / 1e9
print(("RESULT remote_%s %.0f %s"):format(mode, n / secs, mode == "pingpong" and "rt/s" or "msg/s"))
worker:disconnect()
worker:wait()
