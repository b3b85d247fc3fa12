-- spawn_basic.lua - spawn a child, print its stdout, report its exit code.
--   lipc scripts/spawn_basic.lua [program [args...]]
local spawn = require "spawn"

local argv = {...}
local file = argv[1] or "echo"
local args = {table.unpack(argv, 2)}
if #argv == 0 then args = {"hello from a child"} end

local child = spawn(file, args, {stdio = {"ignore", "pipe", "inherit"}})
child:on("error", function(msg) io.stderr:write("spawn_basic: ", msg, "\n") end)
child.stdout:on("data", function(chunk) io.write(chunk) end)
local code, signal = child:wait()
if code then
  print("exit code " .. code)
else
  print("killed by " .. tostring(signal))
end
os.exit(code == 0 and 0 or 1)
