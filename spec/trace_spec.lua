-- trace_spec.lua - seeing what happens: LIPC_TRACE lines on a child
-- lipc's stderr (spawn, ipc, net), stats() counters of streams, channels
-- and children, and scripts/top.lua.
local support = require "support"
local lipc = require "lipc"
local fork = require "fork"

local q = support.shell_quote

-- Runs code in a child lipc with LIPC_TRACE=trace -> stdout, stderr, status.
local function traced(trace, code)
  local dir = support.tmpdir()
  local script = support.write_file(dir .. "/main.lua", code)
  local out, status = support.sh(("LIPC_TRACE=%s %s %s 2>%s/stderr </dev/null")
    :format(q(trace), q(support.lipc), q(script), dir))
  local err = support.read_file(dir .. "/stderr")
  support.check_sanitizers(err)
  return out, err, status
end

-- The end of a traced child's code: it forks a worker that sends "up"
-- (the worker inherits LIPC_TRACE) and waits for it.
local FORK_UP = [[
      local path = require("lipc").mkdtemp() .. "/w.lua"
      local f = assert(io.open(path, "w"))
      f:write('require("fork").parent:send("up")')
      f:close()
      local w = assert(require("fork")(path))
      assert(w:receive() == "up")
      w:wait()
]]

local function lines_of(err, kind)
  local t = {}
  for line in err:gmatch("[^\n]+") do
    local rest = line:match("^lipc%[%d+%] %d+%.%d%d%d%d%d%d " .. kind .. "%s+(.*)$")
    if rest then t[#t + 1] = rest end
  end
  return t
end

local function find(lines, pattern)
  for _, l in ipairs(lines) do
    if l:match(pattern) then return l end
  end
  return nil
end

describe("LIPC_TRACE", function()
  it("net: listen, accept, connect and close with addresses", function()
    local out, err, status = traced("net", [[
      local net = require "net"
      local srv = assert(net.create_server(function(s) s:write("hi"); s:shutdown() end):listen(0))
      local c = assert(net.connect(srv:address().port, "127.0.0.1"))
      io.write(c:read_all())
      c:close()
      srv:close()
    ]])
    assert.are.equal(0, status, err)
    assert.are.equal("hi", out)
    local net = lines_of(err, "net")
    local port = assert(find(net, "^listen tcp 127%.0%.0%.1:%d+$"), err):match(":(%d+)$")
    assert.truthy(find(net, "^accept tcp fd %d+ 127%.0%.0%.1:" .. port .. " <%- 127%.0%.0%.1:%d+$"), err)
    assert.truthy(find(net, "^connect tcp fd %d+ 127%.0%.0%.1:%d+ %-> 127%.0%.0%.1:" .. port .. "$"), err)
    assert.truthy(find(net, "^close tcp fd %d+ 127%.0%.0%.1:%d+"), err)
    assert.truthy(find(net, "^close tcp server fd %d+ 127%.0%.0%.1:" .. port .. "$"), err)
    assert.are.same({}, lines_of(err, "ipc"))       -- only what was asked for
  end)

  it("net: Unix sockets and a refused connect", function()
    local _, err, status = traced("net", [[
      local lipc, pipe, net = require "lipc", require "pipe", require "net"
      local path = lipc.mkdtemp() .. "/s"
      local srv = assert(pipe.create_server(function(s) s:close() end):listen(path))
      local c = assert(pipe.connect(path))
      c:read_all(); c:close(); srv:close()
      assert(not net.connect(1, "127.0.0.1"))
    ]])
    assert.are.equal(0, status, err)
    local net = lines_of(err, "net")
    assert.truthy(find(net, "^listen pipe /.*/s$"), err)
    assert.truthy(find(net, "^connect pipe fd %d+ %-> /.*/s$"), err)
    assert.truthy(find(net, "^accept pipe fd %d+ /.*/s <%- unnamed$"), err)
    assert.truthy(find(net, "^close pipe server fd %d+ /.*/s$"), err)
    assert.truthy(find(net, "^connect tcp 127%.0%.0%.1:1: ECONNREFUSED$"), err)
  end)

  it("ipc: one line per message sent and received, with its size", function()
    local _, err, status = traced("ipc", [[
      local fork = require "fork"
      local a, b = fork.socketpair()
      local ca, cb = a:channel(), b:channel()
      ca:send("hello")
      assert(cb:receive() == "hello")
      cb:send({1, 2, 3})
      assert(#ca:receive() == 3)
      ca:close(); cb:close()
    ]])
    assert.are.equal(0, status, err)
    local ipc = lines_of(err, "ipc")
    -- "hello": 4-byte length + fixstr (1 + 5); {1, 2, 3}: 4 + 4
    assert.truthy(find(ipc, "^send message 10 bytes fd %d+$"), err)
    assert.truthy(find(ipc, "^recv message 10 bytes fd %d+$"), err)
    assert.truthy(find(ipc, "^send message 8 bytes fd %d+$"), err)
    assert.truthy(find(ipc, "^recv message 8 bytes fd %d+$"), err)
    assert.are.equal(4, #ipc)
  end)

  it("spawn: starts and exits with pid and status; a forked child traces too", function()
    local _, err, status = traced("spawn,ipc", [[
      local spawn = require "spawn"
      local c = spawn("sh", {"-c", "exit 3"})
      assert(c:wait() == 3)
      c = spawn("sleep", {"5"})
      c:kill("SIGKILL")
      c:wait()
      spawn("/nonexistent/program"):wait()
    ]] .. FORK_UP)
    assert.are.equal(0, status, err)
    local sp = lines_of(err, "spawn")
    local pid = assert(find(sp, "^start pid %d+ sh$"), err):match("pid (%d+)")
    assert.truthy(find(sp, "^exit pid " .. pid .. " code 3$"), err)
    pid = assert(find(sp, "^start pid %d+ sleep$"), err):match("pid (%d+)")
    assert.truthy(find(sp, "^exit pid " .. pid .. " signal SIGKILL$"), err)
    assert.truthy(find(sp, "^start /nonexistent/program failed: ENOENT$"), err)
    -- the forked child inherits LIPC_TRACE: its own send shows under its pid
    local wpid = assert(sp[#sp - 1]:match("^start pid (%d+) "), err)    -- then its exit
    assert.truthy(err:find("lipc[" .. wpid .. "]", 1, true), err)
    assert.truthy(err:match("lipc%[" .. wpid .. "%] [%d.]+ ipc%s+send message %d+ bytes fd 3\n"), err)
  end)

  it("times come from one clock for every process: a parent's and a child's lines sort in order", function()
    local _, err, status = traced("spawn,ipc", [[
      require("lipc").sleep(200)             -- a per-process clock would put the child first
    ]] .. FORK_UP)
    assert.are.equal(0, status, err)
    local stamped = {}
    for pid, t, rest in err:gmatch("lipc%[(%d+)%] (%d+%.%d+) ([^\n]*)") do
      stamped[#stamped + 1] = {pid = pid, t = tonumber(t), rest = rest}
    end
    local function at(pattern)
      for _, l in ipairs(stamped) do
        if l.rest:match(pattern) then return l end
      end
      error("no line " .. pattern .. " in\n" .. err)
    end
    local start = at("^spawn start pid %d+ ")
    local sent = at("^ipc%s+send message")
    local got = at("^ipc%s+recv message")
    assert.are_not.equal(start.pid, sent.pid)  -- the child's line
    assert.is_true(start.t <= sent.t, err)
    assert.is_true(sent.t <= got.t, err)
    -- the clock is lipc.hrtime()'s: a script can stamp its own lines with it
    local now = lipc.hrtime() / 1e9
    assert.is_true(got.t <= now, err)
  end)

  it("an unknown kind is a warning that lists the known ones", function()
    local out, err, status = traced("net,bogus", [[print("ran")]])
    assert.are.equal(0, status)
    assert.are.equal("ran\n", out)
    assert.matches("lipc: warning: LIPC_TRACE: unknown kind 'bogus' (known: ipc, spawn, net, all)",
      err, 1, true)
    local _, status2 = support.sh(("%s --trace spwn -e '' 2>&1 | grep -q \"unknown kind 'spwn'\""):format(
      q(support.lipc)))
    assert.are.equal(0, status2)
  end)

  it("off: no trace lines at all", function()
    local _, err, status = traced("", [[
      local fork = require "fork"
      local a, b = fork.socketpair()
      local ca, cb = a:channel(), b:channel()
      ca:send("x"); cb:receive(); ca:close(); cb:close()
    ]])
    assert.are.equal(0, status)
    assert.are.equal("", err)
  end)
end)

describe("stats()", function()
  it("channel:stats() counts messages, bytes, queued and high-water hits", function()
    local a, b = fork.socketpair()
    local ca, cb = a:channel({high_water = 16}), b:channel()
    assert.is_true(ca:send("a"))
    assert.is_false(ca:send(string.rep("x", 32)))   -- over 16 bytes queued
    local s = ca:stats()
    assert.are.equal(2, s.messages_sent)
    assert.are.equal(4 + 2 + 4 + 2 + 32, s.bytes_sent)
    assert.are.equal(1, s.high_water_hits)
    assert.are.equal(s.bytes_sent, s.queued)
    assert.are.equal("a", cb:receive())
    assert.are.equal(32, #cb:receive())
    for _ = 1, 50 do                                -- write callbacks come next
      if ca:stats().queued == 0 then break end
      lipc.sleep(2)
    end
    local r = cb:stats()
    assert.are.equal(2, r.messages_received)
    assert.are.equal(s.bytes_sent, r.bytes_received)
    assert.are.equal(0, r.pending)
    assert.are.equal(0, ca:stats().queued)
    ca:close(); cb:close()
  end)

  it("a forked child's stats() adds up its channel and stdio", function()
    local dir = support.tmpdir()
    local script = support.write_file(dir .. "/echo.lua", [[
      local fork = require "fork"
      fork.serve(function(msg) return msg end)
    ]])
    local child = assert(fork(script, {}, {stdio = {"pipe", "pipe", "inherit"}}))
    child:send("ping")
    assert.are.equal("ping", child:receive()[2])
    local st = child:stats()
    assert.are.equal(1, st.messages_sent)
    assert.are.equal(1, st.messages_received)
    assert.are.equal(st.channel.bytes_sent, st.bytes_sent)
    assert.is_table(st.stdin)
    assert.is_table(st.stdout)
    assert.is_number(st.stdout.bytes_read)
    child:disconnect()
    child:wait()
  end)

  it("a spawned child's stats() sums its stdio streams", function()
    local spawn = require "spawn"
    local c = spawn("sh", {"-c", "cat; echo out; echo err >&2"})
    c.stdin:write("12345")
    c.stdin:shutdown()
    c.stdout:read_all()
    c.stderr:read_all()
    c:wait()
    local st = c:stats()
    assert.are.equal(5, st.bytes_written)
    assert.are.equal(#"12345out\n" + #"err\n", st.bytes_read)
    assert.are.equal(st.stdout.bytes_read + st.stderr.bytes_read, st.bytes_read)
    assert.are.equal(0, st.queued)
  end)

  it("scripts/top.lua shows a live table of a pool's workers, then exits", function()
    local t0 = lipc.hrtime()
    local out, status = support.run_script("top.lua", {"1", "200"})
    assert.are.equal(0, status, out)
    assert.matches("pid%s+msgs out%s+msgs in%s+bytes out%s+bytes in%s+queued%s+hwm", out)
    local rows = 0
    for _ in out:gmatch("\n%s+%d+%s+%d+%s+%d+%s+%d+%s+%d+%s+%d+%s+%d+") do rows = rows + 1 end
    assert.is_true(rows >= 3, out)
    assert.matches("done: %d+ calls in %d+ frames", out)
    assert.is_true((lipc.hrtime() - t0) / 1e9 < 10)
  end)
end)
