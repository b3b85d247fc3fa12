-- demo.lua - `make demo`: one topology that uses all four modules.
--
--   net    the parent listens on a TCP port (loopback, port picked freely)
--   fork   three Lua workers; each is handed the listening server (the fd
--          travels with a message) and accepts connections on it
--   pipe   the workers report every connection they serve, live, over a
--          Unix socket hub in the parent (a message channel on a socket)
--   spawn  a load client (another lipc) opens the connections; the parent
--          reads its progress from its stdout
--
-- At the end the parent asks each worker for its count over the fork
-- channel and checks that every number agrees.
--   lipc scripts/demo.lua [connections] [concurrency] [workers]
local lipc = require "lipc"
local fork = require "fork"
local net = require "net"
local pipe = require "pipe"
local spawn = require "spawn"

local total = tonumber(arg[1]) or 300
local concurrency = tonumber(arg[2]) or 20
local nworkers = tonumber(arg[3]) or 3
local here = arg[0]:match("^(.*)/[^/]*$") or "."

local function say(fmt, ...) print((fmt):format(...)) end

local t0 = lipc.hrtime()
say("lipc %s demo: %d connections, %d at a time, %d workers", lipc.version,
  total, concurrency, nworkers)

-- pipe: a hub on a Unix socket where workers report each connection.
local dir = assert(lipc.mkdtemp())
local hub_path = dir .. "/hub.sock"
local live, live_total = {}, 0
local hub = pipe.create_server(function(sock)
  local ch = sock:channel()
  ch:on("message", function(m)
    live[m.worker] = (live[m.worker] or 0) + 1
    live_total = live_total + 1
  end)
end)
assert(hub:listen(hub_path))
say("  pipe   hub listening on %s (mode 0600)", hub_path)

-- net: the server the workers will share.
local server = net.create_server()
assert(server:listen(0))
local port = server:address().port
say("  net    listening on 127.0.0.1:%d", port)

-- fork: workers get the server with their first message.
local workers = {}
for i = 1, nworkers do
  local w = assert(fork(here .. "/demo_worker.lua"))
  w:send({id = i, hub = hub_path}, server)
  workers[i] = w
end
for i, w in ipairs(workers) do
  local ready = w:receive()
  assert(ready and ready.ready == i, "worker did not start")
end
server:close() -- the workers hold it now
local pids = {}
for i, w in ipairs(workers) do pids[i] = w.pid end
say("  fork   %d workers (pids %s) accept on the shared server", nworkers,
  table.concat(pids, ", "))

-- spawn: the load client, its stdout read line by line.
local client = assert(spawn(lipc.argv[1], {here .. "/demo_client.lua", port, total, concurrency},
  {stdio = {"ignore", "pipe", "inherit"}}))
say("  spawn  load client pid %d", client.pid)
local summary
for line in client.stdout:lines() do
  if line:match("^progress") then
    say("         client %s", line)
  else
    summary = line
  end
end
local code = client:wait()
say("         client exited with %s: %s", tostring(code), tostring(summary))

-- fork channels: each worker's own count.
local counted = 0
say("")
say("  worker  pid      served  reported live over the hub")
for i, w in ipairs(workers) do
  w:send({op = "stats"})
  local stats = w:receive()
  counted = counted + stats.served
  say("  %-6d  %-7d  %-6d  %d", i, w.pid, stats.served, live[i] or 0)
end
for _, w in ipairs(workers) do w:disconnect() end
for _, w in ipairs(workers) do w:wait() end
hub:close()
os.remove(dir)

local ms = (lipc.hrtime() - t0) / 1e6
say("")
say("  total   %d served, %d reported live, client saw %s", counted, live_total,
  summary and summary:match("(%d+) ok") or "?")
say("  %.0f ms in all", ms)
local ok = counted == total and live_total == total and code == 0
say(ok and "demo: all numbers agree" or "demo: numbers DISAGREE")
lipc.exit(ok and 0 or 1)
