-- harness_spec.lua - `lipc test`, run on small projects of its own: a
-- spec that hangs, leaks or lets an error escape fails by name and the run
-- goes on; the exit status says whether everything passed; busted's TAP
-- and JUnit outputs stay what CI systems parse.
local support = require "support"
local t = require "lipc.test"

local q = support.shell_quote

-- A project: {["spec/x_spec.lua"] = text, [".busted"] = text, ...}.
local function project(files)
  local dir = t.tmpdir()
  for name, text in pairs(files) do
    local sub = name:match("^(.*)/[^/]+$")
    if sub then assert(os.execute("mkdir -p " .. q(dir .. "/" .. sub))) end
    support.write_file(dir .. "/" .. name, text)
  end
  return dir
end

-- `lipc test args` in dir -> output (stdout and stderr), status.
local function lipc_test(dir, args, env)
  local out, status = support.sh(("cd %s && %s %s test %s 2>&1"):format(
    q(dir), env or "", q(support.lipc), args or ""))
  support.check_sanitizers(out)
  return out, status
end

local function victim(body)
  return project({["spec/victim_spec.lua"] = 'local lipc = require "lipc"\n'
    .. 'local t = require "lipc.test"\n' .. body})
end

-- TAP as busted writes it: numbered results, comments, then the plan.
local function parse_tap(out)
  local results, plan = {}, nil
  for line in out:gmatch("[^\n]+") do
    local no, n, name = line:match("^(n?o?t? ?)ok (%d+) %- (.*)$")
    if n then
      assert.are.equal(#results + 1, tonumber(n), "TAP numbering: " .. line)
      results[#results + 1] = {ok = no == "", name = name}
    elseif line:match("^1%.%.%d+$") then
      plan = tonumber(line:match("%d+$"))
    else
      assert.matches("^#", line, "a line that is not TAP")
    end
  end
  assert.are.equal(#results, plan, "the plan counts the results")
  return results
end

local ENTITIES = {lt = "<", gt = ">", amp = "&", quot = '"', apos = "'"}

local function unescape(s)
  return (s:gsub("&(#?)(%w+);", function(num, name)
    return num == "#" and utf8.char(tonumber(name)) or ENTITIES[name]
  end))
end

-- Well-formed XML (tags nest, attributes quoted, entities complete) ->
-- the elements as {name, attrs} in document order.
local function parse_xml(text)
  local elements, stack, pos = {}, {}, 1
  text = text:gsub("^%s*<%?xml.-%?>", "")
  while true do
    local s, e, tag = text:find("<([^>]*)>", pos)
    local between = text:sub(pos, (s or #text + 1) - 1)
    assert.is_nil(between:find("<"), "stray <")
    assert.is_nil(between:gsub("&%a+;", ""):gsub("&#%d+;", ""):find("&"), "bad entity in " .. between)
    if not s then break end
    pos = e + 1
    if tag:sub(1, 1) == "/" then
      assert.are.equal(table.remove(stack), tag:sub(2), "closing tag")
    else
      local name, rest = tag:match("^([%w_:]+)(.-)/?$")
      assert.truthy(name, "tag " .. tag)
      local attrs = {}
      for k, _, v in rest:gmatch("([%w_:]+)=(['\"])(.-)%2") do attrs[k] = unescape(v) end
      assert.are.equal("", (rest:gsub("[%w_:]+=(['\"]).-%1", ""):gsub("%s", "")), "attributes of " .. tag)
      elements[#elements + 1] = {name = name, attrs = attrs}
      if tag:sub(-1) ~= "/" then stack[#stack + 1] = name end
    end
  end
  assert.are.equal(0, #stack, "unclosed " .. tostring(stack[#stack]))
  return elements
end

describe("lipc test", function()
  it("a spec that waits for ever fails with its name and the deadline, and the next one runs", function()
    local dir = victim([[
      describe("victim", function()
        it("waits on a cond", function() lipc.cond():wait() end)
        it("reads a socket nobody writes", function()
          local a, b = require("fork").socketpair()
          finally(function() a:close(); b:close() end)
          a:read()
        end)
        it("runs after them", function() end)
      end)
    ]])
    local out, status = lipc_test(dir, "--timeout 200 -o TAP")
    assert.are_not.equal(0, status)
    local r = parse_tap(out)
    assert.are.equal(3, #r)
    assert.are.same({false, false, true}, {r[1].ok, r[2].ok, r[3].ok})
    assert.matches('victim_spec.lua:4: timed out after 200 ms: "victim waits on a cond" has not finished',
      out)
    assert.matches("it is waiting in:.-in method 'wait'.-victim_spec.lua:4", out)
    assert.matches('timed out after 200 ms: "victim reads a socket nobody writes"', out)
    assert.matches("in method 'read'.-victim_spec.lua:8", out)
  end)

  it("takes the deadline from lipc.test.timeout, --timeout, LIPC_TEST_TIMEOUT and .busted", function()
    local dir = victim([[
      describe("short", function()
        t.timeout(50)
        it("sleeps 200 ms", function() lipc.sleep(200) end)
        it("raises its own deadline", function() t.timeout(5000); lipc.sleep(200) end)
      end)
      it("sleeps 200 ms under the global deadline", function() lipc.sleep(200) end)
    ]])
    local out = lipc_test(dir, "-o TAP")
    assert.matches("not ok 1 %- short sleeps 200 ms\n.-timed out after 50 ms", out)
    assert.matches("\nok 2 %- short raises its own deadline", out)
    assert.matches("\nok 3 %- sleeps 200 ms under the global deadline", out)
    local global = "-o TAP --filter=global "
    out = lipc_test(dir, global .. "--timeout=150")
    assert.matches("not ok 1 .-timed out after 150 ms", out)
    out = lipc_test(dir, global, "LIPC_TEST_TIMEOUT=160")
    assert.matches("not ok 1 .-timed out after 160 ms", out)
    support.write_file(dir .. "/.busted", "return {default = {timeout = 170}}")
    out = lipc_test(dir, global)
    assert.matches("not ok 1 .-timed out after 170 ms", out)
    out = lipc_test(dir, global, "LIPC_TEST_TIMEOUT=180")
    assert.matches("not ok 1 .-timed out after 180 ms", out, "the environment over .busted")
    out = lipc_test(dir, global .. "--timeout 190", "LIPC_TEST_TIMEOUT=180")
    assert.matches("not ok 1 .-timed out after 190 ms", out, "the command line over the environment")
    local status
    out, status = lipc_test(dir, "--timeout=soon")
    assert.are.equal(1, status)
    assert.matches("lipc test: %-%-timeout: a number of milliseconds > 0 expected, got 'soon'", out)
  end)

  it("fails the spec that leaks a server, lists it, closes it, and goes on", function()
    local dir = victim([[
      describe("victim", function()
        it("leaks a server", function()
          _G.srv = require("net").create_server():listen(0, "127.0.0.1")
          _G.port = _G.srv:address().port
        end)
        it("finds it closed", function()
          assert.is_false(_G.srv:listening())
          local s = assert(require("net").create_server():listen(_G.port, "127.0.0.1"))
          s:close()
        end)
        it("leaks a timer", function() lipc.set_interval(1000, function() end) end)
      end)
    ]])
    local out, status = lipc_test(dir, "-o TAP")
    assert.are_not.equal(0, status)
    assert.matches("not ok 1 %- victim leaks a server\n"
      .. ".-victim_spec.lua:4: spec left open: tcp server 127%.0%.0%.1:%d+\n", out)
    assert.matches("\nok 2 %- victim finds it closed", out)
    assert.matches("not ok 3 %- victim leaks a timer\n.-spec left open: timer\n", out)
  end)

  it("fails the spec that leaves a child running, with or without its handle, and kills it", function()
    local dir = victim([[
      local spawn = require "spawn"
      local function note(c)
        local f = assert(io.open("pids", "a")); f:write(c.pid, "\n"); f:close()
      end
      describe("victim", function()
        it("leaves a child", function() note(spawn("sleep", {"30"})) end)
        it("closes the handle of a child that runs on", function()
          local c = spawn("sleep", {"31"}, {stdio = "ignore"})
          note(c)
          c:close()
        end)
        it("waits for its child", function()
          local c = spawn("sleep", {"0"}, {stdio = "ignore"})
          assert.are.equal(0, c:wait())
        end)
      end)
    ]])
    local out = lipc_test(dir, "-o TAP")
    assert.matches("not ok 1 %- victim leaves a child\n.-spec left open: process %d+ %(sleep 30%)\n", out)
    assert.matches("not ok 2 %- victim closes the handle of a child that runs on\n"
      .. ".-spec left open: child process %d+ %(sleep 31%)\n", out)
    assert.matches("\nok 3 %- victim waits for its child", out)
    for pid in support.read_file(dir .. "/pids"):gmatch("%d+") do
      assert.is_false(support.alive(tonumber(pid)), "killed: " .. pid)
    end
  end)

  it("fails the spec that leaves an fd open", function()
    local dir = victim([[
      describe("victim", function()
        it("keeps a file open", function() _G.kept = io.open("/etc/hostname") end)
        it("drops one, which the collector closes", function() io.open("/etc/hostname") end)
      end)
    ]])
    local out = lipc_test(dir, "-o TAP")
    assert.matches("not ok 1 %- victim keeps a file open\n.-spec left open: fd %d+ %(/etc/hostname%)\n", out)
    assert.matches("\nok 2 %- victim drops one", out)
  end)

  it("counts what after_each, finally and the helpers close as closed", function()
    local dir = victim([[
      local net = require "net"
      local function note(what)
        local f = assert(io.open("notes", "a")); f:write(what, "\n"); f:close()
      end
      describe("victim", function()
        local srv
        after_each(function() if srv then srv:close() end; srv = nil end)
        it("leaves its server to after_each", function() srv = net.create_server():listen(0, "127.0.0.1") end)
        it("closes in finally", function()
          local s = net.create_server():listen(0, "127.0.0.1")
          finally(function() s:close() end)
        end)
        it("uses helpers that clean up after it", function()
          note("dir " .. t.tmpdir())
          t.fake_peer()
          note("pid " .. t.worker("worker.lua").pid)
        end)
      end)
      describe("a block's own", function()
        note("dir " .. t.tmpdir())
        it("passes", function() end)
      end)
      describe("lazily set up", function()
        local srv
        lazy_setup(function() srv = net.create_server():listen(0, "127.0.0.1") end)
        lazy_teardown(function() srv:close() end)
        it("uses what its lazy setup opened", function() assert.is_true(srv:listening()) end)
      end)
    ]])
    support.write_file(dir .. "/worker.lua", "require('fork').parent:receive()")
    local out, status = lipc_test(dir, "-o TAP")
    assert.are.equal(0, status, out)
    assert.are.equal(5, #parse_tap(out))
    local notes = support.read_file(dir .. "/notes")
    assert.matches("^dir .*\npid %d+\ndir .*\n$", notes)
    for d in notes:gmatch("dir (%S+)") do assert.is_nil(io.open(d), d) end
    assert.is_false(support.alive(tonumber(notes:match("pid (%d+)"))))
  end)

  it("fails the spec whose timer, listener or task raises, names it, and goes on", function()
    local dir = victim([[
      describe("victim", function()
        it("sets a timer that raises", function()
          lipc.set_timeout(5, function() error("boom in a timer") end)
          lipc.sleep(1000)
        end)
        it("has a listener that raises", function()
          local e = lipc.emitter()
          e:on("ping", function() error("boom in a listener") end)
          e:emit("ping")
        end)
        it("starts a task that raises after it ended", function()
          lipc.go(function() lipc.sleep(20); error("boom in a task") end)
        end)
        it("runs after them", function() lipc.sleep(50) end)
      end)
    ]])
    local out, status = lipc_test(dir, "-o TAP")
    assert.are_not.equal(0, status)
    assert.matches('not ok 1 %- victim sets a timer that raises\n.-victim_spec.lua:4: an error in a '
      .. 'listener, timer or task started by "victim sets a timer that raises": '
      .. '.-victim_spec.lua:5: boom in a timer', out)
    assert.matches('not ok 2 %- victim has a listener that raises\n.-boom in a listener', out)
    assert.matches('not ok 3 %- victim starts a task that raises after it ended\n'
      .. '.-spec an error in a listener, timer or task it started: .-boom in a task', out)
    assert.matches("\nok 4 %- victim runs after them", out)
    assert.is_nil(out:find("lipc: uncaught error"))
  end)

  it("makes an error while no spec runs an error of its describe block", function()
    local dir = victim([[
      describe("victim", function()
        lipc.set_timeout(1, function() error("boom between specs") end)
        lipc.sleep(20)
        it("passes", function() end)
      end)
    ]])
    local out, status = lipc_test(dir, "-o TAP")
    assert.are_not.equal(0, status)
    assert.matches("not ok 1 %- victim\n.-while no spec ran: .-boom between specs", out)
    assert.matches("\nok 2 %- victim passes", out)
  end)

  it("fails a run that leaves something open after its last spec", function()
    local dir = victim([[
      _G.srv = require("net").create_server():listen(0, "127.0.0.1")
      it("passes", function() end)
    ]])
    local out, status = lipc_test(dir, "-o TAP")
    assert.are.equal(1, status)
    assert.matches("^ok 1 %- passes\n", out)
    assert.matches("lipc test: left open after the last spec %(close it in a teardown%): tcp server", out)
  end)

  it("exits 0 when every spec passes and non-zero when one fails", function()
    local dir = victim([[
      it("passes", function() assert.are.equal(2, 1 + 1) end)
      it("fails #bad", function() assert.are.equal(3, 1 + 1) end)
    ]])
    local out, status = lipc_test(dir, "--exclude-tags=bad")
    assert.are.equal(0, status, out)
    assert.matches("1 success / 0 failures / 0 errors", out)
    out, status = lipc_test(dir)
    assert.are_not.equal(0, status, out)
    assert.matches("1 success / 1 failure / 0 errors", out)
  end)

  it("writes TAP and JUnit that parse, with every spec's result", function()
    local dir = victim([[
      describe("victim", function()
        it("passes", function() end)
        it("fails", function() assert.is_true(false) end)
        it("leaks", function() lipc.set_interval(1000, function() end) end)
        it("raises <&> in a timer", function()
          lipc.set_timeout(1, function() error("<&'\">") end)
          lipc.sleep(100)
        end)
        pending("is pending")
      end)
    ]])
    local out = lipc_test(dir, "-o TAP")
    local r = parse_tap(out)
    assert.are.equal(5, #r)
    assert.are.same({true, false, false, false, true}, {r[1].ok, r[2].ok, r[3].ok, r[4].ok, r[5].ok})
    assert.matches("\nok 5 %- # SKIP victim is pending\n", out)

    out = lipc_test(dir, "-o junit")
    local xml = parse_xml(out)
    local suite, cases = nil, {}
    for _, el in ipairs(xml) do
      if el.name == "testsuite" then suite = el.attrs end
      if el.name == "testcase" then cases[#cases + 1] = el.attrs.name end
    end
    assert.are.same({tests = "5", failures = "2", errors = "1", skip = "1"},
      {tests = suite.tests, failures = suite.failures, errors = suite.errors, skip = suite.skip})
    assert.are.same({"victim passes", "victim fails", "victim leaks", "victim raises <&> in a timer",
                     "victim is pending"}, cases)
  end)

  it("runs a project's own .busted: its ROOT, pattern, lpath and helper", function()
    local dir = project({
      [".busted"] = [[return {default = {ROOT = {"checks"}, pattern = "_check", lpath = "lib/?.lua",
                                        helper = "checks/helper.lua"}}]],
      ["lib/greet.lua"] = "return function(n) return 'hello ' .. n end",
      ["checks/helper.lua"] = "HELPED = true",
      ["checks/greet_check.lua"] = [[
        it("greets", function()
          assert.is_true(HELPED)
          assert.are.equal("hello you", require("greet")("you"))
          require("lipc").sleep(1)
        end)
      ]],
    })
    local out, status = lipc_test(dir, "-o TAP")
    assert.are.equal(0, status, out)
    assert.matches("^ok 1 %- greets\n1%.%.1\n$", out)
  end)

  it("explains itself with --help and runs a script named test as ./test", function()
    local dir = project({test = "print('a script named test')"})
    local out, status = lipc_test(dir, "--help")
    assert.are.equal(0, status)
    assert.matches("^usage: lipc test %[%-%-timeout MS%]", out)
    assert.matches("busted's options:\nUsage: lipc test %[OPTIONS%]", out)
    out, status = support.sh(("cd %s && %s ./test 2>&1"):format(q(dir), q(support.lipc)))
    assert.are.equal(0, status)
    assert.are.equal("a script named test\n", out)
  end)

  it("says how to install busted when Lua 5.4 cannot find it", function()
    local dir = victim('it("passes", function() end)')
    local out, status = lipc_test(dir, "", "LUA_PATH_5_4=/nowhere/?.lua")
    assert.are.equal(1, status)
    assert.matches("^lipc test: busted is not installed for Lua 5%.4 %(Debian: apt%-get install lua%-busted; "
      .. "LuaRocks: luarocks %-%-lua%-version=5%.4 install busted%)\nmodule 'busted.core' not found", out)
  end)
end)
