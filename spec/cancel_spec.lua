-- cancel_spec.lua - task objects (lipc.go's result), cancellation of
-- every kind of wait, scopes (structured tasks with a deadline), and
-- opts.cancel on spawn, spawn.run, fork and net.connect.
local lipc = require "lipc"
local spawn = require "spawn"
local net = require "net"
local pipe = require "pipe"
local support = require "support"

local FOREVER = 1e9 -- ms: a wait that only cancellation ends

-- The handles of a kind that are open now.
local function count_handles(kind)
  local n = 0
  for _, h in ipairs(lipc.handles()) do
    if h.kind == kind then n = n + 1 end
  end
  return n
end

local function cancelled(a, b, c)
  assert.is_nil(a)
  assert.matches("^ECANCELED: ", b)
  assert.are.equal("ECANCELED", c)
end

describe("lipc.go", function()
  describe("its task object", function()
    it("waits for the results of the function", function()
      local t = lipc.go(function(a, b) lipc.sleep(5) return a + b, "x", nil end, 40, 2)
      assert.are.equal("running", t:status())
      local r = table.pack(t:wait())
      assert.are.same({n = 3, 42, "x", nil}, r)
      assert.are.equal("done", t:status())
      assert.are.same({42, "x"}, {t:wait()}) -- again, once ended
    end)

    it("gives a task that ended before wait() its results too", function()
      local t = lipc.go(function() return "at once" end)
      assert.are.equal("done", t:status())
      assert.are.equal("at once", t:wait())
    end)

    it("gives nil, the error, \"ERROR\" for a task that raised, and it is not uncaught", function()
      local t = lipc.go(function() error({code = 7}) end)
      local a, err, code = t:wait()
      assert.is_nil(a)
      assert.are.same({code = 7}, err)
      assert.are.equal("ERROR", code)
      assert.are.equal("failed", t:status())
      local w = lipc.go(function() lipc.sleep(5) error("late", 0) end)
      assert.are.same({nil, "late", "ERROR"}, {w:wait()})
    end)

    it("leaves an error nobody waits for uncaught, a loop turn later", function()
      local out, err, status = support.run_lipc([[
        local lipc = require "lipc"
        lipc.go(function() error("nobody waits") end)
        print("the starter went on")
      ]])
      assert.are.equal(1, status)
      assert.matches("the starter went on", out)
      assert.matches("uncaught error: .*nobody waits", err)
      assert.matches("stack traceback", err)
    end)

    it("raises on bad arguments and outside a task", function()
      assert.has_error(function() lipc.go(42) end,
        "bad argument #1 to 'lipc.go' (function expected, got number)")
      local t = lipc.go(function() end)
      assert.has_error(function() t:cancel({}) end)
      assert.has_error(function() t.wait(42) end)
      local ok, err
      local co = coroutine.wrap(function() ok, err = pcall(t.wait, t) end)
      co()
      assert.is_false(ok)
      assert.matches("must be called inside a task", err)
    end)

    it("refuses to wait for itself", function()
      local me
      me = lipc.go(function()
        lipc.sleep(1)
        return pcall(me.wait, me)
      end)
      local ok, err = me:wait()
      assert.is_false(ok)
      assert.matches("cannot wait for itself", err)
    end)
  end)

  describe("cancel()", function()
    it("ends a sleep at once with nil, ECANCELED and closes its timer", function()
      local before = count_handles("sleep")
      local t = lipc.go(function() return lipc.sleep(FOREVER) end)
      assert.are.equal(before + 1, count_handles("sleep"))
      assert.is_true(t:cancel("enough"))
      local a, b, c = t:wait()
      cancelled(a, b, c)
      assert.matches("enough", b)
      assert.are.equal("cancelled", t:status())
      assert.is_true(support.wait_for(function() return count_handles("sleep") == before end))
    end)

    it("sticks: every later wait of the task returns ECANCELED at once", function()
      local seen = {}
      local t = lipc.go(function()
        for i = 1, 3 do seen[i] = select(3, lipc.sleep(FOREVER)) end
        return "out of the loop"
      end)
      t:cancel()
      assert.are.equal("out of the loop", t:wait())
      assert.are.same({"ECANCELED", "ECANCELED", "ECANCELED"}, seen)
    end)

    it("of a task that is not waiting: its next wait returns ECANCELED", function()
      local t
      t = lipc.go(function()
        lipc.sleep(1)
        local first = t:cancel("self") -- running, not waiting
        return first, select(3, lipc.sleep(FOREVER))
      end)
      assert.are.same({true, "ECANCELED"}, {t:wait()})
    end)

    it("twice, or once ended, returns false and changes nothing", function()
      local t = lipc.go(function() return lipc.sleep(FOREVER) end)
      assert.is_true(t:cancel("first"))
      assert.is_false(t:cancel("second"))
      local _, msg = t:wait()
      assert.matches("first", msg)
      local done = lipc.go(function() return 1 end)
      assert.is_false(done:cancel())
      assert.are.equal("done", done:status())
      assert.are.equal(1, done:wait())
    end)

    it("does not raise: pcall sees the values", function()
      local t = lipc.go(function() return pcall(lipc.sleep, FOREVER) end)
      t:cancel()
      local ok, a, b, c = t:wait()
      assert.is_true(ok)
      cancelled(a, b, c)
    end)

    it("an ECANCELED error raised after cancel() is not uncaught", function()
      local out, err, status = support.run_lipc([[
        local lipc = require "lipc"
        local t = lipc.go(function() assert(lipc.sleep(1e9)) end)
        t:cancel()
        print(t:status())
      ]])
      assert.are.equal(0, status, err)
      assert.are.equal("cancelled\n", out)
    end)

    it("emits 'cancel'(reason) on the task", function()
      local got
      local t = lipc.go(function() lipc.sleep(FOREVER) end)
      t:on("cancel", function(reason) got = reason end)
      t:cancel("why")
      assert.are.equal("why", got)
    end)

    it("ends a wait() on another task; that task runs on", function()
      local inner = lipc.go(function() lipc.sleep(20) return "inner done" end)
      local outer = lipc.go(function() return inner:wait() end)
      outer:cancel()
      cancelled(outer:wait())
      assert.are.equal("inner done", inner:wait())
    end)

    it("ends a cond:wait(); the next signal goes to the next waiter", function()
      local c = lipc.cond()
      local a = lipc.go(function() return c:wait() end)
      local b = lipc.go(function() return c:wait() end)
      local timed = lipc.go(function() return c:wait(FOREVER) end)
      a:cancel()
      timed:cancel()
      cancelled(a:wait())
      cancelled(timed:wait())
      assert.are.equal(1, c:signal("for b"))
      assert.are.equal("for b", b:wait())
      assert.are.equal(0, c:signal("nobody"))
    end)

    it("ends a stream read(); what arrives later is kept for the next read", function()
      local r, w = pipe.new()
      local t = lipc.go(function() return r:read() end)
      t:cancel()
      cancelled(t:wait())
      w:write("after the cancel")
      w:close()
      assert.are.equal("after the cancel", r:read_all())
      r:close()
    end)

    it("ends a channel receive(); the message goes to the next receiver", function()
      local a, b = support.channel_pair()
      local first = lipc.go(function() return b:receive() end)
      local second = lipc.go(function() return b:receive() end)
      first:cancel()
      cancelled(first:wait())
      a:send({n = 1})
      assert.are.same({n = 1}, second:wait())
      a:send({n = 2})
      assert.are.same({n = 2}, b:receive())
      a:disconnect()
      b:disconnect()
    end)

    it("ends a server's accept(); the connection goes to the next acceptor", function()
      local srv = net.create_server()
      assert(srv:listen(0))
      local port = srv:address().port
      local first = lipc.go(function() return srv:accept() end)
      local second = lipc.go(function() return srv:accept() end)
      first:cancel()
      cancelled(first:wait())
      local c = assert(net.connect({port = port}))
      local s = assert(second:wait())
      s:close()
      c:close()
      srv:close()
    end)

    it("ends a child:wait(); the child runs on and is still reaped", function()
      local child = spawn("sleep", {"30"}, {stdio = "ignore"})
      local t = lipc.go(function() return child:wait() end)
      t:cancel()
      cancelled(t:wait())
      assert.is_true(support.alive(child.pid))
      child:kill("SIGKILL")
      local code, sig = child:wait()
      assert.is_nil(code)
      assert.are.equal("SIGKILL", sig)
      assert.is_true(support.wait_for(function() return support.proc_state(child.pid) == nil end))
    end)

    it("ends a net.connect that hangs (a full backlog), closing its socket", function()
      local srv = net.create_server() -- nobody accepts: the backlog fills
      assert(srv:listen(0, "127.0.0.1", {backlog = 1}))
      local port = srv:address().port
      local socks, hung = {}, nil
      for _ = 1, 16 do
        local t = lipc.go(function() return net.connect({port = port}) end)
        if not support.wait_for(function() return t:status() ~= "running" end, 100) then
          hung = t
          break
        end
        socks[#socks + 1] = assert(t:wait())
      end
      assert.is_not_nil(hung, "no connect waited")
      assert.is_true(hung:cancel())
      cancelled(hung:wait())
      for _, s in ipairs(socks) do s:close() end
      srv:close()
      assert.is_true(support.wait_for(function()
        return count_handles("tcp") == 0 and count_handles("connect") == 0
      end))
    end)

    it("ends a stream drain(); the queued bytes still go out, in order", function()
      local r, w = pipe.new()
      w:set_high_water(1024)
      local chunk = ("x"):rep(64 * 1024)
      for _ = 1, 8 do w:write(chunk) end -- far over the mark: nobody reads yet
      local t = lipc.go(function() return w:drain() end)
      assert.are.equal("running", t:status())
      t:cancel()
      cancelled(t:wait())
      w:shutdown()
      assert.are.equal(8 * #chunk, #r:read_all())
      r:close()
    end)

    it("ends a pipe.open of a FIFO that has no reader, closing the stream", function()
      local dir = support.tmpdir()
      local path = dir .. "/fifo"
      assert(pipe.mkfifo(path, "0600"))
      local before = count_handles("fifo open")
      local t = lipc.go(function() return pipe.open(path, "w") end)
      t:cancel()
      cancelled(t:wait())
      assert.is_true(support.wait_for(function() return count_handles("fifo open") == before end))
    end)
  end)
end)

describe("lipc.scope", function()
  it("returns the body's results once the body and all its tasks have ended", function()
    local ended = {}
    local a, b = lipc.scope(function(s)
      for i = 1, 3 do
        s:go(function() lipc.sleep(i * 3) ended[#ended + 1] = i end)
      end
      return "body", 2
    end)
    assert.are.equal("body", a)
    assert.are.equal(2, b)
    assert.are.same({1, 2, 3}, ended)
  end)

  it("raises the first error after cancelling and waiting for the rest", function()
    local cleanup, saw = false, nil
    local ok, err = pcall(lipc.scope, function(s)
      s:go(function() lipc.sleep(5) error("first failure", 0) end)
      s:go(function()
        saw = select(3, lipc.sleep(FOREVER))
        lipc.sleep(1) -- cancelled too: returns at once
        cleanup = true
        error("ECANCELED raised while cancelled: not a failure")
      end)
      return lipc.sleep(FOREVER)
    end)
    assert.is_false(ok)
    assert.are.equal("first failure", err)
    assert.are.equal("ECANCELED", saw)
    assert.is_true(cleanup)
  end)

  it("cancels its tasks and raises when the body raises", function()
    local saw
    local ok, err = pcall(lipc.scope, function(s)
      s:go(function() saw = select(3, lipc.sleep(FOREVER)) end)
      error("body failed", 0)
    end)
    assert.is_false(ok)
    assert.are.equal("body failed", err)
    assert.are.equal("ECANCELED", saw)
  end)

  it("lipc.shield: its waits are not cancelled, and the cancellation is back after it", function()
    local t = lipc.go(function()
      lipc.sleep(FOREVER) -- cancelled here
      local inside = table.pack(lipc.shield(function(x)
        lipc.sleep(2) -- not cancelled: sleeps
        return "shielded", x
      end, 7))
      return inside[1], inside[2], select(3, lipc.sleep(1))
    end)
    t:cancel()
    assert.are.same({"shielded", 7, "ECANCELED"}, {t:wait()})
    assert.has_error(function() lipc.shield(function() error("raised", 0) end) end, "raised")
  end)

  it("gives its deadline to every wait: nil, ETIMEDOUT after opts.timeout ms", function()
    local reasons = {}
    local a, msg, code = lipc.scope(function(s)
      s:go(function() table.insert(reasons, (select(2, lipc.sleep(FOREVER)))) end)
      s:go(function() table.insert(reasons, (select(2, lipc.cond():wait()))) end)
      table.insert(reasons, (select(2, lipc.sleep(FOREVER))))
      return "not this"
    end, {timeout = 20})
    assert.is_nil(a)
    assert.are.equal("ETIMEDOUT", code)
    assert.matches("^ETIMEDOUT: scope timed out after 20 ms", msg)
    assert.are.equal(3, #reasons)
    for _, r in ipairs(reasons) do assert.matches("^ECANCELED: .*timeout", r) end
    -- the caller's waits work again once the scope is left
    local t0 = lipc.hrtime()
    assert.is_nil(lipc.sleep(2))
    assert.is_true(lipc.hrtime() - t0 >= 1e6)
    assert.are.equal(0, count_handles("scope"))
  end)

  it("scope:cancel() ends it with nil, ECANCELED; cancelling twice is false", function()
    local a, msg, code = lipc.scope(function(s)
      s:go(function() lipc.sleep(FOREVER) end)
      assert.is_true(s:cancel("stop"))
      assert.is_false(s:cancel("again"))
      assert.is_true(s:cancelled())
      local t = s:go(function() return lipc.sleep(1) end) -- starts cancelled
      cancelled(t:wait())
      return "ignored"
    end)
    assert.is_nil(a)
    assert.matches("stop", msg)
    assert.are.equal("ECANCELED", code)
  end)

  it("is cancelled with the task that opened it, nested scopes too", function()
    local saw = {}
    local outer = lipc.go(function()
      return lipc.scope(function(s)
        s:go(function() saw.child = select(3, lipc.sleep(FOREVER)) end)
        return lipc.scope(function(s2)
          s2:go(function() saw.grandchild = select(3, lipc.sleep(FOREVER)) end)
          saw.body = select(3, lipc.sleep(FOREVER))
        end)
      end)
    end)
    assert.is_true(outer:cancel("shutdown"))
    cancelled(outer:wait())
    assert.are.same({child = "ECANCELED", grandchild = "ECANCELED", body = "ECANCELED"}, saw)
  end)

  it("an outer deadline reaches the tasks of an inner scope", function()
    local saw
    local _, _, code = lipc.scope(function()
      lipc.scope(function(inner)
        inner:go(function() saw = select(3, lipc.sleep(FOREVER)) end)
      end)
    end, {timeout = 10})
    assert.are.equal("ETIMEDOUT", code)
    assert.are.equal("ECANCELED", saw)
  end)

  it("works in a listener's task, and emits 'cancel' on the scope", function()
    local done, got = lipc.cond(), nil
    local em = lipc.emitter()
    em:on("go", function()
      local r = {lipc.scope(function(s)
        s:on("cancel", function(reason) got = reason end)
        s:go(function() lipc.sleep(FOREVER) end)
      end, {timeout = 5})}
      done:signal(r[3])
    end)
    em:emit("go")
    assert.are.equal("ETIMEDOUT", done:wait())
    assert.matches("timeout", got)
  end)

  it("cancels a thousand waiting tasks, and waits for every one", function()
    local ended = 0
    local _, _, code = lipc.scope(function(s)
      for _ = 1, 1000 do
        s:go(function()
          lipc.cond():wait()
          ended = ended + 1
        end)
      end
      s:cancel("all of them")
    end)
    assert.are.equal("ECANCELED", code)
    assert.are.equal(1000, ended)
  end)

  it("opened in a cancelled task, starts cancelled", function()
    local t
    t = lipc.go(function()
      lipc.sleep(1)
      t:cancel()
      return lipc.scope(function(s)
        return s:cancelled(), select(3, lipc.sleep(FOREVER))
      end)
    end)
    local a, msg, code = t:wait()
    assert.is_nil(a)
    assert.matches("^ECANCELED", msg)
    assert.are.equal("ECANCELED", code)
  end)

  it("a 'cancel' listener may cancel more (another scope) without harm", function()
    local other_code
    local outer = lipc.go(function()
      return lipc.scope(function(a)
        a:go(function()
          other_code = select(3, lipc.scope(function(b)
            a:on("cancel", function() b:cancel("chained") end)
            b:go(function() lipc.sleep(FOREVER) end)
          end))
        end)
        a:go(function() lipc.sleep(FOREVER) end)
        lipc.sleep(1)
        a:cancel("first")
      end)
    end)
    local _, _, code = outer:wait()
    assert.are.equal("ECANCELED", code)
    assert.are.equal("ECANCELED", other_code)
  end)

  it("refuses a task once it has ended, and bad arguments", function()
    local kept
    lipc.scope(function(s) kept = s end)
    assert.has_error(function() kept:go(function() end) end, "scope.go: the scope has ended")
    assert.has_error(function() lipc.scope(42) end,
      "bad argument #1 to 'lipc.scope' (function expected, got number)")
    assert.has_error(function() lipc.scope(function() end, {timeout = -1}) end)
    assert.has_error(function() lipc.scope(function() end, 5) end)
  end)
end)

describe("opts.cancel", function()
  local function gone(pid)
    return support.wait_for(function() return not support.alive(pid) end)
  end

  it("spawn: the child is sent kill_signal when the scope is cancelled", function()
    local child
    local _, _, code = lipc.scope(function(s)
      child = spawn("sleep", {"30"}, {stdio = "ignore", cancel = s, kill_signal = "SIGKILL"})
      s:go(function() lipc.sleep(FOREVER) end)
    end, {timeout = 20})
    assert.are.equal("ETIMEDOUT", code)
    local c, sig = child:wait()
    assert.is_nil(c)
    assert.are.equal("SIGKILL", sig)
    assert.is_true(child.cancelled)
    assert.is_true(gone(child.pid))
  end)

  it("spawn: a token cancelled already kills the child at once; a bad one raises", function()
    local t = lipc.go(function() lipc.sleep(FOREVER) end)
    t:cancel()
    local child = spawn("sleep", {"30"}, {stdio = "ignore", cancel = t})
    assert.are.same({nil, "SIGTERM"}, {child:wait()})
    assert.has_error(function() spawn("true", {}, {cancel = {}}) end,
      "bad argument #3 to 'spawn' (opts.cancel: a task or a scope expected, got table)")
  end)

  it("spawn.run in a cancelled task kills its child and returns ECANCELED", function()
    local pid_file = support.tmpdir() .. "/pid"
    local t = lipc.go(function()
      return spawn.run("sh", {"-c", "echo $$ > " .. pid_file .. "; exec sleep 30"})
    end)
    assert.is_true(support.wait_for(function()
      local f = io.open(pid_file)
      local ok = f and f:read("n")
      if f then f:close() end
      return ok ~= nil
    end))
    t:cancel()
    local a, msg, code, partial = t:wait()
    assert.is_nil(a)
    assert.matches("^ECANCELED: ", msg)
    assert.are.equal("ECANCELED", code)
    assert.is_table(partial)
    assert.is_true(gone(partial.pid))
  end)

  it("spawn.run with opts.cancel returns ECANCELED once the child is killed", function()
    local a, msg, code = lipc.scope(function(s)
      s:go(function() lipc.sleep(5) s:cancel("enough") end)
      return spawn.run("sleep", {"30"}, {cancel = s})
    end)
    -- the scope was cancelled: its own result says so
    assert.is_nil(a)
    assert.matches("enough", msg)
    assert.are.equal("ECANCELED", code)
  end)

  it("fork: the worker is killed when the task is cancelled", function()
    local fork = require "fork"
    local holder = lipc.go(function() lipc.sleep(FOREVER) end)
    local w = assert(fork(support.root .. "/scripts/pool_worker.lua", {}, {cancel = holder}))
    holder:cancel()
    local _, sig = w:wait()
    assert.are.equal("SIGTERM", sig)
  end)

  it("net.connect: a cancelled token fails it; cancelling later closes the socket", function()
    local accepted = {}
    local srv = net.create_server(function(s) accepted[#accepted + 1] = s end)
    assert(srv:listen(0))
    local port = srv:address().port
    local t = lipc.go(function() lipc.sleep(FOREVER) end)
    t:cancel()
    local a, msg, code = net.connect({port = port, cancel = t})
    assert.is_nil(a)
    assert.matches("^ECANCELED", msg)
    assert.are.equal("ECANCELED", code)
    local live = lipc.go(function() lipc.sleep(FOREVER) end)
    local sock = assert(net.connect({port = port, cancel = live}))
    live:cancel()
    assert.is_nil(sock:read())
    assert.has_error(function() net.connect({port = port, cancel = 5}) end)
    assert.is_true(support.wait_for(function() return #accepted == 1 end))
    accepted[1]:close()
    srv:close()
  end)
end)

describe("scripts/fanout_deadline.lua", function()
  it("fans out to workers under a deadline, keeps what came in time, leaves nothing behind", function()
    local out, status = support.run_script("fanout_deadline.lua")
    assert.are.equal(0, status, out)
    assert.matches("fast: ok", out)
    assert.matches("slow: ECANCELED", out)
    assert.matches("scope: ETIMEDOUT", out)
    assert.matches("children left: 0", out)
  end)
end)
