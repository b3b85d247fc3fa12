-- poll_spec.lua - the adaptive poll (lipc.poll, LIPC_POLL): the switch
-- works from the environment and from Lua, a busy channel polls and an
-- idle process does not, and traffic arrives the same with it on.
-- Behaviour only: what it gains is measured by bench/run.sh.
local lipc = require "lipc"
local fork = require "fork"
local net = require "net"
local S = require "support"

local q = S.shell_quote

-- A child script in a private dir; returns its path.
local function script(code)
  return S.write_file(S.tmpdir() .. "/child.lua", code)
end

-- Runs code in a child lipc with LIPC_POLL=value (nil: unset).
local function with_env(value, code)
  local dir = S.tmpdir()
  local path = S.write_file(dir .. "/main.lua", code)
  local env = value and ("env LIPC_POLL=" .. q(value)) or "env -u LIPC_POLL"
  local out, status = S.sh(("%s %s %s 2>%s/stderr </dev/null")
    :format(env, q(S.lipc), q(path), dir))
  local err = S.read_file(dir .. "/stderr")
  S.check_sanitizers(err)
  return out, err, status
end

-- n round trips of {seq = i} with a forked echo child.
local ECHO = [[
  local parent = require("fork").parent
  while true do
    local m = parent:receive()
    if m == nil then break end
    parent:send(m)
  end
]]

-- Child code: two channels over a socketpair, ca and cb, made hot with
-- n round trips.
local function hot_pair(n)
  return ([[
      local a, b = assert(require("fork").socketpair())
      local ca, cb = a:channel(), b:channel()
      for i = 1, %d do
        ca:send({seq = i})
        assert(cb:receive().seq == i)
      end
]]):format(n)
end

local function pingpong(child, n)
  for i = 1, n do
    assert(child:send({seq = i}))
    local r = child:receive()
    assert.are.equal(i, r and r.seq)
  end
end

-- The state of this process's poll is shared by every spec: each test
-- puts back what it found.
local saved
before_each(function() saved = lipc.poll() end)
after_each(function() lipc.poll({mode = saved.mode, max_us = saved.max_us}) end)

