-- faults_spec.lua - fault injection (issue #7): peers killed mid-frame and
-- mid-stream, a TCP peer resetting mid-write, a parent dying under its
-- forked children, running out of fds, and a lossy, slow network link
-- between two network namespaces. Nothing delivered is corrupt or out of
-- order, every failure is reported, and the process lives on.
local lipc = require "lipc"
local fork = require "fork"
local spawn = require "spawn"
local net = require "net"
local S = require "support"

local function script(code)
  return S.write_file(S.tmpdir() .. "/script.lua", code)
end

local alive = S.alive

-- Waits (polling, up to ms, default 5 s) until pred() is true.
local function eventually(pred, ms)
  return S.wait_for(pred, ms or 5000)
end

describe("faults", function()

  describe("a child killed with SIGKILL", function()
    it("mid-frame: the cut frame is told after the messages, the channel ends, exit says SIGKILL", function()
      local child = assert(fork(script([[
        local parent = require("fork").parent
        local lipc = require "lipc"
        local sent = lipc.cond()
        parent:send("ready", function() sent:signal() end)
        sent:wait()                            -- "ready" is out, whole
        -- the first 10 bytes of a frame that claims 1000
        parent:stream():write("\0\0\3\232\xc5\3\225abc")
        require("lipc").sleep(60000)
      ]])))
      assert.are.equal("ready", child:receive())
      lipc.sleep(50)                               -- the partial frame is in
      assert.is_true(child:kill("SIGKILL"))
      local m, err, why = child:receive()          -- no message: the cut frame, said
      assert.is_nil(m)
      assert.are.equal("ERR_IPC_TRUNCATED", why)
      assert.matches("ended inside a frame %(10 of 1004 bytes%)", err)
      local code, signal = child:wait()
      assert.is_nil(code)
      assert.are.equal("SIGKILL", signal)
      assert.is_false(child.connected)
    end)

    it("mid-stream: what was read is kept, the stream ends, exit says SIGKILL", function()
      local child = spawn("yes", {"0123456789"}, {stdio = {"ignore", "pipe", "ignore"}})
      local got = assert(child.stdout:read())
      assert.is_true(#got > 0)
      child:kill("SIGKILL")
      local rest, total = child.stdout:read(), #got
      while rest do total = total + #rest; rest = child.stdout:read() end
      local code, signal = child:wait()
      assert.is_nil(code)
      assert.are.equal("SIGKILL", signal)
      assert.is_true(total > 0)
      child:close()
    end)

    it("while the parent is sending: send reports a closed channel, no crash", function()
      local child = assert(fork(script([[
        local parent = require("fork").parent
        parent:send("ready")
        require("lipc").sleep(60000)
      ]])))
      assert.are.equal("ready", child:receive())
      local big = ("x"):rep(1 << 20)
      local errors = 0
      child:on("error", function() errors = errors + 1 end)
      child:kill("SIGKILL")
      for _ = 1, 64 do
        if not child.connected then break end
        if not child:send(big) then child:drain() end
      end
      child:wait()
      assert.is_false(child.connected)
      local ok = child:send("late")
      assert.is_false(ok)
      assert.is_true(eventually(function() return errors >= 1 end, 1000))
    end)
  end)

  it("a child whose output is never read leaves no fd behind once closed", function()
    local fds = S.open_fds
    lipc.sleep(20)
    local before = fds()
    for _ = 1, 20 do
      local child = spawn("sh", {"-c", "echo unread; echo unread >&2"})
      child:wait()
      child:close()                                -- stdout, stderr unread
    end
    lipc.sleep(20)
    -- at most as many: closes left by earlier specs may finish meanwhile
    local after = fds()
    assert.is_true(after <= before, ("fds %d -> %d"):format(before, after))
  end)

  it("a TCP peer resetting mid-write: the writer gets ECONNRESET or EPIPE", function()
    local srv = assert(net.create_server():listen(0))
    local port = srv:address().port
    local client = assert(net.connect(port))
    local peer = assert(srv:accept())
    local err
    client:on("error", function(_, code) err = code end)
    local chunk = ("y"):rep(1 << 20)
    lipc.go(function()
      for _ = 1, 256 do
        if err or not client:write(chunk) then
          if err or not client:drain() then break end
        end
      end
    end)
    lipc.sleep(20)                                 -- the queue is full now
    peer:reset()
    assert.is_true(eventually(function() return err ~= nil end))
    assert.is_truthy(err == "ECONNRESET" or err == "EPIPE", err)
    client:close()
    srv:close()
  end)

  describe("a parent that dies", function()
    -- A lipc that forks a child (code), tells us the child's pid and is
    -- then killed with SIGKILL; returns the child's pid and the dir.
    local function orphan(child_code)
      local dir = S.tmpdir()
      S.write_file(dir .. "/child.lua", child_code)
      local parent = spawn(S.lipc, {S.write_file(dir .. "/parent.lua", [[
        local fork = require "fork"
        local child = assert(fork(arg[1]))
        local pid = child:receive()
        io.stdout:write(pid, "\n"); io.stdout:flush()
        require("lipc").sleep(60000)
      ]]), dir .. "/child.lua"}, {stdio = {"ignore", "pipe", "inherit"}})
      local pid = tonumber(parent.stdout:read())
      assert.is_number(pid)
      assert.is_true(alive(pid))
      parent:kill("SIGKILL")
      parent:wait()
      parent:close()
      return pid, dir
    end

    it("its forked children get disconnect and exit: no orphans left running", function()
      local pid = orphan([[
        local parent = require("fork").parent
        parent:send(require("lipc").pid)
        require("lipc").sleep(60000)           -- would run on without the rule
      ]])
      assert.is_true(eventually(function() return not alive(pid) end),
        "orphan " .. pid .. " still running")
    end)

    it("a child that said exit_on_disconnect = false lives on and decides", function()
      local pid, dir = orphan([[
        local lipc = require "lipc"
        local parent = require("fork").parent
        parent.exit_on_disconnect = false
        parent:send(lipc.pid)
        local t = lipc.set_interval(20, function()
          if not parent.connected then
            local f = io.open(arg[0]:gsub("child.lua$", "gone"), "w")
            f:write("disconnect seen\n"); f:close()
            lipc.exit(0)
          end
        end)
        t:ref()
      ]])
      assert.is_true(eventually(function() return not alive(pid) end))
      assert.are.equal("disconnect seen\n", S.read_file(dir .. "/gone"))
    end)
  end)

  it("EMFILE: accept errors are reported and accepting resumes once fds free up", function()
    local code = [[
      local lipc = require "lipc"
      local net = require "net"
      local errors = {}
      local served = 0
      local srv = net.create_server(function(sock)
        served = served + 1
        sock:write("hello"); sock:shutdown()
      end)
      srv:on("error", function(_, c) errors[#errors + 1] = c end)
      assert(srv:listen(0))
      local port = srv:address().port
      local files = {}
      while true do
        local f = io.open("/dev/null")
        if not f then break end
        files[#files + 1] = f
      end
      -- no fd at all: connecting fails, and says why
      local none, _, ncode = net.connect(port)
      print("connect", none, ncode)
      files[#files]:close(); files[#files] = nil    -- one fd: the client's
      -- the server cannot accept it: libuv's EMFILE trick (a reserved
      -- fd) accepts and closes it, so the client sees it end; without a
      -- reserved fd the server emits 'error' EMFILE. Either is reported.
      local c = net.connect(port)
      local got = c and c:read_all()
      lipc.sleep(50)
      print("dropped", got == "" or got == nil, errors[1] or "-")
      io.stderr:write("EMFILE: client read ", tostring(got), ", server error ", tostring(errors[1]), "\n")
      if c then c:close() end
      for _, f in ipairs(files) do f:close() end
      files = nil
      collectgarbage()
      for i = 1, 3 do
        local s = assert(net.connect(port))
        print("read", i, s:read_all())
        s:close()
      end
      print("served", served)
      srv:close()
    ]]
    local path = script(code)
    local out, status = S.sh(("(ulimit -n 64 && exec %s %s) 2>&1"):format(
      S.shell_quote(S.lipc), S.shell_quote(path)))
    S.check_sanitizers(out)
    assert.are.equal(0, status, out)
    assert.matches("connect\tnil\tEMFILE", out)
    assert.matches("dropped\ttrue\t", out)
    assert.matches("read\t3\thello", out)
    assert.matches("served\t3", out)
  end)

  describe("over a lossy, slow link (two network namespaces, veth, netem)", function()
    local function can_netns()
      local _, st = S.sh("command -v ip >/dev/null && command -v tc >/dev/null && " ..
                         "ip netns add lipc-probe-" .. lipc.pid .. " 2>/dev/null && " ..
                         "ip netns del lipc-probe-" .. lipc.pid)
      return st == 0
    end

    local function can_netem()
      local ns = "lipc-probe-" .. lipc.pid
      local cmd = ("ip netns add %s && ip netns exec %s ip link set lo up && " ..
                   "ip netns exec %s tc qdisc add dev lo root netem delay 1ms; " ..
                   "s=$?; ip netns del %s; exit $s"):format(ns, ns, ns, ns)
      local _, st = S.sh("(" .. cmd .. ") 2>/dev/null")
      return st == 0
    end

    local function over_link(netem)
      if not can_netns() then
        pending("needs root, ip netns and tc (iproute2): skipped")
        return
      end
      if netem and not can_netem() then
        pending("tc netem is not available in this kernel (sch_netem): skipped")
        return
      end
      local tag = ("lipc%d%04d"):format(lipc.pid % 100000, math.random(0, 9999))
      local na, nb = tag .. "a", tag .. "b"
      local ok, err = pcall(function()
        local setup = table.concat({
          "set -e",
          "ip netns add " .. na, "ip netns add " .. nb,
          ("ip link add %sx netns %s type veth peer name %sy netns %s"):format(tag, na, tag, nb),
          ("ip -n %s addr add 10.213.7.1/30 dev %sx"):format(na, tag),
          ("ip -n %s addr add 10.213.7.2/30 dev %sy"):format(nb, tag),
          ("ip -n %s link set %sx up"):format(na, tag),
          ("ip -n %s link set %sy up"):format(nb, tag),
          ("ip -n %s link set lo up"):format(na), ("ip -n %s link set lo up"):format(nb),
        }, "\n")
        if netem then
          setup = setup .. "\n" .. table.concat({
            ("ip netns exec %s tc qdisc add dev %sx root netem delay 5ms 2ms loss 2%%"):format(na, tag),
            ("ip netns exec %s tc qdisc add dev %sy root netem delay 5ms 2ms loss 2%%"):format(nb, tag),
          }, "\n")
        end
        local out, st = S.sh("(" .. setup .. ") 2>&1")
        assert(st == 0, "namespace setup failed: " .. out)
        local dir = S.tmpdir()
        local server = S.write_file(dir .. "/server.lua", [[
          local net = require "net"
          local srv = assert(net.create_server():listen(7000, "10.213.7.2"))
          io.stdout:write("listening\n"); io.stdout:flush()
          local sock = assert(srv:accept())
          local ch = sock:channel()
          local n = 0
          while true do
            local m = ch:receive()
            if m == nil or m.done then break end
            n = n + 1
            assert(m.seq == n, "out of order: " .. tostring(m.seq) .. " at " .. n)
            assert(#m.pad == m.seq % 3000, "corrupt")
          end
          ch:send({count = n})
          ch:drain()
          srv:close()
        ]])
        local client = S.write_file(dir .. "/client.lua", [[
          local net = require "net"
          local sock = assert(net.connect({host = "10.213.7.2", port = 7000, timeout = 10000}))
          local ch = sock:channel()
          local N = tonumber(arg[1])
          for i = 1, N do
            if not ch:send({seq = i, pad = ("p"):rep(i % 3000)}) then ch:drain() end
          end
          ch:send({done = true})
          print(ch:receive().count)
          ch:disconnect()
        ]])
        local srvp = spawn("ip", {"netns", "exec", nb, S.lipc, server},
                           {stdio = {"ignore", "pipe", "pipe"}})
        assert.are.equal("listening\n", srvp.stdout:read())
        local N = 3000
        local r = assert(spawn.run("ip", {"netns", "exec", na, S.lipc, client, tostring(N)},
                                   {timeout = 60000}))
        local serr = srvp.stderr:read_all()
        srvp:wait()
        srvp:close()
        S.check_sanitizers(r.stderr .. serr)
        assert.are.equal(0, r.code, r.stderr)
        assert.are.equal(N .. "\n", r.stdout)
        assert.are.equal(0, srvp.exit_code, serr)
      end)
      S.sh(("ip netns del %s; ip netns del %s"):format(na, nb))   -- finally
      assert.are.equal("", (S.sh("ip netns list | grep " .. tag .. " || true")))
      if not ok then error(err, 0) end
    end

    it("a message channel over TCP across a veth pair delivers everything, in order", function()
      over_link(false)
    end)

    it("the same with netem delay (5 ms +- 2) and 2% loss each way", function()
      over_link(true)
    end)
  end)
end)
