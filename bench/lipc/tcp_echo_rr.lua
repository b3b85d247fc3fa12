-- tcp_echo_rr (lipc): the parent runs an echo server on 127.0.0.1 (port 0),
-- a forked child connects and does N round trips of 64 bytes (write 64, read
-- until 64 are back). The parent times from the connection to writing the Nth
-- echo. Defaults kept (no TCP_NODELAY), like the C and Node sides.
--   lipc tcp_echo_rr.lua [round_trips]   -> RESULT tcp_echo_rr <n> rt/s
local C = dofile((debug.getinfo(1, "S").source:match("^[@=]?(.*/)") or "./") .. "common.lua")
local lipc = require "lipc"
local net = require "net"

local MSG = 64
local argv = C.args(...)

if argv[1] == "client" then
  local n = math.tointeger(tonumber(argv[2]))
  local port = math.tointeger(tonumber(argv[3]))
  local sock = C.check(net.connect({host = "127.0.0.1", port = port}))
  local msg = string.rep("x", MSG)
  for _ = 1, n do
    sock:write(msg)
    local have = 0
    while have < MSG do
      local d = sock:read()
      if d == nil then error("client: early EOF") end
      have = have + #d
    end
  end
  sock:close()
  lipc.exit(0)
end

local n = C.count(argv[1], 100000)
local server
server = net.create_server(function(sock)
  local t0, t1 = C.now(), nil
  local echoed = 0
  while true do
    local d = sock:read()
    if d == nil then break end
    if not sock:write(d) then sock:drain() end
    echoed = echoed + #d
    if echoed == n * MSG then t1 = C.now() end
  end
  sock:close()
  server:close()
  if not t1 then error("echo incomplete: " .. echoed .. " bytes") end
  C.result("tcp_echo_rr", n / C.secs(t0, t1), "rt/s")
end)
C.check(server:listen(0, "127.0.0.1"))
local port = server:address().port
local fork = require "fork"
C.check(fork(C.script(), {"client", tostring(n), tostring(port)}))
