-- kv.lua - a small key-value service over TCP, one command per line:
--   SET key value  -> OK        GET key -> the value, or NIL
--   DEL key        -> 1 or 0    KEYS    -> how many keys
-- anything else gets "ERR ..." and the connection stays open.
--
--   lipc kv.lua [--port N] [--log FILE]
-- listens on 127.0.0.1:N (default: a free port) and prints where. Forked
-- by a parent, it sends it {ready = port} instead, and stops when the
-- parent disconnects; SIGTERM stops it too. --log appends one line per
-- change to FILE.
local lipc = require "lipc"
local net = require "net"
local fork = require "fork"

local port, log_path = 0, nil
do
  local i = 1
  while arg[i] do
    if arg[i] == "--port" then port = tonumber(arg[i + 1]); i = i + 1
    elseif arg[i] == "--log" then log_path = arg[i + 1]; i = i + 1
    else io.stderr:write("kv: unknown argument ", arg[i], "\n"); os.exit(64) end
    i = i + 1
  end
end

local store, count = {}, 0

local function log(line)
  if not log_path then return end
  local f = assert(io.open(log_path, "a"))
  f:write(line, "\n")
  f:close()
end

local commands = {}

function commands.SET(key, value)
  if not key or not value then return "ERR usage: SET key value" end
  if store[key] == nil then count = count + 1 end
  store[key] = value
  log("SET " .. key)
  return "OK"
end

function commands.GET(key)
  if not key then return "ERR usage: GET key" end
  return store[key] or "NIL"
end

function commands.DEL(key)
  if not key then return "ERR usage: DEL key" end
  if store[key] == nil then return "0" end
  store[key], count = nil, count - 1
  log("DEL " .. key)
  return "1"
end

function commands.KEYS()
  return tostring(count)
end

local function answer(line)
  local cmd, key, value = line:match("^(%u+)%s*(%S*)%s*(.-)%s*$")
  local fn = cmd and commands[cmd]
  if not fn then return ("ERR unknown command '%s'"):format(line:match("^%S*")) end
  return fn(key ~= "" and key or nil, value ~= "" and value or nil)
end

local server = net.create_server(function(sock)
  for line in sock:lines() do
    sock:write(answer(line) .. "\n")
  end
  sock:close()
end)
local ok, err = server:listen(port, "127.0.0.1")
if not ok then
  io.stderr:write("kv: ", err, "\n")
  os.exit(1)
end
port = server:address().port

local function stop(code)
  server:close()
  lipc.exit(code)
end

lipc.on_signal("SIGTERM", function() stop(0) end)

local parent = fork.parent
if not parent then
  print(("listening on 127.0.0.1:%d"):format(port))
  return
end

-- Forked: the parent learns the port, and the service lives as long as
-- the channel. A parent that sends what is not a frame ends it too.
parent:send({ready = port})
local msg, why = parent:receive()
while msg ~= nil do
  msg, why = parent:receive()
end
if why then
  io.stderr:write("kv: the channel to the parent failed: ", why, "\n")
  stop(2)
end
stop(0)
