-- handles_spec.lua - fds a peer passes with SCM_RIGHTS are not trusted:
-- each is made non-blocking, its real type must be the kind its marker
-- claims, fds no marker claims are closed at once, and an fd lipc does
-- not take is refused without stopping the ones after it. The peer is a
-- real process (spec/fd_peer.c, compiled here) that passes what it is
-- told, lying where told to.
local lipc = require "lipc"
local spawn = require "spawn"
local net = require "net"
local S = require "support"

-- The peer, built once per run of this file.
local peer_bin
local function fd_peer()
  if peer_bin then return peer_bin end
  local dir = lipc.mkdtemp("/tmp/lipc-fd-peer-")
  local out, status = S.sh(("cc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -o %s %s 2>&1")
    :format(S.shell_quote(dir .. "/fd_peer"), S.shell_quote(S.root .. "/spec/fd_peer.c")))
  assert(status == 0, out)
  peer_bin = dir .. "/fd_peer"
  return peer_bin
end

-- peer(steps...) -> channel, child: fd_peer doing the steps (see
-- fd_peer.c) on fd 3, the other end of which is the channel's (a JSON
-- lines one when the first step is "json").
local function peer(...)
  local child = assert(spawn(fd_peer(), {...}, {stdio = {"ignore", "inherit", "inherit", "ipc"}}))
  return child.stdio[4]:channel((...) == "json" and {serialization = "json"} or nil), child
end

local function nonblocking(fd)
  local f = io.open("/proc/self/fdinfo/" .. fd)
  if not f then return nil end
  local flags = f:read("a"):match("flags:%s*(%d+)")
  f:close()
  return tonumber(flags, 8) & tonumber("4000", 8) ~= 0   -- O_NONBLOCK
end

-- receive_nonblocking(ch, what) -> handle: receives message `what` with
-- a handle, and checks that the one socket fd it brought is non-blocking.
local function receive_nonblocking(ch, what)
  local before = lipc.fds()         -- the fd comes with a read, in receive()
  local m, h = ch:receive()
  assert.are.equal(what, m)
  assert.truthy(h)
  local new = 0
  for fd, it in pairs(lipc.fds()) do
    if before[fd] ~= it and it:match("^socket:") then
      new = new + 1
      assert.is_true(nonblocking(fd), "fd " .. fd .. " is blocking")
    end
  end
  assert.are.equal(1, new)
  return h
end

