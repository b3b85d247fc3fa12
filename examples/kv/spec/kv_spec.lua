-- kv_spec.lua - the kv service, started for real: as a forked worker the
-- specs talk to, as a plain script, and with a fake parent that sends it
-- bytes that are not a frame. Run with `lipc test` in this directory.
local lipc = require "lipc"
local net = require "net"
local spawn = require "spawn"
local t = require "lipc.test"

-- The service as a worker; returns it and the port it listens on.
local function start(args)
  local kv = assert(t.worker("kv.lua", args or {}))
  local hello = assert(kv:receive())
  return kv, hello.ready
end

-- A client: ask(line) -> the answer line.
local function client(port)
  local sock = assert(net.connect(port, "127.0.0.1"))
  local lines = sock:lines()
  return function(line)
    sock:write(line .. "\n")
    return lines()
  end, sock
end

describe("kv", function()
  it("stores, returns and deletes values", function()
    local _, port = start()
    local ask, sock = client(port)
    assert.are.equal("NIL", ask("GET colour"))
    assert.are.equal("OK", ask("SET colour blue"))
    assert.are.equal("blue", ask("GET colour"))
    assert.are.equal("1", ask("KEYS"))
    assert.are.equal("1", ask("DEL colour"))
    assert.are.equal("0", ask("DEL colour"))
    sock:close()
  end)

  it("answers ERR to what it does not know, and the connection goes on", function()
    local _, port = start()
    local ask, sock = client(port)
    assert.are.equal("ERR unknown command 'FETCH'", ask("FETCH colour"))
    assert.are.equal("ERR usage: SET key value", ask("SET colour"))
    assert.are.equal("OK", ask("SET colour red"))
    sock:close()
  end)

  it("serves several clients at once, one store", function()
    local _, port = start()
    local socks, done = {}, lipc.cond()
    for i = 1, 5 do
      lipc.go(function()
        local ask, sock = client(port)
        socks[#socks + 1] = sock
        assert.are.equal("OK", ask("SET k" .. i .. " v" .. i))
        done:signal()
      end)
    end
    for _ = 1, 5 do done:wait() end
    local ask, sock = client(port)
    assert.are.equal("5", ask("KEYS"))
    assert.are.equal("v3", ask("GET k3"))
    sock:close()
    for _, s in ipairs(socks) do s:close() end
  end)

  it("listens on the port it is given", function()
    local port = t.free_port()
    local _, ready = start({"--port", port})
    assert.are.equal(port, ready)
  end)

  it("logs each change to the file it is given", function()
    local log = t.tmpdir() .. "/kv.log"
    local _, port = start({"--log", log})
    local ask, sock = client(port)
    ask("SET a 1")
    ask("GET a")
    ask("DEL a")
    sock:close()
    t.eventually(function()
      local f = assert(io.open(log))
      assert.are.equal("SET a\nDEL a\n", f:read("a"))
      f:close()
    end)
  end)

  it("stops within a second when its parent disconnects", function()
    local kv = start()
    kv:disconnect()
    assert.are.equal(0, t.exits_within(kv, 1000))
  end)

  it("run as a script, says where it listens and stops on SIGTERM", function()
    local child = spawn(lipc.argv[1], {"kv.lua"})
    local out = t.capture(child)
    local port = tonumber(assert(out:wait_for("listening on 127%.0%.0%.1:(%d+)")))
    local ask, sock = client(port)
    assert.are.equal("OK", ask("SET x 1"))
    sock:close()
    child:kill("SIGTERM")
    assert.are.equal(0, t.exits_within(child, 1000))
  end)

  it("exits with status 2 when its parent sends bytes that are not a frame", function()
    local kv = t.worker("kv.lua", {fake_peer = true})
    local hello = assert(t.read_frame(kv.peer))
    assert.is_number(hello.ready)
    kv.peer:write("\0\0\0\1\193") -- one byte, 0xc1: never valid MessagePack
    assert.are.equal(2, t.exits_within(kv, 1000))
    assert.matches("kv: the channel to the parent failed", kv.output.stderr)
  end)
end)
