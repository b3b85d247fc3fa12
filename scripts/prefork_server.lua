-- prefork_server.lua - a prefork TCP server: the parent listens, forks N
-- workers and hands each the listening server; the workers accept the
-- connections and answer with their pid. The parent then makes a few
-- connections, prints which workers answered and shuts everything down.
--   lipc scripts/prefork_server.lua [workers] [connections]
local lipc = require "lipc"
local fork = require "fork"
local net = require "net"

local parent = fork.parent
if parent then
  local _, server = parent:receive()
  server:on("connection", function(sock)
    sock:write("worker " .. lipc.pid .. "\n", function() sock:close() end)
  end)
  parent:send("ready")
  parent:receive() -- nil when the parent disconnects: time to go
  server:close()
  return
end

local nworkers = tonumber((...)) or 3
local nconn = tonumber((select(2, ...))) or 12
local server = net.create_server()
assert(server:listen(0, "127.0.0.1"))
local port = server:address().port
local workers = {}
for i = 1, nworkers do
  workers[i] = assert(fork(arg[0], {}))
  workers[i]:send({port = port}, server)
end
for i = 1, nworkers do assert(workers[i]:receive() == "ready") end
server:close() -- the workers hold it now

local seen, answers = {}, 0
for _ = 1, nconn do
  local sock = assert(net.connect({host = "127.0.0.1", port = port}))
  local line = sock:read_all()
  sock:close()
  local who = line:match("worker (%d+)")
  if who then seen[who] = true; answers = answers + 1 end
end
local n = 0
for _ in pairs(seen) do n = n + 1 end
print(("%d connections answered by %d worker(s)"):format(answers, n))
for i = 1, nworkers do workers[i]:disconnect(); workers[i]:wait() end
