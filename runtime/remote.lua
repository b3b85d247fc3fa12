-- remote.lua - the main task of `lipc --stdio-channel`: a worker reached
-- through a launcher (fork's `via` option). main.c has made the channel
-- over stdin and stdout (fork.parent); this chunk says hello with its
-- version, takes the parent's hello (the script, its arguments and the
-- modules it requires, or a path to a script on this host) and runs the
-- script as a forked worker's. docs/wire-format.md section 8.
local lipc = require "lipc"
local fork = require "fork"

local PROTO, HELLO = 1, 1
local WAIT_MS = 60000 -- for the parent's hello: no worker waits for ever

local parent = fork.parent
local function fail(msg)
  io.stderr:write("lipc --stdio-channel: ", msg, "\n")
  lipc.exit(1)
end
if not parent then return fail("no channel") end

local got = lipc.cond()
local hello
parent:on("control", function(kind, value)
  if kind == HELLO and hello == nil then
    hello = value
    got:signal(true)
  end
end)
parent:send_control(HELLO, {lipc = lipc.version, proto = PROTO, pid = lipc.pid})
if hello == nil and got:wait(WAIT_MS) == nil then
  return fail("no hello from the parent within " .. WAIT_MS .. " ms")
end
if type(hello) ~= "table" or hello.proto ~= PROTO or hello.lipc ~= lipc.version then
  return fail(("the parent's lipc %s (protocol %s) is not this lipc %s (protocol %d)")
    :format(tostring(type(hello) == "table" and hello.lipc),
            tostring(type(hello) == "table" and hello.proto), lipc.version, PROTO))
end
local script = hello.script
if type(script) ~= "string" then return fail("the hello names no script") end

-- Shipped modules come before the searchers of this host.
if type(hello.modules) == "table" then
  for name, m in pairs(hello.modules) do
    if type(name) == "string" and type(m) == "table" and type(m.source) == "string" then
      package.preload[name] = function(...)
        local chunk = assert(load(m.source, "@" .. tostring(m.path or name)))
        return chunk(...)
      end
    end
  end
end

local chunk, err
if type(hello.source) == "string" then
  chunk, err = load(hello.source, "@" .. script)
else
  chunk, err = loadfile(script)
end
if not chunk then return fail(err) end
local args = type(hello.args) == "table" and hello.args or {}
local argt = {[0] = script}
for i, a in ipairs(args) do argt[i] = a end
arg = argt -- luacheck: ignore 121
return chunk(table.unpack(argt))
