-- spawn_spec.lua - the spawn module: starting programs, stdio wiring,
-- events, waiting, killing, and every way a child can fail.
local lipc = require "lipc"
local spawn = require "spawn"
local support = require "support"

local function zombies()
  local n = 0
  for _, pid in ipairs(support.children()) do
    if support.proc_state(pid) == "Z" then n = n + 1 end
  end
  return n
end

local open_fds = support.open_fds

-- Closes finish in close callbacks a loop turn or two later (and later
-- still under ASan): true once the count is back to at most n.
local function fds_back_to(n)
  return support.wait_for(function() return open_fds() <= n end, 500)
end

-- Collects every event of a child, in order.
local function record(child)
  local events = {}
  for _, ev in ipairs({"spawn", "exit", "close", "error"}) do
    child:on(ev, function(...) events[#events + 1] = {ev, ...} end)
  end
  if child.stdout then
    child.stdout:on("data", function(d) events[#events + 1] = {"data", d} end)
  end
  return events
end

local function names(events)
  local r = {}
  for i, e in ipairs(events) do
    if e[1] ~= r[#r] or e[1] ~= "data" then r[#r + 1] = e[1] end
    assert(i)
  end
  return table.concat(r, " ")
end

describe("spawn", function()

  describe("starting programs", function()
    it("is callable and also spawn.spawn; the child has a pid", function()
      local a = spawn("true", {}, {stdio = "ignore"})
      local b = spawn.spawn("true", {}, {stdio = "ignore"})
      assert.is_true(math.type(a.pid) == "integer" and a.pid > 0)
      assert.are_not.equal(a.pid, b.pid)
      assert.are.same({0}, {a:wait()})
      assert.are.same({0}, {b:wait()})
    end)

    it("emits spawn, data, exit(code, signal), close(code, signal) in that order", function()
      local child = spawn("sh", {"-c", "echo hello; exit 7"})
      local events = record(child)
      local code, signal = child:wait()
      assert.are.equal(7, code)
      assert.is_nil(signal)
      assert.are.equal("spawn data exit close", names(events))
      assert.are.equal("hello\n", events[2][2])
      assert.are.same({"exit", 7}, events[3])
      assert.are.same({"close", 7}, events[4])
      assert.are.equal(7, child.exit_code)
      assert.is_nil(child.signal_code)
    end)

    it("passes arguments as they are: no shell, nothing re-parsed", function()
      local args = {"%s|", "a b", "$HOME", "'q'", "*", "; ls", 42}
      local r = assert(spawn.run("printf", args))
      assert.are.equal("a b|$HOME|'q'|*|; ls|42|", r.stdout)
    end)

    it("runs a command line through the shell with opts.shell, args still quoted", function()
      local r = assert(spawn.run("echo hi | tr a-z A-Z; printf '%s|' \"$@\"", {"x y", "$HOME"},
        {shell = true}))
      assert.are.equal("HI\n", r.stdout:sub(1, 3))
      assert.are.equal("x y|$HOME|", r.stdout:sub(4))
      assert.are.equal("ok\n", assert(spawn.exec("echo ok")).stdout)
    end)

    it("searches PATH and sets argv0", function()
      local r = assert(spawn.run("sh", {"-c", "echo $0"}, {argv0 = "my-name"}))
      assert.are.equal("my-name\n", r.stdout)
    end)

    it("runs in opts.cwd", function()
      local dir = support.tmpdir()
      local r = assert(spawn.run("pwd", {}, {cwd = dir}))
      assert.are.equal(dir .. "\n", r.stdout)
    end)

    it("merges opts.env over the environment, so PATH still works (no 127)", function()
      local r = assert(spawn.run("sh", {"-c", "echo $LIPC_X; ls / >/dev/null; echo $?"},
        {env = {LIPC_X = "merged"}}))
      assert.are.equal("merged\n0\n", r.stdout)
      assert.are.equal(0, r.code)
    end)

    it("replaces the environment with clear_env, and unsets variables given as false", function()
      local r = assert(spawn.run("/usr/bin/env", {}, {clear_env = true, env = {A = "1"}}))
      assert.are.equal("A=1\n", r.stdout)
      lipc.setenv("LIPC_SPEC_UNSET", "here")
      r = assert(spawn.run("sh", {"-c", "echo x${LIPC_SPEC_UNSET}x"}, {env = {LIPC_SPEC_UNSET = false}}))
      lipc.setenv("LIPC_SPEC_UNSET", nil)
      assert.are.equal("xx\n", r.stdout)
    end)

    it("starts a detached child in its own session", function()
      local child = spawn("sh", {"-c", "cat /proc/self/stat"},
        {detached = true, stdio = {"ignore", "pipe", "ignore"}})
      local stat = child.stdout:read_all()
      child:wait()
      local sid = tonumber(stat:match("%) %a %d+ %d+ (%d+)"))
      assert.are.equal(child.pid, sid)
    end)

    it("switches uid/gid (through uv_spawn) when asked", function()
      local r, msg, code = spawn.run("id", {"-u"}, {uid = 65534, gid = 65534})
      if r then
        assert.are.equal("65534\n", r.stdout)
      else
        assert.are.equal("EPERM", code, msg)   -- not root
      end
    end)

    it("feeds opts.input to stdin and then closes it", function()
      local r = assert(spawn.run("cat", {}, {input = "via stdin\n"}))
      assert.are.equal("via stdin\n", r.stdout)
      r = assert(spawn.run("true", {}, {input = string.rep("x", 1 << 20)}))
      assert.are.equal(0, r.code)
    end)

    it("lets ref()/unref() chain and still delivers events", function()
      local child = spawn("true", {}, {stdio = "ignore"})
      assert.are.equal(child, child:unref())
      assert.are.equal(child, child:ref())
      assert.are.equal(0, child:wait())
    end)
  end)

  describe("stdio", function()
    describe("\"stdout\" (2>&1)", function()
      -- A shell that alternates between its stdout and its stderr: with
      -- two pipes the order between them is lost, with one it is kept.
      local script = "for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done"
      local want = "out1\nerr1\nout2\nerr2\nout3\nerr3\nout4\nerr4\nout5\nerr5\n"

      it("sends stderr into stdout's pipe, in the order the child wrote", function()
        local child = spawn("sh", {"-c", script}, {stdio = {"ignore", "pipe", "stdout"}})
        assert.is_nil(child.stderr)
        assert.is_false(child.stdio[3])
        assert.are.equal(want, child.stdout:read_all())
        assert.are.equal(0, child:wait())
      end)

      it("works with spawn.run: stdout holds both, stderr is empty", function()
        local r = assert(spawn.run("sh", {"-c", script}, {stdio = {"ignore", "pipe", "stdout"}}))
        assert.are.equal(want, r.stdout)
        assert.are.equal("", r.stderr)
        assert.are.equal(0, r.code)
      end)

      it("follows fd 1 wherever it goes: a stream, /dev/null, an extra fd", function()
        local r, w = require("pipe").new()
        local child = spawn("sh", {"-c", script}, {stdio = {"ignore", w, "stdout"}})
        assert.are.equal(want, r:read_all())
        assert.are.equal(0, child:wait())
        r:close()
        child = spawn("sh", {"-c", script}, {stdio = {"ignore", "ignore", "stdout"}})
        assert.are.equal(0, child:wait())
        child = spawn("sh", {"-c", "echo three >&3"}, {stdio = {"ignore", "pipe", "inherit", "stdout"}})
        assert.are.equal("three\n", child.stdout:read_all())
        assert.are.equal(0, child:wait())
      end)

      it("takes uid/gid's uv_spawn path too", function()
        local id = assert(spawn.run("id", {"-u"})).stdout
        local r = assert(spawn.run("sh", {"-c", script},
          {stdio = {"ignore", "pipe", "stdout"}, uid = tonumber(id)}))
        assert.are.equal(want, r.stdout)
      end)

      it("is refused for stdin and stdout themselves", function()
        for _, stdio in ipairs({{"stdout", "pipe", "pipe"}, {"pipe", "stdout", "pipe"}}) do
          local ok, err = pcall(spawn, "true", {}, {stdio = stdio})
          assert.is_false(ok)
          assert.matches("bad argument #3 to 'spawn' %(opts.stdio%[%d%]: unknown value 'stdout'", err)
        end
      end)
    end)

    it("gives real pipes: the child can open /dev/stdin", function()
      local r = assert(spawn.run("sh", {"-c", "stat -L -c %F /dev/stdin; cat /dev/stdin"},
        {input = "from a pipe"}))
      assert.are.equal("fifo\nfrom a pipe", r.stdout)
    end)

    it("reads a bulk output whole and in order, then its end, pulled and flowing", function()
      -- 8 KiB writes with a sequence number in each, so a lost, doubled or
      -- reordered piece shows; reads of 4 KiB or more are read on (up to
      -- 32 KiB a chunk), and a child that already ended makes that reading
      -- on meet the end of the pipe
      local src = "for i = 1, %d do io.write(('%%08d'):format(i):rep(1024)) end"
      local function want(n)
        local t = {}
        for i = 1, n do t[i] = ("%08d"):format(i):rep(1024) end
        return table.concat(t)
      end
      for _, n in ipairs({2, 3, 300}) do
        local child = spawn(support.lipc, {"-e", src:format(n)}, {stdio = {"ignore", "pipe", "inherit"}})
        if n < 8 then assert.are.equal(0, child:wait()) end -- all of it and the end wait in the pipe
        local got, sizes = {}, 0
        while true do
          local c = child.stdout:read()
          if c == nil then break end
          got[#got + 1] = c
          sizes = math.max(sizes, #c)
        end
        assert.are.equal(want(n), table.concat(got))
        assert.is_true(sizes <= 256 * 1024)
        assert.are.equal(0, child:wait())
      end
      local child = spawn(support.lipc, {"-e", src:format(300)}, {stdio = {"ignore", "pipe", "inherit"}})
      local got, ended = {}, false
      child.stdout:on("data", function(c)
        assert.is_false(ended)
        got[#got + 1] = c
      end)
      child.stdout:on("end", function() ended = true end)
      assert.are.equal(0, child:wait())
      assert.is_true(support.wait_for(function() return ended end))
      assert.are.equal(want(300), table.concat(got))
    end)

    it("keeps a paused stream's end until it is resumed, after reading on", function()
      -- 12 KiB and the end wait in the pipe: the first read takes the
      -- bytes and reads on into the end, which must still come after resume()
      local child = spawn(support.lipc, {"-e", "io.write(('x'):rep(12288))"},
        {stdio = {"ignore", "pipe", "inherit"}})
      assert.are.equal(0, child:wait())
      local out, got, ended = child.stdout, 0, false
      out:on("data", function(c)
        got = got + #c
        out:pause()
      end)
      out:on("end", function() ended = true end)
      assert.is_true(support.wait_for(function() return got > 0 end))
      lipc.sleep(0.05)
      assert.is_false(ended)
      out:resume()
      assert.is_true(support.wait_for(function() return ended end))
      assert.are.equal(12288, got)
    end)

    it("takes a single word for all three", function()
      local child = spawn("true", {}, {stdio = "ignore"})
      assert.is_nil(child.stdin)
      assert.is_nil(child.stdout)
      assert.are.same({false, false, false}, child.stdio)
      child:wait()
    end)

    it("exposes 1-based stdio[i] with extra pipes opening more fds", function()
      local child = spawn("sh", {"-c", "echo three >&3; echo four >&4"},
        {stdio = {"ignore", "ignore", "ignore", "pipe", "pipe"}})
      local a, b = child.stdio[4]:read_all(), child.stdio[5]:read_all()
      assert.are.equal("three\n", a)
      assert.are.equal("four\n", b)
      assert.are.equal(0, child:wait())
    end)

    it("makes \"ipc\" entries duplex sockets", function()
      local child = spawn("sh", {"-c", 'echo hi >&3; read x <&3; echo "got $x"'},
        {stdio = {"ignore", "pipe", "inherit", "ipc"}})
      local ch = child.stdio[4]
      assert.is_true(ch:state().readable and ch:state().writable)
      assert.are.equal("hi\n", ch:read())
      ch:write("back\n")
      assert.are.equal("got back\n", child.stdout:read_all())
      assert.are.equal(0, child:wait())
      assert.is_false(ch:state().open)
    end)

    it("gives children only the fds they were given", function()
      local r = assert(spawn.run("ls", {"/proc/self/fd"}))
      assert.are.equal("0\n1\n2\n3\n", r.stdout)        -- 3: ls's own directory
      local child = spawn("ls", {"/proc/self/fd"}, {stdio = {"ignore", "pipe", "ignore", "ipc"}})
      local out = child.stdout:read_all()
      child:wait()
      assert.are.equal("0\n1\n2\n3\n4\n", out)
    end)

    it("hands a stream to the child: fd to fd, the parent closes its copy", function()
      local a = spawn("printf", {"one\ntwo\nthree\n"}, {stdio = {"ignore", "pipe", "inherit"}})
      local b = spawn("wc", {"-l"}, {stdio = {a.stdout, "pipe", "inherit"}})
      assert.is_false(a.stdout:state().open)
      assert.are.equal("3", b.stdout:read_all():match("%d+"))
      assert.are.equal(0, a:wait())
      assert.are.equal(0, b:wait())
    end)

    it("wires a numbered fd (shared, not handed off)", function()
      local cat = spawn("cat", {}, {stdio = {"pipe", "pipe", "ignore"}})
      local echo = spawn("echo", {"via-fd"}, {stdio = {"ignore", cat.stdin:fileno(), "ignore"}})
      assert.are.equal(0, echo:wait())
      assert.is_true(cat.stdin:state().open)
      cat.stdin:shutdown()
      assert.are.equal("via-fd\n", cat.stdout:read_all())
      assert.are.equal(0, cat:wait())
    end)

    it("pipes through Lua with stdout:pipe(stdin)", function()
      local a = spawn("printf", {"b\na\nc\n"}, {stdio = {"ignore", "pipe", "inherit"}})
      local b = spawn("sort", {}, {stdio = {"pipe", "pipe", "inherit"}})
      a.stdout:pipe(b.stdin)
      assert.are.equal("a\nb\nc\n", b.stdout:read_all())
      a:wait()
      b:wait()
    end)

    it("runs the ls | grep | wc -l pipeline as three spawns", function()
      local expect = assert(spawn.exec("ls /usr/bin | grep -c '^l'")).stdout:match("%d+")
      local ls = spawn("ls", {"/usr/bin"}, {stdio = {"ignore", "pipe", "inherit"}})
      local grep = spawn("grep", {"^l"}, {stdio = {ls.stdout, "pipe", "inherit"}})
      local wc = spawn("wc", {"-l"}, {stdio = {grep.stdout, "pipe", "inherit"}})
      assert.are.equal(expect, wc.stdout:read_all():match("%d+"))
      for _, c in ipairs({ls, grep, wc}) do assert.are.equal(0, c:wait()) end
    end)

    it("reads 100 MB of stdout completely", function()
      local child = spawn("head", {"-c", "100000000", "/dev/zero"}, {stdio = {"ignore", "pipe", "inherit"}})
      local n = 0
      child.stdout:on("data", function(d) n = n + #d end)
      assert.are.equal(0, child:wait())
      assert.are.equal(100000000, n)
    end)

    it("does not deadlock on a child that fills stdout and stderr and never reads stdin", function()
      local r = assert(spawn.run("sh", {"-c",
        "head -c 3000000 /dev/zero >&2; head -c 3000000 /dev/zero; head -c 3000000 /dev/zero >&2"},
        {stdio = {"pipe", "pipe", "pipe"}}))
      assert.are.equal(3000000, #r.stdout)
      assert.are.equal(6000000, #r.stderr)
    end)

    it("keeps unread output for after wait(), and closes what is empty", function()
      local child = spawn("echo", {"later"})
      assert.are.equal(0, child:wait())
      assert.is_false(child.stdin:state().open)
      assert.is_false(child.stderr:state().open)
      assert.are.equal("later\n", child.stdout:read_all())
    end)

    it("an 'end' listener on output nobody reads fires once the child exits, as Node's", function()
      local child = spawn("sh", {"-c", "echo out; echo err >&2"})
      local events = {}
      child.stdout:on("end", function() events[#events + 1] = "stdout end" end)
      child.stderr:on("end", function() events[#events + 1] = "stderr end" end)
      child:on("exit", function() events[#events + 1] = "exit" end)
      child:on("close", function() events[#events + 1] = "close" end)
      assert.are.equal(0, child:wait())
      -- the two ends come in either order, between exit and close
      assert.are.equal(4, #events)
      assert.are.same({"exit", "close"}, {events[1], events[4]})
      local ends = {events[2], events[3]}
      table.sort(ends)
      assert.are.same({"stderr end", "stdout end"}, ends)
      assert.is_false(child.stdout:state().open)
    end)
  end)

  describe("signals and timeouts", function()
    it("reports a child killed by a signal as exit(nil, \"SIGKILL\")", function()
      local child = spawn("sleep", {"10"}, {stdio = "ignore"})
      local events = record(child)
      assert.is_true(child:kill("SIGKILL"))
      local code, signal = child:wait()
      assert.is_nil(code)
      assert.are.equal("SIGKILL", signal)
      assert.is_true(child.killed)
      assert.are.same({"exit", nil, "SIGKILL"}, events[2])
    end)

    it("child.killed and child.timed_out are false until kill() or the timeout, as Node", function()
      local child = spawn("sleep", {"10"}, {stdio = "ignore"})
      assert.is_false(child.killed)
      assert.is_false(child.timed_out)
      assert.is_true(child:kill())
      assert.is_true(child.killed)
      child:wait()
      assert.is_false(child.timed_out)
      local failed = spawn("lipc-no-such-program", {}, {stdio = "ignore"})
      failed:on("error", function() end)
      assert.is_false(failed.killed)
      failed:wait()
    end)

    it("kills with signal names and numbers, SIGTERM by default", function()
      local a = spawn("sleep", {"10"}, {stdio = "ignore"})
      local b = spawn("sleep", {"10"}, {stdio = "ignore"})
      local c = spawn("sleep", {"10"}, {stdio = "ignore"})
      a:kill()
      b:kill(9)
      c:kill("INT")
      assert.are.same({nil, "SIGTERM"}, {a:wait()})
      assert.are.same({nil, "SIGKILL"}, {b:wait()})
      assert.are.same({nil, "SIGINT"}, {c:wait()})
      local ok, _, code = a:kill()
      assert.is_nil(ok)
      assert.are.equal("ESRCH", code)
      assert.has_error(function() a:kill("SIGNOPE") end,
        "bad argument #1 to 'child.kill' (unknown signal 'SIGNOPE')")
    end)

    it("kills on timeout and reports it", function()
      local t0 = lipc.hrtime()
      local child = spawn("sleep", {"10"}, {stdio = "ignore", timeout = 50})
      assert.are.same({nil, "SIGTERM"}, {child:wait()})
      assert.is_true(child.timed_out)
      assert.is_true((lipc.hrtime() - t0) / 1e6 < 2000)
      local r, msg, code = spawn.run("sleep", {"10"}, {timeout = 50, kill_signal = "SIGKILL"})
      assert.is_nil(r)
      assert.are.equal("ETIMEDOUT", code)
      assert.matches("timed out after 50 ms", msg)
    end)

    it("counts the timeout from the call, however long Lua ran in that loop turn", function()
      local t0 = lipc.hrtime()
      while lipc.hrtime() - t0 < 100e6 do end -- the loop's clock stays behind
      local t1 = lipc.hrtime()
      local child = spawn("sleep", {"10"}, {stdio = "ignore", timeout = 150})
      assert.are.same({nil, "SIGTERM"}, {child:wait()})
      local ms = (lipc.hrtime() - t1) / 1e6
      assert.is_true(ms >= 145, ms)
    end)

    it("kills a child that writes more than max_buffer and says so", function()
      local r, msg, code, partial = spawn.run("head", {"-c", "10000000", "/dev/zero"}, {max_buffer = 1000})
      assert.is_nil(r)
      assert.are.equal("ENOBUFS", code)
      assert.matches("stdout exceeded max_buffer %(1000 bytes%)", msg)
      assert.is_true(#partial.stdout <= 1000)
    end)

    it("keeps exactly the first max_buffer bytes of the stream that passes it, as Node", function()
      -- One write of 5000 bytes arrives as one chunk: the one that crosses the limit.
      local script = "printf 'ab%.0s' $(seq 2500)"
      local r, _, code, partial = spawn.run("/bin/sh", {"-c", script}, {max_buffer = 1001})
      assert.is_nil(r)
      assert.are.equal("ENOBUFS", code)
      assert.are.equal(("ab"):rep(500) .. "a", partial.stdout)
      local r2, _, code2, partial2 = spawn.run("/bin/sh", {"-c", script .. " >&2"}, {max_buffer = 7})
      assert.is_nil(r2)
      assert.are.equal("ENOBUFS", code2)
      assert.are.equal("abababa", partial2.stderr)
      assert.are.equal("", partial2.stdout)
      -- exactly max_buffer bytes is not over it
      r = assert(spawn.run("/bin/sh", {"-c", "printf 'abcdefg'"}, {max_buffer = 7}))
      assert.are.equal("abcdefg", r.stdout)
    end)
  end)

  describe("failures", function()
    it("emits error ENOENT for a missing program; no zombie, no fd leaked", function()
      lipc.sleep(20)                         -- earlier closes settle
      local fds = open_fds()
      local child = spawn("lipc-no-such-program", {"x"})
      local events = record(child)
      child.stdout:on("data", function() end)
      local r = table.pack(child:wait())
      assert.are.same({"error", "close"}, {events[1][1], events[2][1]})
      assert.are.equal("ENOENT", events[1][3])
      assert.matches("spawn lipc%-no%-such%-program", events[1][2])
      assert.is_nil(r[1])
      assert.are.equal("ENOENT", r[3])
      assert.is_nil(child.pid)
      assert.are.equal(0, zombies())
      assert.is_true(fds_back_to(fds))
      local res, msg, code = spawn.run("/nonexistent/prog")
      assert.is_nil(res)
      assert.are.equal("ENOENT", code)
      assert.matches("ENOENT: no such file or directory", msg)
      lipc.sleep(1)                          -- the runtime keeps running
    end)

    it("emits error EACCES for a file that is not executable", function()
      local path = support.write_file(support.tmpdir() .. "/not-exec", "#!/bin/sh\necho no\n")
      local child = spawn(path, {}, {stdio = "ignore"})
      local got
      child:on("error", function(_, code) got = code end)
      child:wait()
      assert.are.equal("EACCES", got)
      local _, _, code = spawn.run(path)
      assert.are.equal("EACCES", code)
      assert.are.equal(0, zombies())
    end)

    it("runs an executable with no #! line under /bin/sh, as execvp and Node do", function()
      local dir = support.tmpdir()
      local path = support.write_file(dir .. "/plain-script", 'printf "%s|" "$0" "$@"\n')
      assert(os.execute("chmod +x " .. support.shell_quote(path)))
      local r = assert(spawn.run(path, {"a", "b c"}))
      assert.are.equal(0, r.code)
      assert.are.equal(path .. "|a|b c|", r.stdout)
      local bad = support.write_file(dir .. "/bad-elf", "\127ELF not really")
      assert(os.execute("chmod +x " .. support.shell_quote(bad)))
      r = assert(spawn.run(bad))
      assert.are.equal(127, r.code)           -- sh's "not found", as Node gets
    end)

    it("names a missing cwd in the error", function()
      local r, msg, code = spawn.run("true", {}, {cwd = "/nonexistent-dir"})
      assert.is_nil(r)
      assert.are.equal("ENOENT", code)
      assert.matches("cwd /nonexistent%-dir", msg)
    end)

    it("emits EPIPE on stdin when writing to a child that exited", function()
      local child = spawn("true", {}, {stdio = {"pipe", "ignore", "ignore"}})
      local err, ret
      child.stdin:on("error", function(_, code) err = code end)
      child:on("exit", function() ret = table.pack(child.stdin:write("late")) end)
      child:wait()
      assert.are.equal("EPIPE", err)
      assert.are.equal("EPIPE", ret[3])
    end)

    it("emits EPIPE when a big write outlives the child", function()
      local child = spawn("true", {}, {stdio = {"pipe", "ignore", "ignore"}})
      local err
      child.stdin:on("error", function(_, code) err = code end)
      child.stdin:write(string.rep("x", 4 << 20))
      child:wait()
      assert.are.equal("EPIPE", err)
    end)

    it("reaps 200 concurrent children", function()
      local kids = {}
      for i = 1, 200 do
        kids[i] = spawn("sh", {"-c", "exit " .. (i % 7)}, {stdio = "ignore"})
      end
      for i = 1, 200 do assert.are.equal(i % 7, kids[i]:wait()) end
      assert.are.same({}, support.children())
    end)

    it("reaps children that exit one by one with a few waits each, not one per child running", function()
      -- 16 children exiting 10 ms apart: asking each running child at every
      -- SIGCHLD took 16 + 15 + ... + 1 = 136 waits; the kernel names them
      local dir = support.tmpdir()
      local script = support.write_file(dir .. "/kids.lua", [[
        local spawn = require "spawn"
        local kids = {}
        for i = 1, 16 do
          kids[i] = spawn("sleep", {string.format("%.2f", 0.2 + i / 100)}, {stdio = "ignore"})
        end
        for i = 1, 16 do assert(kids[i]:wait() == 0) end
      ]])
      -- (LeakSanitizer cannot run under ptrace: off for this one, under make check)
      local q = support.shell_quote
      local out, status = support.sh(("ASAN_OPTIONS=detect_leaks=0 strace -c -e trace=%s -o %s/st %s %s 2>&1")
        :format("wait4,waitid", q(dir), q(support.lipc), q(script)))
      assert.are.equal(0, status, out)
      local waits = 0
      for line in support.read_file(dir .. "/st"):gmatch("[^\n]+") do
        local f = {}
        for w in line:gmatch("%S+") do f[#f + 1] = w end -- % seconds usecs calls [errors] name
        if f[#f] == "wait4" or f[#f] == "waitid" then waits = waits + tonumber(f[4]) end
      end
      assert.is_true(waits >= 16 and waits <= 64, "waits: " .. waits)
    end)

    it("leaves alone a child it did not start, and still reaps its own", function()
      local f = assert(io.popen("exit 3"))                 -- not ours: a zombie soon
      assert.is_true(support.wait_for(function() return #support.children() > 0 and zombies() > 0 end))
      local kids = {}
      for i = 1, 5 do kids[i] = spawn("sh", {"-c", "exit " .. i}, {stdio = "ignore"}) end
      for i = 1, 5 do assert.are.equal(i, kids[i]:wait()) end
      local ok, how, code = f:close()                      -- its status is still there
      assert.is_nil(ok)
      assert.are.equal("exit", how)
      assert.are.equal(3, code)
    end)

    it("lets a parent exit promptly while its children still run", function()
      local t0 = lipc.hrtime()
      local out, _, status = support.run_lipc([[
        local spawn = require "spawn"
        local child = spawn("sleep", {"30"})
        print(child.pid)
        os.exit(0)
      ]])
      assert.are.equal(0, status)
      assert.is_true((lipc.hrtime() - t0) / 1e6 < 5000)
      local pid = assert(tonumber(out:match("%d+")))
      lipc.kill(pid, "SIGKILL")
      out, _, status = support.run_lipc([[
        local spawn = require "spawn"
        local child = spawn("sleep", {"30"}, {stdio = "ignore"})
        print(child.pid)
        child:unref()
      ]])
      assert.are.equal(0, status)
      assert.is_true((lipc.hrtime() - t0) / 1e6 < 8000)
      lipc.kill(assert(tonumber(out:match("%d+"))), "SIGKILL")
    end)

    it("close() stops watching a running child, which is still reaped", function()
      local child = spawn("sleep", {"0.05"})
      local pid, closed = child.pid, nil
      child:on("close", function(...) closed = table.pack(...) end)
      child:close()
      assert.is_false(child.stdout:state().open)
      lipc.sleep(300)
      assert.are.equal(2, closed.n)
      for _, p in ipairs(support.children()) do assert.are_not.equal(pid, p) end
    end)

    it("raises on bad argument types, naming the function and the argument", function()
      assert.has_error(function() spawn(5) end, "bad argument #1 to 'spawn' (string expected, got number)")
      assert.has_error(function() spawn("ls", 5) end,
        "bad argument #2 to 'spawn' (table expected, got number)")
      assert.has_error(function() spawn.spawn("ls", {}, "x") end,
        "bad argument #3 to 'spawn' (table expected, got string)")
      assert.has_error(function() spawn("ls", {{}}) end,
        "bad argument #2 to 'spawn' (args[1]: string expected, got table)")
      assert.has_error(function() spawn("ls", {}, {cwd = 1}) end,
        "bad argument #3 to 'spawn' (opts.cwd: string expected, got number)")
      assert.has_error(function() spawn("ls", {}, {stdio = {"pipe", "bogus"}}) end,
        "bad argument #3 to 'spawn' (opts.stdio[2]: unknown value 'bogus' "
          .. "(pipe, inherit, ignore, ipc, an fd or a stream; \"stdout\" from entry 3))")
      assert.has_error(function() spawn("ls", {}, {env = {X = {}}}) end,
        "bad argument #3 to 'spawn' (opts.env.X: string expected, got table)")
      assert.has_error(function() spawn("") end,
        "bad argument #1 to 'spawn' (file must be a non-empty string "
          .. "without zero bytes)")
      assert.has_error(function() spawn.exec(1) end,
        "bad argument #1 to 'spawn.exec' (string expected, got number)")
      assert.are.same({}, support.children())
    end)
  end)

  describe("scripts", function()
    local function run_script(name, ...)
      local args = {}
      for i, a in ipairs({...}) do args[i] = support.shell_quote(a) end
      return support.sh(("%s %s %s 2>&1 </dev/null"):format(support.shell_quote(support.lipc),
        support.shell_quote(support.root .. "/scripts/" .. name), table.concat(args, " ")))
    end

    it("spawn_basic.lua prints a child's output and its exit code", function()
      local out, status = run_script("spawn_basic.lua")
      assert.are.equal(0, status, out)
      assert.matches("hello from a child", out)
      assert.matches("exit code 0", out)
    end)

    it("pipeline.lua counts with ls | grep | wc -l", function()
      local out, status = run_script("pipeline.lua", "/usr/bin", "^l")
      assert.are.equal(0, status, out)
      local expect = assert(spawn.exec("ls /usr/bin | grep '^l' | wc -l")).stdout:match("%d+")
      assert.matches("^" .. expect .. "\n", out)
    end)
  end)
end)
