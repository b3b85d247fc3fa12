-- node_child.lua - a lipc parent with a Node child: fork() of a .js script
-- runs node with Node's JSON channel; the child (node_child.js) answers
-- with process.send.
--   lipc scripts/node_child.lua
local fork = require "fork"

local dir = arg and arg[0] and arg[0]:match("^(.*)/[^/]*$") or "scripts"
local child = assert(fork(dir .. "/node_child.js", {"from-lipc"}))
local hello = child:receive()
print("node says: " .. hello.hello .. " (node " .. hello.version .. ")")
child:send({op = "upper", text = "hello from lipc"})
print("upper: " .. child:receive().text)
child:send({op = "sum", xs = {1, 2, 3, 4.5}})
print("sum: " .. child:receive().sum)
child:disconnect()
local code = child:wait()
print("node exited with " .. tostring(code))
