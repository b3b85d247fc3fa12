-- demo_worker.lua - a worker of scripts/demo.lua: accepts connections on
-- the server its parent handed it, answers each with its id, reports each
-- one live to the parent's Unix socket hub, and its total when asked.
local lipc = require "lipc"
local fork = require "fork"
local pipe = require "pipe"

local parent = assert(fork.parent, "run me through scripts/demo.lua")
local hello, server = parent:receive()
local id = hello.id
local hub = assert(pipe.connect(hello.hub)):channel()
local served = 0

server:on("connection", function(sock)
  local request = sock:read()
  sock:write(("worker %d pid %d: %s"):format(id, lipc.pid, request or "?"))
  sock:shutdown()
  served = served + 1
  hub:send({worker = id})
end)
parent:send({ready = id})

while true do
  local msg = parent:receive()
  if msg == nil then break end -- the parent disconnected: we are done
  if msg.op == "stats" then parent:send({served = served}) end
end
server:close()
hub:disconnect()
