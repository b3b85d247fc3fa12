-- fork_basic_worker.lua - the child of fork_basic.lua: answers sums.
local fork = require "fork"
local parent = assert(fork.parent, "run me through fork_basic.lua")
local name = ...

parent:send({hello = "hello from " .. tostring(name)})
while true do
  local m = parent:receive()
  if m == nil or m.op == "quit" then break end
  local s = 0
  for _, x in ipairs(m.xs) do s = s + x end
  parent:send({sum = s})
end
parent:send({bye = "bye"}) -- delivered before the worker exits
