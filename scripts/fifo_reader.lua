-- fifo_reader.lua - prints what writers put into a named pipe until the
-- last one goes.   lipc scripts/fifo_reader.lua path
local pipe = require "pipe"

local path = assert(arg[1], "usage: fifo_reader.lua path")
pipe.mkfifo(path)

local r = assert(pipe.open(path, "r"))
for line in r:lines() do print("read: " .. line) end
r:close()
