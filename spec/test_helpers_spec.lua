-- test_helpers_spec.lua - the lipc.test module: temp dirs, ports, waiting
-- with a deadline, a child's output, workers and fake peers, exits within
-- a time. (What the helpers leave to after the spec is in harness_spec.)
local lipc = require "lipc"
local net = require "net"
local spawn = require "spawn"
local support = require "support"
local t = require "lipc.test"

local q = support.shell_quote

-- A worker script that echoes what its parent sends and says goodbye on
-- stderr when the channel ends (well or badly).
local ECHO = [[
local parent = require("fork").parent
print("ready " .. require("lipc").pid)
while true do
  local msg, err = parent:receive()
  if msg == nil then io.stderr:write("parent gone: ", tostring(err), "\n") break end
  if msg == "crash" then error("asked to crash") end
  parent:send({echo = msg})
end
]]

local function echo_script()
  return support.write_file(t.tmpdir() .. "/echo.lua", ECHO)
end

describe("lipc.test", function()
  it("tmpdir makes a private directory", function()
    local d = t.tmpdir()
    assert.matches("/lipc%-test%-%w+$", d)
    local out = support.sh("stat -c %a " .. q(d))
    assert.are.equal("700\n", out)
    assert.are_not.equal(d, t.tmpdir())
  end)

  it("tmpdir outside lipc test is removed when the process exits", function()
    local out, _, status = support.run_lipc([[
      local d = require("lipc.test").tmpdir()
      local f = assert(io.open(d .. "/file", "w")); f:write("x"); f:close()
      print(d)
    ]])
    assert.are.equal(0, status)
    local d = out:match("^(%S+)\n$")
    assert.truthy(d, out)
    assert.is_nil(io.open(d .. "/file"))
    assert.is_nil(io.open(d))
  end)

  it("free_port is a port one can listen on", function()
    local port = t.free_port()
    assert.is_true(port > 0 and port < 65536)
    local srv = assert(net.create_server():listen(port, "127.0.0.1"))
    assert.are.equal(port, srv:address().port)
    srv:close()
    assert.is_true(t.free_port("::1") > 0)
  end)

  it("wait_for returns what the predicate gives, or nil and a message at the deadline", function()
    local n = 0
    local timer = lipc.set_interval(2, function() n = n + 1 end)
    assert.are.equal(3, t.wait_for(function() return n >= 3 and 3 end))
    timer:stop()
    local t0 = lipc.hrtime()
    local v, msg = t.wait_for(function() return false end, 60)
    assert.is_nil(v)
    assert.are.equal("lipc.test.wait_for: not true within 60 ms", msg)
    assert.is_true((lipc.hrtime() - t0) / 1e6 >= 60)
    assert.has_error(function() t.wait_for(42) end,
      "bad argument #1 to 'lipc.test.wait_for' (function expected, got number)")
  end)

  it("eventually retries assertions until they hold, or raises the last failure", function()
    local n = 0
    local timer = lipc.set_interval(2, function() n = n + 1 end)
    assert.are.equal("done", t.eventually(function()
      assert.is_true(n >= 5)
      return "done"
    end))
    timer:stop()
    local ok, err = pcall(t.eventually, function() assert.are.equal(1, 2) end, 40)
    assert.is_false(ok)
    assert.matches("Expected objects to be equal.*%(still failing after 40 ms%)$", tostring(err))
  end)

  it("the waits need a task; timeout needs lipc test", function()
    local _, err = support.run_lipc([[
      local t = require "lipc.test"
      coroutine.wrap(function() -- a plain coroutine is no task
        local _, e = pcall(t.wait_for, function() return true end)
        io.stderr:write(e, "\n")
      end)()
      local _, e = pcall(t.timeout, 100)
      io.stderr:write(e, "\n")
    ]])
    assert.matches("lipc.test.wait_for: must be called inside a task", err)
    assert.matches("lipc.test.timeout: only in specs run by `lipc test`", err)
  end)

  it("capture collects a child's stdout and stderr as they come", function()
    local child = spawn("sh", {"-c", "echo one; echo two >&2; sleep 0.05; echo port=4242"})
    local cap = t.capture(child)
    assert.are.equal("4242", cap:wait_for("port=(%d+)"))
    assert.are.equal(0, child:wait())
    assert.are.equal("one\nport=4242\n", cap.stdout)
    assert.are.equal("two\n", cap.stderr)
    assert.are.equal(#"one\ntwo\nport=4242\n", #cap.output)
    local v, msg = cap:wait_for("never", 1000)
    assert.is_nil(v)
    assert.matches('no "never" in the output before it ended; the output:\n', msg)
  end)

  it("capture:wait_for gives up at its deadline, with the output so far", function()
    local child = spawn("sh", {"-c", "echo started; exec sleep 5"})
    local cap = t.capture(child)
    local v, msg = cap:wait_for("finished", 100)
    assert.is_nil(v)
    assert.matches('no "finished" in the output within 100 ms; the output:\nstarted\n', msg)
    child:kill("SIGKILL")
    child:wait()
  end)

  it("worker starts a script to talk to, with its output captured", function()
    local w = assert(t.worker(echo_script(), {"x"}))
    local pid = tonumber(w.output:wait_for("ready (%d+)"))
    assert.are.equal(w.pid, pid)
    w:send({1, "two"})
    assert.are.same({echo = {1, "two"}}, w:receive())
    w:send("crash")
    assert.are.equal(1, t.exits_within(w, 5000))
    assert.truthy(w.output:wait_for("asked to crash"))
  end)

  it("a fake-peer worker reads the bytes the test writes and its frames can be read back", function()
    local w = t.worker(echo_script(), {fake_peer = true})
    assert.is_nil(w.channel)
    w.peer:write(t.frame("hi") .. t.frame({n = 2}))
    assert.are.same({echo = "hi"}, t.read_frame(w.peer))
    assert.are.same({echo = {n = 2}}, t.read_frame(w.peer))
    -- 0xc1 is never used in MessagePack: the worker's channel fails
    w.peer:write("\0\0\0\1\193")
    assert.truthy(w.output:wait_for("parent gone: [^\n]*"))
    assert.are.equal(0, t.exits_within(w, 5000))
    local v, msg = t.read_frame(w.peer)
    assert.is_nil(v)
    assert.is_string(msg)
  end)

  it("fake_peer gives a stream for the code under test and one for the test", function()
    local peer, other = t.fake_peer()
    local ch = other:channel()
    peer:write(t.frame({1, 2, 3}))
    assert.are.same({1, 2, 3}, ch:receive())
    ch:send("back")
    ch:send("again")
    assert.are.equal("back", t.read_frame(peer))
    assert.are.equal("again", t.read_frame(peer))
  end)

  it("frame is the native wire format", function()
    assert.are.equal("\0\0\0\3\162hi", t.frame("hi"))
    assert.are.equal("\0\0\0\1\192", t.frame(nil))
    local big = string.rep("x", 300000)
    local f = t.frame(big)
    assert.are.equal(4 + 5 + #big, #f)
    local peer, other = t.fake_peer()
    peer:write(f)
    assert.are.equal(big, other:channel():receive())
  end)

  it("exits_within returns the exit status, or kills the child and fails the spec", function()
    local c = spawn("sh", {"-c", "exit 3"})
    assert.are.equal(3, t.exits_within(c, 5000))
    c = spawn("sleep", {"30"})
    local ok, err = pcall(t.exits_within, c, 50)
    assert.is_false(ok)
    assert.matches("process " .. c.pid .. " did not exit within 50 ms %(it was killed%)", tostring(err))
    assert.are.equal("table", type(err), "a busted failure, not a plain error")
    local code, signal = c:wait()
    assert.is_nil(code)
    assert.are.equal("SIGKILL", signal)
  end)
end)
