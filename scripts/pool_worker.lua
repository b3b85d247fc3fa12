-- pool_worker.lua - a worker of pool.lua.
local fork = require "fork"
fork.serve(function(msg)
  if msg.crash then os.exit(3) end
  return msg.square * msg.square
end)
