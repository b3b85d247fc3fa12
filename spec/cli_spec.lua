-- cli_spec.lua - the lipc command: scripts, -e, -, -v, -h, exit status,
-- uncaught errors, lipc.exit flushing.
local support = require "support"

describe("the lipc command", function()
  it("runs a script with arg like lua, and a shebang line", function()
    local out, _, status = support.run_lipc(
      "#!/usr/bin/env lipc\nprint(arg[0]:match('main.lua$'), #arg, ...)\n", {"a", "b c"})
    assert.are.equal(0, status)
    assert.are.equal("main.lua\t2\ta\tb c\n", out)
  end)

  it("-e runs a string, - reads the script from stdin", function()
    local out, status = support.sh(support.shell_quote(support.lipc) .. " -e 'print(40 + 2)'")
    assert.are.equal(0, status)
    assert.are.equal("42\n", out)
    out, status = support.sh("echo 'print(\"from stdin\")' | " .. support.shell_quote(support.lipc) .. " -")
    assert.are.equal(0, status)
    assert.are.equal("from stdin\n", out)
  end)

  it("-v and -h", function()
    local out, status = support.sh(support.shell_quote(support.lipc) .. " -v")
    assert.are.equal(0, status)
    assert.matches("^lipc %d+%.%d+%.%d+ %(Lua 5%.4", out)
    out, status = support.sh(support.shell_quote(support.lipc) .. " -h")
    assert.are.equal(0, status)
    assert.matches("usage: lipc", out)
  end)

  it("takes its options in any order before the script; -e or -- ends them", function()
    local lipc = support.shell_quote(support.lipc)
    local out, status = support.sh(lipc .. " --trace net -v")
    assert.are.equal(0, status)
    assert.matches("^lipc %d+%.%d+%.%d+ %(Lua 5%.4", out)
    out, status = support.sh(lipc .. " --trace net -h")
    assert.are.equal(0, status)
    assert.matches("^usage: lipc", out)
    local code = support.shell_quote("print(os.getenv('LIPC_TRACE'), arg[0], #arg, arg[2])")
    out, status = support.sh(lipc .. " --trace spawn -e " .. code .. " a -v")
    assert.are.equal(0, status)
    assert.are.equal("spawn\t-e\t2\t-v\n", out)
    local dir = support.tmpdir()
    support.write_file(dir .. "/-s.lua", "print(arg[0]:match('[^/]*$'), ...)\n")
    out, status = support.sh(("cd %s && %s --trace net -- -s.lua -i 2>&1")
      :format(support.shell_quote(dir), lipc))
    assert.are.equal(0, status)
    assert.are.equal("-s.lua\t-i\n", out)
    support.write_file(dir .. "/test", "print('a script named test', ...)\n")
    out, status = support.sh(("cd %s && %s -- test x 2>&1"):format(support.shell_quote(dir), lipc))
    assert.are.equal(0, status)
    assert.are.equal("a script named test\tx\n", out)
    out, status = support.sh(lipc .. " -v --trace 2>&1")
    assert.are.equal(1, status)
    assert.are.equal("lipc: '--trace' needs an argument\n", out)
    out, status = support.sh(lipc .. " --trace net -x 2>&1")
    assert.are.equal(1, status)
    assert.matches("^lipc: unknown option '%-x'\nusage: lipc", out)
  end)

  it("warn() behaves as in the stock lua: off until @on, parts make one line", function()
    local _, err, status = support.run_lipc([[
      warn("hidden"); warn("@on"); warn("a ", "b"); warn("@off"); warn("hidden too")
    ]])
    assert.are.equal(0, status)
    assert.are.equal("Lua warning: a b\n", err)
  end)

  it("the Lua state's free lists keep every block intact across sizes, growth and collection", function()
    -- blocks of every small size class and past it, grown through the class
    -- boundaries (table parts, string buffers), freed and reused by GC
    local out, status = support.sh(support.shell_quote(support.lipc) .. [[ -e '
      local keep = {}
      for round = 1, 3 do
        for n = 1, 600, 7 do
          local t = {}
          for i = 1, n % 40 do t[i] = ("v"):rep(i) end      -- array part grows
          for i = 1, n % 23 do t["k" .. i] = i * n end       -- hash part grows
          keep[#keep + 1] = {s = ("x"):rep(n) .. n, t = t, n = n}
        end
        collectgarbage()
        for i = #keep, 1, -2 do table.remove(keep, i) end  -- free half, reuse
      end
      for _, e in ipairs(keep) do
        assert(e.s == ("x"):rep(e.n) .. e.n)
        for i = 1, e.n % 40 do assert(e.t[i] == ("v"):rep(i)) end
        for i = 1, e.n % 23 do assert(e.t["k" .. i] == i * e.n) end
      end
      print(#keep)']])
    assert.are.equal(0, status, out)
    assert.matches("^%d+\n$", out)
  end)

  -- (Lua for the children below) the text of /proc/self/<file>
  local PROC_SELF = [[
      local function proc_self(file)
        local f = assert(io.open("/proc/self/" .. file))
        local text = f:read("a")
        f:close()
        return text
      end
  ]]

  -- LIPC_ALLOC=pool: lipc's allocator even where the default is malloc's
  -- (ASan builds, the valgrind run's LIPC_ALLOC=malloc)
  it("big blocks keep their bytes across growth, shrinking and reuse", function()
    -- strings and table parts of 4 MiB and more are mappings of their own,
    -- kept for reuse when freed: grown into and out of that size, and reused
    local out, status = support.sh("LIPC_ALLOC=pool " .. support.shell_quote(support.lipc) .. [[ -e '
      for round = 1, 6 do
        local n = ((4 << 20) + round * 4099) // 2 * 2
        local s = ("ab"):rep(n // 2) .. round                -- a buffer box, then the string
        assert(#s == n + #tostring(round) and s:sub(-1) == tostring(round))
        assert(s:sub(1, 4) == "abab" and s:sub(n - 1, n) == "ab")
        local t = {}
        for i = 1, 300000 + round do t[i] = i end            -- array part grows past 4 MiB
        for i = 1, #t, 997 do assert(t[i] == i) end
        for i = 2000, #t do t[i] = nil end
        collectgarbage()                                     -- ... and shrinks back
        t.x = 1
        for i = 1, 1999 do assert(t[i] == i) end
        s, t = nil, nil
        collectgarbage()
      end
      print("ok")']])
    assert.are.equal(0, status, out)
    assert.are.equal("ok\n", out)
  end)

  it("a big string freed is reused: making 16 MiB strings does not fault their pages anew", function()
    local out, status = support.sh("LIPC_ALLOC=pool " .. support.shell_quote(support.lipc) .. [[ -e '
      ]] .. PROC_SELF .. [[
      local function minflt()
        return tonumber(proc_self("stat"):match("^%d+ %b() %S+ %S+ %S+ %S+ %S+ %S+ %S+ (%d+)"))
      end
      local function one(i)
        local s = ("x"):rep((16 << 20) - 64) .. i
        assert(#s > 16000000)
        s = nil
        collectgarbage()
      end
      for i = 1, 3 do one(i) end
      local f0 = minflt()
      for i = 1, 20 do one(i) end
      print(minflt() - f0)']])
    assert.are.equal(0, status, out)
    -- 20 strings and their buffers, 4,096 pages each when mapped afresh
    assert.is_true(tonumber(out) < 4096, "page faults: " .. out)
  end)

  it("kept big blocks go back to the system once a second passes without a reuse", function()
    local out, status = support.sh("LIPC_ALLOC=pool " .. support.shell_quote(support.lipc) .. [[ -e '
      local lipc = require "lipc"
      ]] .. PROC_SELF .. [[
      local function rss() return tonumber(proc_self("status"):match("VmRSS:%s*(%d+)")) end
      local base = rss()
      local keep = {}
      for i = 1, 3 do keep[i] = ("y"):rep((16 << 20) - 64) .. i end
      keep = nil
      collectgarbage()
      collectgarbage()
      local kept = rss()
      local t0 = lipc.hrtime()
      while kept - rss() < 32768 and lipc.hrtime() - t0 < 10e9 do lipc.sleep(50) end
      print(kept - base > 32768, kept - rss() >= 32768)']])
    assert.are.equal(0, status, out)
    assert.are.equal("true\ttrue\n", out)
  end)

  it("runs the same with LIPC_ALLOC=malloc (plain malloc for the Lua state)", function()
    local out, status = support.sh("LIPC_ALLOC=malloc " .. support.shell_quote(support.lipc) ..
      " -e 'local t = {} for i = 1, 1e5 do t[i] = {i, tostring(i)} end print(#t)'")
    assert.are.equal(0, status)
    assert.are.equal("100000\n", out)
  end)

  it("an uncaught error prints message and traceback, status 1", function()
    local _, err, status = support.run_lipc("local function f() error('boom') end\nf()\n")
    assert.are.equal(1, status)
    assert.matches("uncaught error: .*main.lua:1: boom", err)
    assert.matches("stack traceback", err)
  end)

  it("an error in a listener or a later task is uncaught too", function()
    local _, err, status = support.run_lipc([[
      local lipc = require "lipc"
      lipc.set_timeout(5, function() error("late boom") end)
      lipc.set_timeout(50, function() print("never") end)
    ]])
    assert.are.equal(1, status)
    assert.matches("late boom", err)
  end)

  it("an 'error' event nobody listens to is uncaught", function()
    local out, err, status = support.run_lipc([[
      local lipc = require "lipc"
      local e = lipc.emitter()
      e:emit("error", "ECONNREFUSED: connection refused", "ECONNREFUSED")
      print("not reached")
    ]])
    assert.are.equal(1, status)
    assert.matches("unhandled 'error' event: ECONNREFUSED", err)
    assert.are.equal("", out)
  end)

  it("lipc.on_uncaught takes errors of tasks, listeners, timers and 'error' events; lipc goes on", function()
    local out, err, status = support.run_lipc([[
      local lipc = require "lipc"
      local seen = {}
      local before = lipc.on_uncaught(function(e, report)
        local traced = report:find("stack traceback", 1, true) and "+" or ""
        seen[#seen + 1] = tostring(e):match("boom %a+") .. traced
      end)
      lipc.set_timeout(1, function() error("boom timer") end)
      local em = lipc.emitter()
      em:on("x", function() error("boom listener") end)
      em:emit("x")
      lipc.go(function() lipc.sleep(5); error("boom task") end)
      em:emit("error", "boom event")
      lipc.sleep(30)
      print(before, table.concat(seen, " "))
      print(type(lipc.on_uncaught(nil)), lipc.on_uncaught(nil))
    ]])
    assert.are.equal(0, status, err)
    assert.are.equal("nil\tboom listener+ boom event boom timer+ boom task+\nfunction\tnil\n", out)
  end)

  it("an error in the lipc.on_uncaught handler is reported with the error it had, status 1", function()
    local out, err, status = support.run_lipc([[
      local lipc = require "lipc"
      lipc.on_uncaught(function() error("the handler broke") end)
      lipc.set_timeout(1, function() error("boom") end)
      lipc.set_timeout(50, function() print("not reached") end)
    ]])
    assert.are.equal(1, status)
    assert.are.equal("", out)
    assert.matches("uncaught error: .*main.lua:3: boom\nstack traceback:.*%(and the lipc.on_uncaught "
      .. "handler failed: .*main.lua:2: the handler broke%)", err)
    out, err = support.run_lipc("require('lipc').on_uncaught(42)")
    assert.are.equal("", out)
    assert.matches("main.lua:1: bad argument #1 to 'lipc.on_uncaught' %(function expected, got number%)", err)
  end)

  it("a missing script is one line and status 1", function()
    local out, status = support.sh(support.shell_quote(support.lipc) .. " /nonexistent/x.lua 2>&1")
    assert.are.equal(1, status)
    assert.matches("^lipc: cannot open /nonexistent/x%.lua[^\n]*\n$", out)
  end)

  it("a syntax error is reported with status 1", function()
    local _, err, status = support.run_lipc("x = = 1")
    assert.are.equal(1, status)
    assert.matches("main.lua:1:", err)
  end)

  it("lipc.exit(n) exits with n after flushing stdout, from anywhere in a task", function()
    local out, _, status = support.run_lipc([[
      local lipc = require "lipc"
      lipc.set_interval(1, function() end)
      lipc.go(function()
        lipc.sleep(5)
        for i = 1, 1000 do lipc.stdout:write(("line %d\n"):format(i)) end
        io.write("last\n")
        lipc.exit(7)
        print("not reached")
      end)
    ]])
    assert.are.equal(7, status)
    local n = select(2, out:gsub("line %d+\n", ""))
    assert.are.equal(1000, n)
    assert.matches("last\n$", out)
  end)

  it("os.exit is lipc.exit, true/false as in Lua", function()
    local _, _, status = support.run_lipc("os.exit(false)")
    assert.are.equal(1, status)
    _, _, status = support.run_lipc("os.exit(3)")
    assert.are.equal(3, status)
  end)

  it("the loop runs until nothing is pending", function()
    local out, _, status = support.run_lipc([[
      local lipc = require "lipc"
      lipc.set_timeout(30, function() print("last") end)
      lipc.go(function() lipc.sleep(10); print("first") end)
    ]])
    assert.are.equal(0, status)
    assert.are.equal("first\nlast\n", out)
  end)

  it("a broken stdout pipe is an EPIPE error, not a death by SIGPIPE", function()
    local dir = support.tmpdir()
    local out, status = support.sh(support.shell_quote(support.lipc) ..
      [[ -e 'local l = require "lipc"; l.sleep(100)
             local ok, e, code = l.stdout:write(("x"):rep(100000))
             io.stderr:write(tostring(ok), " ", tostring(code), "\n")' 2>]] ..
      dir .. "/err | true")
    assert.are.equal(0, status)
    assert.are.equal("", out)
    assert.are.equal("nil EPIPE\n", support.read_file(dir .. "/err"))
  end)
  it("on a terminal with no script, starts the prompt with the loop running", function()
    local input = "x = 20 + 1\nx * 2\nfor i = 1, 2 do\nio.write(i, ';')\nend\n" ..
      "local l = require 'lipc'; l.set_timeout(5, function() print('timer' .. ' fired') end)\n" ..
      "require('lipc').sleep(30); return 'slept'\nerror('oops')\n"
    local out, status = support.sh(("printf %s | script -qec %s /dev/null"):format(
      support.shell_quote(input), support.shell_quote(support.shell_quote(support.lipc))))
    assert.are.equal(0, status)
    assert.matches("lipc %d+%.%d+%.%d+", out)
    assert.matches("> x %* 2\n42\n", (out:gsub("\r", "")))
    assert.matches("1;2;", out)
    -- what is printed is not in the lines typed, whose echo would match it
    assert.matches("timer fired", out)
    assert.matches('"slept"', out)
    assert.matches("stdin:1: oops", out)
  end)

  it("the prompt: lipc and the modules are globals, values print through lipc.inspect", function()
    local input = "lipc.sleep(1); return lipc.version == require('lipc').version\n" ..
      "spawn == require('spawn') and fork == require('fork') and pipe == require('pipe')" ..
      " and net == require('net')\n" ..
      "t = {1, 'two', k = {x = true}}\nt\n#t\n"
    local out, status = support.sh(("printf %s | script -qec %s /dev/null"):format(
      support.shell_quote(input), support.shell_quote(support.shell_quote(support.lipc))))
    assert.are.equal(0, status)
    out = out:gsub("\r", "")
    assert.matches(".version\ntrue\n> ", out, 1, true)
    assert.matches("== require('net')\ntrue\n> ", out, 1, true)
    assert.matches('> t\n{1, "two", k = {x = true}}\n> #t\n2\n', out, 1, true)
    assert.is_nil(out:find("table: 0x", 1, true))
    assert.is_nil(out:find("repl.lua", 1, true))
  end)

  it("the prompt: output that comes while it waits is written above it, the prompt redrawn", function()
    local spawn = require "spawn"
    local child = spawn("script", {"-qec", support.shell_quote(support.lipc), "/dev/null"})
    -- the word printed is not in the line typed, whose echo would match it
    -- and end the wait before the timer fires
    child.stdin:write("lipc.set_timeout(20, function() print('timer' .. ' fired') end)\n")
    local got = ""
    while not got:find("timer fired") do
      local chunk = child.stdout:read()
      if not chunk then break end
      got = got .. chunk
    end
    child.stdin:write("'next'\n")
    child.stdin:shutdown()
    got = got .. (child.stdout:read_all() or "")
    assert.are.equal(0, (child:wait()))
    got = got:gsub("\r\n", "\n")
    -- the prompt line is cleared, the output written, the prompt drawn again
    assert.matches("> \r\27[Ktimer fired\n> ", got, 1, true)
    assert.matches('"next"', got, 1, true)
  end)

  it("the prompt: what is being typed is drawn again under output that comes meanwhile", function()
    local spawn, lipc = require "spawn", require "lipc"
    local child = spawn("script", {"-qec", support.shell_quote(support.lipc), "/dev/null"})
    local got = ""
    local function until_seen(s, plain)
      while not got:find(s, 1, plain ~= false) do
        local chunk = child.stdout:read()
        if not chunk then error("no " .. s .. " in " .. got) end
        got = got .. chunk
      end
    end
    -- the word printed is not in the line typed, whose echo would match it
    child.stdin:write("lipc.on_signal('SIGUSR1', function() print('sig' .. 'nalled') end); return lipc.pid\n")
    until_seen("\n%d+\r?\n> $", false)
    local pid = tonumber(got:match("\n(%d+)\r?\n> $"))
    assert.truthy(pid, got)
    child.stdin:write("'nex")                -- typed, not entered
    until_seen("> 'nex")
    assert.is_true(lipc.kill(pid, "SIGUSR1"))
    until_seen("signalled\r?\n> 'nex", false)
    child.stdin:write("\127t\127xt'\n")       -- backspace edits the line
    child.stdin:write("\4")
    child.stdin:shutdown()
    got = got .. (child.stdout:read_all() or "")
    assert.are.equal(0, (child:wait()))
    got = got:gsub("\r\n", "\n")
    assert.matches("> 'nex\r\27[Ksignalled\n> 'nex", got, 1, true)
    assert.matches('\n"next"\n', got, 1, true)
  end)

  it("the prompt: the terminal is raw before the prompt shows: what is typed then is echoed once", function()
    -- the order of the calls, from strace: every "> " is written while
    -- the terminal's last mode has no ECHO (the terminal would echo a
    -- line typed at once, and the prompt again: seen under load)
    local dir = support.tmpdir()
    -- (LeakSanitizer cannot run under ptrace: off for this one, under make check)
    local cmd = ("ASAN_OPTIONS=detect_leaks=0 strace -f -o %s -e trace=ioctl,write %s")
      :format(dir .. "/trace", support.shell_quote(support.lipc))
    local out, status = support.sh(("printf %s | script -qec %s /dev/null"):format(
      support.shell_quote("x = 1\nx\n"), support.shell_quote(cmd)))
    assert.are.equal(0, status, out)
    local echo, prompts = true, 0
    for line in io.lines(dir .. "/trace") do
      local lflag = line:match("TCSETSW?, {.-c_lflag=([%w|]*)")
      if lflag then
        echo = ("|" .. lflag .. "|"):find("|ECHO|", 1, true) ~= nil
      elseif line:find('write%(%d+, "> ", 2%)') then
        prompts = prompts + 1
        assert.is_false(echo, "prompt " .. prompts .. " written with the terminal echoing")
      end
    end
    assert.is_true(prompts >= 3, "prompts seen: " .. prompts)
  end)

  it("-i runs the script, then the prompt", function()
    local dir = support.tmpdir()
    support.write_file(dir .. "/s.lua", "greeting = 'hi from script'\n")
    local out, status = support.sh(("printf 'greeting\\n' | script -qec %s /dev/null"):format(
      support.shell_quote(support.shell_quote(support.lipc) .. " -i " .. dir .. "/s.lua")))
    assert.are.equal(0, status)
    assert.matches('> greeting\n"hi from script"', (out:gsub("\r", "")))
  end)
end)
