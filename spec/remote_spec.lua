-- remote_spec.lua - workers reached through a launcher (fork's `via`
-- option, `lipc --stdio-channel`): the handshake, the script and its
-- modules sent over the channel, the worker's end, the launcher's
-- failures. Here the launcher is a local one (sh), which puts the same
-- channel over the same stdio as ssh does; ssh_spec.lua runs them through
-- a real sshd.
local lipc = require "lipc"
local fork = require "fork"
local spawn = require "spawn"
local S = require "support"

-- `sh -c 'exec "$@"' sh lipc --stdio-channel`: the smallest launcher.
local function local_via()
  return {"sh", "-c", 'exec "$@"', "sh"}
end

local function worker(code, name)
  return S.write_file(S.tmpdir() .. "/" .. (name or "worker.lua"), code)
end

local function start(code, args, opts)
  opts = opts or {}
  opts.via = opts.via or local_via()
  opts.exec_path = opts.exec_path or S.lipc
  return fork(worker(code), args, opts)
end

-- The hello frame of a worker claiming lipc `version` (hand-encoded:
-- length, control marker d4 02 01, map {lipc = version, proto = 1}).
local function fake_hello(version)
  local body = "\xd4\x02\x01\x82\xa4lipc" .. string.char(0xa0 + #version) .. version ..
    "\xa5proto\x01"
  return S.be32(#body) .. body
end

describe("fork through a launcher (opts.via)", function()

  it("carries messages both ways, with the arguments, and gives the exit status", function()
    local child = assert(start([[
      local lipc = require "lipc"
      local parent = require("fork").parent
      print("print goes to stderr, not over the channel")
      parent:send({args = {...}, arg0 = arg[0], pid = lipc.pid})
      while true do
        local m = parent:receive()
        if m == "done" then break end
        parent:send({twice = m * 2})
      end
      lipc.exit(3)
    ]], {"a b", 7}))
    local hello = child:receive()
    assert.are.same({"a b", "7"}, hello.args)
    assert.matches("worker%.lua$", hello.arg0)
    assert.are.equal(child.remote.pid, hello.pid)
    for i = 1, 100 do
      child:send(i)
      assert.are.equal(2 * i, child:receive().twice)
    end
    child:send("done")
    local m, _, code = child:receive() -- an orderly end, as a local fork's
    assert.is_nil(m)
    assert.are.equal("ERR_WORKER_EXIT", code)
    assert.are.equal(3, (child:wait()))
  end)

  it("over a launcher whose stdin and stdout are pipes, as ssh's are: the relay and the bye", function()
    local child = assert(start([[
      local parent = require("fork").parent
      for m in function() return parent:receive() end do
        if m == "done" then break end
        parent:send(m .. "!")
      end
    ]], nil, {via = {"sh", "-c", 'cat | "$@" | cat', "sh"}}))
    for i = 1, 20 do
      child:send("m" .. i)
      assert.are.equal("m" .. i .. "!", child:receive())
    end
    local big = ("x"):rep(1 << 20) -- more than a pipe holds
    child:send(big)
    assert.are.equal(big .. "!", child:receive())
    child:send("done")
    local m, msg, code = child:receive()
    assert.is_nil(m)
    assert.is_nil(code, msg) -- the bye came through the relay: an orderly end
    child:wait()
  end)

  it("sends the script and the modules it requires; the far side needs only lipc", function()
    local dir = S.tmpdir()
    S.write_file(dir .. "/shipped_mod.lua", [[
      local inner = require("shipped_inner")
      return {answer = inner.n * 2}
    ]])
    S.write_file(dir .. "/shipped_inner.lua", "return {n = 21}")
    local saved = package.path
    package.path = dir .. "/?.lua;" .. package.path
    local child, err = start([[
      local parent = require("fork").parent
      parent:send({answer = require("shipped_mod").answer,
                   found = package.searchpath("shipped_mod", package.path)})
    ]])
    package.path = saved
    assert(child, err)
    assert.is_true(child.remote.shipped)
    assert.are.same({"shipped_inner", "shipped_mod"}, child.remote.modules) -- what was sent
    local m = child:receive()
    assert.are.equal(42, m.answer)
    assert.is_nil(m.found) -- not on the worker's own path: it came over the channel
    assert.are.equal(0, (child:wait()))
  end)

  it("runs a script that exists on the far side with ship = false", function()
    local path = worker([[require("fork").parent:send({here = true, arg0 = arg[0]})]],
                        "there.lua")
    local child = assert(fork(path, {via = local_via(), exec_path = S.lipc, ship = false}))
    assert.is_false(child.remote.shipped)
    assert.are.same({here = true, arg0 = path}, child:receive())
    assert.are.equal(0, (child:wait()))
  end)

  it("a launcher that ends before the worker's hello is read: the hello still counts", function()
    -- sh ends at once; the worker runs on, its stdout held back 0.3 s
    local child, msg = start([[require("fork").parent:send("here")]], nil, {via = {"sh", "-c",
      'exec 3<&0; ("$@" <&3 | (sleep 0.3; cat)) & exit 0', "sh"}})
    assert(child, msg)
    assert.are.equal("here", child:receive())
    assert.are.equal(0, (child:wait()))
  end)

  it("kill() ends the launcher and through it the worker", function()
    local child = assert(start([[require("fork").parent:receive()]]))
    local pid = child.remote.pid
    assert.is_true(S.alive(pid))
    child:kill()
    local code, signal = child:wait()
    assert.is_nil(code)
    assert.are.equal("SIGTERM", signal)
    assert.is_true(S.wait_for(function() return not S.alive(pid) end, 5000))
  end)

  it("the worker ends when the parent disconnects", function()
    local child = assert(start([[
      local parent = require("fork").parent
      parent:send("up")
      require("lipc").sleep(60000)
    ]]))
    assert.are.equal("up", child:receive())
    local pid = child.remote.pid
    child:disconnect()
    assert.are.equal(0, (child:wait()))
    assert.is_false(S.alive(pid))
  end)

  it("a worker that dies without its goodbye: receive() gives ERR_IPC_LINK_LOST", function()
    local child = assert(start([[
      local parent = require("fork").parent
      parent:send("up")
      parent:receive()
    ]]))
    assert.are.equal("up", child:receive())
    assert(lipc.kill(child.remote.pid, "SIGKILL"))
    local m, msg, code = child:receive()
    assert.is_nil(m)
    assert.are.equal("ERR_IPC_LINK_LOST", code)
    assert.matches("link to the worker through sh was lost", msg)
    child:wait()
  end)

  it("a lost link with 'message' listeners: 'error' (ERR_IPC_LINK_LOST) comes before 'disconnect'", function()
    local child = assert(start([[
      local parent = require("fork").parent
      parent:send("up")
      parent:receive()
    ]]))
    local events, ended = {}, lipc.cond()
    child:on("message", function(m) events[#events + 1] = "message " .. m end)
    child:on("error", function(msg, code)
      events[#events + 1] = "error " .. code
      assert.matches("link to the worker through sh was lost", msg)
    end)
    child:on("disconnect", function()
      events[#events + 1] = "disconnect"
      ended:signal()
    end)
    assert.is_true(S.wait_for(function() return events[1] ~= nil end, 10000))
    assert(lipc.kill(child.remote.pid, "SIGKILL"))
    if events[#events] ~= "disconnect" then ended:wait(10000) end
    assert.are.same({"message up", "error ERR_IPC_LINK_LOST", "disconnect"}, events)
    child:wait()
  end)

  it("refuses handles both ways: fds cannot cross hosts", function()
    local child = assert(start([[
      local parent = require("fork").parent
      local srv = require("net").create_server(function() end):listen(0, "127.0.0.1")
      local ok, err = pcall(parent.send, parent, "srv", srv)
      srv:close()
      parent:send({ok = ok, err = tostring(err)})
      parent:receive()
    ]]))
    local m = child:receive()
    assert.is_false(m.ok)
    assert.matches("handles cannot cross hosts", m.err)
    local srv = require("net").create_server(function() end):listen(0, "127.0.0.1")
    local ok, err = pcall(child.send, child, "srv", srv)
    srv:close()
    assert.is_false(ok)
    assert.matches("bad argument #3 to 'channel.send' %(handles cannot cross hosts", err)
    child:disconnect()
    child:wait()
  end)

  it("a launcher that fails: ERR_LAUNCH_FAILED with the launcher's own words", function()
    local child, msg, code = start("", nil, {via = {"sh", "-c",
      "echo 'ssh: connect to host nowhere port 22: No route to host' >&2; exit 255"}})
    assert.is_nil(child)
    assert.are.equal("ERR_LAUNCH_FAILED", code)
    assert.matches("exit code 255", msg)
    assert.matches("No route to host", msg)
  end)

  it("lipc missing on the far side: ERR_LAUNCH_FAILED", function()
    local child, msg, code = start("", nil, {exec_path = "/nonexistent/lipc"})
    assert.is_nil(child)
    assert.are.equal("ERR_LAUNCH_FAILED", code)
    assert.matches("/nonexistent/lipc", msg)
    assert.matches("exit code 127", msg)
  end)

  it("a launcher that does not exist: spawn's error", function()
    local child, msg, code = start("", nil, {via = {"/nonexistent/launcher"}})
    assert.is_nil(child)
    assert.are.equal("ENOENT", code)
    assert.matches("/nonexistent/launcher", msg)
  end)

  it("a launcher that hangs: ERR_LAUNCH_FAILED after start_timeout, launcher ended", function()
    local child, msg, code = start("", nil, {via = {"sh", "-c", "exec sleep 60"},
                                             start_timeout = 200})
    assert.is_nil(child)
    assert.are.equal("ERR_LAUNCH_FAILED", code)
    assert.matches("within 200 ms", msg)
  end)

  it("bytes that are not a hello (a login banner): ERR_IPC_HANDSHAKE", function()
    local child, msg, code = start("", nil, {via = {"sh", "-c",
      'echo "Welcome to the far host, have a nice day"; exec "$@"', "sh"}})
    assert.is_nil(child)
    assert.are.equal("ERR_IPC_HANDSHAKE", code)
    assert.matches("no handshake with the worker through sh", msg)
  end)

  it("a worker of another lipc version: ERR_LIPC_VERSION naming both", function()
    local fake = worker(([[
      io.stdout:write(%q)
      io.stdout:flush()
      io.stdin:read("a")
    ]]):format(fake_hello("0.0.1")), "fake.lua")
    local child, msg, code = start("", nil, {via = {S.lipc, fake}})
    assert.is_nil(child)
    assert.are.equal("ERR_LIPC_VERSION", code)
    assert.matches("runs lipc 0%.0%.1, this is lipc " .. lipc.version:gsub("%.", "%%."), msg)
  end)

  it("the worker refuses a parent of another version and exits 1", function()
    local dir = S.tmpdir()
    S.write_file(dir .. "/in", fake_hello("0.0.1"))
    local r = assert(spawn.run("sh", {"-c", S.shell_quote(S.lipc) ..
      " --stdio-channel <" .. dir .. "/in"}))
    assert.are.equal(1, r.code)
    assert.matches("the parent's lipc 0%.0%.1", r.stderr)
  end)

  it("checks its options", function()
    assert.has_error(function() fork("x.lua", {via = {}}) end,
      "bad argument #2 to 'fork' (opts.via must be a non-empty array of strings)")
    assert.has_error(function() fork("x.lua", {via = {"ssh", 3}}) end,
      "bad argument #2 to 'fork' (opts.via[2] must be a string)")
    assert.has_error(function() fork("x.lua", {}, {via = {"ssh"}, stdio = "pipe"}) end,
      "bad argument #3 to 'fork' (opts.via takes the stdio and the 'lipc' serialization)")
    assert.has_error(function() fork("x.lua", {via = {"ssh"}, start_timeout = 0}) end,
      "bad argument #2 to 'fork' (opts.start_timeout must be an integer >= 1 (ms))")
    local child, msg, code = fork("/nonexistent/x.lua", {via = {"ssh"}})
    assert.is_nil(child)
    assert.are.equal("ENOENT", code)
    assert.matches("cannot read the script to send", msg)
  end)
end)

describe("fork.pool across hosts (opts.hosts)", function()
  -- Two local "hosts": launchers that tell the worker its host by name.
  local function host(tag) return {"env", "LIPC_SPEC_HOST=" .. tag} end
  local server_code = [[
    local lipc = require "lipc"
    require("fork").serve(function(msg)
      if msg == "die" then lipc.kill(lipc.pid, "SIGKILL") end
      if msg == "fail" then lipc.exit(1) end
      lipc.sleep(20)
      return os.getenv("LIPC_SPEC_HOST")
    end)
  ]]

  it("spreads the workers over the hosts; every call answered", function()
    local pool = fork.pool(worker(server_code), {size = 4, exec_path = S.lipc,
                                                 hosts = {host("a"), host("b")}})
    local seen, done = {}, 0
    for _ = 1, 16 do
      lipc.go(function()
        local r = assert(pool:call("where"))
        seen[r] = (seen[r] or 0) + 1
        done = done + 1
      end)
    end
    assert.is_true(S.wait_for(function() return done == 16 end, 10000))
    assert.is_true(seen.a > 0 and seen.b > 0)
    local hosts = pool:hosts()
    assert.are.same({"LIPC_SPEC_HOST=a", 2, 0}, {hosts[1].name, hosts[1].workers, hosts[1].failures})
    assert.are.same({"LIPC_SPEC_HOST=b", 2, 0}, {hosts[2].name, hosts[2].workers, hosts[2].failures})
    pool:close()
  end)

  it("a call on a host whose link is lost: ERR_HOST_LOST; a new worker takes its place", function()
    local pool = fork.pool(worker(server_code), {size = 1, exec_path = S.lipc,
                                                 hosts = {host("a")}})
    local r, msg, code = pool:call("die")
    assert.is_nil(r)
    assert.are.equal("ERR_HOST_LOST", code)
    assert.matches("host LIPC_SPEC_HOST=a lost during the call", msg)
    assert.are.equal("a", pool:call("where"))
    r, msg, code = pool:call("fail") -- an orderly end is not a lost host
    assert.is_nil(r)
    assert.are.equal("ERR_WORKER_CRASHED", code, msg)
    assert.are.equal("a", pool:call("where"))
    pool:close()
  end)

  it("a host that cannot be reached is tried again, backing off; the others serve", function()
    local down = {"sh", "-c", "echo 'ssh: connect to host b: Connection refused' >&2; exit 255"}
    local pool = fork.pool(worker(server_code), {size = 2, exec_path = S.lipc, backoff = 10,
                                                 hosts = {host("a"), down}})
    assert.are.equal("a", pool:call("where"))
    assert.is_true(S.wait_for(function() return pool:hosts()[2].failures >= 3 end, 5000))
    local h = pool:hosts()[2]
    assert.are.equal(0, h.workers)
    assert.matches("Connection refused", h.error)
    assert.are.equal("a", pool:call("where"))
    pool:close()
  end)

  it("every host down: calls fail with ERR_HOST_LOST naming each host's error", function()
    local down = {"sh", "-c", "echo 'Permission denied (publickey).' >&2; exit 255"}
    local pool = fork.pool(worker(server_code), {size = 2, exec_path = S.lipc, hosts = {down}})
    local r, msg, code = pool:call("where")
    assert.is_nil(r)
    assert.are.equal("ERR_HOST_LOST", code)
    assert.matches("no host is reachable %(.*Permission denied", msg)
    pool:close()
  end)

  it("a worker that ends at once is started again after a growing delay, not in a storm", function()
    local pool = fork.pool(worker("os.exit(1)"), {size = 1, exec_path = S.lipc, backoff = 10,
                                                  backoff_max = 40, hosts = {host("a")}})
    assert.is_true(S.wait_for(function() return pool:hosts()[1].quick_exits >= 3 end, 10000))
    pool:close() -- cuts the wait before the next start short
    assert.is_nil(next(pool.workers))
  end)

  it("checks its options", function()
    assert.has_error(function() fork.pool("x.lua", {hosts = {}}) end,
      "bad argument #2 to 'fork.pool' (opts.hosts must be a non-empty array of launchers)")
    assert.has_error(function() fork.pool("x.lua", {hosts = {"ssh"}}) end,
      "bad argument #2 to 'fork.pool' (opts.hosts[1] must be a launcher argv, as fork's opts.via)")
    assert.has_error(function() fork.pool("x.lua", {hosts = {{"ssh"}}, backoff = 0}) end,
      "bad argument #2 to 'fork.pool' (opts.backoff must be an integer >= 1 (ms))")
  end)
end)

describe("control frames (docs/wire-format.md section 8)", function()
  it("are not messages: 'control' (kind, value), the messages around them intact", function()
    local a, b = S.channel_pair()
    local got = {}
    b:on("control", function(kind, value) got[#got + 1] = {kind, value} end)
    a:send(1)
    assert.is_true(a:send_control(7, {x = "y"}))
    a:send(2)
    assert.are.equal(1, b:receive())
    assert.are.equal(2, b:receive())
    assert.are.same({{7, {x = "y"}}}, got)
    local msgs = {}
    b:on("message", function(m) msgs[#msgs + 1] = m end)
    a:send_control(9, "z")
    a:send(3)
    assert.is_true(S.wait_for(function() return #msgs == 1 end))
    assert.are.same({3}, msgs)
    assert.are.same({9, "z"}, got[2])
    a:close(); b:close()
  end)

  it("are read as the format says: length, d4 02 kind, one value", function()
    local ch, raw = S.raw_channel()
    local got
    ch:on("control", function(kind, value) got = {kind, value} end)
    raw:write(S.be32(4) .. "\xd4\x02\x05\x2a")
    assert.is_true(S.wait_for(function() return got ~= nil end))
    assert.are.same({5, 42}, got)
    assert.are.equal(0, ch:pending())
    ch:close(); raw:close()
  end)

  it("send_control checks its arguments", function()
    local a, b = S.channel_pair()
    assert.has_error(function() a:send_control(0, 1) end,
      "bad argument #1 to 'channel.send_control' (kind must be in 1..255)")
    assert.has_error(function() a:send_control(1, print) end)
    a:close(); b:close()
  end)

  it("a channel made with handles = false refuses handles at send", function()
    local a, b = S.channel_pair({handles = false})
    local srv = require("net").create_server(function() end):listen(0, "127.0.0.1")
    local ok, err = pcall(a.send, a, "srv", srv)
    srv:close()
    assert.is_false(ok)
    assert.matches("handles cannot cross hosts", err)
    a:close(); b:close()
  end)
end)
