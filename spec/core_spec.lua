-- core_spec.lua - the `lipc` module: timers, sleep, tasks, signals,
-- process info, exit and the coroutine-style rules.
local lipc = require "lipc"
local support = require "support"

describe("lipc timers", function()
  it("sleep waits at least the delay", function()
    local t0 = lipc.hrtime()
    lipc.sleep(30)
    assert.is_true(lipc.hrtime() - t0 >= 29e6)
  end)

  it("set_timeout fires once, in delay order, same delays in creation order", function()
    local order, done = {}, lipc.cond()
    lipc.set_timeout(20, function() order[#order + 1] = "c"; done:signal() end)
    lipc.set_timeout(5, function() order[#order + 1] = "a" end)
    lipc.set_timeout(5, function() order[#order + 1] = "b" end)
    done:wait(2000)
    assert.are.same({"a", "b", "c"}, order)
  end)

  it("set_interval repeats until stopped", function()
    local n, done = 0, lipc.cond()
    local t
    t = lipc.set_interval(2, function()
      n = n + 1
      if n == 5 then t:stop(); done:signal() end
    end)
    done:wait(2000)
    lipc.sleep(10)
    assert.are.equal(5, n)
    assert.is_false(t:active())
  end)

  it("a stopped timeout never fires", function()
    local fired = false
    local t = lipc.set_timeout(5, function() fired = true end)
    t:stop()
    t:stop() -- idempotent
    lipc.sleep(20)
    assert.is_false(fired)
  end)

  it("every timeout counts from when it is set, however long Lua ran before it", function()
    local net, spawn = require "net", require "spawn"
    -- busy Lua leaves the loop's clock (cached per turn) behind
    local function busy()
      local t0 = lipc.hrtime()
      while lipc.hrtime() - t0 < 300e6 do end
      return lipc.hrtime()
    end
    local srv = assert(net.create_server(function(s) s:close() end):listen(0))
    busy()
    local sock, err = net.connect({host = "127.0.0.1", port = srv:address().port, timeout = 1000})
    assert.is_truthy(sock, err)
    sock:close()
    srv:close()
    busy()
    local child = spawn("true", {}, {stdio = "ignore", timeout = 1000})
    assert.are.equal(0, (child:wait()))
    assert.is_false(child.timed_out)
    local t1 = busy()
    lipc.sleep(100)
    assert.is_true(lipc.hrtime() - t1 >= 99e6)
    t1 = busy()
    assert.are.same({nil, "timeout"}, {lipc.cond():wait(100)})
    assert.is_true(lipc.hrtime() - t1 >= 99e6)
    local fired = lipc.cond()
    t1 = busy()
    lipc.set_timeout(100, function() fired:signal(lipc.hrtime()) end)
    assert.is_true(fired:wait() - t1 >= 99e6)
  end)

  it("shared methods (close, ref, unref) refuse userdata that is not a lipc object", function()
    local t = lipc.set_timeout(1000, function() end)
    for _, name in ipairs({"close", "ref", "unref"}) do
      local ok, err = pcall(t[name], io.stdout)
      assert.is_false(ok)
      assert.are.equal("bad argument #1 to '" .. name .. "' (lipc object expected, got FILE*)", err)
    end
    assert.are.equal(t, t:unref())
    assert.are.equal(t, t:ref())
    t:close()
  end)

  it("rejects bad arguments with the function's name", function()
    assert.has_error(function() lipc.set_timeout("x", print) end)
    local ok, err = pcall(lipc.set_timeout, -1, print)
    assert.is_false(ok)
    assert.matches("lipc.set_timeout", err)
    ok, err = pcall(lipc.set_interval, 10, "nope")
    assert.is_false(ok)
    assert.matches("function expected", err)
    ok, err = pcall(lipc.sleep, {})
    assert.is_false(ok)
    assert.matches("number expected", err)
  end)
end)

describe("yielding to the loop", function()
  -- sleep(0) gives the loop one full turn, its poll for I/O included: a
  -- task looping on it must not starve the peers (bounded by a count of
  -- turns, not by time)
  it("a loop of sleep(0) lets the loop read pending bytes", function()
    local a, b = assert(require("fork").socketpair())
    local got = 0
    b:on("data", function(chunk) got = got + #chunk end)
    a:write(string.rep("x", 1000))
    local turns = 0
    while got < 1000 and turns < 100000 do
      lipc.sleep(0)
      turns = turns + 1
    end
    assert.are.equal(1000, got)
    a:close()
    b:close()
  end)

  it("tasks in sleep(0) resume in the order they yielded, once a turn", function()
    local log = {}
    for i = 1, 4 do
      lipc.go(function()
        lipc.sleep(0)
        log[#log + 1] = i
        lipc.sleep(0)
        log[#log + 1] = i
      end)
    end
    lipc.sleep(0)
    log[#log + 1] = "main"
    assert.is_true(support.wait_for(function() return #log == 9 end))
    assert.are.same({1, 2, 3, 4, "main", 1, 2, 3, 4}, log)
  end)

  it("a worker looping send(); sleep(0) delivers its messages and reads its own", function()
    local path = support.write_file(support.tmpdir() .. "/worker.lua", [[
      local lipc = require "lipc"
      local parent = require("fork").parent
      local stop = false
      parent:on("message", function() stop = true end)
      local i = 0
      while not stop and i < 200000 do
        i = i + 1
        parent:send(i)
        lipc.sleep(0)
      end
      parent:send({stopped = stop})
    ]])
    local child = assert(require("fork")(path))
    assert.are.equal(1, child:receive())
    child:send("stop")
    local m
    repeat m = child:receive() until type(m) ~= "number"
    assert.are.same({stopped = true}, m)
    child:disconnect() -- its 'message' listener keeps it up until then
    assert.are.equal(0, (child:wait()))
  end)
end)

describe("lipc tasks", function()
  it("go runs a task until it waits, then the caller goes on", function()
    local log = {}
    lipc.go(function(a, b)
      log[#log + 1] = "start " .. a .. b
      lipc.sleep(5)
      log[#log + 1] = "woke"
    end, "x", "y")
    log[#log + 1] = "caller"
    lipc.sleep(20)
    assert.are.same({"start xy", "caller", "woke"}, log)
  end)

  it("coroutine-style calls outside a task say so", function()
    local co = coroutine.wrap(function() return pcall(lipc.sleep, 1) end)
    local ok, err = co()
    assert.is_false(ok)
    assert.matches("lipc.sleep: must be called inside a task", err)
  end)

  it("outside a task the error names what the user called, at the user's line", function()
    local spawn, fork = require "spawn", require "fork"
    local dir = lipc.mkdtemp()
    local w = io.open(dir .. "/w.lua", "w")
    w:write("return")
    w:close()
    local child = spawn("echo", {"hi"})
    local worker = assert(fork(dir .. "/w.lua"))
    local here = debug.getinfo(1, "S").short_src
    local function outside(f)
      local ok, err = coroutine.wrap(function() return pcall(f) end)()
      assert.is_false(ok)
      return err
    end
    local cases = {
      {"stream.read_all", function() local s = lipc.stdin:read_all(); return s end},
      {"stream.read_all", function() local s = child.stdout:read_all(); return s end},
      {"stream.lines", function() local it = lipc.stdin:lines(); return it end},
      {"child.wait", function() local c = child:wait(); return c end},
      {"child.wait", function() local c = worker:wait(); return c end},
      {"channel.receive", function() local m = worker:receive(); return m end},
      {"spawn.run", function() local r = spawn.run("true"); return r end},
    }
    for _, case in ipairs(cases) do
      local err = outside(case[2])
      local line = debug.getinfo(case[2], "S").linedefined
      assert.are.equal(("%s:%d: %s: must be called inside a task (lipc.go)"):format(here, line, case[1]), err)
    end
    child:wait()                             -- a read that raised read nothing: 'close' comes
    child:close()                            -- its unread output
    worker:wait()
    os.remove(dir .. "/w.lua")
    os.remove(dir)
  end)

  it("in_task tells tasks from plain coroutines", function()
    assert.is_true(lipc.in_task())
    assert.is_false(coroutine.wrap(function() return lipc.in_task() end)())
  end)

  it("cond wakes waiters in order, with values, or times out", function()
    local c, got = lipc.cond(), {}
    for i = 1, 3 do
      lipc.go(function() local v = c:wait(); got[#got + 1] = {i, v} end)
    end
    assert.are.equal(3, c:waiting())
    c:signal("one")
    c:broadcast("all")
    assert.are.same({{1, "one"}, {2, "all"}, {3, "all"}}, got)
    assert.are.same({nil, "timeout"}, {c:wait(5)})
  end)

  it("a woken task stays alive while it wakes others, though one parks in its place", function()
    -- A is woken from the channel's wait queue. It wakes B, which parks in
    -- that queue on the wait A left (taking its anchor), then C, which
    -- collects while A waits in cond:signal for it: A must survive
    local a, b = support.channel_pair()
    local go_b, go_c, log = lipc.cond(), lipc.cond(), {}
    lipc.go(function() -- A
      local m = b:receive()
      go_b:signal()
      go_c:signal()
      local junk = {}
      for i = 1, 20000 do junk[i] = {i} end -- reuse what a freed A would have held
      log[#log + 1] = m .. #junk
    end)
    lipc.go(function() -- B
      go_b:wait()
      local m = b:receive()
      log[#log + 1] = m
    end)
    lipc.go(function() -- C
      go_c:wait()
      collectgarbage()
      collectgarbage()
    end)
    a:send("first")
    assert.is_true(support.wait_for(function() return #log == 1 end))
    a:send("second")
    assert.is_true(support.wait_for(function() return #log == 2 end))
    assert.are.same({"first20000", "second"}, log)
    a:close()
    b:close()
  end)

  it("many tasks reuse pooled coroutines", function()
    local n = 0
    for _ = 1, 10000 do lipc.go(function() n = n + 1 end) end
    assert.are.equal(10000, n)
  end)
end)

describe("lipc emitter", function()
  it("on, once, off, emit and listeners on a table object", function()
    local obj = lipc.emitter()
    local seen = {}
    local function a(x) seen[#seen + 1] = "a" .. x end
    obj:on("ev", a)
    obj:once("ev", function(x) seen[#seen + 1] = "once" .. x end)
    assert.are.equal(2, #obj:listeners("ev"))
    assert.are.equal(2, obj:emit("ev", 1))
    assert.are.equal(1, obj:emit("ev", 2))
    obj:off("ev", a)
    assert.are.equal(0, obj:emit("ev", 3))
    assert.are.same({"a1", "once1", "a2"}, seen)
  end)

  it("a lone listener is listed, joined by others, removed, and fires once per emit", function()
    local obj, seen = lipc.emitter(), {}
    local function a(x) seen[#seen + 1] = "a" .. x end
    local function b(x) seen[#seen + 1] = "b" .. x end
    obj:on("ev", a)
    assert.are.same({a}, obj:listeners("ev"))
    assert.are.equal(1, obj:emit("ev", 1))
    obj:off("ev", b)                          -- not there: nothing changes
    assert.are.same({a}, obj:listeners("ev"))
    obj:on("ev", b)
    assert.are.same({a, b}, obj:listeners("ev"))
    assert.are.equal(2, obj:emit("ev", 2))
    obj:off("ev", a)
    obj:off("ev", b)
    assert.are.equal(0, obj:emit("ev", 3))
    obj:once("ev", a)                         -- a once listener alone
    assert.are.equal(1, obj:emit("ev", 4))
    assert.are.equal(0, obj:emit("ev", 5))
    obj:on("ev", b)
    obj:off("ev")
    assert.are.same({}, obj:listeners("ev"))
    assert.are.same({"a1", "a2", "b2", "a4"}, seen)
    local t = lipc.set_timeout(10000, function() end) -- a handle with no listeners yet
    assert.are.same({}, t:listeners("x"))
    t:on("x", a)
    assert.are.equal(1, t:emit("x", 6))
    t:stop()
  end)

  it("a lone listener costs no table, and an emit allocates nothing", function()
    -- a big server's sockets each have a 'data' and an 'error' listener
    local function f() end
    local objs = {}
    collectgarbage()
    collectgarbage("stop")
    for i = 1, 2000 do objs[i] = lipc.emitter() end
    local k0 = collectgarbage("count")
    for i = 1, 2000 do objs[i]:on("data", f) end
    local per_listener = (collectgarbage("count") - k0) * 1024 / 2000
    for _ = 1, 100 do objs[1]:emit("data", 1) end  -- tasks pooled
    k0 = collectgarbage("count")
    for _ = 1, 10000 do objs[1]:emit("data", 1) end
    local per_emit = (collectgarbage("count") - k0) * 1024 / 10000
    collectgarbage("restart")
    assert.is_true(per_listener < 150, "bytes a lone listener: " .. per_listener) -- an array: 176
    assert.is_true(per_emit < 8, "bytes an emit: " .. per_emit)                  -- a snapshot: 72
  end)

  it("listeners run in tasks, so they may wait", function()
    local obj, done = lipc.emitter(), lipc.cond()
    obj:on("go", function() lipc.sleep(5); done:signal("slept") end)
    obj:emit("go")
    assert.are.equal("slept", done:wait(1000))
  end)

  it("listeners added during an emit fire from the next emit", function()
    local obj, n = lipc.emitter(), 0
    obj:on("x", function() obj:on("x", function() n = n + 10 end); n = n + 1 end)
    obj:emit("x")
    assert.are.equal(1, n)
  end)

  it("bad arguments name the method", function()
    local obj = lipc.emitter()
    local ok, err = pcall(obj.on, obj, "x", 42)
    assert.is_false(ok)
    assert.matches("function expected", err)
    ok, err = pcall(obj.on, 42, "x", print)
    assert.is_false(ok)
    assert.are.equal("bad argument #1 to 'on' (object expected, got number)", err)
  end)
end)

describe("lipc signals", function()
  it("delivers a signal sent to self", function()
    local got = lipc.cond()
    local w = lipc.on_signal("SIGUSR1", function(name) got:signal(name) end)
    assert.is_true(lipc.kill(lipc.pid, "SIGUSR1"))
    assert.are.equal("SIGUSR1", got:wait(2000))
    w:stop()
  end)

  it("accepts short names and numbers; rejects unknown ones", function()
    local w = lipc.on_signal("USR2", function() end)
    w:stop()
    assert.has_error(function() lipc.on_signal("SIGNOPE", print) end)
    assert.has_error(function() lipc.on_signal("SIGKILL", print) end)
    local ok, msg, code = lipc.kill(2 ^ 22, 0)
    assert.is_nil(ok)
    assert.matches("ESRCH", msg)
    assert.are.equal("ESRCH", code)
  end)
end)

describe("lipc.inspect", function()
  it("shows any value on one line: strings quoted, tables' contents, cycles, depth", function()
    local inspect = lipc.inspect
    assert.are.equal('{1, "two", 3.0, ["a key"] = false, k = {x = true}}',
      inspect({1, "two", 3.0, k = {x = true}, ["a key"] = false}))
    assert.are.equal('"line\\nnext"', inspect("line\nnext"))
    assert.are.equal("nil", inspect(nil))
    assert.are.equal("{1e+300, 2.5, -0.0}", inspect({1e300, 2.5, -0.0}))  -- floats as Lua writes them
    assert.are.equal('"' .. ("x"):rep(10000) .. '"...(5 more bytes)', inspect(("x"):rep(10005)))
    assert.are.equal("null", inspect(lipc.null))
    assert.are.equal("{}", inspect({}))
    local t = {}
    t.self = t
    assert.are.equal("{self = <cycle>}", inspect(t))
    assert.are.equal("{a = {...}}", inspect({a = {b = 1}}, {depth = 1}))
    assert.are.equal("{{1}, {1}}", inspect({{1}, {1}}))        -- shared, not a cycle
    local long = {}
    for i = 1, 101 do long[i] = i end
    assert.matches("^{1, 2, .* 100, %.%.%.%(1 more%)}$", inspect(long))
    assert.matches("^lipc%.", inspect(lipc.stdout))
    assert.has_error(function() inspect(1, {depth = -1}) end,
      "bad argument #2 to 'lipc.inspect' (opts.depth: integer >= 0 expected)")
  end)
end)

describe("lipc process info", function()
  it("pid, ppid, argv, cwd, env, hrtime, now, version", function()
    assert.is_true(math.type(lipc.pid) == "integer" and lipc.pid > 1)
    assert.is_true(lipc.ppid >= 1)
    assert.matches("lipc", lipc.argv[1])
    assert.are.equal(os.getenv("PWD") and lipc.cwd() or lipc.cwd(), lipc.cwd())
    assert.are.equal(os.getenv("HOME"), lipc.getenv("HOME"))
    assert.are.equal(os.getenv("PATH"), lipc.env().PATH)
    assert.is_true(lipc.setenv("LIPC_SPEC_VAR", "v1"))
    assert.are.equal("v1", lipc.getenv("LIPC_SPEC_VAR"))
    lipc.setenv("LIPC_SPEC_VAR", nil)
    assert.is_nil(lipc.getenv("LIPC_SPEC_VAR"))
    local h1 = lipc.hrtime()
    assert.is_true(math.type(h1) == "integer" and lipc.hrtime() >= h1)
    assert.is_true(math.abs(lipc.now() - os.time() * 1000) < 2000)
    assert.matches("^%d+%.%d+%.%d+$", lipc.version)
    assert.are.equal("Lua 5.4", lipc.versions.lua:match("^Lua 5%.4"))
  end)

  it("lipc.fds lists the open descriptors and what they are", function()
    local before = lipc.fds()
    assert.is_string(before[2])
    local a, b = require("fork").socketpair()
    local f = assert(io.open("/etc/hostname"))
    local new = {}
    for fd, what in pairs(lipc.fds()) do
      -- (libuv keeps a /dev/null in reserve for EMFILE, opened on demand)
      if before[fd] ~= what and what ~= "/dev/null" then new[#new + 1] = what end
    end
    a:close()
    b:close()
    f:close()
    table.sort(new)
    assert.are.equal(3, #new)
    assert.are.equal("/etc/hostname", new[1])
    assert.matches("^socket:%[%d+%]$", new[2])
    assert.matches("^socket:%[%d+%]$", new[3])
  end)

  it("lipc.handles lists the timer of a task in lipc.sleep, by id, with no object", function()
    local function sleeps()
      local ids = {}
      for _, h in ipairs(lipc.handles()) do
        if h.kind == "sleep" then
          assert.is_nil(h.object)
          ids[#ids + 1] = h.id
        end
      end
      return ids
    end
    local done = lipc.cond()
    lipc.go(function() lipc.sleep(20); done:signal() end)
    lipc.go(function() lipc.sleep(20); done:signal() end)
    local ids = sleeps()
    assert.are.equal(2, #ids)
    assert.are.equal("userdata", type(ids[1]))
    assert.are_not.equal(ids[1], ids[2])
    done:wait()
    done:wait()
    assert.are.equal(0, #sleeps())
  end)

  it("stdio streams exist and stdout writes in order with print", function()
    assert.is_truthy(lipc.stdout)
    assert.is_truthy(lipc.stderr)
    assert.is_function(lipc.stdout.write)
  end)
end)

describe("argument errors", function()
  -- the line of the call in this file, as an error message starts
  local function here(level)
    local info = debug.getinfo(level + 1, "Sl")
    return info.short_src .. ":" .. info.currentline .. ": "
  end

  it("have one format, Lua's, naming lipc's function even under pcall(f, ...)", function()
    local net, fork, spawn = require "net", require "fork", require "spawn"
    local srv = net.create_server()
    local a, b = assert(fork.socketpair())
    local cases = {
      {srv.listen, {srv, "80"},
       "bad argument #2 to 'net.server.listen' (port must be an integer, got string)"},
      {a.write, {a, 42},
       "bad argument #2 to 'stream.write' (string or array of strings expected, got number)"},
      {a.channel, {a, {high_water = -1}},
       "bad argument #2 to 'stream.channel' (opts.high_water must be an integer in 1..1099511627776)"},
      {a.set_high_water, {a, 0}, "bad argument #2 to 'stream.set_high_water' (must be > 0)"},
      {lipc.sleep, {"x"}, "bad argument #1 to 'lipc.sleep' (number expected, got string)"},
      {lipc.set_timeout, {-1, print},
       "bad argument #1 to 'lipc.set_timeout' (delay must be a number of milliseconds >= 0)"},
      {spawn, {5}, "bad argument #1 to 'spawn' (string expected, got number)"},
      {fork, {5}, "bad argument #1 to 'fork' (script path expected, got number)"},
    }
    for _, c in ipairs(cases) do
      local ok, err = pcall(c[1], table.unpack(c[2]))
      assert.is_false(ok)
      assert.are.equal(c[3], err)
    end
    srv:close()
    a:close()
    b:close()
  end)

  it("point at the caller's line, past lipc's own Lua helpers, and do not count self", function()
    local net, spawn = require "net", require "spawn"
    local srv = net.create_server()
    local ok, err = pcall(function() srv:listen("80") end); local where = here(1)
    assert.is_false(ok)
    assert.are.equal(where ..
      "bad argument #1 to 'net.server.listen' (port must be an integer, got string)", err)
    ok, err = pcall(function() spawn("true", {}, {cwd = 1}) end); where = here(1)
    assert.is_false(ok)
    assert.are.equal(where .. "bad argument #3 to 'spawn' (opts.cwd: string expected, got number)", err)
    ok, err = pcall(function() srv.listen(42) end); where = here(1)
    assert.is_false(ok)
    assert.are.equal(where ..
      "bad argument #1 to 'net.server.listen' (lipc.net.server expected, got number)", err)
    srv:close()
  end)
end)
