-- tcp_client.lua - says hello to scripts/tcp_server.lua and prints the answer.
--   lipc scripts/tcp_client.lua port [name]
local net = require "net"

local port = assert(tonumber(arg[1]), "usage: tcp_client.lua port [name]")
local name = arg[2] or "client"

local sock = assert(net.connect{host = "127.0.0.1", port = port, timeout = 5000})
sock:write(name .. "\n")
io.write(sock:read_all())
sock:close()
