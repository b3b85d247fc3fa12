-- fifo_writer.lua - writes lines into a named pipe (run fifo_reader.lua too).
--   lipc scripts/fifo_writer.lua path [line...]
-- pipe.open(path, "w") waits for a reader without blocking the event loop.
local lipc = require "lipc"
local pipe = require "pipe"

local path = assert(arg[1], "usage: fifo_writer.lua path [line...]")
pipe.mkfifo(path)                     -- fine when it exists already

local ticks = 0
local ticker = lipc.set_interval(100, function() ticks = ticks + 1 end)
local w = assert(pipe.open(path, "w"))
ticker:stop()
local lines = {table.unpack(arg, 2)}
if #lines == 0 then lines = {"hello through a named pipe"} end
for _, line in ipairs(lines) do w:write(line .. "\n") end
w:shutdown()
io.stderr:write(("writer: reader came after %d ticks\n"):format(ticks))
