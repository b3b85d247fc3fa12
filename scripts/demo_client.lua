-- demo_client.lua - the load client of scripts/demo.lua: opens `total`
-- connections to 127.0.0.1:port, `concurrency` at a time, and prints
-- progress lines and a summary on stdout.
--   lipc scripts/demo_client.lua port total concurrency
local lipc = require "lipc"
local net = require "net"

local port = assert(tonumber(arg[1]), "port")
local total = tonumber(arg[2]) or 100
local concurrency = tonumber(arg[3]) or 10

local started, ok, failed, next_report = 0, 0, 0, total // 4
local done = lipc.cond()
local running = 0

local function one(n)
  local sock, err = net.connect({host = "127.0.0.1", port = port})
  if not sock then
    failed = failed + 1
    io.stderr:write("connect: ", err, "\n")
    return
  end
  sock:write("request " .. n)
  local answer = sock:read_all()
  sock:close()
  if answer and answer:match("^worker %d+") then ok = ok + 1 else failed = failed + 1 end
end

local function runner()
  running = running + 1
  while started < total do
    started = started + 1
    one(started)
    if ok + failed >= next_report and next_report < total then
      print(("progress %d/%d"):format(ok + failed, total))
      next_report = next_report + total // 4
    end
  end
  running = running - 1
  if running == 0 then done:signal() end
end

for _ = 1, math.min(concurrency, total) do lipc.go(runner) end
if running > 0 then done:wait() end
print(("%d ok, %d failed"):format(ok, failed))
