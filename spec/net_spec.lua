-- net_spec.lua - the `net` module: TCP servers and sockets on loopback.
-- Everything stays on 127.0.0.1 / ::1.
local lipc = require "lipc"
local net = require "net"
local support = require "support"

-- A server that echoes every chunk back, listening on a free port.
local function echo_server(opts)
  local srv = net.create_server(opts or {}, function(sock)
    sock:on("data", function(chunk) sock:write(chunk) end)
  end)
  assert(srv:listen(0))
  return srv, srv:address().port
end

local wait_for = support.wait_for

-- A port nothing listens on: taken from a server that then closes.
local function free_port()
  local srv = assert(net.create_server():listen(0))
  local port = srv:address().port
  srv:close()
  return port
end

local has_ipv6 = (function()
  local s = net.create_server()
  local ok = s:listen(0, "::1")
  s:close()
  return ok ~= nil
end)()

local function as_nobody(cmd)
  return ("setpriv --reuid=65534 --regid=65534 --clear-groups %s"):format(cmd)
end

describe("net", function()

  it("serves a client: connect in a task returns the connected socket", function()
    local srv, port = echo_server()
    local sock = assert(net.connect{host = "127.0.0.1", port = port})
    assert.is_true(sock:write("ping"))
    assert.equal("ping", sock:read())
    sock:close()
    srv:close()
  end)

  it("listens on loopback only when no host is named", function()
    local srv = assert(net.create_server():listen(0))
    local a = srv:address()
    assert.equal("127.0.0.1", a.address)
    assert.equal("IPv4", a.family)
    assert.is_true(a.port > 0)
    srv:close()
  end)

  it("listens on a named host and opts in the third argument", function()
    local srv = assert(net.create_server():listen(0, "127.0.0.1", {backlog = 16}))
    assert.equal("127.0.0.1", srv:address().address)
    srv:close()
    local srv2 = assert(net.create_server():listen(0, {backlog = 16}))
    assert.equal("127.0.0.1", srv2:address().address)
    srv2:close()
  end)

  it("resolves host names without blocking the loop", function()
    local srv = assert(net.create_server():listen(0, "localhost"))
    local port = srv:address().port
    local sock = assert(net.connect{host = "localhost", port = port})
    assert.equal("127.0.0.1", sock:remote_address())
    sock:close()
    srv:close()
  end)

  it("speaks IPv6 on ::1", function()
    if not has_ipv6 then return pending("no IPv6 loopback") end
    local srv = assert(net.create_server(function(sock)
      sock:write("six")
      sock:shutdown(function() sock:close() end)
    end)
      :listen(0, "::1", {ipv6_only = true}))
    local a = srv:address()
    assert.equal("::1", a.address)
    assert.equal("IPv6", a.family)
    local sock = assert(net.connect{host = "::1", port = a.port})
    assert.equal("IPv6", sock:remote_family())
    assert.equal("six", sock:read_all())
    sock:close()
    srv:close()
  end)

  it("emits listening, connection and close on the server", function()
    local seen = {}
    local srv = net.create_server()
    srv:on("listening", function() seen[#seen + 1] = "listening" end)
    srv:on("connection", function(sock) seen[#seen + 1] = "connection"; sock:close() end)
    srv:on("close", function() seen[#seen + 1] = "close" end)
    assert(srv:listen(0))
    assert.is_true(srv:listening())
    local c = assert(net.connect{port = srv:address().port})
    assert.is_nil(c:read())
    c:close()
    local closed = false
    srv:close(function() closed = true end)
    assert.is_true(wait_for(function() return closed end))
    assert.same({"listening", "connection", "close"}, seen)
  end)

  it("accept() in a task takes connections one at a time", function()
    local srv = assert(net.create_server():listen(0))
    local port = srv:address().port
    lipc.go(function()
      for i = 1, 2 do
        local c = assert(net.connect{port = port})
        c:write("client " .. i)
        c:shutdown()
        c:read_all()
        c:close()
      end
    end)
    for i = 1, 2 do
      local sock = assert(srv:accept())
      assert.equal("client " .. i, sock:read_all())
      sock:close()
    end
    srv:close()
  end)

  it("several tasks can wait in accept(): each connection goes to one; close wakes the rest", function()
    local srv = assert(net.create_server():listen(0))
    local port = srv:address().port
    local got, ended = {}, {}
    for w = 1, 3 do
      lipc.go(function()
        while true do
          local sock, _, code = srv:accept()
          if not sock then ended[#ended + 1] = code; return end
          got[#got + 1] = w .. ":" .. sock:read_all()
          sock:close()
        end
      end)
    end
    for i = 1, 6 do
      local c = assert(net.connect{port = port})
      c:write(tostring(i))
      c:shutdown()
      c:read_all()
      c:close()
    end
    assert.is_true(wait_for(function() return #got == 6 end))
    local seen, by = {}, {}
    for _, g in ipairs(got) do
      local w, v = g:match("^(%d):(%d)$")
      seen[#seen + 1] = tonumber(v)
      by[w] = true
    end
    table.sort(seen)
    assert.same({1, 2, 3, 4, 5, 6}, seen)           -- each exactly once
    assert.is_true(by["1"] and by["2"] and by["3"])  -- longest-waiting first
    srv:close()
    assert.is_true(wait_for(function() return #ended == 3 end))
    assert.same({"ECANCELED", "ECANCELED", "ECANCELED"}, ended)
  end)

  it("keeps connections for whoever takes them: a late once('connection')", function()
    local srv = assert(net.create_server():listen(0))
    local c = assert(net.connect{port = srv:address().port})
    lipc.sleep(20)                            -- arrived; nobody took it yet
    local sock
    assert.equal(srv, srv:once("connection", function(s) sock = s end))
    assert.is_true(wait_for(function() return sock ~= nil end))
    sock:close()
    c:close()
    srv:close()
  end)

  it("max_connections: connections over the limit are closed at once with 'drop', as Node", function()
    local held, drops = {}, {}
    local srv = net.create_server({max_connections = 2}, function(sock) held[#held + 1] = sock end)
    srv:on("drop", function(remote) drops[#drops + 1] = remote end)
    assert.are.equal(2, srv.max_connections)
    assert(srv:listen(0))
    local port = srv:address().port
    local clients = {}
    for i = 1, 3 do clients[i] = assert(net.connect({host = "127.0.0.1", port = port})) end
    -- the third is closed by the server: its client reads the end
    assert.is_nil(clients[3]:read())
    assert.are.equal(2, #held)
    assert.are.equal(1, #drops)
    assert.are.equal(clients[3]:address().port, drops[1].port)
    -- one closes: there is room for one more
    held[1]:close()
    assert.is_nil(clients[1]:read())
    clients[4] = assert(net.connect({host = "127.0.0.1", port = port}))
    assert.is_true(wait_for(function() return #held == 3 end, 5000))
    -- the field changes the limit, as Node's server.maxConnections
    srv.max_connections = 1
    clients[5] = assert(net.connect({host = "127.0.0.1", port = port}))
    assert.is_nil(clients[5]:read())
    assert.are.equal(2, #drops)
    srv.max_connections = 0                  -- 0: no limit, as Node
    clients[6] = assert(net.connect({host = "127.0.0.1", port = port}))
    assert.is_true(wait_for(function() return #held == 4 end, 5000))
    for _, c in pairs(clients) do c:close() end
    for _, c in ipairs(held) do c:close() end
    srv:close()
    assert.has_error(function() net.create_server({max_connections = -1}) end,
      "bad argument #1 to 'net.create_server' (opts.max_connections must be an integer >= 0)")
  end)

  it("max_connections applies to accept() in a task too", function()
    local srv = net.create_server({max_connections = 1})
    assert(srv:listen(0))
    local port = srv:address().port
    local a = assert(net.connect({host = "127.0.0.1", port = port}))
    local sa = assert(srv:accept())
    local dropped = 0
    srv:on("drop", function() dropped = dropped + 1 end)
    local b = assert(net.connect({host = "127.0.0.1", port = port}))
    local got
    lipc.go(function() got = srv:accept() end)
    assert.is_nil(b:read())                  -- dropped, and accept() still waits
    assert.are.equal(1, dropped)
    assert.is_nil(got)
    sa:close()
    local c = assert(net.connect({host = "127.0.0.1", port = port}))
    assert.is_true(wait_for(function() return got end, 5000))
    for _, s in ipairs({a, b, c, got}) do s:close() end
    srv:close()
  end)

  describe("Node's shape, wherever it is written", function()
    it("in a task, a 'connect' listener added right after connect() runs", function()
      local srv, port = echo_server()
      local client = assert(net.connect({port = port}))     -- waits: connected already
      local fired = false
      client:on("connect", function() fired = true end)
      assert.is_true(wait_for(function() return fired end, 5000))
      client:close()
      srv:close()
    end)

    it("net.connect(opts, on_connect) never waits: the socket at once, 'error' on failure", function()
      local srv, port = echo_server()
      local got
      local client = net.connect({port = port}, function() got = "connected" end)
      assert.is_true(client:state().open)
      assert.is_true(wait_for(function() return got end, 5000))
      client:close()
      local refused = net.connect(free_port(), "127.0.0.1", function() got = "wrong" end)
      local code
      refused:on("error", function(_, c) code = c end)
      assert.is_true(wait_for(function() return code end, 5000))
      assert.are.equal("ECONNREFUSED", code)
      assert.are.equal("connected", got)
      srv:close()
    end)

    it("a failed connect used as a socket names the connect's error", function()
      local _, err, status = support.run_lipc(([[
        local net = require "net"
        local client = net.connect({port = %d})
        client:on("connect", function() print("connected") end)
      ]]):format(free_port()))
      assert.are.equal(1, status)
      assert.matches("attempt to index a nil value (local 'client')", err, 1, true)
      assert.matches('returning nil, "ECONNREFUSED: connection refused', err, 1, true)
    end)
  end)

  it("connects outside a task: returns the socket, then emits connect", function()
    local srv, port = echo_server()
    local got = lipc.cond()
    local sock
    coroutine.wrap(function()
      assert.is_false(lipc.in_task())
      sock = net.connect{port = port}
      sock:on("connect", function()
        sock:on("data", function(d) got:signal(d) end)
        sock:write("outside")
      end)
    end)()
    assert.equal("outside", got:wait(2000))
    sock:close()
    srv:close()
  end)

  it("reports addresses and takes socket options", function()
    local srv, port = echo_server()
    local sock = assert(net.connect{port = port, local_address = "127.0.0.1"})
    assert.equal(port, sock:remote_port())
    assert.equal("127.0.0.1", sock:local_address())
    assert.is_true(sock:local_port() > 0)
    assert.same({address = "127.0.0.1", port = port, family = "IPv4"}, sock:remote())
    assert.equal(sock, sock:set_nodelay(false))
    assert.equal(sock, sock:set_keepalive(true, 30000))
    sock:close()
    srv:close()
  end)

  it("emits timeout after the socket is idle, and not while it is busy", function()
    local srv, port = echo_server()
    local sock = assert(net.connect{port = port})
    -- A loaded machine may stretch a pause of the busy loop past the
    -- timeout: that timeout is then due. What must never come is one
    -- after less idle time than asked (a 20 ms pause: ~20 ms).
    local IDLE, last, timeouts, early = 80, lipc.hrtime(), 0, {}
    sock:set_timeout(IDLE, function()
      timeouts = timeouts + 1
      local idle = (lipc.hrtime() - last) / 1e6
      if idle < IDLE - 20 then early[#early + 1] = idle end
    end)
    for _ = 1, 8 do                           -- busy for ~160 ms
      sock:write("x")
      assert.equal("x", sock:read())
      last = lipc.hrtime()
      lipc.sleep(20)
    end
    local busy = timeouts
    assert.is_true(wait_for(function() return timeouts == busy + 1 end, 1000))
    assert.same({}, early)                    -- not while it is busy
    lipc.sleep(200)
    assert.equal(busy + 1, timeouts)          -- once per idle period
    sock:set_timeout(0)
    sock:close()
    srv:close()
  end)

  it("half-closes with shutdown: the server still answers", function()
    local srv = assert(net.create_server({allow_half_open = true}, function(sock)
      local body = sock:read_all()
      sock:write("got " .. #body)
      sock:shutdown()
    end):listen(0))
    local sock = assert(net.connect{port = srv:address().port})
    sock:write(("x"):rep(1000))
    sock:shutdown()
    assert.equal("got 1000", sock:read_all())
    sock:close()
    srv:close()
  end)

  it("shares a port between servers with reuse_port", function()
    local a = assert(net.create_server():listen(0, {reuse_port = true}))
    local b = assert(net.create_server():listen(a:address().port, {reuse_port = true}))
    assert.equal(a:address().port, b:address().port)
    a:close()
    b:close()
  end)

  it("is reachable by an outside client (python3 socket)", function()
    local srv = assert(net.create_server(function(sock)
      local line = sock:lines()()
      sock:write("hello " .. line .. ", from lipc\n")
      sock:shutdown()
      sock:read_all()                         -- until python closes
      sock:close()
    end):listen(0))
    local dir = support.tmpdir()
    local py = ([[
import socket
s = socket.create_connection(("127.0.0.1", %d), timeout=5)
s.sendall(b"python\n")
data = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
open(%q, "wb").write(data)
]]):format(srv:address().port, dir .. "/out")
    support.write_file(dir .. "/client.py", py)
    os.execute(("python3 %s >/dev/null 2>&1 &"):format(dir .. "/client.py"))
    assert.is_true(wait_for(function()
      local f = io.open(dir .. "/out")
      if f then f:close() end
      return f ~= nil and #support.read_file(dir .. "/out") > 0
    end, 5000))
    assert.equal("hello python, from lipc\n", support.read_file(dir .. "/out"))
    srv:close()
  end)

  it("serves 1000 concurrent loopback connections and closes them all", function()
    local srv, port = echo_server({backlog = 1024})
    local done, ok = 0, 0
    local all = lipc.cond()
    for i = 1, 1000 do
      lipc.go(function()
        local sock, err = net.connect{port = port}
        if sock then
          local msg = "n" .. i
          sock:write(msg)
          if sock:read() == msg then ok = ok + 1 end
          sock:close()
        else
          io.stderr:write("connect failed: ", tostring(err), "\n")
        end
        done = done + 1
        if done == 1000 then all:signal() end
      end)
    end
    if done < 1000 then all:wait(20000) end
    assert.equal(1000, ok)
    srv:close()
    assert.is_true(wait_for(function() return #lipc.handles() < 20 end, 5000))
  end)

  it("keeps a client that never reads from growing the server's memory", function()
    local chunk = ("x"):rep(64 * 1024)
    local result = lipc.cond()
    local srv = assert(net.create_server(function(sock)
      local n = 0
      while sock:write(chunk) do
        n = n + 1
        if n > 4000 then break end            -- 256 MB: backpressure failed
      end
      local st = sock:state()
      local drained = false
      lipc.go(function() drained = sock:drain() ~= nil end)
      lipc.sleep(100)
      result:signal(n, st.queued, st.high_water, drained)
      sock:close()
    end):listen(0))
    local client = assert(net.connect{port = srv:address().port})
    local n, queued, hwm, drained = result:wait(10000)
    assert.is_true(n <= 4000, "write never returned false")
    assert.is_true(queued <= hwm + #chunk)
    assert.is_false(drained)                  -- drain waits while nobody reads
    client:close()
    srv:close()
  end)

  describe("scripts", function()
    local function script(name) return support.root .. "/scripts/" .. name end

    it("tcp_server.lua and tcp_client.lua exchange greetings", function()
      local dir = support.tmpdir()
      os.execute(("%s %s 0 2 >%s/srv 2>&1 &"):format(support.lipc,
        script("tcp_server.lua"), dir))
      local port
      assert.is_true(wait_for(function()
        local f = io.open(dir .. "/srv")
        port = f and f:read("a"):match("listening on (%d+)")
        if f then f:close() end
        return port ~= nil
      end, 5000))
      for _, name in ipairs({"alice", "bob"}) do
        local out, status = support.sh(("%s %s %s %s"):format(support.lipc,
          script("tcp_client.lua"), port, name))
        assert.equal(0, status)
        assert.equal("hello " .. name .. ", I am the server\n", out)
      end
      assert.is_true(wait_for(function()
        return support.read_file(dir .. "/srv"):find("greeted bob") ~= nil
      end, 5000))
    end)

    it("two_hosts.lua plays ping/pong both ways over loopback", function()
      local out, status = support.sh(support.lipc .. " " .. script("two_hosts.lua") .. " 2>&1")
      assert.equal(0, status)
      assert.matches("A %-> B: ping 3, pong 3 from B", out)
      assert.matches("B %-> A: ping 3, pong 3 from A", out)
    end)
  end)

  describe("failures", function()
    it("EADDRINUSE: listen returns nil, msg, code and closes the server", function()
      local a = assert(net.create_server():listen(0))
      local b = net.create_server()
      local closed = false
      b:on("close", function() closed = true end)
      local ok, msg, code = b:listen(a:address().port)
      assert.is_nil(ok)
      assert.equal("EADDRINUSE", code)
      assert.matches("^EADDRINUSE: address already in use %(127%.0%.0%.1:%d+%)$", msg)
      assert.is_true(wait_for(function() return closed end))
      a:close()
    end)

    it("EADDRINUSE in a task: an 'error' listener added after listen() hears it (Node's shape)", function()
      local a = assert(net.create_server():listen(0))
      local b = net.create_server()
      b:listen(a:address().port)
      local code
      b:on("error", function(_, c) code = c end)
      assert.is_true(wait_for(function() return code end, 5000))
      assert.are.equal("EADDRINUSE", code)
      a:close()
    end)

    it("EADDRINUSE: emits error when somebody listens for it", function()
      local a = assert(net.create_server():listen(0))
      local b = net.create_server()
      local got = lipc.cond()
      b:on("error", function(msg, code) got:signal(msg, code) end)
      assert.is_nil(b:listen(a:address().port))
      local _, code = got:wait(2000)
      assert.equal("EADDRINUSE", code)
      a:close()
    end)

    it("EADDRINUSE outside a task: emits error", function()
      local a = assert(net.create_server():listen(0))
      local got = lipc.cond()
      coroutine.wrap(function()
        local b = net.create_server()
        assert.is_nil(b:listen(a:address().port))
        b:on("error", function(_, code) got:signal(code) end)   -- after the call
      end)()
      assert.equal("EADDRINUSE", got:wait(2000))
      a:close()
    end)

    it("ECONNREFUSED: connect returns nil, msg, code", function()
      local port = free_port()
      local sock, msg, code = net.connect{host = "127.0.0.1", port = port}
      assert.is_nil(sock)
      assert.equal("ECONNREFUSED", code)
      assert.equal(("ECONNREFUSED: connection refused (127.0.0.1:%d)"):format(port), msg)
    end)

    it("outside a task, what is written while connecting waits for the connection", function()
      local got = lipc.cond()
      local srv = net.create_server(function(c) got:signal(c:read_all()); c:close() end)
      assert(srv:listen(0, "127.0.0.1"))
      local port = srv:address().port
      local sock, cb_err = nil, "not called"
      coroutine.wrap(function()             -- not a lipc task: connect returns at once
        sock = net.connect{host = "127.1", port = port}   -- a name: no socket until resolved
        assert.is_true(sock:write("hello "))
        assert.is_true(sock:write({"wor", "ld"}, function(err) cb_err = err end))
        sock:shutdown()
      end)()
      assert.equal("hello world", got:wait(5000))
      assert.is_nil(cb_err)
      sock:close()
      srv:close()
    end)

    it("outside a task, writes made while connecting fail with the connect's error", function()
      local port = free_port()
      local errs, cbs = {}, {}
      coroutine.wrap(function()
        local sock = net.connect{host = "127.1", port = port}
        sock:on("error", function(_, code) errs[#errs + 1] = code end)
        sock:write("x", function(_, code) cbs[#cbs + 1] = code end)
      end)()
      assert.is_true(wait_for(function() return #cbs == 1 end, 5000))
      lipc.sleep(10)
      assert.are.same({"ECONNREFUSED"}, errs)          -- one error, the connect's
      assert.are.same({"ECONNREFUSED"}, cbs)
    end)

    it("ECONNREFUSED outside a task: the socket emits error", function()
      local port = free_port()
      local got = lipc.cond()
      coroutine.wrap(function()
        local sock = net.connect{port = port}
        sock:on("error", function(_, code) got:signal(code) end)
      end)()
      assert.equal("ECONNREFUSED", got:wait(2000))
    end)

    it("EACCES: an unprivileged user cannot listen on port 80", function()
      local dir = support.tmpdir()
      os.execute("chmod 755 " .. dir)
      support.write_file(dir .. "/main.lua", [[
        local net = require "net"
        local ok, msg, code = net.create_server():listen(80)
        print(ok, code, msg)
      ]])
      local cmd = support.lipc .. " " .. dir .. "/main.lua"
      local running_as_root = support.sh("id -u") == "0\n"
      local out = support.sh(running_as_root and as_nobody(cmd) or cmd)
      assert.matches("^nil\tEACCES\tEACCES: permission denied %(127%.0%.0%.1:80%)", out)
    end)

    it("ETIMEDOUT: connect gives up after timeout", function()
      -- A server that never accepts, with a backlog of 1: once the kernel's
      -- accept queue is full it drops new SYNs, so the next connect hangs.
      local srv = assert(net.create_server():listen(0, {backlog = 1}))
      local port, socks, code = srv:address().port, {}, nil
      for _ = 1, 20 do
        local t0 = lipc.hrtime()
        local sock, _, c = net.connect{port = port, timeout = 150}
        if not sock then
          code = c
          assert.is_true(lipc.hrtime() - t0 >= 140e6)
          break
        end
        socks[#socks + 1] = sock
      end
      assert.equal("ETIMEDOUT", code)
      for _, s in ipairs(socks) do s:close() end
      srv:close()
    end)

    it("connect's timeout counts from the call, however long Lua ran in that loop turn", function()
      local srv = assert(net.create_server():listen(0, {backlog = 1}))
      local port, socks = srv:address().port, {}
      for _ = 1, 20 do                        -- fill the accept queue
        local sock = net.connect{port = port, timeout = 150}
        if not sock then break end
        socks[#socks + 1] = sock
      end
      local t0 = lipc.hrtime()
      while lipc.hrtime() - t0 < 100e6 do end -- the loop's clock stays behind
      local t1 = lipc.hrtime()
      local sock, _, code = net.connect{port = port, timeout = 150}
      local ms = (lipc.hrtime() - t1) / 1e6
      assert.is_nil(sock)
      assert.equal("ETIMEDOUT", code)
      assert.is_true(ms >= 145, ms)
      for _, s in ipairs(socks) do s:close() end
      srv:close()
    end)

    it("ECONNRESET: a peer reset mid-write is an error event, not a crash", function()
      local srv = assert(net.create_server(function(sock)
        sock:read()
        sock:reset()                          -- SO_LINGER 0: RST
      end):listen(0))
      local sock = assert(net.connect{port = srv:address().port})
      local got = lipc.cond()
      sock:on("error", function(_, code) got:signal(code) end)
      sock:on("data", function() end)
      local chunk = ("y"):rep(64 * 1024)
      lipc.go(function()
        for _ = 1, 2000 do
          if not sock:state().open then break end
          if sock:write(chunk) == false then sock:drain() end
        end
      end)
      local code = got:wait(5000)
      assert.is_truthy(code == "ECONNRESET" or code == "EPIPE", tostring(code))
      assert.is_true(wait_for(function() return not sock:state().open end))
      srv:close()
    end)

    it("raises on bad argument types, naming the function", function()
      local srv = net.create_server()
      assert.has_error(function() srv:listen("80") end,
        "bad argument #1 to 'net.server.listen' (port must be an integer, got string)")
      assert.has_error(function() srv:listen(70000) end)
      assert.has_error(function() srv:listen(0, 42) end)
      assert.has_error(function() net.connect("x") end)
      assert.has_error(function() net.connect{port = "x"} end)
      assert.has_error(function() net.connect{port = 1, timeout = "soon"} end)
      assert.has_error(function() net.create_server(42) end)
      assert.has_error(function() srv:accept() end)
      srv:close()
      assert.error_matches(function() net.connect(true) end, "net.connect")
    end)
  end)
end)
