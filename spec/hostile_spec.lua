-- hostile_spec.lua - hostile input (issue #7): a peer sending frames that
-- lie about their length, values nested or counted beyond reason, bytes
-- that are not what their type says; callers passing NUL bytes and
-- absurd numbers. Each gets a clear error; the process and its other
-- channels live on.
local lipc = require "lipc"
local fork = require "fork"
local spawn = require "spawn"
local pipe = require "pipe"
local net = require "net"
local S = require "support"

local be32, raw_pair = S.be32, S.raw_channel

-- Another channel pair, to show that it still works after the other broke.
local bystander = S.channel_pair

-- Sends bytes to a fresh channel: the receive() result, with a bystander
-- channel checked before and after.
local function hostile(bytes, opts)
  local x, y = bystander()
  local ch, raw = raw_pair(opts)
  raw:write(bytes)
  local r = table.pack(ch:receive())
  assert.is_false(ch.connected)
  x:send({still = "alive"})
  assert.are.same({still = "alive"}, y:receive())
  raw:close()
  ch:close()
  x:disconnect()
  y:disconnect()
  return table.unpack(r, 1, r.n)
end

local function rss_kib()
  local s = S.read_file("/proc/self/status")
  return tonumber(s:match("VmRSS:%s+(%d+)"))
end

describe("hostile input", function()

  describe("to a channel", function()
    it("a frame claiming 2^32-1 bytes is over max_message: ERR_IPC_MESSAGE_TOO_LARGE", function()
      local msg, code = select(2, hostile(be32(0xffffffff) .. "\xc0"))
      assert.are.equal("ERR_IPC_MESSAGE_TOO_LARGE", code)
      assert.matches("incoming frame of 4294967295 bytes is over max_message", msg)
    end)

    it("a length claim under a huge max_message allocates only what arrives", function()
      local ch, raw = raw_pair({max_message = 0xfffffffc})
      local before = rss_kib()
      raw:write(be32(0xfffffff0) .. ("x"):rep(100000))
      lipc.sleep(50)
      assert.is_true(ch.connected)              -- still waiting for the rest
      assert.is_true(rss_kib() - before < 16 * 1024, "RSS grew by a claim")
      raw:close()
      assert.is_nil(ch:receive())
      ch:close()
    end)

    it("a zero-length frame is a bad message, not a hang", function()
      local _, msg, code = hostile(be32(0) .. be32(1) .. "\xc0")
      assert.are.equal("ERR_IPC_BAD_MESSAGE", code)
      assert.matches("truncated value", msg)
    end)

    it("nesting deeper than 128 is refused", function()
      local body = ("\x91"):rep(200) .. "\xc0"
      local _, msg, code = hostile(be32(#body) .. body)
      assert.are.equal("ERR_IPC_BAD_MESSAGE", code)
      assert.matches("nested deeper than 128", msg)
    end)

    it("deep maps are refused too", function()
      local body = ("\x81\xa1k"):rep(200) .. "\xc0"
      local _, msg, code = hostile(be32(#body) .. body)
      assert.are.equal("ERR_IPC_BAD_MESSAGE", code)
      assert.matches("nested deeper than 128", msg)
    end)

    for _, case in ipairs({
      {"array32 of 2^32-1 items", "\xdd\xff\xff\xff\xff"},
      {"map32 of 2^32-1 pairs", "\xdf\xff\xff\xff\xff"},
      {"str32 of 2^32-1 bytes", "\xdb\xff\xff\xff\xff"},
      {"bin32 of 2^32-1 bytes", "\xc6\xff\xff\xff\xff"},
    }) do
      it("a claimed " .. case[1] .. " with no bytes behind it is refused", function()
        local _, msg, code = hostile(be32(#case[2]) .. case[2])
        assert.are.equal("ERR_IPC_BAD_MESSAGE", code)
        assert.matches("bad message from peer", msg)
      end)
    end

    it("invalid UTF-8 in a str is refused", function()
      local body = "\xa3\xff\xfe\x41"
      local _, msg, code = hostile(be32(#body) .. body)
      assert.are.equal("ERR_IPC_BAD_MESSAGE", code)
      assert.matches("str is not valid UTF%-8", msg)
    end)

    it("an unknown ext type is refused", function()
      local body = "\xd4\x7f\x00"
      local _, msg, code = hostile(be32(#body) .. body)
      assert.are.equal("ERR_IPC_BAD_MESSAGE", code)
      assert.matches("unknown ext type 127", msg)
    end)

    it("a handle marker with no handle delivers the value and a nil handle", function()
      local ch, raw = raw_pair()
      local body = "\xd4\x01\x02\xa2hi"
      raw:write(be32(#body) .. body)
      local msg, handle = ch:receive()
      assert.are.equal("hi", msg)
      assert.is_nil(handle)
      assert.is_true(ch.connected)
      raw:close()
      ch:close()
    end)

    it("JSON lines: a number too large for an integer stays a float", function()
      local ch, raw = raw_pair({serialization = "json"})
      raw:write("1e400\n-1e400\n1e300\n")
      local a, b, c = ch:receive(), ch:receive(), ch:receive()
      assert.are.equal(math.huge, a)
      assert.are.equal(-math.huge, b)
      assert.are.equal("float", math.type(c))
      raw:close()
      ch:close()
    end)

    it("JSON lines: a line that is not JSON is refused", function()
      local _, msg, code = hostile("{not json\n", {serialization = "json"})
      assert.are.equal("ERR_IPC_BAD_MESSAGE", code)
      assert.matches("bad JSON message", msg)
    end)

    it("JSON lines: a line over max_message is refused before its newline", function()
      local _, msg, code = hostile(("x"):rep(5000), {serialization = "json", max_message = 1000})
      assert.are.equal("ERR_IPC_MESSAGE_TOO_LARGE", code)
      assert.matches("over max_message", msg)
    end)
  end)

  describe("to the API", function()
    it("a NUL byte in a Unix socket path is EINVAL, for listen and connect", function()
      local srv = pipe.create_server(function() end)
      local ok, msg, code = srv:listen("/tmp/lipc-spec\0evil")
      assert.is_nil(ok)
      assert.are.equal("EINVAL", code)
      assert.matches("EINVAL", msg)
      srv:close()
      local sock, _, code2 = pipe.connect("/tmp/lipc-spec\0evil")
      assert.is_nil(sock)
      assert.are.equal("EINVAL", code2)
    end)

    it("a NUL byte in argv is refused", function()
      assert.has_error(function() spawn("true", {"a\0b"}) end,
        "bad argument #2 to 'spawn' (args[1] contains a zero byte)")
    end)

    it("a NUL byte in the program name is refused", function()
      local ok, err = pcall(spawn, "tr\0ue", {})
      assert.is_false(ok)
      assert.matches("without zero bytes", err)
    end)

    it("a NUL byte in an env value is refused, not cut short", function()
      local ok, err = pcall(spawn, "true", {}, {env = {A = "x\0y"}})
      assert.is_false(ok)
      assert.matches("opts.env.A contains a zero byte", err)
    end)

    it("a NUL byte or '=' in an env name is refused", function()
      for _, k in ipairs({"A\0B", "A=B", ""}) do
        local ok, err = pcall(spawn, "true", {}, {env = {[k] = "x"}})
        assert.is_false(ok)
        assert.matches("opts.env keys must be variable names", err)
      end
    end)

    it("a NUL byte in cwd is refused", function()
      local ok, err = pcall(spawn, "true", {}, {cwd = "/tmp\0/etc"})
      assert.is_false(ok)
      assert.matches("opts.cwd contains a zero byte", err)
    end)

    it("negative and enormous spawn numbers are refused", function()
      for _, opts in ipairs({{timeout = -1}, {timeout = 1e300}, {timeout = 0 / 0},
                             {uid = -5}, {gid = 2 ^ 40}, {uid = 1.5}, {kill_signal = -9},
                             {kill_signal = 1e9}}) do
        local ok, err = pcall(spawn, "true", {}, opts)
        assert.is_false(ok, next(opts))
        assert.matches("^bad argument #3 to 'spawn' %(opts%.", err)
      end
    end)

    it("negative and enormous channel sizes are refused", function()
      local a, b = assert(fork.socketpair())
      for _, opts in ipairs({{max_message = -1}, {max_message = 0}, {max_message = 2 ^ 40},
                             {max_message = 1.5}, {high_water = 0}, {high_water = -1},
                             {high_water = math.maxinteger}}) do
        local ok, err = pcall(a.channel, a, opts)
        assert.is_false(ok)
        assert.matches("must be an integer in 1%.%.", err)
      end
      a:close()
      b:close()
    end)

    it("bad ports, timeouts and delays are refused", function()
      local srv = net.create_server(function() end)
      for _, port in ipairs({-1, 65536, 1e300, 0 / 0}) do
        assert.is_false((pcall(srv.listen, srv, port)))
      end
      srv:close()
      assert.is_false((pcall(net.connect, {port = 1, timeout = -1})))
      assert.is_false((pcall(net.connect, -1)))
      assert.is_false((pcall(lipc.sleep, -1)))
      local a, b = assert(fork.socketpair())
      assert.is_false((pcall(a.set_high_water, a, -1)))
      a:close()
      b:close()
    end)
  end)
end)
