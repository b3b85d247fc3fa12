-- peer_errors_spec.lua - errors a peer causes never end the process by
-- default. An error on an accepted socket that nobody handles closes that
-- socket and becomes its server's 'client_error' event (traced); a spawn
-- that fails to start before anyone waits is kept for wait(). Each server
-- runs in a child lipc, so that an uncaught error shows as its status.
local S = require "support"

-- A lipc script that serves TCP on a free port and runs `client` (a Node
-- program, given the port as argv[2]) against it, then connects once more
-- itself to see that the server still answers. Prints what happened.
local SERVER = [[
local lipc, net, spawn = require "lipc", require "net", require "spawn"
local listen_errors, setup, client = ...
local srv = net.create_server(function(sock)
  if setup == "channel" then
    local ch = sock:channel()
    ch:on("message", function(m) ch:send(m) end)
  else
    sock:on("data", function(chunk) sock:write(chunk) end)
  end
end)
local seen = lipc.cond()
if listen_errors == "yes" then
  srv:on("client_error", function(msg, code, sock)
    print("client_error", code, type(msg), tostring(sock):match("^lipc%.") ~= nil)
    seen:signal()
  end)
end
assert(srv:listen(0))
local port = srv:address().port
local node = spawn("node", {"-e", client, tostring(port)}, {stdio = {"ignore", "inherit", "inherit"}})
print("client", (node:wait()))
if listen_errors == "yes" then seen:wait(10000) end
-- the server still serves
local sock = assert(net.connect({port = port}))
if setup == "channel" then
  local ch = sock:channel()
  ch:send("again")
  print("echo", (ch:receive()))
else
  sock:write("again")
  print("echo", sock:read())
end
sock:close()
srv:close()
]]

-- A Node client that sends a little and then resets the connection
-- (SO_LINGER 0: an RST, the server's read fails with ECONNRESET).
local RESETTER = [[
const net = require("net");
const s = net.connect(+process.argv[1], "127.0.0.1", () => {
  s.write("hello", () => setTimeout(() => s.resetAndDestroy(), 50));
});
s.on("data", () => {});
s.on("error", () => {});
]]

-- A Node client that sends a native frame with a bad MessagePack value.
local GARBAGE = [[
const net = require("net");
const s = net.connect(+process.argv[1], "127.0.0.1", () => {
  s.end(Buffer.from([0, 0, 0, 2, 0xc1, 0xc1]));
});
s.on("data", () => {});
s.on("error", () => {});
s.on("close", () => {});
]]

describe("errors a peer causes", function()

  it("a client resetting its connection does not end a server with no 'error' listener", function()
    local out, err, status = S.run_lipc(SERVER, {"no", "data", RESETTER})
    assert.are.equal(0, status, err)
    assert.matches("client\t0\n", out, 1, true)
    assert.matches("echo\tagain\n", out, 1, true)
  end)

  it("the reset is the server's 'client_error'(msg, code, sock)", function()
    local out, err, status = S.run_lipc(SERVER, {"yes", "data", RESETTER})
    assert.are.equal(0, status, err)
    assert.matches("client_error\tECONNRESET\tstring\ttrue", out, 1, true)
    assert.matches("echo\tagain\n", out, 1, true)
  end)

  it("is traced under LIPC_TRACE=net", function()
    local dir = S.tmpdir()
    local path = S.write_file(dir .. "/server.lua", SERVER)
    local out = S.sh(("LIPC_TRACE=net %s %s no data %s 2>&1 </dev/null"):format(
      S.shell_quote(S.lipc), S.shell_quote(path), S.shell_quote(RESETTER)))
    assert.matches("client error fd %d+: ECONNRESET", out)
  end)

  it("a client sending garbage on a channel over an accepted socket: 'client_error'", function()
    local out, err, status = S.run_lipc(SERVER, {"yes", "channel", GARBAGE})
    assert.are.equal(0, status, err)
    assert.matches("client_error\tERR_IPC_BAD_MESSAGE\tstring", out, 1, true)
    assert.matches("echo\tagain\n", out, 1, true)
    out, err, status = S.run_lipc(SERVER, {"no", "channel", GARBAGE})
    assert.are.equal(0, status, err)
    assert.matches("echo\tagain\n", out, 1, true)
  end)

  it("a spawn that fails before anyone waits is kept for wait(), not uncaught", function()
    local out, err, status = S.run_lipc([[
      local lipc, spawn = require "lipc", require "spawn"
      local child = spawn("/nonexistent/program", {})
      lipc.sleep(50) -- the failure comes first, while nobody waits
      print(child:wait())
    ]])
    assert.are.equal(0, status, err)
    assert.matches("^nil\tENOENT: no such file or directory.*\tENOENT\n$", out)
  end)

  it("an 'error' listener still hears a failed spawn", function()
    local out, err, status = S.run_lipc([[
      local lipc, spawn = require "lipc", require "spawn"
      local child = spawn("/nonexistent/program", {})
      child:on("error", function(_, code) print("error", code) end)
      lipc.sleep(50)
    ]])
    assert.are.equal(0, status, err)
    assert.are.equal("error\tENOENT\n", out)
  end)
end)
