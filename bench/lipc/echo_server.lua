-- echo_server (lipc): the server side of the connections curve. Listens on
-- 127.0.0.1 (a free port, backlog 4096), prints "PORT <n>", and echoes
-- every connection as a lipc user writes it: the connection's task reads
-- (sock:read()) and writes back until the peer goes. Ends when its stdin
-- ends (conn_load closes it).
--   lipc echo_server.lua   (run by build/bench/conn_load)
local lipc = require "lipc"
local net = require "net"

local server = net.create_server(function(sock)
  while true do
    local d = sock:read()
    if d == nil then break end
    if not sock:write(d) then sock:drain() end
  end
  sock:close()
end)
assert(server:listen(0, "127.0.0.1", {backlog = 4096}))
print("PORT " .. server:address().port)
io.stdout:flush()
lipc.stdin:read_all()
lipc.exit(0)
