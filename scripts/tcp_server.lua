-- tcp_server.lua - greets TCP clients; run scripts/tcp_client.lua against it.
--   lipc scripts/tcp_server.lua [port=7000] [count]
-- Listens on 127.0.0.1 only (net's default); stops after `count` clients.
local net = require "net"

local port = tonumber(arg[1]) or 7000
local count = tonumber(arg[2])
io.stdout:setvbuf("line")

local served = 0
local server
server = net.create_server(function(sock)
  local name = sock:lines()() or "stranger"
  sock:write(("hello %s, I am the server\n"):format(name))
  sock:shutdown()
  sock:read_all()                     -- until the client hangs up
  sock:close()
  served = served + 1
  print("greeted " .. name)
  if count and served >= count then server:close() end
end)

assert(server:listen(port))
print("listening on " .. server:address().port)
