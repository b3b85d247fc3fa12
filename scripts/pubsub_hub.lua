-- pubsub_hub.lua - a publish/subscribe hub over a Unix socket.
--   lipc scripts/pubsub_hub.lua [socket-path]         hub plus a demo
--   lipc scripts/pubsub_hub.lua socket-path serve      the hub alone
-- Protocol, one line per command: "sub <topic>", "pub <topic> <text>";
-- subscribers receive "<topic> <text>" lines. The socket is 0600.
local lipc = require "lipc"
local pipe = require "pipe"

local dir = not arg[1] and assert(lipc.mkdtemp("/tmp/pubsub-"))
local path = arg[1] or dir .. "/hub.sock"
local serve_only = arg[2] == "serve"

local topics = {}                     -- topic -> set of sockets

local function forget(sock)
  for _, subs in pairs(topics) do subs[sock] = nil end
end

local hub = pipe.create_server(function(sock)
  sock:on("close", function() forget(sock) end)
  for line in sock:lines() do
    local cmd, topic, text = line:match("^(%a+) (%S+) ?(.*)$")
    if cmd == "sub" then
      topics[topic] = topics[topic] or {}
      topics[topic][sock] = true
      sock:write("ok " .. topic .. "\n")
    elseif cmd == "pub" then
      for sub in pairs(topics[topic] or {}) do
        sub:write(topic .. " " .. text .. "\n")
      end
    end
  end
  forget(sock)
  sock:close()
end)
assert(hub:listen(path))
print("hub on " .. path)
if serve_only then return end

-- The demo: two subscribers, one publisher, then everything closes.
local function subscriber(name, topic, want)
  local sock = assert(pipe.connect(path))
  sock:write("sub " .. topic .. "\n")
  local lines = sock:lines()
  assert(lines() == "ok " .. topic)
  local got = {}
  for _ = 1, want do got[#got + 1] = lines() end
  print(name .. " got: " .. table.concat(got, " | "))
  sock:close()
end

local done = lipc.cond()
local left = 2
local function run(fn, ...)
  local args = table.pack(...)
  lipc.go(function()
    fn(table.unpack(args, 1, args.n))
    left = left - 1
    if left == 0 then done:signal() end
  end)
end
run(subscriber, "alice", "news", 2)
run(subscriber, "bob", "weather", 1)
lipc.sleep(50)                        -- both subscribed

local pub = assert(pipe.connect(path))
pub:write("pub news lipc 1.0 released\n")
pub:write("pub weather sunny\n")
pub:write("pub sports nobody listens\n")
pub:write("pub news pipes are fast\n")
if left > 0 then done:wait(5000) end
pub:close()
hub:close(function() if dir then os.remove(dir) end end)
