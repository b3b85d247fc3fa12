-- peers_spec.lua - hostile, or merely fast, peers: one peer must not
-- freeze the loop for the others, grow memory without bound or end the
-- process. Each attack is raw bytes from a real TCP socket into a channel
-- served by this process; bounds are checked by counts and sizes, never
-- by time (bench/lipc/hostile_peers.lua measures the time).
local lipc = require "lipc"
local net = require "net"
local t = require "lipc.test"
local S = require "support"

local be32 = S.be32

-- MessagePack pieces.
local function f64(x) return "\xcb" .. string.pack(">d", x) end
local function int64(i) return "\xd3" .. string.pack(">i8", i) end

-- A frame of one map whose keys are key(i) for i = 1..n, every value true.
local function map_frame(n, key)
  local parts = {"\xdf" .. be32(n)}
  for i = 1, n do parts[#parts + 1] = key(i) .. "\xc3" end
  local body = table.concat(parts)
  return be32(#body) .. body
end

-- Lua keeps a map of n entries in 2^k >= n nodes and puts an integer key
-- in node k % (2^k - 1); a float x = m * 2^e (0.5 <= m < 1) that is no
-- integer in node (e + m * 2^31) % (2^k - 1).
local N = 4096
local function colliding_int(i) return int64(i * (N - 1)) end
local function colliding_float(i) return f64(1 + i * (N - 1) / 2 ^ 30) end

-- A TCP server whose connections become channels (opts), and a raw client
-- socket to it: -> the server's channel, the client socket.
local function tcp_pair(opts)
  local ch
  local srv = assert(net.create_server(function(sock)
    ch = sock:channel(opts)
  end):listen(0, "127.0.0.1"))
  local raw = assert(net.connect({host = "127.0.0.1", port = srv:address().port}))
  assert.is_true(S.wait_for(function() return ch ~= nil end, 5000))
  srv:close()
  return ch, raw
end

-- Sends one raw frame (or JSON line) from a peer: -> what receive() gave.
local function from_peer(bytes, opts)
  local ch, raw = tcp_pair(opts)
  raw:write(bytes)
  local r = table.pack(ch:receive())
  raw:close()
  ch:close()
  return table.unpack(r, 1, r.n)
end

describe("hostile peers", function()
  describe("hash flooding", function()
    -- Without the check such a map costs n^2 / 2 key comparisons to build
    -- (65,536 entries: 10 s of a frozen loop); with it, the channel ends
    -- as for any bad frame, after the first colliding keys
    it("a map whose integer keys share one chain of Lua's hash is refused", function()
      local v, msg, code = from_peer(map_frame(N, colliding_int))
      assert.is_nil(v)
      assert.are.equal("ERR_IPC_BAD_MESSAGE", code)
      assert.matches("map keys collide in Lua's hash %(hash flooding%)", msg)
    end)

    it("so is one whose float keys do", function()
      local v, msg, code = from_peer(map_frame(N, colliding_float))
      assert.is_nil(v)
      assert.are.equal("ERR_IPC_BAD_MESSAGE", code)
      assert.matches("hash flooding", msg)
    end)

    it("ordinary maps of that size are taken: sequential, random, strided, float and string keys", function()
      local rand = math.random
      math.randomseed(13)
      local families = {
        function(i) return int64(i) end,
        function(i) return int64(-i * 7) end,
        function() return int64(rand(math.mininteger, math.maxinteger)) end,
        function(i) return int64(i * 1000) end,                -- milliseconds of whole seconds
        function(i) return int64(1700000000000 + i * 60000) end, -- a timestamp a minute
        function(i) return f64(i + 0.5) end,
        function(i) return f64(i * 0.001) end,
        function(i) local s = "k" .. i; return string.char(0xa0 + #s) .. s end,
      }
      for f, key in ipairs(families) do
        local v, msg = from_peer(map_frame(N, key))
        assert.is_table(v, ("family %d: %s"):format(f, tostring(msg)))
      end
    end)

    it("JSON objects have string keys: numeric ones that would collide as integers are taken", function()
      local keys = {}
      for i = 1, N do keys[i] = ('"%d":true'):format(i * (N - 1)) end
      local v = from_peer("{" .. table.concat(keys, ",") .. "}\n", {serialization = "json"})
      assert.is_table(v)
      assert.is_true(v[tostring(N - 1)])
      assert.is_nil(v[N - 1])
    end)
  end)

  describe("amplification", function()
    -- Legal frames whose Lua values take far more than their size: an
    -- empty map is 1 byte and ~80 bytes as a table
    local function array_of(n, byte)
      local body = "\xdd" .. be32(n) .. string.rep(byte, n)
      return be32(#body) .. body
    end

    local function rss_kib()
      return tonumber(S.read_file("/proc/self/status"):match("VmRSS:%s+(%d+)"))
    end

    it("a frame whose values would take more than max_decoded is refused before any is built", function()
      local v, msg, code = from_peer(array_of(65536, "\x80"), {max_decoded = 1024 * 1024})
      assert.is_nil(v)
      assert.are.equal("ERR_IPC_MESSAGE_TOO_LARGE", code)
      assert.are.equal("channel: incoming frame of 65541 bytes would take more than max_decoded"
        .. " (1048576 bytes) as Lua values", msg)
    end)

    it("so is one delivered to a 'message' listener", function()
      local ch, raw = tcp_pair({max_decoded = 1024 * 1024})
      local got, err = {}, nil
      ch:on("message", function(m) got[#got + 1] = m end)
      ch:on("error", function(m, c) err = {m, c} end)
      raw:write(array_of(100, "\x01") .. array_of(65536, "\x80"))
      assert.is_true(S.wait_for(function() return err ~= nil end, 5000))
      assert.are.equal(1, #got)                  -- the one before it
      assert.are.equal("ERR_IPC_MESSAGE_TOO_LARGE", err[2])
      raw:close()
      ch:close()
    end)

    it("by default (twice max_message) 8 MB of empty maps are refused, and RSS stays put", function()
      local before = rss_kib()
      local v, _, code = from_peer(array_of(8 * 1024 * 1024, "\x80"))
      assert.is_nil(v)
      assert.are.equal("ERR_IPC_MESSAGE_TOO_LARGE", code)
      -- the frame itself (8 MiB, twice at most while it is assembled),
      -- not the 640 MB of tables
      assert.is_true(rss_kib() - before < 64 * 1024, "RSS grew by the tables")
    end)

    it("a JSON line of [{},{},...] over max_decoded is refused", function()
      local line = "[" .. string.rep("{},", 40000) .. "{}]\n"
      local v, msg, code = from_peer(line, {serialization = "json", max_decoded = 1024 * 1024})
      assert.is_nil(v)
      assert.are.equal("ERR_IPC_MESSAGE_TOO_LARGE", code)
      assert.matches("incoming line of 120004 bytes would take more than max_decoded", msg)
    end)

    it("values within max_decoded are taken: a 1 MiB string, 100 000 small integers", function()
      local s = string.rep("x", 1024 * 1024)
      local body = "\xc6" .. be32(#s) .. s
      assert.are.equal(s, (from_peer(be32(#body) .. body, {max_decoded = 2 * 1024 * 1024})))
      local v = from_peer(array_of(100000, "\x07"), {max_decoded = 2 * 1024 * 1024})
      assert.are.equal(100000, #v)
      assert.are.equal(7, v[100000])
    end)

    -- Writes bytes from a raw peer into a channel with 'message' and
    -- 'error' listeners, and counts the loop turns (sleep(0)) and the
    -- messages a bystander channel got from the moment the channel has all
    -- n frames in (stats() counts a frame when its last byte is there)
    -- until the last one's message (or the error) comes: how long the
    -- frame held the others up, in turns, not time.
    local function watch(bytes, n, opts)
      local ch, raw = tcp_pair(opts)
      local a, b = S.channel_pair()
      local r, pings, turn, in_turn, in_pings = {got = {}}, 0, 0, nil, nil
      ch:on("message", function(m) r.got[#r.got + 1] = m end)
      ch:on("error", function(msg, code) r.err = {msg, code} end)
      b:on("message", function() pings = pings + 1 end)
      raw:write(bytes)
      while turn < 100000 and #r.got < n and not r.err do
        a:send("ping")
        lipc.sleep(0)
        turn = turn + 1
        if not in_turn and ch:stats().messages_received >= n then
          in_turn, in_pings = turn, pings
        end
      end
      r.turns, r.pings = turn - (in_turn or turn), pings - (in_pings or pings)
      for _, c in ipairs({raw, ch, a, b}) do c:close() end
      return r
    end

    local MILLION = array_of(1000000, "\x01") -- 1 MB, 16 MiB as values

    it("while a large frame is built, the loop serves others in between", function()
      local r = watch(array_of(3, "\x01") .. MILLION, 2)
      assert.is_nil(r.err)
      assert.are.equal(2, #r.got)
      assert.are.equal(1000000, #r.got[2])
      assert.are.equal(1, r.got[2][1000000])
      assert.is_true(r.turns > 1, "turns between the frame in and its message: " .. r.turns)
      assert.is_true(r.pings > 0, "bystander messages in between: " .. r.pings)
    end)

    it("a large frame keeps its place: the messages before it, it, those after it", function()
      local ch, raw = tcp_pair()
      raw:write(array_of(3, "\x01") .. MILLION .. array_of(2, "\x02") .. MILLION)
      assert.are.same({1, 1, 1}, ch:receive())
      local v = ch:receive()
      assert.are.equal(1000000, #v)
      assert.are.same({2, 2}, ch:receive())
      assert.are.equal(1000000, #ch:receive())
      assert.are.equal(0, ch:pending())
      raw:close()
      ch:close()
    end)

    it("big strings and tables inside a large frame arrive whole", function()
      -- [6 MiB string, 300 000 integers, {[1..200 000] = true as a map}]:
      -- blocks big enough to be made ready over several turns first
      local str = string.rep("abcdefgh", 6 * 1024 * 1024 // 8)
      local keys = {}
      for i = 1, 200000 do keys[i] = "\xce" .. be32(i) .. "\xc3" end
      local body = "\x93\xdb" .. be32(#str) .. str .. "\xdd" .. be32(300000)
        .. string.rep("\x05", 300000) .. "\xdf" .. be32(200000) .. table.concat(keys)
      local v = from_peer(be32(#body) .. body)
      assert.is_table(v)
      assert.is_true(v[1] == str)
      assert.are.equal(300000, #v[2])
      assert.are.equal(5, v[2][300000])
      local n = 0
      for _ in pairs(v[3]) do n = n + 1 end
      assert.are.equal(200000, n)
      assert.is_true(v[3][200000])
    end)

    it("a process that exits while a large frame is half built exits cleanly", function()
      local out, err, status = S.run_lipc([[
        local lipc, fork = require "lipc", require "fork"
        local a, b = assert(fork.socketpair())
        local ch = a:channel()
        local function be32(n) return string.pack(">I4", n) end
        local body = "\xdd" .. be32(4000000) .. string.rep("\x01", 4000000)
        ch:on("message", function() print("built") end)
        b:write(be32(#body) .. body)
        local turn = 0
        while ch:stats().messages_received < 1 and turn < 100000 do
          lipc.sleep(0)
          turn = turn + 1
        end
        print("in", ch:stats().messages_received)
        lipc.exit(3)
      ]])
      assert.are.equal("in\t1\n", out)
      assert.are.equal("", err)
      assert.are.equal(3, status)
    end)

    it("a large message with a handle arrives with it, in its place", function()
      local a, b = S.channel_pair()
      local srv = assert(net.create_server(function(sock) sock:close() end):listen(0, "127.0.0.1"))
      local big = {}
      for i = 1, 300000 do big[i] = i end
      a:send("before")
      a:send(big, srv)
      a:send("after")
      assert.are.equal("before", b:receive())
      local msg, handle = b:receive()
      assert.are.equal(300000, #msg)
      assert.are.equal(300000, msg[300000])
      assert.truthy(handle)
      assert.are.equal(srv:address().port, handle:address().port)
      assert.are.equal("after", b:receive())
      handle:close()
      srv:close()
      a:close()
      b:close()
    end)

    it("a bad byte at the end of a large frame: the message before it, then the error", function()
      local body = "\xdd" .. be32(1000000) .. string.rep("\x01", 999999) .. "\xc1"
      local r = watch(array_of(3, "\x01") .. be32(#body) .. body, 2)
      assert.are.equal(1, #r.got)
      assert.are.same({"channel: bad message from peer: invalid MessagePack: unknown type byte 0xc1",
        "ERR_IPC_BAD_MESSAGE"}, r.err)
      assert.is_true(r.turns > 1, "turns between the frame in and its error: " .. r.turns)
    end)

    it("a large frame over max_decoded is refused after the message before it, in steps too", function()
      -- 16 MB for the array's slots, then a string of 800 KB at its end
      local body = "\xdd" .. be32(1000000) .. string.rep("\x01", 999999)
        .. "\xc6" .. be32(800000) .. string.rep("x", 800000)
      local r = watch(array_of(3, "\x01") .. be32(#body) .. body, 2, {max_decoded = 16 * 1024 * 1024})
      assert.are.equal(1, #r.got)
      assert.are.same({("channel: incoming frame of %d bytes would take more than max_decoded"
        .. " (16777216 bytes) as Lua values"):format(#body), "ERR_IPC_MESSAGE_TOO_LARGE"}, r.err)
      assert.is_true(r.turns > 1, "turns between the frame in and its error: " .. r.turns)
    end)

    -- The peer's one large message is in, and close() comes while it is
    -- being built: it never arrives.
    local function closed_half_built(bytes, opts)
      local ch, raw = tcp_pair(opts)
      local got, turn = 0, 0
      ch:on("message", function() got = got + 1 end)
      raw:write(bytes)
      while ch:stats().messages_received < 1 and turn < 100000 do
        lipc.sleep(0)
        turn = turn + 1
      end
      assert.are.equal(1, ch:stats().messages_received)
      assert.are.equal(0, got) -- in, and not built yet
      ch:close()
      for _ = 1, 50 do lipc.sleep(0) end
      assert.are.equal(0, got)
      assert.is_nil(ch:receive())
      raw:close()
    end

    it("a channel closed while a large frame is half built: nothing more comes, nothing leaks", function()
      closed_half_built(array_of(4000000, "\x01"))
    end)

    -- Node's format: a JSON line of 64 KiB or more is built in steps too
    local JSON = {serialization = "json"}
    local function json_ints(n) return "[" .. string.rep("1,", n - 1) .. "1]\n" end

    it("JSON lines: while a large line is built, the loop serves others in between", function()
      local r = watch('"first"\n' .. json_ints(1000000), 2, JSON)
      assert.is_nil(r.err)
      assert.are.equal("first", r.got[1])
      assert.are.equal(1000000, #r.got[2])
      assert.are.equal(1, r.got[2][1000000])
      assert.is_true(math.type(r.got[2][1]) == "integer")
      assert.is_true(r.turns > 1, "turns between the line in and its message: " .. r.turns)
      assert.is_true(r.pings > 0, "bystander messages in between: " .. r.pings)
    end)

    it("JSON lines: a large line keeps its place, and reads the same as a small one", function()
      local item = '{"a":[1,2.5,null,true,false,"x\\u00e9\\ud83d\\ude00\\n"],'
        .. '"b":-0,"c":1e3,"d":9007199254740993}'
      local small = "[" .. item .. "]"
      local big = "[" .. string.rep(item .. ",", 999) .. item .. "]"
      assert.is_true(#big > 64 * 1024)
      local ch, raw = tcp_pair(JSON)
      raw:write("1\r\n" .. small .. "\n" .. big .. "\r\n" .. '"after"\n')
      assert.are.equal(1, ch:receive())
      local s1, b1 = ch:receive(), ch:receive()
      assert.are.equal("after", ch:receive())
      assert.are.equal(1000, #b1)
      for _, v in ipairs({s1[1], b1[1], b1[1000]}) do
        assert.are.same({1, 2.5, lipc.null, true, false, "x\u{e9}\u{1f600}\n"}, v.a)
        assert.is_true(math.type(v.b) == "integer" and math.type(v.c) == "integer")
        assert.are.equal(1000, v.c)
        assert.are.equal(9007199254740992.0, v.d) -- as strtod reads it
      end
      raw:close()
      ch:close()
    end)

    it("JSON lines: bad JSON at the end of a large line: the message before it, then the error", function()
      local r = watch('"first"\n[' .. string.rep("1,", 999999) .. "1}\n", 2, JSON)
      assert.are.same({"first"}, r.got)
      assert.are.same({"channel: bad JSON message from peer: expected ',' or ']' at byte 2000001",
        "ERR_IPC_BAD_MESSAGE"}, r.err)
      assert.is_true(r.turns > 1, "turns between the line in and its error: " .. r.turns)
    end)

    it("JSON lines: a channel closed while a large line is half built: nothing more comes", function()
      closed_half_built(json_ints(4000000), JSON)
    end)

    it("JSON lines are strict JSON: what JSON.stringify never writes closes the channel", function()
      for text, why in pairs({
        ["0x10"] = "more text after the value at byte 2",
        ["[01]"] = "expected ',' or ']' at byte 3",
        ["NaN"] = "an unexpected character at byte 1",
        ["-Infinity"] = "an invalid number at byte 1",
        ['"a\tb"'] = "a control character in a string at byte 3",
        ["1 2"] = "more text after the value at byte 3",
        ["[1,]"] = "an unexpected character at byte 4",
        ['{"a":1,}'] = "expected a key string at byte 8",
        ['"\\ud800"'] = "an invalid escape in a string at byte 2",
        ['"\\x"'] = "an invalid escape in a string at byte 2",
        ["1\0"] = "more text after the value at byte 2",
        ["tru"] = "an unknown word at byte 1",
        [string.rep("[", 129) .. string.rep("]", 129)] = "nested deeper than 128 at byte 129",
      }) do
        local v, msg, code = from_peer(text .. "\n", JSON)
        assert.is_nil(v, text)
        assert.are.equal("channel: bad JSON message from peer: " .. why, msg, text)
        assert.are.equal("ERR_IPC_BAD_MESSAGE", code)
      end
      local v = from_peer(string.rep("[", 128) .. string.rep("]", 128) .. "\n", JSON)
      for _ = 1, 127 do v = v[1] end
      assert.are.same({}, v)
    end)

    it("max_decoded must be an integer > 0", function()
      for _, bad in ipairs({0, -1, 1.5, "x"}) do
        local a, b = assert(require("fork").socketpair())
        local ok, err = pcall(a.channel, a, {max_decoded = bad})
        assert.is_false(ok)
        assert.matches("opts.max_decoded must be an integer in 1..", err)
        a:close()
        b:close()
      end
    end)
  end)

  describe("re-sending what a peer sent", function()
    it("costs work linear in the value, however its tables are laid out", function()
      t.timeout(5000)
      -- Each level is {[1] = child, [2] = true, [0.5] = true}: the float key
      -- lands after 1 and 2 in the table's nodes, so the encoder learns
      -- that the table is no array only after it wrote the child, and then
      -- writes the child again as a map's value: 2^26 times for 26 levels
      local depth, body = 26, "\xc3"
      for _ = 1, depth do
        body = "\x83\x01" .. body .. "\x02\xc3" .. f64(0.5) .. "\xc3"
      end
      local v = from_peer(be32(#body) .. body)
      local a, b = S.channel_pair()
      assert.is_true(a:send(v)) -- the echo, to another peer
      local back = b:receive()
      local levels = 0
      while type(back) == "table" do
        assert.is_true(back[2])
        assert.is_true(back[0.5])
        back, levels = back[1], levels + 1
      end
      assert.are.equal(depth, levels)
      a:close()
      b:close()
    end)
  end)
end)
