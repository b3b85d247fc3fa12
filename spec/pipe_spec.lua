-- pipe_spec.lua - the `pipe` module: Unix domain sockets, FIFOs and
-- anonymous pipes. Paths live in support.tmpdir() only.
local lipc = require "lipc"
local pipe = require "pipe"
local support = require "support"

local wait_for = support.wait_for

local function mode_of(path)
  return (support.sh("stat -c %a " .. support.shell_quote(path)):gsub("%s+$", ""))
end

local function exists(path)
  return (support.sh("test -e " .. support.shell_quote(path) .. " && echo yes")) == "yes\n"
end

local function greeter()
  return pipe.create_server(function(sock)
    sock:write("hi " .. (sock:read() or "?"))
    sock:shutdown(function() sock:close() end)
  end)
end

describe("pipe", function()

  describe("Unix sockets", function()
    it("serve a client; connect in a task returns the socket", function()
      local path = support.tmpdir() .. "/s.sock"
      local srv = assert(greeter():listen(path))
      assert.equal(path, srv:address())
      local sock = assert(pipe.connect(path))
      sock:write("bob")
      assert.equal("hi bob", sock:read_all())
      sock:close()
      srv:close()
    end)

    it("Node's shape: 'connect' after connect() in a task; connect(path, fn) never waits", function()
      local path = support.tmpdir() .. "/s.sock"
      local srv = assert(greeter():listen(path))
      local sock = assert(pipe.connect(path))
      local fired, got = false, nil
      sock:on("connect", function() fired = true end)
      assert.is_true(support.wait_for(function() return fired end, 5000))
      sock:close()
      local s2 = pipe.connect(path, function() got = "connected" end)
      assert.is_true(support.wait_for(function() return got end, 5000))
      s2:close()
      local code
      local s3 = pipe.connect(path .. ".none", function() got = "wrong" end)
      s3:on("error", function(_, c) code = c end)
      assert.is_true(support.wait_for(function() return code end, 5000))
      assert.are.equal("ENOENT", code)
      assert.are.equal("connected", got)
      srv:close()
    end)

    it("create the socket file owner-only (0600) unless mode says otherwise", function()
      local dir = support.tmpdir()
      local a = assert(pipe.create_server():listen(dir .. "/a.sock"))
      assert.equal("600", mode_of(dir .. "/a.sock"))
      local b = assert(pipe.create_server():listen(dir .. "/b.sock", {mode = "0660", backlog = 8}))
      assert.equal("660", mode_of(dir .. "/b.sock"))
      a:close()
      b:close()
    end)

    it("remove the socket file they created when closed", function()
      local path = support.tmpdir() .. "/s.sock"
      local srv = assert(pipe.create_server():listen(path))
      assert.is_true(exists(path))
      local closed = false
      srv:close(function() closed = true end)
      assert.is_true(wait_for(function() return closed end))
      assert.is_false(exists(path))
    end)

    it("replace a stale socket file nobody answers on", function()
      local path = support.tmpdir() .. "/s.sock"
      -- A dead server's leftover: a socket file with no listener.
      support.sh(("python3 -c 'import socket; s=socket.socket(socket.AF_UNIX); s.bind(%q)'")
        :format(path))
      assert.is_true(exists(path))
      local srv = assert(greeter():listen(path))
      local sock = assert(pipe.connect(path))
      sock:write("again")
      assert.equal("hi again", sock:read_all())
      sock:close()
      srv:close()
    end)

    it("EADDRINUSE: do not take over a socket a live server answers on", function()
      local path = support.tmpdir() .. "/s.sock"
      local a = assert(pipe.create_server():listen(path))
      local ok, msg, code = pipe.create_server():listen(path)
      assert.is_nil(ok)
      assert.equal("EADDRINUSE", code)
      assert.equal("EADDRINUSE: address already in use (" .. path .. ")", msg)
      a:close()
    end)

    it("EADDRINUSE: never remove a file that is not a socket", function()
      local path = support.write_file(support.tmpdir() .. "/data", "keep me")
      local ok, _, code = pipe.create_server():listen(path)
      assert.is_nil(ok)
      assert.equal("EADDRINUSE", code)
      assert.equal("keep me", support.read_file(path))
    end)

    it("ENOENT: connect to a path nobody listens on", function()
      local path = support.tmpdir() .. "/none.sock"
      local sock, msg, code = pipe.connect(path)
      assert.is_nil(sock)
      assert.equal("ENOENT", code)
      assert.equal("ENOENT: no such file or directory (" .. path .. ")", msg)
    end)

    it("ENOENT outside a task: the socket emits error once; writes give nil, msg, code", function()
      local path = support.tmpdir() .. "/nobody"
      local codes, w = {}, nil
      coroutine.wrap(function()
        local sock = pipe.connect(path)
        sock:on("error", function(_, code) codes[#codes + 1] = code end)
        w = table.pack(sock:write("x"))
      end)()
      assert.is_true(wait_for(function() return #codes > 0 end))
      lipc.sleep(10)
      assert.same({"ENOENT"}, codes)
      assert.same({n = 3, nil, "ENOENT: no such file or directory (" .. path .. ")", "ENOENT"}, w)
    end)

    it("connect outside a task emits connect", function()
      local path = support.tmpdir() .. "/s.sock"
      local srv = assert(greeter():listen(path))
      local got = lipc.cond()
      coroutine.wrap(function()
        local sock = pipe.connect(path)
        sock:on("connect", function()
          sock:write("ev")
          got:signal(sock:read_all())
          sock:close()
        end)
      end)()
      assert.equal("hi ev", got:wait(2000))
      srv:close()
    end)

    it("ENAMETOOLONG: a path over the platform limit is an error, not truncated", function()
      local path = support.tmpdir() .. "/" .. ("x"):rep(120)
      local ok, msg, code = pipe.create_server():listen(path)
      assert.is_nil(ok)
      assert.equal("ENAMETOOLONG", code)
      assert.matches("the limit is 107", msg)
      local s, _, c = pipe.connect(path)
      assert.is_nil(s)
      assert.equal("ENAMETOOLONG", c)
      assert.is_false(exists(path:sub(1, 107)))
    end)

    it("EACCES: another user cannot connect to a 0600 socket", function()
      if support.sh("id -u") ~= "0\n" then return pending("needs root to switch user") end
      local dir = support.tmpdir()
      os.execute("chmod 755 " .. dir)
      local path = dir .. "/s.sock"
      local srv = assert(pipe.create_server():listen(path))
      support.write_file(dir .. "/main.lua", ([[
        local sock, msg, code = require("pipe").connect(%q)
        print(sock, code)
      ]]):format(path))
      local out = support.sh(("setpriv --reuid=65534 --regid=65534 --clear-groups %s %s")
        :format(support.lipc, dir .. "/main.lua"))
      assert.equal("nil\tEACCES\n", out)
      srv:close()
    end)

    it("are reachable by an outside client (socat)", function()
      local dir = support.tmpdir()
      local path = dir .. "/s.sock"
      local srv = assert(pipe.create_server(function(sock)
        local line = sock:lines()()
        sock:write("hello " .. line .. ", from lipc\n")
        sock:shutdown()
        sock:read_all()
        sock:close()
      end):listen(path))
      os.execute(("printf 'socat\\n' | socat -t 5 - UNIX-CONNECT:%s >%s/out 2>&1 &"):format(path, dir))
      assert.is_true(wait_for(function()
        local f = io.open(dir .. "/out")
        local text = f and f:read("a")
        if f then f:close() end
        return text == "hello socat, from lipc\n"
      end, 5000))
      srv:close()
    end)

    it("use Linux abstract names", function()
      local name = "\0lipc-spec-" .. lipc.pid
      local srv = assert(greeter():listen(name))
      assert.equal(name, srv:address())
      local sock = assert(pipe.connect(name))
      sock:write("abstract")
      assert.equal("hi abstract", sock:read_all())
      sock:close()
      srv:close()
    end)

    it("accept() in a task; listening, connection and close events", function()
      local path = support.tmpdir() .. "/s.sock"
      local seen = {}
      local srv = pipe.create_server()
      srv:on("listening", function() seen[#seen + 1] = "listening" end)
      srv:on("close", function() seen[#seen + 1] = "close" end)
      assert(srv:listen(path))
      lipc.go(function()
        local c = assert(pipe.connect(path))
        c:write("via accept")
        c:shutdown()
        c:read_all()
        c:close()
      end)
      local sock = assert(srv:accept())
      assert.equal("via accept", sock:read_all())
      sock:close()
      srv:on("connection", function() seen[#seen + 1] = "connection" end)
      srv:close()
      assert.is_true(wait_for(function() return #seen == 2 end))
      assert.same({"listening", "close"}, seen)
    end)

    it("raise on bad argument types, naming the function", function()
      assert.has_error(function() pipe.connect(42) end,
        "bad argument #1 to 'pipe.connect' (path must be a string, got number)")
      local srv = pipe.create_server()
      assert.has_error(function() srv:listen({}) end)
      assert.has_error(function() srv:listen("/x", {mode = "rw"}) end)
      srv:close()
      assert.has_error(function() pipe.mkfifo() end)
      assert.has_error(function() pipe.open("/x", "rw") end)
    end)
  end)

  describe("scripts", function()
    local function script(name) return support.root .. "/scripts/" .. name end

    it("fifo_writer.lua and fifo_reader.lua talk through a named pipe", function()
      local dir = support.tmpdir()
      local fifo = dir .. "/f"
      os.execute(("%s %s %s >%s/out 2>&1 &"):format(support.lipc,
        script("fifo_reader.lua"), fifo, dir))
      local _, status = support.sh(("%s %s %s one two 2>/dev/null"):format(support.lipc,
        script("fifo_writer.lua"), fifo))
      assert.equal(0, status)
      assert.is_true(wait_for(function()
        local f = io.open(dir .. "/out")
        local text = f and f:read("a")
        if f then f:close() end
        return text == "read: one\nread: two\n"
      end, 5000))
    end)

    it("pubsub_hub.lua forwards messages to subscribers of a topic", function()
      local path = support.tmpdir() .. "/hub.sock"
      local out, status = support.sh(("%s %s %s 2>&1"):format(support.lipc,
        script("pubsub_hub.lua"), path))
      assert.equal(0, status)
      assert.matches("alice got: news lipc 1.0 released | news pipes are fast", out, 1, true)
      assert.matches("bob got: weather sunny\n", out, 1, true)
      assert.is_false(exists(path))
    end)
  end)

  describe("FIFOs", function()
    it("mkfifo makes a named pipe with an exact mode", function()
      local path = support.tmpdir() .. "/f"
      assert.is_true(pipe.mkfifo(path))
      assert.equal("600", mode_of(path))
      assert.equal("fifo", support.sh("stat -c %F " .. path):match("fifo"))
      local ok, _, code = pipe.mkfifo(path)
      assert.is_nil(ok)
      assert.equal("EEXIST", code)
      assert.is_true(pipe.mkfifo(path .. "2", "0640"))
      assert.equal("640", mode_of(path .. "2"))
    end)

    it("open in a task emits 'open' too, for a listener added after the call", function()
      local path = support.tmpdir() .. "/f"
      assert(pipe.mkfifo(path))
      local r = assert(pipe.open(path, "r"))
      local opened = {}
      r:on("open", function() opened[#opened + 1] = "r" end)
      local w = assert(pipe.open(path, "w"))
      w:on("open", function() opened[#opened + 1] = "w" end)
      assert.is_true(support.wait_for(function() return #opened == 2 end, 5000))
      w:close()
      r:close()
    end)

    it("open for writing waits for a reader without blocking the loop", function()
      local path = support.tmpdir() .. "/f"
      assert(pipe.mkfifo(path))
      local ticks, opened = 0, false
      local ticker = lipc.set_interval(5, function() ticks = ticks + 1 end)
      lipc.go(function()
        local w = assert(pipe.open(path, "w"))
        opened = true
        w:write("line 1\nline 2\n")
        w:close()
      end)
      assert.is_true(wait_for(function() return ticks >= 3 end))  -- the loop runs
      assert.is_false(opened)                 -- while open() waits for a reader
      local r = assert(pipe.open(path, "r"))
      local lines = {}
      for line in r:lines() do lines[#lines + 1] = line end
      assert.same({"line 1", "line 2"}, lines)
      assert.is_true(opened)
      r:close()
      ticker:stop()
    end)

    it("a reader sees data while a writer writes and end when it goes", function()
      local path = support.tmpdir() .. "/f"
      assert(pipe.mkfifo(path))
      local r = assert(pipe.open(path, "r"))  -- no writer yet: opens at once
      local chunks, ended = {}, false
      r:on("data", function(d) chunks[#chunks + 1] = d end)
      r:on("end", function() ended = true end)
      lipc.sleep(20)
      assert.is_false(ended)                  -- no writer yet is not the end
      local w = assert(pipe.open(path, "w"))
      w:write("abc")
      assert.is_true(wait_for(function() return #chunks > 0 end))
      w:close()
      assert.is_true(wait_for(function() return ended end))
      assert.equal("abc", table.concat(chunks))
      r:close()
    end)

    it("open outside a task returns the stream and emits open", function()
      local path = support.tmpdir() .. "/f"
      assert(pipe.mkfifo(path))
      local got = lipc.cond()
      local w
      coroutine.wrap(function()
        w = pipe.open(path, "w")
        w:on("open", function() w:write("later"); w:close(); got:signal(true) end)
      end)()
      local r = assert(pipe.open(path, "r"))
      assert.is_true(got:wait(2000))
      assert.equal("later", r:read_all())
      r:close()
    end)

    it("outside a task, what is written before a reader comes waits for it", function()
      local path = support.tmpdir() .. "/f"
      assert(pipe.mkfifo(path))
      local w, done = nil, "not called"
      coroutine.wrap(function()
        w = pipe.open(path, "w")
        assert.is_true(w:write("written "))
        assert.is_true(w:write("early", function(err) done = err end))
        w:shutdown()                            -- ends the FIFO after them
      end)()
      lipc.sleep(20)
      local r = assert(pipe.open(path, "r"))
      assert.equal("written early", r:read_all())
      assert.is_nil(done)
      r:close()
      w:close()
    end)

    it("closing a writer that still waits for a reader ends the wait", function()
      local path = support.tmpdir() .. "/f"
      assert(pipe.mkfifo(path))
      local w, code
      coroutine.wrap(function()
        w = pipe.open(path, "w")
        w:write("never", function(_, c) code = c end)
      end)()
      lipc.sleep(10)
      w:close()
      lipc.sleep(50)
      assert.equal("ECANCELED", code)           -- the write that waited
    end)

    it("ENOENT and not-a-FIFO are errors", function()
      local dir = support.tmpdir()
      local s, _, code = pipe.open(dir .. "/none", "r")
      assert.is_nil(s)
      assert.equal("ENOENT", code)
      support.write_file(dir .. "/file", "x")
      local s2, msg = pipe.open(dir .. "/file", "r")
      assert.is_nil(s2)
      assert.matches("not a FIFO", msg)
    end)
  end)

  describe("anonymous pipes", function()
    it("new() gives a reader and a writer", function()
      local r, w = pipe.new()
      assert.is_true(w:write("through"))
      w:close()
      assert.equal("through", r:read_all())
      r:close()
    end)

    it("are close-on-exec", function()
      local r, w = pipe.new()
      local fd = w:fileno()
      local out = support.sh("ls /proc/self/fd/ | tr '\\n' ' '")
      assert.is_nil((" " .. out):find(" " .. fd .. " ", 1, true))
      r:close()
      w:close()
    end)
  end)
end)
