-- fork_basic.lua - fork a worker, send it jobs, print its answers.
--   lipc scripts/fork_basic.lua
local fork = require "fork"

local dir = arg and arg[0] and arg[0]:match("^(.*)/[^/]*$") or "scripts"
local worker = assert(fork(dir .. "/fork_basic_worker.lua", {"worker-1"}))
worker:on("exit", function(code) print("worker exited with " .. tostring(code)) end)

print(worker:receive().hello)
for _, xs in ipairs({{1, 2, 3}, {10, 20}, {}}) do
  worker:send({op = "sum", xs = xs})
  local reply = worker:receive()
  print(("sum of %d numbers = %d"):format(#xs, reply.sum))
end
worker:send({op = "quit"})
print("worker said: " .. worker:receive().bye)
assert(worker:receive() == nil) -- the worker ended: its channel closed