describe("lipc.poll", function()
  it("LIPC_POLL: 0 off, 1 on, microseconds on with that budget, unset auto", function()
    local code = [[local p = require("lipc").poll(); print(p.mode, p.max_us)]]
    local cases = {
      {nil, "auto\t50"}, {"auto", "auto\t50"}, {"0", "off\t50"}, {"off", "off\t50"},
      {"1", "on\t50"}, {"on", "on\t50"}, {"200", "on\t200"},
    }
    for _, c in ipairs(cases) do
      local out, err, status = with_env(c[1], code)
      assert.are.equal(0, status, err)
      assert.are.equal(c[2] .. "\n", out, "LIPC_POLL=" .. tostring(c[1]))
      assert.are.equal("", err)
    end
  end)

  it("LIPC_POLL: a bad value says so and leaves auto", function()
    for _, v in ipairs({"fast", "-3", "20000", "5us"}) do
      local out, err, status = with_env(v, [[print(require("lipc").poll().mode)]])
      assert.are.equal(0, status, err)
      assert.are.equal("auto\n", out)
      assert.matches("LIPC_POLL: expected 0, 1, auto or microseconds", err, 1, true)
      assert.matches("'" .. v .. "'", err, 1, true)
    end
  end)

  it("sets the mode and budget from Lua and returns the state", function()
    assert.are.equal("off", lipc.poll(false).mode)
    local p = lipc.poll(true)
    assert.are.equal("on", p.mode)
    p = lipc.poll({max_us = 120})
    assert.are.same({"on", 120, 120}, {p.mode, p.max_us, p.budget_us})
    p = lipc.poll("auto")
    assert.are.same({"auto", 120}, {p.mode, p.max_us})
    p = lipc.poll({mode = "off"})
    assert.are.same({"off", 120, 0}, {p.mode, p.max_us, p.budget_us})
    p = lipc.poll()
    assert.are.equal("off", p.mode)
    for _, k in ipairs({"spins", "hits", "misses", "turns"}) do
      assert.are.equal("number", math.type(p[k]) and "number", k)
    end
  end)

  it("names the function and argument of a bad setting", function()
    local bad = {
      {5, "bad argument #1 to 'lipc.poll' (boolean, 'auto' or table expected, got number)"},
      {"fast", "bad argument #1 to 'lipc.poll' ('auto', a boolean or a table expected)"},
      {{max_us = 0}, "bad argument #1 to 'lipc.poll' (max_us: must be 1-10000, got 0)"},
      {{max_us = 10001}, "bad argument #1 to 'lipc.poll' (max_us: must be 1-10000, got 10001)"},
      {{max_us = "20"}, "bad argument #1 to 'lipc.poll' (max_us: integer expected, got string)"},
      {{max_us = 2.5}, "bad argument #1 to 'lipc.poll' (max_us: integer expected, got number)"},
      {{mode = "fast"}, "bad argument #1 to 'lipc.poll' (mode: 'on', 'off' or 'auto' expected)"},
      {{mode = true}, "bad argument #1 to 'lipc.poll' (mode: 'on', 'off' or 'auto' expected)"},
    }
    lipc.poll({mode = "off", max_us = 30})
    for _, b in ipairs(bad) do
      local ok, err = pcall(lipc.poll, b[1])
      assert.is_false(ok)
      assert.matches(b[2], err, 1, true)
    end
    local p = lipc.poll() -- a refused setting changed nothing
    assert.are.same({"off", 30}, {p.mode, p.max_us})
  end)

  it("on: a busy channel polls between messages; off: it never does", function()
    local child = assert(fork(script(ECHO)))
    lipc.poll(false)
    local before = lipc.poll()
    pingpong(child, 300)
    local after = lipc.poll()
    assert.are.same({0, 0, 0}, {after.spins - before.spins, after.turns - before.turns,
      after.empty_us - before.empty_us})
    lipc.poll(true)
    before = lipc.poll()
    pingpong(child, 300)
    after = lipc.poll()
    assert.is_true(after.spins > before.spins, "spins")
    assert.is_true(after.turns > before.turns, "turns")
    -- the last spin waited out its window: time spent finding nothing
    lipc.sleep(20)
    assert.is_true(lipc.poll().empty_us > before.empty_us, "empty_us")
    -- every spin ends: with a hit that started a new window, or a miss
    lipc.poll(false)
    assert.is_true(after.hits + after.misses >= after.spins - 1)
    child:disconnect()
    assert.are.equal(0, (child:wait()))
  end)

  it("a pause after polls that found data keeps the window; polls that find none halve it",
    function()
      -- A 10 ms window: every reply of the ping-pong comes within it, so
      -- the last spin has hits, then waits out the window in the sleep.
      local child = assert(fork(script(ECHO)))
      lipc.poll({max_us = 10000})
      pingpong(child, 50)
      lipc.sleep(40)
      local p = lipc.poll()
      assert.is_true(p.hits > 0 and p.misses > 0, "hits and misses")
      assert.are.equal(10000, p.budget_us, "the window after a pause in hot traffic")
      -- one round trip, and in the reply's turn a write that nobody
      -- answers: a spin starts and finds nothing
      local a, b = assert(fork.socketpair())
      pingpong(child, 1)
      assert(a:write("x"))
      lipc.sleep(40)
      assert.are.equal(5000, lipc.poll().budget_us, "the window after a spin with no hit")
      lipc.poll(false)
      a:close()
      b:close()
      child:disconnect()
      assert.are.equal(0, (child:wait()))
    end)

  it("a process that only reads, a stream it does not answer, does not spin", function()
    -- The child sends one message a loop turn; the parent takes them and
    -- writes nothing back until the last: every wake-up reads, none
    -- answers, so no spin starts (it would only take the stream in
    -- smaller reads).
    local child = assert(fork(script([[
      local lipc = require "lipc"
      local parent = require("fork").parent
      for i = 1, 200 do
        parent:send(i)
        lipc.sleep(0)
      end
      parent:receive()
    ]])))
    lipc.poll(true)
    local before = lipc.poll()
    for i = 1, 200 do assert.are.equal(i, child:receive()) end
    local after = lipc.poll()
    assert.are.same({0, 0}, {after.spins - before.spins, after.turns - before.turns})
    lipc.poll(false)
    child:disconnect()
    assert.are.equal(0, (child:wait()))
  end)

  it("a reply sent while a read is handled is written before the loop runs timers", function()
    -- The write goes out at the end of the read callback, so the peer
    -- waiting for it does not also wait for this turn's timers and the
    -- next turn's flush; a 0 ms timer set in the handler finds nothing
    -- of the reply still queued.
    local child = assert(fork(script([[
      local lipc = require "lipc"
      local parent = require("fork").parent
      parent:on("message", function(m)
        parent:send(m)
        lipc.set_timeout(0, function() parent:send(parent:stats().queued) end)
      end)
    ]])))
    for i = 1, 20 do
      assert(child:send(i))
      assert.are.equal(i, child:receive())
      assert.are.equal(0, child:receive(), "bytes of the reply still queued")
    end
    child:disconnect()
    assert.are.equal(0, (child:wait()))
  end)

  it("the first reply to a read goes out at once, the others of that read together", function()
    -- Sent from the read callback of the same channel: the first frame is
    -- written before send() returns (nothing of it is queued after), the
    -- next ones wait for the end of the read and go out in one write.
    local child = assert(fork(script([[
      local parent = require("fork").parent
      parent:on("message", function(m)
        parent:send(m)
        local first = parent:stats().queued
        parent:send("second")
        local second = parent:stats().queued
        parent:send({first = first, second = second})
      end)
    ]])))
    for i = 1, 20 do
      assert(child:send(i))
      assert.are.equal(i, child:receive())
      assert.are.equal("second", child:receive())
      local queued = child:receive()
      assert.are.equal(0, queued.first, "bytes of the first reply still queued")
      assert.is_true(queued.second > 0, "the second reply was written on its own")
    end
    child:disconnect()
    assert.are.equal(0, (child:wait()))
  end)

  it("replies written at once while the peer does not read arrive whole and in order", function()
    -- The child answers each message (one a read) with up to 64 KB; the
    -- parent reads nothing until it has sent them all, so the socket
    -- fills, and a reply written at once goes in part (the rest waits in
    -- the buffer for the flush), or not at all, behind a write in flight.
    local child = assert(fork(script([[
      local parent = require("fork").parent
      local function size(i) return (i * 7919) % 65000 + 1 end
      parent:on("message", function(m)
        parent:send({seq = m, data = string.rep(string.char(65 + m % 26), size(m))})
      end)
    ]])))
    local function size(i) return (i * 7919) % 65000 + 1 end
    assert(child:send(0))
    assert.are.equal(0, child:receive().seq)
    for i = 1, 60 do
      assert(child:send(i))
      lipc.sleep(2)
    end
    for i = 1, 60 do
      local r = child:receive()
      assert.are.equal(i, r.seq)
      assert.is_true(r.data == string.rep(string.char(65 + i % 26), size(i)), "reply " .. i)
    end
    child:disconnect()
    assert.are.equal(0, (child:wait()))
  end)

  it("while a spin waits, Lua's collector runs there; never once the script stopped it",
    function()
      local echo = script(ECHO)
      local run = function(stop)
        local out, err, status = with_env("1", ([[
          local lipc = require "lipc"
          if %s then collectgarbage("stop") end
          local kb = collectgarbage("count")
          local child = assert(require("fork")(%q))
          for i = 1, 3000 do
            child:send({seq = i})
            assert(child:receive().seq == i)
          end
          print(lipc.poll().collects, math.floor(collectgarbage("count") - kb))
          child:disconnect()
        ]]):format(tostring(stop), echo))
        assert.are.equal(0, status, err)
        local collects, grown = out:match("^(%d+)\t(%-?%d+)\n$")
        assert.is_truthy(collects, out)
        return tonumber(collects), tonumber(grown)
      end
      local collects = run(false)
      assert.is_true(collects > 0, "collections in the spin")
      local stopped, grown = run(true)
      assert.are.equal(0, stopped)
      -- the tables of 3,000 messages are all still there
      assert.is_true(grown > 100, "KiB grown with the collector stopped: " .. grown)
    end)

  it("LIPC_POLL switches a child's poll on and off", function()
    local child_code = ECHO .. [[
      local p = require("lipc").poll()
      io.stdout:write(p.mode, " ", p.spins, "\n")
    ]]
    local path = script(child_code)
    local function run(value)
      local child = assert(fork(path, {}, {env = {LIPC_POLL = value},
        stdio = {"ignore", "pipe", "inherit"}}))
      pingpong(child, 300)
      child:disconnect()
      local out = child.stdout:read_all()
      assert.are.equal(0, (child:wait()))
      return out
    end
    assert.are.equal("off 0\n", run("0"))
    local mode, spins = run("1"):match("^(%a+) (%d+)\n$")
    assert.are.equal("on", mode)
    assert.is_true(tonumber(spins) > 0, "spins " .. tostring(spins))
  end)

  it("auto does not poll where the process may run on one CPU only", function()
    local dir = S.tmpdir()
    local path = S.write_file(dir .. "/main.lua", [[
      local lipc = require "lipc"
    ]] .. hot_pair(300) .. [[
      local p = lipc.poll()
      print(p.mode, p.spins, p.turns)
      ca:disconnect()
      cb:disconnect()
    ]])
    local run = "env LIPC_POLL=%s taskset -c 0 %s %s 2>&1 </dev/null"
    local out, status = S.sh(run:format("auto", q(S.lipc), q(path)))
    assert.are.equal(0, status, out)
    assert.are.equal("auto\t0\t0\n", out)
    -- on: polls there too (the switch overrides the check)
    out, status = S.sh(run:format("1", q(S.lipc), q(path)))
    assert.are.equal(0, status, out)
    local spins = out:match("^on\t(%d+)\t%d+\n$")
    assert.is_truthy(spins, out)
    assert.is_true(tonumber(spins) > 0, out)
  end)

  it("an idle process with the poll on and open channels does not spin", function()
    -- The child makes traffic hot, then waits 300 ms with its channels
    -- open and nothing on them: no spin starts, no turn is spent polling,
    -- and its CPU time (utime + stime, in clock ticks) stays near zero.
    local out, err, status = with_env("1", [[
      local lipc = require "lipc"
    ]] .. hot_pair(200) .. [[
      local function cpu()
        local f = assert(io.open("/proc/self/stat"))
        local stat = f:read("a"):match("%) (.*)$")
        f:close()
        local fields = {}
        for w in stat:gmatch("%S+") do fields[#fields + 1] = w end
        return tonumber(fields[12]) + tonumber(fields[13]) -- utime, stime
      end
      lipc.sleep(50) -- the last window closes
      local p0, c0 = lipc.poll(), cpu()
      lipc.sleep(300)
      local p1, c1 = lipc.poll(), cpu()
      print(p0.spins, p1.spins - p0.spins, p1.turns - p0.turns, c1 - c0)
      ca:disconnect()
      cb:disconnect()
    ]])
    assert.are.equal(0, status, err)
    local spins, dspins, dturns, ticks = out:match("^(%d+)\t(%d+)\t(%d+)\t(%d+)\n$")
    assert.is_truthy(spins, out)
    assert.is_true(tonumber(spins) > 0, "the traffic polled")
    assert.are.equal("0", dspins, "spins while idle")
    assert.are.equal("0", dturns, "turns polled while idle")
    -- a spinning process would use most of the 30 ticks it waited
    assert.is_true(tonumber(ticks) <= 5, "CPU ticks while idle: " .. ticks)
  end)

  it("traffic is the same with the poll on: order, sizes, TCP bytes", function()
    lipc.poll({max_us = 200})
    local child = assert(fork(script(ECHO)))
    local sizes = {0, 1, 100, 4096, 70000, 1 << 20}
    for i = 1, 60 do
      local data = string.rep(string.char(65 + i % 26), sizes[i % #sizes + 1])
      -- a burst of three, then their echoes in order
      for k = 1, 3 do child:send({seq = i * 10 + k, data = data}) end
      for k = 1, 3 do
        local r = child:receive()
        assert.are.equal(i * 10 + k, r.seq)
        assert.are.equal(data, r.data)
      end
    end
    child:disconnect()
    assert.are.equal(0, (child:wait()))

    local server = net.create_server(function(sock)
      while true do
        local d = sock:read()
        if d == nil then break end
        sock:write(d)
      end
      sock:close()
    end)
    assert(server:listen(0, "127.0.0.1"))
    local sock = assert(net.connect({host = "127.0.0.1", port = server:address().port}))
    local sent, got = {}, {}
    for i = 1, 200 do
      local chunk = ("%05d:"):format(i) .. string.rep("x", i * 7 % 300)
      sent[#sent + 1] = chunk
      sock:write(chunk)
      local want, have = #chunk, 0
      while have < want do
        local d = assert(sock:read())
        got[#got + 1] = d
        have = have + #d
      end
    end
    sock:close()
    server:close()
    assert.are.equal(table.concat(sent), table.concat(got))
    assert.is_true(lipc.poll().spins > 0)
  end)
end)