-- junk_closed(...): a peer that starts with the steps given, then sends
-- 250 fds no marker claims 20 times, then a pipe socket one does: the
-- unclaimed fds are closed at once and the pipe socket comes with its own.
local function junk_closed(...)
  local steps = {...}
  for _ = 1, 20 do steps[#steps + 1] = "junk:250" end
  steps[#steps + 1] = "send:pipe-socket:4"        -- then one that a marker claims
  steps[#steps + 1] = "wait"
  local ch, child = peer(table.unpack(steps))
  local before = S.open_fds()
  for _ = 1, 20 do assert.are.equal("junk", ch:receive()) end
  local m, h = ch:receive()
  assert.are.equal("pipe-socket", m)
  assert.truthy(h)                                 -- its own fd, not a stray one
  assert.is_true(S.open_fds() <= before + 1, "open fds: " .. S.open_fds() .. ", before " .. before)
  h:close()
  ch:close()
  child:wait()
end

local KINDS = {["tcp-server"] = 1, ["tcp-socket"] = 2, ["pipe-server"] = 3, ["pipe-socket"] = 4}

describe("fds passed by a peer", function()
  after_each(function()
    if peer_bin then os.execute("rm -rf " .. S.shell_quote(peer_bin:match("^(.*)/"))) end
    peer_bin = nil
  end)

  for what, kind in pairs(KINDS) do
    it(("a blocking %s arrives non-blocking"):format(what), function()
      local ch, child = peer(("send:%s:%d"):format(what, kind), "wait")
      local h = receive_nonblocking(ch, what)
      h:close()
      ch:close()
      child:wait()
    end)
  end

  it("a blocking TCP server taken over serves connections without stopping the loop", function()
    local ch, child = peer("send:tcp-server:1", "wait")
    local _, srv = ch:receive()
    local n, done = 0, lipc.cond()
    srv:on("connection", function(sock)
      n = n + 1
      sock:close()
      done:signal()
    end)
    -- with a blocking fd the second accept4 of a wake-up never returns
    local port = srv:address().port
    local a = assert(net.connect({host = "127.0.0.1", port = port}))
    local b = assert(net.connect({host = "127.0.0.1", port = port}))
    while n < 2 do assert.is_true(done:wait(5000)) end
    a:close(); b:close()
    srv:close()
    ch:close()
    child:wait()
  end)

  for _, lie in ipairs({
    {"tcp-server", 3, "a TCP server sent as a pipe server"},
    {"tcp-server", 2, "a TCP server sent as a TCP socket"},
    {"tcp-socket", 1, "a TCP socket sent as a TCP server"},
    {"pipe-socket", 2, "a pipe socket sent as a TCP socket"},
    {"pipe-server", 4, "a pipe server sent as a pipe socket"},
  }) do
    it(("%s: a protocol fault after the messages before it"):format(lie[3]), function()
      local ch, child = peer("send:none:0", ("send:%s:%d"):format(lie[1], lie[2]), "wait")
      local before = S.open_fds()
      assert.are.equal("none", ch:receive())
      local m, err, code = ch:receive()
      assert.is_nil(m)
      assert.are.equal("ERR_IPC_BAD_HANDLE", code)
      assert.matches("the peer sent " .. lie[3]:gsub(" sent as ", " as "), err)
      assert.is_false(ch.connected)
      child:wait()                                  -- the channel closed: it ends
      assert.is_true(S.wait_for(function() return S.open_fds() <= before end))
      ch:close()
    end)
  end

  it("fds no marker claims are closed at once: 250 per sendmsg, 20 times", function()
    junk_closed()
  end)

  it("an fd lipc does not take, with a marker, is refused and the ones after it still arrive", function()
    local ch, child = peer("send:devnull:4", "send:eventfd:2", "send:udp:1", "send:tcp-socket:2",
      "send:pipe-server:3", "wait")
    local before = S.open_fds()
    for _, what in ipairs({"devnull", "eventfd", "udp"}) do
      local m, h = ch:receive()
      assert.are.equal(what, m)
      assert.is_nil(h)
    end
    local m, h = ch:receive()
    assert.are.equal("tcp-socket", m)
    assert.truthy(h and h.remote_port)
    local m2, h2 = ch:receive()
    assert.are.equal("pipe-server", m2)
    assert.truthy(h2)
    assert.is_true(ch.connected)
    assert.is_true(S.open_fds() <= before + 2, "the refused fds are closed")
    h:close(); h2:close()
    ch:close()
    child:wait()
  end)

  describe("in JSON lines (Node's NODE_HANDLE)", function()
    it("a blocking socket arrives non-blocking", function()
      local ch, child = peer("json", "send:tcp-socket:2", "wait")
      local h = receive_nonblocking(ch, "tcp-socket")
      h:close()
      ch:close()
      child:wait()
    end)

    it("a listening socket sent as a net.Socket is a protocol fault", function()
      local ch, child = peer("json", "send:none:0", "send:tcp-server:2", "wait")
      assert.are.equal("none", ch:receive())
      local m, err, code = ch:receive()
      assert.is_nil(m)
      assert.are.equal("ERR_IPC_BAD_HANDLE", code)
      assert.matches("the peer sent a TCP server as a TCP socket", err)
      child:wait()
      ch:close()
    end)

    it("fds no NODE_HANDLE line claims are closed at once", function()
      junk_closed("json")
    end)
  end)
end)
