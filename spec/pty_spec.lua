-- pty_spec.lua - spawn's opts.pty: a terminal for a child (its stdin,
-- stdout, stderr and controlling terminal), child.pty, child:resize(),
-- the order of exit and close, fds and zombies, and the failures.
local lipc = require "lipc"
local spawn = require "spawn"
local support = require "support"

-- expect(pattern) reads the pty until what came so far matches pattern;
-- returns the match (nil, all that came, when the pty ended first).
local function reader(pty)
  local buf = ""
  return function(pattern)
    while true do
      local s, e = buf:find(pattern)
      if s then
        local m = buf:sub(s, e)
        buf = buf:sub(e + 1)
        return m
      end
      local chunk = pty:read()
      if not chunk then return nil, buf end
      buf = buf .. chunk
    end
  end
end

-- The lines of `ls -l /proc/<pid>/fd`, each "N -> target".
local function fds_of(pid)
  local p = assert(io.popen("ls -l /proc/" .. pid .. "/fd 2>/dev/null"))
  local list = {}
  for line in p:lines() do
    local fd, target = line:match(" (%d+) %-> (.*)$")
    if fd then list[tonumber(fd)] = target end
  end
  p:close()
  return list
end

describe("spawn with opts.pty", function()
  it("a program that cannot start: spawn.run and read_all end, ENOENT, no wait on the terminal", function()
    local out, msg, code = spawn.run("no-such-program-lipc", nil, {pty = true})
    assert.is_nil(out)
    assert.matches("ENOENT", msg)
    assert.are.equal("ENOENT", code)
    local child = spawn("no-such-program-lipc", {}, {pty = true})
    assert.are.equal("", child.pty:read_all())
    assert.are.same({nil, "ENOENT"}, {select(1, child:wait()), select(3, child:wait())})
  end)

  it("gives the child a terminal on stdin, stdout and stderr, as its controlling terminal", function()
    local child = spawn("sh", {"-c", "tty; test -t 0 && test -t 1 && test -t 2 && echo all-ttys;"
      .. " echo via-dev-tty >/dev/tty; echo to-stderr >&2"}, {pty = true})
    assert.is_nil(child.stdin)
    assert.is_nil(child.stdout)
    assert.is_nil(child.stderr)
    local out = child.pty:read_all()
    assert.are.same({0}, {child:wait()})
    assert.matches("^/dev/pts/%d+\r\n", out)
    assert.matches("all%-ttys\r\n", out)
    -- /dev/tty opens only in a process that has a controlling terminal
    assert.matches("via%-dev%-tty\r\n", out)
    assert.matches("to%-stderr\r\n", out)
  end)

  it("sets the window size: 80x24 by default, or opts.pty's cols and rows", function()
    local child = spawn("stty", {"size"}, {pty = true})
    assert.are.equal("24 80\r\n", child.pty:read_all())
    assert.are.equal(0, child:wait())
    child = spawn("stty", {"size"}, {pty = {cols = 132, rows = 43}})
    assert.are.equal("43 132\r\n", child.pty:read_all())
    assert.are.equal(0, child:wait())
    child = spawn("stty", {"size"}, {pty = {rows = 10}})
    assert.are.equal("10 80\r\n", child.pty:read_all())
    assert.are.equal(0, child:wait())
  end)

  it("resizes with child:resize(cols, rows): the child gets SIGWINCH and stty sees the size", function()
    -- read -t: the trap runs between reads, whenever the signal came
    local child = spawn("bash", {"-c", "trap 'echo winch; stty size' WINCH; stty size; echo ready;"
      .. " until read -t 0.1 x; do :; done; stty size"}, {pty = {cols = 100, rows = 30}})
    local expect = reader(child.pty)
    assert.is_truthy(expect("30 100\r\nready\r\n"))
    assert.is_true(child:resize(120, 40))
    assert.is_truthy(expect("winch\r\n40 120\r\n"))
    child.pty:write("go\n")
    assert.is_truthy(expect("go\r\n40 120\r\n"))
    child.pty:read_all()
    assert.are.equal(0, child:wait())
  end)

  it("drives an interactive program through its prompts (bc, sh -i)", function()
    -- (bc's readline redraws what we type around its answers)
    local child = spawn("bc", {"-q"}, {pty = true, env = {TERM = "dumb"}})
    local expect = reader(child.pty)
    child.pty:write("2 + 3\n")
    assert.is_truthy(expect("2 %+ 3\r\n")) -- the terminal echoes what we type
    assert.is_truthy(expect("[\r\n]5\r\n"))
    child.pty:write("scale = 3; 10 / 4\n")
    assert.is_truthy(expect("[\r\n]2%.500\r\n"))
    child.pty:write("quit\n")
    child.pty:read_all()
    assert.are.same({0}, {child:wait()})

    child = spawn("sh", {"-i"}, {pty = true, env = {PS1 = "lipc> ", ENV = false}})
    expect = reader(child.pty)
    assert.is_truthy(expect("lipc> "))
    child.pty:write("echo $((6 * 7))\n")
    assert.is_truthy(expect("\r\n42\r\nlipc> "))
    child.pty:write("exit 3\n")
    child.pty:read_all()
    assert.are.same({3}, {child:wait()})
  end)

  it("sends ^C as SIGINT to the program in the terminal", function()
    local child = spawn("sh", {"-c", "echo ready; exec sleep 30"}, {pty = true})
    local expect = reader(child.pty)
    assert.is_truthy(expect("ready\r\n"))
    -- sleep may not run yet: ^C until the child is gone (bounded by wait)
    local done = false
    lipc.go(function()
      while not done do
        child.pty:write("\3")
        lipc.sleep(20)
      end
    end)
    child.pty:read_all()
    local code, signal = child:wait()
    done = true
    assert.is_nil(code)
    assert.are.equal("SIGINT", signal)
  end)

  it("drains the pty before 'close': exit, the pty's end, then close; nothing lost", function()
    local events, got = {}, {}
    local child = spawn("seq", {"1", "50000"}, {pty = true})
    child:on("exit", function(code) events[#events + 1] = "exit " .. code end)
    child.pty:on("data", function(d) got[#got + 1] = d end)
    child.pty:on("end", function() events[#events + 1] = "end" end)
    child.pty:on("error", function(msg) events[#events + 1] = "error " .. msg end)
    child:on("close", function(code) events[#events + 1] = "close " .. code end)
    assert.are.same({0}, {child:wait()})
    assert.are.equal(3, #events)
    assert.are.equal("close 0", events[3]) -- exit and end come in either order
    table.sort(events)
    assert.are.same({"close 0", "end", "exit 0"}, events)
    local out = table.concat(got)
    local n, last = 0, nil
    for line in out:gmatch("(%d+)\r\n") do
      n = n + 1
      last = line
    end
    assert.are.equal(50000, n)
    assert.are.equal("50000", last)
  end)

  it("works with spawn.run: stdout holds what the terminal showed", function()
    local r = assert(spawn.run("sh", {"-c", "test -t 0 && test -t 2 && echo on-a-tty >&2"}, {pty = true}))
    assert.are.equal(0, r.code)
    assert.are.equal("on-a-tty\r\n", r.stdout)
    assert.are.equal("", r.stderr)
    local ok, msg, code, partial = spawn.run("seq", {"1", "100000"}, {pty = true, max_buffer = 10})
    assert.is_nil(ok)
    assert.matches("max_buffer", msg)
    assert.are.equal("ENOBUFS", code)
    assert.are.equal("1\r\n2\r\n3\r\n4", partial.stdout)
  end)

  it("takes EIO at the terminal's end as the end of file, for read() too", function()
    local child = spawn("printf", {"a\\nb"}, {pty = true})
    local chunks = {}
    while true do
      local d, msg = child.pty:read()
      if not d then
        assert.is_nil(msg)
        break
      end
      chunks[#chunks + 1] = d
    end
    assert.are.equal("a\r\nb", table.concat(chunks))
    assert.are.equal(0, child:wait())
  end)

  it("leaks no fd: the child has only the terminal, other children never see the master", function()
    local before = support.open_fds()
    local a = spawn("sh", {"-c", "echo ready; read x"}, {pty = true})
    local expect = reader(a.pty)
    assert.is_truthy(expect("ready"))
    local tty = fds_of(a.pid)[0]
    assert.matches("^/dev/pts/%d+$", tty)
    assert.are.same({[0] = tty, [1] = tty, [2] = tty}, fds_of(a.pid))
    local b = spawn("sleep", {"30"}, {stdio = {"ignore", "ignore", "ignore"}})
    assert.are.same({[0] = "/dev/null", [1] = "/dev/null", [2] = "/dev/null"}, fds_of(b.pid))
    -- read once it runs its program: before its exec a child still has
    -- the start's own fds (the exec-error pipe)
    local c = spawn("sh", {"-c", "echo ready; exec sleep 30"}, {pty = true})
    assert.is_truthy(reader(c.pty)("ready"))
    for fd, target in pairs(fds_of(c.pid)) do
      assert.is_true(fd <= 2 and target:match("^/dev/pts/%d+$") ~= nil and target ~= tty)
    end
    b:kill()
    c:kill()
    a.pty:write("\n")
    a.pty:read_all()
    c.pty:read_all()
    assert.are.equal(0, a:wait())
    b:wait()
    c:wait()
    assert.is_true(support.wait_for(function() return support.open_fds() <= before end))
    for _, pid in ipairs({a.pid, b.pid, c.pid}) do
      assert.is_nil(support.proc_state(pid)) -- reaped: no zombie
    end
    assert.are.same({}, support.children())
  end)

  it("closes the terminal when the child is closed early: the child gets SIGHUP", function()
    local child = spawn("sh", {"-c", "echo ready; exec sleep 30"}, {pty = true})
    local pid = child.pid
    assert.is_truthy(reader(child.pty)("ready"))
    child:close()
    assert.is_true(support.wait_for(function() return not support.alive(pid) end, 5000))
    assert.is_true(support.wait_for(function() return support.proc_state(pid) == nil end))
  end)

  it("goes with die_with_parent (a forked start) and kill with {tree = true}", function()
    local child = spawn("sh", {"-c", "tty; echo via-dev-tty >/dev/tty; sleep 30 & echo ready; wait"},
      {pty = true, die_with_parent = true})
    local expect = reader(child.pty)
    assert.is_truthy(expect("^/dev/pts/%d+\r\nvia%-dev%-tty\r\n"))
    assert.is_truthy(expect("ready\r\n"))
    assert.is_true(child:kill("SIGTERM", {tree = true})) -- its own session: one group
    child.pty:read_all() -- the end comes once sleep is gone too
    local code, signal = child:wait()
    assert.is_nil(code)
    assert.are.equal("SIGTERM", signal)
  end)

  it("ends the child's input with ^D; shutdown() hangs the terminal up (SIGHUP)", function()
    local child = spawn("cat", {}, {pty = true})
    child.pty:write("hello\n\4")
    local out = child.pty:read_all()
    assert.are.equal(0, child:wait())
    assert.matches("^hello\r\n", out) -- the echo, then cat's copy
    assert.matches("\r\nhello\r\n", out)

    child = spawn("sh", {"-c", "echo ready; exec sleep 30"}, {pty = true})
    assert.is_truthy(reader(child.pty)("ready\r\n"))
    child.pty:shutdown()
    local code, signal = child:wait()
    assert.is_nil(code)
    assert.are.equal("SIGHUP", signal)
  end)

  it("keeps the master open past its end until the child exits: no hang-up for closing it first", function()
    -- as cat does (stdin, stdout, stderr closed before it exits), with
    -- the time between the two held open: the pty ends, the child runs on
    local go_r, go_w = require("pipe").new()
    local child = spawn("sh", {"-c", "exec </dev/null >/dev/null 2>&1; read go <&3; exit 7"},
      {pty = true, stdio = {nil, nil, nil, go_r}})
    assert.are.equal("", child.pty:read_all())
    assert.is_nil(child.pty:read()) -- ended, not closed: no SIGHUP yet
    assert.is_true(support.alive(child.pid))
    go_w:write("go\n")
    local code, signal = child:wait()
    go_w:close()
    assert.are.equal(7, code)
    assert.is_nil(signal)
  end)

  it("raises argument errors naming spawn and the option", function()
    assert.has_error(function() spawn("true", {}, {pty = "yes"}) end,
      "bad argument #3 to 'spawn' (opts.pty: boolean or table expected, got string)")
    assert.has_error(function() spawn("true", {}, {pty = {cols = 0}}) end,
      "bad argument #3 to 'spawn' (opts.pty.cols must be an integer from 1 to 65535)")
    assert.has_error(function() spawn("true", {}, {pty = {rows = 1.5}}) end,
      "bad argument #3 to 'spawn' (opts.pty.rows must be an integer from 1 to 65535)")
    assert.has_error(function() spawn("true", {}, {pty = {rows = "24"}}) end,
      "bad argument #3 to 'spawn' (opts.pty.rows: integer expected, got string)")
    assert.has_error(function() spawn("true", {}, {pty = true, uid = 0}) end,
      "bad argument #3 to 'spawn' (opts.pty cannot be combined with uid or gid)")
    assert.has_error(function() spawn("true", {}, {pty = true, stdio = {nil, "pipe"}}) end,
      "bad argument #3 to 'spawn' (opts.stdio[2] must be nil with opts.pty"
      .. " (the terminal is stdin, stdout and stderr))")
    assert.has_error(function() spawn("true", {}, {pty = true, stdio = "ignore"}) end,
      "bad argument #3 to 'spawn' (opts.stdio must be a table with opts.pty"
      .. " (the terminal is stdin, stdout and stderr))")
  end)

  it("still takes stdio entries past the third, and pty = false is no terminal", function()
    local child = spawn("sh", {"-c", "echo extra >&3"}, {pty = true, stdio = {nil, nil, nil, "pipe"}})
    assert.are.equal("extra\n", child.stdio[4]:read_all())
    child.pty:read_all()
    assert.are.equal(0, child:wait())
    child = spawn("sh", {"-c", "test -t 1 || echo no-tty"}, {pty = false})
    assert.is_nil(child.pty)
    assert.are.equal("no-tty\n", child.stdout:read_all())
    assert.are.equal(0, child:wait())
  end)

  it("checks resize's arguments, and says when the child has no pty or it is closed", function()
    local child = spawn("true")
    assert.has_error(function() child:resize(80, 24) end,
      "child.resize: the child has no pty (spawn it with opts.pty)")
    child:wait()
    child = spawn("true", {}, {pty = true})
    assert.has_error(function() child:resize(0, 24) end,
      "bad argument #1 to 'child.resize' (cols must be an integer from 1 to 65535)")
    assert.has_error(function() child:resize(80, "x") end,
      "bad argument #2 to 'child.resize' (rows: integer expected, got string)")
    child.pty:read_all()
    child:wait()
    local ok, msg, code = child:resize(80, 24)
    assert.is_nil(ok)
    assert.matches("pty closed", msg)
    assert.are.equal("EBADF", code)
  end)

  describe("on a machine without a usable /dev/ptmx", function()
    -- A mount namespace of its own hides /dev/ptmx from one lipc.
    local function run_hidden(mount)
      local dir = support.tmpdir()
      local script = support.write_file(dir .. "/nopty.lua", [[
        local spawn = require "spawn"
        local child = spawn("true", {}, {pty = true})
        local events = {}
        child:on("error", function(msg, code) events[#events + 1] = code end)
        local ok, msg, code = child:wait()
        print(ok, msg, code, child.pty, child.pid, events[1])
      ]])
      return spawn.run("unshare", {"-m", "sh", "-c", mount .. " && exec \"$0\" \"$1\"",
        support.lipc, script})
    end

    local usable = os.execute("unshare -m true 2>/dev/null")

    it("fails with ENOENT when there is none, naming /dev/ptmx", function()
      if not usable then return pending("needs unshare -m (root): skipped") end
      local r = assert(run_hidden("mount -t tmpfs none /dev"))
      assert.are.equal("", r.stderr)
      assert.are.equal("nil\tENOENT: no such file or directory (spawn true: no pseudo-terminal"
        .. " from /dev/ptmx)\tENOENT\tnil\tnil\tENOENT\n", r.stdout)
      assert.are.equal(0, r.code)
    end)

    it("fails with EINVAL when /dev/ptmx is not a terminal multiplexer", function()
      if not usable then return pending("needs unshare -m (root): skipped") end
      local r = assert(run_hidden("mount --bind /dev/null /dev/ptmx"))
      assert.are.equal("", r.stderr)
      assert.are.equal("nil\tEINVAL: invalid argument (spawn true: no pseudo-terminal"
        .. " from /dev/ptmx)\tEINVAL\tnil\tnil\tEINVAL\n", r.stdout)
      assert.are.equal(0, r.code)
    end)
  end)
end)

describe("scripts/pty_session.lua", function()
  it("drives sh -i through its prompts, and the shell sees the resize", function()
    local r = assert(spawn.run(support.lipc, {support.root .. "/scripts/pty_session.lua"}))
    assert.are.equal("", r.stderr)
    assert.are.equal(0, r.code)
    assert.matches("^lipc%$ tty\n/dev/pts/%d+\nlipc%$ stty size\n30 100\n"
      .. "lipc%$ echo %$%(%(6 %* 7%)%)\n42\n%(resized to 120x40%)\nlipc%$ stty size\n40 120\n"
      .. "shell exited with 0\n$", r.stdout)
  end)
end)
