-- node_parent_child.lua - the lipc child of scripts/node_parent.js: Node's
-- child_process.fork started us with NODE_CHANNEL_FD, so fork.parent talks
-- Node's JSON lines. Squares numbers until told bye.
local fork = require "fork"
local lipc = require "lipc"

local parent = assert(fork.parent, "not started by a parent")
parent:send({hello = true, pid = lipc.pid, args = {...}})
local seen = 0
while true do
  local m = parent:receive()
  if m == nil then break end
  seen = seen + 1
  if m.bye then
    parent:send({bye = true, seen = seen})
    parent:disconnect()
    break
  end
  parent:send({n = m.n, square = m.n * m.n})
end
