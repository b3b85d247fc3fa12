-- two_hosts.lua - two "hosts" on loopback, each a server and a client of
-- the other: A on 127.0.0.1, B on ::1 (or 127.0.0.1 without IPv6). They
-- play ping/pong both ways and shut down.   lipc scripts/two_hosts.lua
local lipc = require "lipc"
local net = require "net"

local function host(name, address)
  local self = {name = name}
  self.server = net.create_server(function(sock)
    for line in sock:lines() do
      local n = line:match("^ping (%d+)$")
      sock:write(("pong %s from %s\n"):format(n, name))
    end
    sock:close()
  end)
  local ok = self.server:listen(0, address)
  if not ok then return nil end
  self.address = self.server:address()
  return self
end

-- ping(from, to, rounds): from connects to to's server and plays.
local function ping(from, to, rounds)
  local sock = assert(net.connect{host = to.address.address, port = to.address.port})
  local lines = sock:lines()
  for i = 1, rounds do
    sock:write(("ping %d\n"):format(i))
    print(("%s -> %s: ping %d, %s"):format(from.name, to.name, i, lines()))
  end
  sock:close()
end

local a = assert(host("A", "127.0.0.1"))
local b = host("B", "::1") or assert(host("B", "127.0.0.1"))
print(("A on %s port %d, B on %s port %d"):format(a.address.address, a.address.port,
  b.address.address, b.address.port))

local left, done = 2, lipc.cond()
for _, pair in ipairs({{a, b}, {b, a}}) do
  lipc.go(function()
    ping(pair[1], pair[2], 3)
    left = left - 1
    if left == 0 then done:signal() end
  end)
end
if left > 0 then done:wait(5000) end
a.server:close()
b.server:close()
