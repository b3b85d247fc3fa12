-- fork_spec.lua - fork(): child lipc processes with a message channel,
-- fork.parent, the delivery guarantees, pools, handle passing, Node
-- interop, and every example script under scripts/ that uses fork.
local lipc = require "lipc"
local fork = require "fork"
local S = require "support"

-- A child script in a private dir; returns its path.
local function script(code)
  return S.write_file(S.tmpdir() .. "/child.lua", code)
end

describe("fork", function()

  it("runs a child lipc with a channel: send, receive, args, exit", function()
    local child = assert(fork(script([[
      local parent = require("fork").parent
      parent:send({args = {...}, pid = require("lipc").pid})
      local m = parent:receive()
      parent:send({twice = m.n * 2})
    ]]), {"a", "b"}))
    assert.is_true(child.connected)
    assert.is_false(child.killed)
    local hello = child:receive()
    assert.are.same({"a", "b"}, hello.args)
    assert.are.equal(child.pid, hello.pid)
    child:send({n = 21})
    assert.are.equal(42, child:receive().twice)
    assert.is_nil(child:receive())
    assert.are.equal(0, (child:wait()))
  end)

  it("fork.parent is nil when not forked", function()
    local out = S.run_lipc([[print(require("fork").parent == nil)]])
    assert.are.equal("true\n", out)
  end)

  it("keeps the order of 100 000 messages each way at once, none lost", function()
    local child = assert(fork(script([[
      local lipc = require "lipc"
      local parent = require("fork").parent
      local N = 100000
      -- "child-done" goes last: after our N sends (the sender may wait in
      -- drain, so it can finish after the receiving loop) and N receives.
      local left = 2
      local function done()
        left = left - 1
        if left == 0 then parent:send("child-done") end
      end
      lipc.go(function()
        for i = 1, N do if not parent:send(i) then parent:drain() end end
        done()
      end)
      for i = 1, N do
        local m = parent:receive()
        if m ~= i then error("child: got " .. tostring(m) .. " expected " .. i) end
      end
      done()
    ]])))
    local N = 100000
    lipc.go(function()
      for i = 1, N do if not child:send(i) then child:drain() end end
    end)
    for i = 1, N do
      local m = child:receive()
      assert(m == i, "parent: out of order")
    end
    assert.are.equal("child-done", child:receive())
    assert.are.equal(0, (child:wait()))
  end)

  it("a sender waiting in drain() goes on while the child only reads", function()
    -- Every batch fits the socket buffer, so each flush completes at once
    -- and wakes the sender from inside the flush; the child says nothing
    -- until the end, so no I/O of ours may be what moves the loop on.
    local child = assert(fork(script([[
      local parent = require("fork").parent
      local n = 0
      while n < 20000 do
        if parent:receive() == nil then break end
        n = n + 1
      end
      parent:send(n)
    ]])))
    local pad = string.rep("p", 100)
    for i = 1, 20000 do
      if not child:send({i, pad}) then assert.is_true(child:drain()) end
    end
    assert.are.equal(20000, child:receive())
    assert.are.equal(0, (child:wait()))
  end)

  it("delivers messages queued before lipc.exit()", function()
    local child = assert(fork(script([[
      local lipc = require "lipc"
      local parent = require("fork").parent
      for i = 1, 1000 do parent:send({i = i, pad = string.rep("x", 100)}) end
      lipc.exit(7)
    ]])))
    for i = 1, 1000 do assert.are.equal(i, child:receive().i) end
    assert.is_nil(child:receive())
    assert.are.equal(7, (child:wait()))
  end)

  it("delivers messages queued before the normal end of the child", function()
    local child = assert(fork(script([[
      local parent = require("fork").parent
      for i = 1, 1000 do parent:send(i) end
    ]])))
    for i = 1, 1000 do assert.are.equal(i, child:receive()) end
    assert.is_nil(child:receive())
    assert.are.equal(0, (child:wait()))
  end)

  it("a script that cannot be read: fork returns nil, msg, code and starts nothing", function()
    local dir = S.tmpdir()
    local child, err, code = fork(dir .. "/missing.lua")
    assert.is_nil(child)
    assert.are.equal("ENOENT", code)
    assert.matches("missing%.lua", err)
    child, err, code = fork(dir)
    assert.is_nil(child)
    assert.are.equal("EISDIR", code)
    assert.matches("EISDIR", err)
    -- relative to opts.cwd, as the child would look for it
    S.write_file(dir .. "/w.lua", "require('fork').parent:send('here')")
    child, err = fork("w.lua", {cwd = dir})
    assert.truthy(child, err)
    assert.are.equal("here", child:receive())
    assert.are.equal(0, (child:wait()))
    assert.is_nil(fork("w.lua", {cwd = dir .. "/nowhere"}))
  end)

  it("a worker that cannot start or dies: receive() says how it ended (ERR_WORKER_EXIT)", function()
    local quiet = {stdio = {"inherit", "inherit", "ignore"}}
    local child = assert(fork(script("x = = 1\n"), quiet))
    assert.is_true(child:send("anyone?"))
    local m, err, code = child:receive()
    assert.is_nil(m)
    assert.are.equal("ERR_WORKER_EXIT", code)
    assert.matches("exited with code 1", err)
    assert.matches("child%.lua", err)
    -- with the first line of the worker's error, from the worker itself
    assert.matches("exited with code 1: .-child%.lua:1: unexpected symbol near '='$", err)
    assert.are.equal(1, (child:wait()))
    -- every receive after the end says the same
    assert.are.equal("ERR_WORKER_EXIT", select(3, child:receive()))

    child = assert(fork(script([[
      local lipc = require "lipc"
      local parent = require("fork").parent
      parent:send("up")
      parent:receive()
      lipc.kill(lipc.pid, "SIGKILL")
      lipc.sleep(1000)
    ]])))
    assert.are.equal("up", child:receive())
    child:send("die")
    m, err, code = child:receive()
    assert.is_nil(m)
    assert.are.equal("ERR_WORKER_EXIT", code)
    assert.matches("was killed by SIGKILL", err)

    child = assert(fork(script([[
      require("fork").parent:send("up")
      require("lipc").sleep(1)
      error("boom\nsecond line")
    ]]), quiet))
    assert.are.equal("up", child:receive())
    m, err, code = child:receive()
    assert.is_nil(m)
    assert.matches("exited with code 1: .-child%.lua:3: boom$", err)
    assert.are.equal("ERR_WORKER_EXIT", code)
    -- a worker that ends with status 0 ends the channel with a plain nil
    child = assert(fork(script([[require("fork").parent:send(1)]])))
    assert.are.equal(1, child:receive())
    m, err, code = child:receive()
    assert.is_nil(m)
    assert.is_nil(err)
    assert.is_nil(code)
  end)

  it("a child that dies mid-frame: exit, disconnect, close; no crash, no hang", function()
    local child = assert(fork(script([[
      local lipc = require "lipc"
      -- half a frame on the channel's stream, then death by signal
      require("fork").parent:stream():write("\0\0\16\0abc", function()
        lipc.kill(lipc.pid, "SIGKILL")
      end)
      lipc.sleep(1000)
    ]])))
    local events, done = {}, lipc.cond()
    for _, e in ipairs({"exit", "disconnect", "close"}) do
      child:on(e, function() events[#events + 1] = e; if e == "close" then done:signal() end end)
    end
    assert.is_nil(child:receive())
    if events[#events] ~= "close" then done:wait(5000) end
    assert.are.same({"exit", "disconnect", "close"}, events)
    assert.is_false(child.connected)
  end)

  it("a child writing garbage: the channel closes with an 'error' saying why", function()
    local child = assert(fork(script([[
      require("fork").parent:stream():write("\0\0\0\2\193\193")
      require("lipc").sleep(200)
    ]])))
    local err, code
    child:on("error", function(m, c) err, code = m, c end)
    local m, rerr = child:receive()
    assert.is_nil(m)
    assert.matches("bad message", rerr or err)
    assert.is_false(child.connected)
    child:wait()
    assert.are.equal("ERR_IPC_BAD_MESSAGE", code) -- listeners hear it too
  end)

  it("a child sending a frame over max_message: 'error' saying why, parent lives on", function()
    local child = assert(fork(script([[
      local parent = require("fork").parent
      parent:send(string.rep("x", 5000))
      require("lipc").sleep(200)
    ]]), {}, {max_message = 1000}))
    local err, code, done = nil, nil, lipc.cond()
    child:on("error", function(m, c) err, code = m, c; done:signal() end)
    child:on("message", function() error("must not arrive") end)
    if not err then done:wait(5000) end
    assert.matches("over max_message", err)
    assert.are.equal("ERR_IPC_MESSAGE_TOO_LARGE", code)
    child:wait()
  end)

  it("send after disconnect: 'error' ERR_IPC_CHANNEL_CLOSED, no crash", function()
    local child = assert(fork(script([[require("fork").parent:receive()]])))
    child:disconnect()
    local code
    child:on("error", function(_, c) code = c end)
    assert.is_false(child:send("late"))
    assert.are.equal("ERR_IPC_CHANNEL_CLOSED", code)
    assert.are.equal(0, (child:wait()))
  end)

  it("send on a channel the child's exit closed, with no callback: 'error' event, as Node", function()
    local child = assert(fork(script([[return]])))
    assert.are.equal(0, (child:wait()))
    assert.is_false(child.connected)
    local errors = {}
    child:on("error", function(msg, c) errors[#errors + 1] = {msg, c} end)
    assert.is_false(child:send("late"))
    assert.is_false(child.channel:send("later"))
    assert.are.equal(2, #errors)
    assert.are.equal("ERR_IPC_CHANNEL_CLOSED", errors[1][2])
    assert.matches("channel closed", errors[1][1])
    local called
    assert.is_false(child:send("with cb", function(_, c) called = c end))
    S.wait_for(function() return called end, 1000)
    assert.are.equal("ERR_IPC_CHANNEL_CLOSED", called)
    assert.are.equal(2, #errors)              -- the callback has it, not 'error'
  end)

  it("send on a closed channel nobody listens to for 'error' is an uncaught error", function()
    local _, err, status = S.run_lipc(([[
      local child = require("fork")(%q)
      child:wait()
      child:send("late")
    ]]):format(script("return")))
    assert.are.equal(1, status)
    assert.matches("unhandled 'error' event: channel.send: channel closed", err, 1, true)
  end)

  it("child:pending() counts the messages nobody took yet, as child.channel:pending()", function()
    local child = assert(fork(script([[
      local parent = require("fork").parent
      for i = 1, 3 do parent:send(i) end
    ]])))
    assert.are.equal(0, (child:wait()))
    assert.are.equal(3, child:pending())
    assert.are.equal(child.channel:pending(), child:pending())
    assert.are.equal(1, child:receive())
    assert.are.equal(2, child:pending())
  end)

  it("a message goes to every 'message' listener and to the task in receive(), none kept later", function()
    local child = assert(fork(script([[
      local parent = require("fork").parent
      for i = 1, 3 do parent:send(i) end
      parent:receive()
      for i = 4, 5 do parent:send(i) end
    ]])))
    local seen = {}
    child:on("message", function(m) seen[#seen + 1] = m end)
    for i = 1, 3 do assert.are.equal(i, child:receive()) end   -- both get them
    assert.is_true(S.wait_for(function() return #seen == 3 end, 5000))
    assert.are.same({1, 2, 3}, seen)
    child:send("more")
    assert.are.equal(0, (child:wait()))              -- 4 and 5 came with nobody in receive()
    assert.are.same({1, 2, 3, 4, 5}, seen)
    assert.are.equal(0, child:pending())             -- the listener had them: none kept
    assert.is_nil(child:receive())
  end)

  it("send of an unserializable value raises naming the key path; nothing is sent", function()
    local child = assert(fork(script([[
      local parent = require("fork").parent
      parent:send(parent:receive())
    ]])))
    local ok, err = pcall(child.send, child, {a = {b = {print}}})
    assert.is_false(ok)
    assert.matches("a%.b%[1%]", err)
    child:send({fine = true})
    assert.are.same({fine = true}, child:receive())
    child:wait()
  end)

  it("'message' events carry the value; 'disconnect' follows 'exit'", function()
    local child = assert(fork(script([[
      local parent = require("fork").parent
      for i = 1, 3 do parent:send(i) end
    ]])))
    local got, order, done = {}, {}, lipc.cond()
    child:on("message", function(m) got[#got + 1] = m end)
    child:on("exit", function() order[#order + 1] = "exit" end)
    child:on("disconnect", function() order[#order + 1] = "disconnect" end)
    child:on("close", function() order[#order + 1] = "close"; done:signal() end)
    done:wait(5000)
    assert.are.same({1, 2, 3}, got)
    assert.are.same({"exit", "disconnect", "close"}, order)
  end)

  it("messages a child sent before it ended are received after it is gone", function()
    local child = assert(fork(script([[
      local parent = require("fork").parent
      for i = 1, 3 do parent:send({i = i}) end
    ]])))
    local closed = false
    child:on("close", function() closed = true end)
    assert.is_true(S.wait_for(function() return closed end, 5000))
    lipc.sleep(20)
    for i = 1, 3 do assert.are.same({i = i}, child:receive()) end
    assert.is_nil(child:receive())
  end)

  it("a child whose parent goes away exits (no orphans)", function()
    local dir = S.tmpdir()
    local grand = S.write_file(dir .. "/grand.lua", [[
      local lipc = require "lipc"
      local parent = require("fork").parent
      parent:send(lipc.pid)
      lipc.set_interval(1000, function() end) -- would live forever
    ]])
    local out = S.run_lipc(([[
      local fork = require "fork"
      local c = fork(%q)
      print((c:receive()))
      require("lipc").exit(0)
    ]]):format(grand))
    local pid = tonumber(out)
    assert.truthy(pid)
    assert.is_true(S.wait_for(function() return not S.alive(pid) end, 5000))
  end)

  it("passes a TCP server to a child that accepts on it", function()
    local net = require "net"
    local child = assert(fork(script([[
      local parent = require("fork").parent
      local _, server = parent:receive()
      server:on("connection", function(sock)
        sock:write("child accepted", function() sock:close() end)
      end)
      parent:send("ready")
      parent:receive()
      server:close()
    ]])))
    local server = net.create_server()
    assert(server:listen(0, "127.0.0.1"))
    local port = server:address().port
    child:send("take it", server)
    assert.are.equal("ready", child:receive())
    server:close()
    local sock = assert(net.connect({host = "127.0.0.1", port = port}))
    assert.are.equal("child accepted", sock:read_all())
    sock:close()
    child:disconnect()
    child:wait()
  end)

  it("send(msg, server, cb): cb runs once the frame and its fd are written, with no later send", function()
    local net = require "net"
    local child = assert(fork(script([[
      local parent = require("fork").parent
      local _, server = parent:receive()
      parent:send(server ~= nil)
      server:close()
    ]])))
    local server = net.create_server()
    assert(server:listen(0, "127.0.0.1"))
    local called = false
    assert.is_true(child:send("take it", server, function(err) called = err or true end))
    assert.is_true(S.wait_for(function() return called end, 5000))
    assert.is_true(called)
    assert.is_true(child:receive())
    assert.is_true(server:address() ~= nil)  -- a server stays ours too, as Node's
    server:close()
    child:wait()
  end)

  -- A connection accepted here, its client end, and a child that answers on it.
  local function handed_socket(opts)
    local net = require "net"
    local child = assert(fork(script([[
      local parent = require("fork").parent
      local _, sock = parent:receive()
      sock:write("from the child", function() sock:close() end)
      parent:receive()
    ]])))
    local accepted
    local server = net.create_server(function(s) accepted = s end)
    assert(server:listen(0, "127.0.0.1"))
    local client = assert(net.connect({host = "127.0.0.1", port = server:address().port}))
    assert.is_true(S.wait_for(function() return accepted end, 5000))
    local called, closed = false, false
    accepted:on("close", function() closed = true end)
    local cb = function(err) called = err or true end
    if opts then child:send("sock", accepted, opts, cb) else child:send("sock", accepted, cb) end
    assert.is_true(S.wait_for(function() return called end, 5000))
    assert.is_true(called)
    local got = ""                           -- (a kept copy holds the connection open)
    while #got < #"from the child" do got = got .. assert(client:read()) end
    assert.are.equal("from the child", got)
    client:close()
    server:close()
    return child, accepted, function() return closed end
  end

  it("send(msg, socket, cb): cb runs; our copy of the socket is closed, as Node's", function()
    local child, accepted, closed = handed_socket()
    assert.is_true(S.wait_for(closed, 5000))
    assert.is_false(accepted:state().open)
    child:disconnect()
    child:wait()
  end)

  it("send(msg, socket, {keep_open = true}, cb) leaves our copy open", function()
    local child, accepted, closed = handed_socket({keep_open = true})
    assert.is_false(closed())
    assert.is_true(accepted:state().open)
    accepted:close()
    child:disconnect()
    child:wait()
    assert.has_error(function() child:send("x", accepted, {keep_open = 1}) end,
      "bad argument #3 to 'channel.send' (opts.keep_open: boolean expected, got number)")
  end)

  it("pool: calls spread over workers; a crash fails its call and is replaced; close ends all", function()
    local worker = script([[
      require("fork").serve(function(m)
        if m == "crash" then os.exit(5) end
        if m == "raise" then error("bad input") end
        return m * 2
      end)
    ]])
    local pool = fork.pool(worker, {size = 3})
    local results, left, done = {}, 30, lipc.cond()
    for i = 1, 30 do
      lipc.go(function()
        results[i] = pool:call(i)
        left = left - 1
        if left == 0 then done:signal() end
      end)
    end
    if left > 0 then done:wait(10000) end
    for i = 1, 30 do assert.are.equal(2 * i, results[i]) end
    local r, err, code = pool:call("crash")
    assert.is_nil(r)
    assert.are.equal("ERR_WORKER_CRASHED", code)
    assert.matches("crashed", err)
    r, err, code = pool:call("raise")
    assert.is_nil(r)
    assert.are.equal("ERR_WORKER_ERROR", code)
    assert.matches("bad input", err)
    assert.are.equal(8, pool:call(4))
    pool:close()
    assert.is_nil(next(pool.workers))
  end)

  -- A worker that, on "first", waits until the next call is already in its
  -- channel (or 2 s) and answers how many wait there.
  local QUEUE_WORKER = [[
    local lipc, fork = require "lipc", require "fork"
    fork.serve(function(m)
      if m == "first" then
        for _ = 1, 400 do
          if fork.parent:pending() > 0 then break end
          lipc.sleep(5)
        end
        return fork.parent:pending()
      end
      if m == "crash_later" then lipc.sleep(100); os.exit(7) end
      return m * 2
    end)
  ]]

  local function call_both(pool, first, second)
    local r = {}
    local done = lipc.cond()
    lipc.go(function() r[1] = {pool:call(first)}; done:signal() end)
    lipc.go(function() r[2] = {pool:call(second)}; done:signal() end)
    if not r[1] or not r[2] then done:wait(10000) end
    if not r[1] or not r[2] then done:wait(10000) end
    return r[1], r[2]
  end

  it("pool: a busy worker has its next call queued (per_worker, 2 by default)", function()
    local pool = fork.pool(script(QUEUE_WORKER), {size = 1})
    local a, b = call_both(pool, "first", 21)
    assert.are.same({1}, a) -- the second call was in the worker's channel
    assert.are.same({42}, b)
    pool:close()
    pool = fork.pool(script(QUEUE_WORKER), {size = 1, per_worker = 1})
    a, b = call_both(pool, "first", 21)
    assert.are.same({0}, a) -- the second call waited for the first reply
    assert.are.same({42}, b)
    pool:close()
  end)

  it("pool: calls queued on a worker that crashes fail, and the pool goes on", function()
    local pool = fork.pool(script(QUEUE_WORKER), {size = 1})
    local a, b = call_both(pool, "crash_later", 5)
    assert.are.equal("ERR_WORKER_CRASHED", a[3])
    assert.are.equal("ERR_WORKER_CRASHED", b[3])
    assert.matches("exit code 7", a[2])
    assert.are.equal(8, pool:call(4))
    pool:close()
    assert.is_nil(next(pool.workers))
  end)

  it("pool: a worker failing at start is restarted after a backoff; calls fail with its error", function()
    for _, fail in ipairs({"error('cannot load')", "os.exit(1)"}) do
      local dir = S.tmpdir()
      local starts = dir .. "/starts"
      local pool = fork.pool(S.write_file(dir .. "/w.lua", ([[
        local f = assert(io.open(%q, "a"))
        f:write("start\n")
        f:close()
        %s
      ]]):format(starts, fail)), {size = 1})
      local r, msg, code
      for _ = 1, 3 do -- a call may be in flight on the worker as it ends
        r, msg, code = pool:call(1)
        assert.is_nil(r)
        assert.matches("exit code 1", msg)
      end
      if fail:match("error") then
        assert.are.equal("ERR_WORKER_EXIT", code)
        assert.matches("pool: no worker is up: worker %d+ ended at its start %(exit code 1", msg)
        assert.matches("w.lua:4: cannot load", msg, 1, true)
      end
      lipc.sleep(1000)
      local n = select(2, S.read_file(starts):gsub("\n", ""))
      -- 100 ms doubling: 5 starts in the first second; a storm makes hundreds
      assert.is_true(n >= 1 and n <= 8, n .. " starts")
      pool:close() -- cuts the wait before the next start short
      assert.is_nil(next(pool.workers))
    end
    assert.has_error(function() fork.pool("x.lua", {backoff = 0}) end,
      "bad argument #2 to 'fork.pool' (opts.backoff must be an integer >= 1 (ms))")
  end)

  it("pool: a worker that raises during a call: ERR_WORKER_CRASHED with its error line", function()
    local pool = fork.pool(script([[
      local m = require("fork").parent:receive()
      error("cannot handle " .. tostring(m))
    ]]), {size = 1})
    local r, msg, code = pool:call("this")
    assert.is_nil(r)
    assert.are.equal("ERR_WORKER_CRASHED", code)
    assert.matches("pool: worker %d+ crashed during the call %(exit code 1, signal nil%): .*child.lua:2:"
      .. " cannot handle this", msg)
    pool:close()
    assert.is_nil(next(pool.workers))
  end)

  it("bad options: the error names fork and its argument (checked before anything starts)", function()
    local path = script("return")
    local bad = {exec_path = 5, exec_argv = "x", serialization = "xml", max_message = 0,
                 high_water = 1.5, receive_high_water = -1, max_decoded = "big", stdio = 3,
                 env = "A=1", cwd = true, ship = "yes", detached = "yes", timeout = "x",
                 uid = "root", kill_signal = {}, pty = 1}
    for name, v in pairs(bad) do
      for _, how in ipairs({{{}, 3}, {nil, 2}}) do
        local args, arg = how[1], how[2]
        local ok, err = pcall(function()
          local child = args and fork(path, args, {[name] = v}) or fork(path, {[name] = v})
          return child
        end)
        assert.is_false(ok, name)
        assert.matches(("bad argument #%d to 'fork' (opts.%s"):format(arg, name), err, 1, true)
      end
    end
    local ok, err = pcall(fork, path, {}, {exec_argv = {"-e", 1}})
    assert.is_false(ok)
    assert.matches("bad argument #3 to 'fork' (opts.exec_argv[2]: string expected, got number)", err, 1, true)
  end)

  it("pool: per_worker must be an integer of at least 1", function()
    for _, bad in ipairs({0, 1.5, "2"}) do
      local ok, err = pcall(fork.pool, "x.lua", {per_worker = bad})
      assert.is_false(ok)
      assert.matches("bad argument #2 to 'fork.pool' (opts.per_worker must be an integer >= 1)", err, 1, true)
    end
  end)

  it("argument errors name the function called and count as the user does, at the user's line", function()
    local line = debug.getinfo(1, "l").currentline
    local ok, err = pcall(fork.pool, 5)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'fork.pool' (script path expected, got number)", err, 1, true)
    local child = assert(fork(script([[require("fork").parent:receive()]])))
    ok, err = pcall(function() child:kill("BOGUS") end)
    assert.is_false(ok)
    assert.are.equal(("spec/fork_spec.lua:%d: bad argument #1 to 'child.kill' (unknown signal 'BOGUS')")
      :format(line + 5), err)
    child:disconnect()
    child:wait()
  end)
end)

describe("fork and Node", function()

  it("numbers and strings reach Node exactly as JSON.stringify would write them, and back", function()
    local child = assert(fork(S.write_file(S.tmpdir() .. "/echo.js", [[
      process.on('message', (m) => process.send({
        back: m,
        exact: m.big === 9007199254740991 && m.f === 0.1 + 0.2 && m.third === 1 / 3 &&
               m.neg === -1234567890123 && m.tiny === 5e-324 && m.s === 'q"\\\n\u0001 é ✓',
        nan: m.nan, list: Array.isArray(m.list), empty: JSON.stringify(m.empty),
      }));
    ]])))
    local v = {big = 9007199254740991, f = 0.1 + 0.2, third = 1 / 3, neg = -1234567890123,
               tiny = 5e-324, s = 'q"\\\n\1 é ✓', nan = 0 / 0, list = {1, 2.5, "x"}, empty = {}}
    child:send(v)
    local r = child:receive()
    assert.is_true(r.exact)
    assert.are.equal(require("cjson").null, r.nan)   -- NaN has no JSON: null, as in Node
    assert.is_true(r.list)
    assert.are.equal("{}", r.empty)
    for _, k in ipairs({"big", "f", "third", "neg", "tiny", "s"}) do
      assert.are.equal(v[k], r.back[k])
    end
    assert.is_true(math.type(r.back.big) == "integer")
    assert.are.same({1, 2.5, "x"}, r.back.list)
    local ok, err = pcall(child.send, child, {bin = "\255\254"})
    assert.is_false(ok)
    assert.matches("value.bin: cannot send a string that is not UTF%-8 in JSON mode", err)
    child:disconnect()
    child:wait()
  end)

  it("a lipc parent talks to a Node child (fork of a .js script)", function()
    local child = assert(fork(S.write_file(S.tmpdir() .. "/c.js", [[
      process.on('message', (m) => process.send({ got: m, n: m.n + 1 }));
      process.send({ ready: true });
    ]])))
    assert.are.same({ready = true}, child:receive())
    child:send({n = 41, s = "str", list = {1, 2}})
    local r = child:receive()
    assert.are.equal(42, r.n)
    assert.are.same({n = 41, s = "str", list = {1, 2}}, r.got)
    child:disconnect()
    child:wait()
  end)

  it("hands a TCP server to a Node child as Node does (NODE_HANDLE), and takes one from it", function()
    local net = require "net"
    local child = assert(fork(S.write_file(S.tmpdir() .. "/h.js", [[
      const net = require('net');
      let own;
      process.on('message', (m, server) => {
        if (m.close) return own.close(() => process.send({ closed: true }));
        server.on('connection', (c) => c.end('node accepted ' + m.tag));
        own = net.createServer((c) => c.end('node accepted on its own'));
        own.listen(0, '127.0.0.1', () => {
          process.send({ port: own.address().port, got: server.constructor.name }, own);
        });
      });
      process.on('disconnect', () => process.exit(0));  // its servers would keep it
    ]])))
    local server = net.create_server()
    assert(server:listen(0, "127.0.0.1"))
    local port = server:address().port
    child:send({tag = "x"}, server)
    local m, own = child:receive()                  -- Node waited for our ACK to send it
    assert.are.equal("Server", m.got)
    server:close()                                  -- Node's copy goes on accepting
    local sock = assert(net.connect({host = "127.0.0.1", port = port}))
    assert.are.equal("node accepted x", sock:read_all())
    sock:close()
    own:on("connection", function(c) c:write("lipc accepted", function() c:close() end) end)
    child:send({close = true})                      -- now only our copy of Node's server
    assert.are.same({closed = true}, child:receive())
    sock = assert(net.connect({host = "127.0.0.1", port = m.port}))
    assert.are.equal("lipc accepted", sock:read_all())
    sock:close()
    own:close()
    child:disconnect()
    child:wait()
  end)

  it("a Node parent hands a server to a lipc child, which accepts on it", function()
    local dir = S.tmpdir()
    local kid = S.write_file(dir .. "/kid.lua", [[
      local parent = require("fork").parent
      local m, server = parent:receive()
      local saw_udp = m.tag == "udp" and server == nil
      if m.tag == "udp" then m, server = parent:receive() end
      server:on("connection", function(sock)
        sock:write("lipc accepted " .. m.tag, function() sock:close() end)
      end)
      parent:send({ready = true, saw_udp = saw_udp})
      parent:receive()
      server:close()
    ]])
    -- first a UDP socket, which lipc cannot wrap: it is closed and the
    -- message comes without it; the server after it arrives as itself
    local js = S.write_file(dir .. "/p.js", [[
      const { fork } = require('child_process');
      const net = require('net');
      const dgram = require('dgram');
      const child = fork(process.argv[3], [], { execPath: process.argv[2] });
      const server = net.createServer(() => { console.log('node accepted'); });
      const udp = dgram.createSocket('udp4');
      const start = () => server.listen(0, '127.0.0.1', () => {
        const port = server.address().port;
        child.send({ tag: 'y' }, server);
        child.on('message', (m) => {
          if (!m.ready) return;
          if (m.saw_udp) console.log('udp message, no handle');
          server.close();
          const c = net.connect(port, '127.0.0.1');
          let got = '';
          c.on('data', (d) => { got += d; });
          c.on('end', () => { console.log(got); child.disconnect(); udp.close(); });
        });
      });
      udp.bind(0, '127.0.0.1', () => child.send({ tag: 'udp' }, udp, start));
      child.on('exit', (code) => console.log('exit ' + code));
    ]])
    local out, status = S.sh(("node %s %s %s 2>&1"):format(S.shell_quote(js), S.shell_quote(S.lipc),
                                                          S.shell_quote(kid)))
    assert.are.equal(0, status, out)
    assert.matches("lipc accepted y", out)
    assert.matches("udp message, no handle", out)
    assert.matches("exit 0", out)
  end)

  it("a Node parent talks to a lipc child (child_process.fork with execPath)", function()
    local out, status = S.sh(("node %s/scripts/node_parent.js %s 2>&1"):format(
      S.shell_quote(S.root), S.shell_quote(S.lipc)))
    assert.are.equal(0, status, out)
    assert.matches("hello from lipc pid %d+", out)
    assert.matches("lipc says bye after 6 messages", out)
    assert.matches("exit 0", out)
  end)
end)

describe("fork scripts", function()
  it("fork_basic.lua", function()
    local out, status = S.run_script("fork_basic.lua")
    assert.are.equal(0, status, out)
    assert.matches("sum of 3 numbers = 6", out)
    assert.matches("worker said: bye", out)
  end)

  it("ping_pong.lua", function()
    local out, status = S.run_script("ping_pong.lua", {"2000"})
    assert.are.equal(0, status, out)
    assert.matches("2000 round trips", out)
  end)

  it("pool.lua", function()
    local out, status = S.run_script("pool.lua")
    assert.are.equal(0, status, out)
    assert.matches("sum of squares 1..20 = 2870", out)
    assert.matches("ERR_WORKER_CRASHED", out)
    assert.matches("after crash: 144", out)
    assert.matches("pool closed", out)
  end)

  it("prefork_server.lua", function()
    local out, status = S.run_script("prefork_server.lua", {"3", "12"})
    assert.are.equal(0, status, out)
    assert.matches("12 connections answered by %d worker", out)
  end)

  it("node_child.lua (lipc parent, Node child)", function()
    local out, status = S.run_script("node_child.lua")
    assert.are.equal(0, status, out)
    assert.matches("upper: HELLO FROM LIPC", out)
    assert.matches("sum: 10.5", out)
  end)
end)
