-- echo_server (lipc): the server side of the connections curve. Listens on
-- 127.0.0.1 (a free port, backlog 4096), prints "PORT <n>", and echoes
-- every connection the way Node's side does: a 'data' listener writes the
-- chunk back. With "tasks" each connection is instead a task that reads
-- (sock:read()) and writes until the peer goes: a parked coroutine more a
-- connection (~0.7 KiB). Ends when its stdin ends (conn_load closes it).
--   lipc echo_server.lua [tasks]   (run by build/bench/conn_load)
local lipc = require "lipc"
local net = require "net"

local tasks = (... or (arg and arg[1])) == "tasks"
local server = net.create_server(function(sock)
  if not tasks then
    sock:on("data", function(d) sock:write(d) end)
    sock:on("error", function() end) -- conn_load ends connections with a reset
    return
  end
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
