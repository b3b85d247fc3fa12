-- channel_spec.lua - the message channel over any stream (stream:channel),
-- exercised over socketpairs in one process: values, order, backpressure,
-- queueing, disconnect, protocol errors, JSON lines, handle passing.
local lipc = require "lipc"
local fork = require "fork"
local S = require "support"

local pair, raw_pair, be32 = S.channel_pair, S.raw_channel, S.be32

describe("stream:channel", function()
  it("is a method of every stream", function()
    local a, b = assert(fork.socketpair())
    assert.is_function(a.channel)
    a:close(); b:close()
  end)

  it("carries nil, booleans, integers, floats, binary strings and nested tables", function()
    local ca, cb = pair()
    local bin = "\0\1\2\255\254 binary"
    local values = {
      false, true, 0, -1, 2^53, math.maxinteger, math.mininteger, 1.5, -0.25, 3.0,
      "", "hello", bin, {}, {1, 2, 3}, {a = 1, b = {c = {d = "deep"}}},
      {list = {1, "two", 3.0, {x = true}}, [10] = "sparse"},
    }
    for _, v in ipairs(values) do ca:send(v) end
    ca:send(nil)
    for _, v in ipairs(values) do
      local got = cb:receive()
      assert.are.same(v, got)
      if type(v) == "number" then assert.are.equal(math.type(v), math.type(got)) end
    end
    assert.are.equal(lipc.null, cb:receive())   -- nil arrives as lipc.null
    assert.is_true(cb.connected)
    ca:disconnect()
    cb:disconnect()
  end)

  it("keeps the order of 100 000 messages each way at once, none lost", function()
    local ca, cb = pair()
    local N = 100000
    local got_a, got_b = 0, 0
    local done = lipc.cond()
    local finished = 0
    local function sender(ch)
      lipc.go(function()
        for i = 1, N do
          if not ch:send({seq = i}) then ch:drain() end
        end
      end)
    end
    local function receiver(ch, set)
      lipc.go(function()
        for i = 1, N do
          local m = ch:receive()
          assert(m and m.seq == i, "out of order")
          set(i)
        end
        finished = finished + 1
        done:signal()
      end)
    end
    receiver(cb, function(i) got_b = i end)
    receiver(ca, function(i) got_a = i end)
    sender(ca)
    sender(cb)
    while finished < 2 do done:wait(20000) end
    assert.are.equal(N, got_a)
    assert.are.equal(N, got_b)
    ca:disconnect()
    cb:disconnect()
  end)

  it("emits 'message' with the value and no handle", function()
    local ca, cb = pair()
    local got, done = {}, lipc.cond()
    cb:on("message", function(msg, handle)
      got[#got + 1] = msg
      assert.is_nil(handle)
      if #got == 3 then done:signal() end
    end)
    ca:send("a"); ca:send("b"); ca:send("c")
    done:wait(2000)
    assert.are.same({"a", "b", "c"}, got)
    ca:disconnect()
    cb:disconnect()
  end)

  it("queues messages nobody takes until receive() or a 'message' listener", function()
    local ca, cb = pair()
    for i = 1, 5 do ca:send(i) end
    assert.is_true(S.wait_for(function() return cb:pending() == 5 end))
    assert.are.equal(5, cb:pending())
    assert.are.equal(1, cb:receive())
    local got, done = {}, lipc.cond()
    cb:on("message", function(m) got[#got + 1] = m; if #got == 4 then done:signal() end end)
    if #got < 4 then done:wait(2000) end
    assert.are.same({2, 3, 4, 5}, got)
    ca:disconnect()
    cb:disconnect()
  end)

  it("send returns false over the high-water mark, then 'drain'", function()
    local ca, cb = pair({high_water = 1024})
    local big = string.rep("x", 4096)
    assert.is_false(ca:send(big))
    local drained = lipc.cond()
    ca:on("drain", function() drained:signal() end)
    assert.is_true(ca:drain())
    assert.are.equal(big, cb:receive())
    ca:disconnect()
    cb:disconnect()
  end)

  it("several tasks can wait in receive(): each message goes to one, longest-waiting first", function()
    local ca, cb = pair()
    local got, ended = {}, 0
    for w = 1, 3 do
      lipc.go(function()
        while true do
          local m = cb:receive()
          if m == nil then ended = ended + 1; return end
          got[#got + 1] = w .. ":" .. m
          lipc.sleep(1)                     -- yield, so the others get some
        end
      end)
    end
    ca:send("a"); ca:send("b"); ca:send("c")
    assert.is_true(S.wait_for(function() return #got == 3 end))
    assert.are.same({"1:a", "2:b", "3:c"}, got)
    for i = 1, 30 do ca:send(i) end
    assert.is_true(S.wait_for(function() return #got == 33 end))
    local seen, per = {}, {}
    for k = 4, 33 do
      local w, v = got[k]:match("^(%d):(%d+)$")
      seen[#seen + 1] = tonumber(v)
      per[w] = (per[w] or 0) + 1
    end
    table.sort(seen)
    for i = 1, 30 do assert.are.equal(i, seen[i]) end  -- each exactly once
    assert.is_true(per["1"] > 0 and per["2"] > 0 and per["3"] > 0)
    ca:disconnect()
    assert.is_true(S.wait_for(function() return ended == 3 end))  -- all get nil
  end)

  it("a task that receives again at once waits behind those already waiting", function()
    -- messages in one read: the first wakes task 1, which asks for the next
    -- one before task 2 got its own (a pool's caller with its next call)
    local ca, cb = pair()
    local got = {}
    local function take(w)
      local m = cb:receive()
      got[#got + 1] = w .. ":" .. m
    end
    lipc.go(function() take(1); take(1) end)
    lipc.go(function() take(2) end)
    ca:send("a"); ca:send("b"); ca:send("c") -- one write: one read
    assert.is_true(S.wait_for(function() return #got == 3 end))
    assert.are.same({"1:a", "2:b", "1:c"}, got)
    ca:disconnect()
    cb:disconnect()
  end)

  it("several tasks can wait in drain(); all go on once the buffer drains", function()
    local ca, cb = pair({high_water = 1024})
    assert.is_false(ca:send(("x"):rep(4096)))
    local done = 0
    for _ = 1, 3 do lipc.go(function() if ca:drain() then done = done + 1 end end) end
    assert.are.equal(("x"):rep(4096), cb:receive())
    assert.is_true(S.wait_for(function() return done == 3 end))
    ca:disconnect()
    cb:disconnect()
  end)

  it("a fault with several receivers waiting: the messages before it, the error, then nil", function()
    local ch, raw = raw_pair()
    local got = {}
    for w = 1, 3 do
      lipc.go(function()
        local m, _, code = ch:receive()
        got[w] = {m, code}
      end)
    end
    raw:write(be32(2) .. "\xa1a" .. be32(2) .. "\xc1\xc1")
    assert.is_true(S.wait_for(function() return got[1] and got[2] and got[3] end))
    assert.are.same({{"a"}, {nil, "ERR_IPC_BAD_MESSAGE"}, {}}, got)
    raw:close()
  end)

  it("calls the send callback once the message is written", function()
    local ca, cb = pair()
    local done = lipc.cond()
    ca:send("x", function(err) done:signal(err or "ok") end)
    assert.are.equal("ok", done:wait(2000))
    assert.are.equal("x", cb:receive())
    ca:disconnect()
    cb:disconnect()
  end)

  it("refuses functions, userdata, threads, cycles and deep nesting, naming the key path", function()
    local ca, cb = pair()
    local cyc = {}; cyc.self = cyc
    local deep = {}
    local t = deep
    for _ = 1, 200 do t.x = {}; t = t.x end
    local bad = {
      {{jobs = {1, 2, {fn = print}}}, "jobs%[3%]%.fn"},
      {{u = io.stdout}, "u"},
      {{co = coroutine.create(print)}, "co"},
      {cyc, "self"},
      {deep, "x"},
    }
    for _, case in ipairs(bad) do
      local ok, err = pcall(ca.send, ca, case[1])
      assert.is_false(ok)
      assert.matches("channel.send", err)
      assert.matches(case[2], err)
    end
    ca:send("after")
    assert.are.equal("after", cb:receive())
    ca:disconnect()
    cb:disconnect()
  end)

  it("refuses a message over max_message at send", function()
    local ca, cb = pair({max_message = 1000})
    local ok, err = pcall(ca.send, ca, string.rep("x", 2000))
    assert.is_false(ok)
    assert.matches("over max_message", err)
    ca:send("small")
    assert.are.equal("small", cb:receive())
    ca:disconnect()
    cb:disconnect()
  end)

  it("disconnect: the peer's receive returns nil, both sides emit 'disconnect'", function()
    local ca, cb = pair()
    local seen = 0
    ca:on("disconnect", function() seen = seen + 1 end)
    cb:on("disconnect", function() seen = seen + 1 end)
    ca:send("last")
    ca:disconnect()
    assert.is_false(ca.connected)
    assert.are.equal("last", cb:receive())
    assert.is_nil(cb:receive())
    assert.is_false(cb.connected)
    assert.is_true(S.wait_for(function() return seen == 2 end))
    assert.are.equal(2, seen)
  end)

  it("send after disconnect emits 'error' with ERR_IPC_CHANNEL_CLOSED, no crash", function()
    local ca, cb = pair()
    ca:disconnect()
    local msg, code
    ca:on("error", function(m, c) msg, code = m, c end)
    assert.is_false(ca:send("late"))
    assert.is_true(S.wait_for(function() return code ~= nil end))
    assert.are.equal("ERR_IPC_CHANNEL_CLOSED", code)
    assert.matches("closed", msg)
    local cbmsg, cbcode
    local done = lipc.cond()
    ca:send("late", function(m, c) cbmsg, cbcode = m, c; done:signal() end)
    done:wait(1000)
    assert.are.equal("ERR_IPC_CHANNEL_CLOSED", cbcode)
    assert.truthy(cbmsg)
    assert.is_nil(cb:receive())
  end)

  it("a frame over max_message from the peer closes the channel with an 'error' saying why", function()
    local ch, raw = raw_pair({max_message = 100})
    local err, code, disc = nil, nil, false
    local done = lipc.cond()
    ch:on("error", function(m, c) err, code = m, c end)
    ch:on("disconnect", function() disc = true; done:signal() end)
    raw:write(be32(5000) .. string.rep("x", 10))
    done:wait(2000)
    assert.matches("over max_message", err)
    assert.are.equal("ERR_IPC_MESSAGE_TOO_LARGE", code)
    assert.is_true(disc)
    assert.is_false(ch.connected)
    raw:close()
  end)

  it("garbage from the peer closes the channel with an 'error' saying why", function()
    local ch, raw = raw_pair()
    local err, code
    local done = lipc.cond()
    ch:on("error", function(m, c) err, code = m, c; done:signal() end)
    raw:write(be32(2) .. "\xc1\xc1")
    done:wait(2000)
    assert.matches("bad message", err)
    assert.are.equal("ERR_IPC_BAD_MESSAGE", code)
    assert.is_false(ch.connected)
    raw:close()
  end)

  it("a task in receive() gets nil, msg, code on a protocol error", function()
    local ch, raw = raw_pair()
    lipc.set_timeout(5, function() raw:write(be32(3) .. "\xc1\xc1\xc1") end)
    local m, err, code = ch:receive()
    assert.is_nil(m)
    assert.matches("bad message", err)
    assert.are.equal("ERR_IPC_BAD_MESSAGE", code)
    raw:close()
  end)

  it("a task in receive() gets the messages before a fault in order, then nil, msg, code", function()
    local ch, raw = raw_pair()
    local good = be32(2) .. "\xa1a" .. be32(2) .. "\xa1b"
    lipc.set_timeout(5, function() raw:write(good .. be32(2) .. "\xc1\xc1") end)
    assert.are.equal("a", ch:receive())
    assert.is_false(ch.connected)         -- the fault came with the same read
    assert.are.equal("b", ch:receive())
    local m, err, code = ch:receive()
    assert.is_nil(m)
    assert.matches("bad message from peer: invalid MessagePack: unknown type byte 0xc1", err)
    assert.are.equal("ERR_IPC_BAD_MESSAGE", code)
    assert.is_nil(ch:receive())
    raw:close()
  end)

  it("a fault is reported when it arrives; the messages before it stay to be taken", function()
    local ch, raw = raw_pair()
    local code
    ch:on("error", function(_, c) code = c end)
    raw:write(be32(2) .. "\xa1a" .. be32(2) .. "\xa1b" .. be32(3) .. "\x81\xc0\x01")
    assert.is_true(S.wait_for(function() return code ~= nil end))
    assert.are.equal("ERR_IPC_BAD_MESSAGE", code)
    -- the channel's handle has closed (it let its stream go)
    assert.is_true(S.wait_for(function() return ch:stream() == nil end))
    assert.are.same({"a", "b"}, {ch:receive(), ch:receive()})
    assert.is_nil(ch:receive())
    assert.are.equal(0, ch:stats().pending)
    raw:close()
  end)

  it("messages wait encoded while nobody takes them; a late listener gets all, in order", function()
    local ca, cb = pair()
    for i = 1, 5000 do ca:send({seq = i, pad = ("x"):rep(i % 50)}) end
    assert.is_true(S.wait_for(function() return cb:stats().pending == 5000 end))
    local seen = {}
    cb:on("message", function(m) seen[#seen + 1] = m.seq end)
    assert.are.equal(5000, #seen)
    for i = 1, 5000 do assert.are.equal(i, seen[i]) end
    ca:send({seq = 5001})
    assert.is_true(S.wait_for(function() return #seen == 5001 end))
    ca:disconnect()
  end)

  it("a frame cut short by the peer's end is a disconnect, not a crash", function()
    local ch, raw = raw_pair()
    raw:write(be32(100) .. "\xa5hel")
    raw:close()
    assert.is_nil(ch:receive())
    assert.is_false(ch.connected)
  end)

  it("reassembles frames split across reads and large messages", function()
    local ch, raw = raw_pair()
    local body = "\xa5hello"
    local frame = be32(#body) .. body
    for i = 1, #frame do raw:write(frame:sub(i, i)); lipc.sleep(0) end
    assert.are.equal("hello", ch:receive())
    raw:close()
    local ca, cb = pair()
    local big = string.rep("0123456789abcdef", 1 << 18) -- 4 MiB
    ca:send({data = big})
    assert.are.equal(big, cb:receive().data)
    ca:disconnect()
    cb:disconnect()
  end)

  it("speaks JSON lines in json mode, ignoring Node's internal messages", function()
    local ch, raw = raw_pair({serialization = "json"})
    raw:write('{"cmd":"NODE_HANDLE_ACK"}\n{"a":1,"b":[1,2.5,"x"]}\n"str"\n42\n')
    local m = ch:receive()
    assert.are.same({a = 1, b = {1, 2.5, "x"}}, m)
    assert.are.equal("integer", math.type(m.a))
    assert.are.equal("str", ch:receive())
    assert.are.equal(42, ch:receive())
    ch:send({x = "y"})
    lipc.sleep(10)
    assert.are.equal('{"x":"y"}\n', raw:read())
    raw:close()
  end)

  it("bad JSON closes the channel with an 'error'", function()
    local ch, raw = raw_pair({serialization = "json"})
    local err
    ch:on("error", function(m) err = m end)
    raw:write("{not json\n")
    assert.is_nil(ch:receive())
    assert.is_true(S.wait_for(function() return err ~= nil end))
    assert.matches("bad JSON", err)
    raw:close()
  end)

  it("big strings go out from the Lua strings themselves: mixed with small frames, in order", function()
    local ca, cb = pair({high_water = 256 * 1024})
    local big_text = ("0123456789abcdef"):rep(8192)            -- 128 KiB str
    local big_bin = ("\255\0"):rep(50000)                      -- 100 KiB bin
    local sent, done = {}, 0
    for i = 1, 30 do
      sent[i] = i % 3 == 0 and {i = i, text = big_text .. i, bin = big_bin}
                or i % 3 == 1 and {i = i}
                or big_text:rep(2) .. i
    end
    -- the sender in a task of its own: the receiver reads only while
    -- somebody takes (receive backpressure)
    lipc.go(function()
      for i = 1, 30 do
        local ok = ca:send(sent[i], function(err) assert.is_nil(err); done = done + 1 end)
        if not ok then assert.is_true(ca:drain()) end
      end
    end)
    for i = 1, 30 do assert.are.same(sent[i], cb:receive()) end
    assert.is_true(S.wait_for(function() return done == 30 end))
    assert.is_true(ca:stats().bytes_sent > 30 * 100000)
    ca:disconnect()
    cb:disconnect()
  end)

  it("a table that looks like an array until a hole, after a big string, arrives whole", function()
    local ca, cb = pair()
    local big = ("y"):rep(70000)
    -- #t is 3 and t has 3 keys, but t[2] is nil: the encoder starts it as
    -- an array, meets the hole after the big string and writes it as a map
    local t = {big, "two", "three", name = "four"}
    t[2] = nil
    assert.are.equal(3, #t)
    ca:send(t)
    ca:send({big, "after"})
    assert.are.same({[1] = big, [3] = "three", name = "four"}, cb:receive())
    assert.are.same({big, "after"}, cb:receive())
    ca:disconnect()
    cb:disconnect()
  end)

  it("a send refused after a big string sends nothing; the next ones go as they are", function()
    local ca, cb = pair({max_message = 200000})
    local big = ("x"):rep(100000)
    assert.has_error(function() ca:send({big, big, big}) end)        -- over max_message
    assert.has_error(function() ca:send({big, f = print}) end)        -- a function
    ca:send({big, "after"})
    ca:send("small")
    assert.are.same({big, "after"}, cb:receive())
    assert.are.equal("small", cb:receive())
    ca:disconnect()
    cb:disconnect()
  end)

  it("coalesces the frames of one loop turn into one write", function()
    local ca, cb = pair()
    local s = ca:stream()
    local before = s.stats and s:stats()
    for i = 1, 1000 do ca:send(i) end
    for i = 1, 1000 do assert.are.equal(i, cb:receive()) end
    if before then
      local after = s:stats()
      local writes = (after.write_calls or after.writes or 0) - (before.write_calls or before.writes or 0)
      assert.is_true(writes <= 2, "writes: " .. tostring(writes))
    end
    ca:disconnect()
    cb:disconnect()
  end)

  it("passes a pipe server with a message; it arrives open and accepts", function()
    local pipe = require "pipe"
    local dir = lipc.mkdtemp("/tmp/lipc-ch-")
    local path = dir .. "/s.sock"
    local srv = pipe.create_server(function(sock) sock:close() end)
    assert(srv:listen(path))
    local ca, cb = pair()
    ca:send({what = "server"}, srv)
    local msg, handle = cb:receive()
    assert.are.same({what = "server"}, msg)
    assert.truthy(handle)
    srv:close()
    handle:on("connection", function(sock)
      sock:write("hi from the passed server", function() sock:close() end)
    end)
    local c = assert(pipe.connect(path))
    assert.are.equal("hi from the passed server", c:read_all())
    c:close()
    handle:close()
    ca:disconnect()
    cb:disconnect()
    os.execute("rm -rf " .. dir)
  end)
end)

describe("channel edges", function()
  -- A str 8 value of n bytes in all: d9, its length, n - 2 bytes.
  local function str_value(n) return "\xd9" .. string.char(n - 2) .. ("v"):rep(n - 2) end

  it("max_message: a value of max_message bytes from the peer is taken", function()
    local ch, raw = raw_pair({max_message = 100})
    raw:write(be32(100) .. str_value(100))
    assert.are.equal(("v"):rep(98), ch:receive())
    assert.is_true(ch.connected)
    raw:close()
    ch:close()
  end)

  it("max_message: a value of max_message + 3 bytes without a handle marker is refused", function()
    local ch, raw = raw_pair({max_message = 100})
    raw:write(be32(103) .. str_value(103))
    local m, err, code = ch:receive()
    assert.is_nil(m)
    assert.are.equal("ERR_IPC_MESSAGE_TOO_LARGE", code)
    assert.matches("incoming frame of 103 bytes is over max_message %(100 bytes%)", err)
    assert.is_false(ch.connected)
    raw:close()
    ch:close()
  end)

  it("max_message: the 3 bytes over it are for the handle marker alone, which may arrive apart", function()
    local ch, raw = raw_pair({max_message = 100})
    raw:write(be32(103) .. "\xd4")            -- which of the two it is shows with 3 bytes
    lipc.sleep(20)
    assert.is_true(ch.connected)
    raw:write("\x01\x04" .. str_value(100))    -- marker (a pipe socket that did not come)
    local m, h = ch:receive()
    assert.are.equal(("v"):rep(98), m)
    assert.is_nil(h)
    assert.is_true(ch.connected)
    raw:close()
    ch:close()
  end)

  it("max_message: the sender refuses what the receiver would, marker or not", function()
    local ca, cb = pair({max_message = 100}, {max_message = 100})
    assert.has_error(function() ca:send(("v"):rep(99)) end)   -- 101 bytes as a value
    ca:send(("v"):rep(98))
    local m = cb:receive()
    assert.has_no_error(function() cb:send(m) end)           -- what came can go back
    assert.are.equal(m, ca:receive())
    ca:close()
    cb:close()
  end)
end)

describe("a nil message and the channel's end", function()
  -- lipc.null, and not a nil that a missing lipc.null would equal
  local function is_null(v) return type(v) == "userdata" and v == lipc.null end

  it("a nil message arrives as lipc.null: the usual loop reads on to the end", function()
    local ca, cb = pair()
    ca:send(nil)
    ca:send("after the nil")
    ca:send(false)
    ca:disconnect()
    local got = {}
    while true do
      local m = cb:receive()
      if m == nil then break end
      got[#got + 1] = m
    end
    assert.are.same({lipc.null, "after the nil", false}, got)
    assert.is_true(is_null(got[1]))
    assert.is_nil(cb:receive())                   -- and stays at the end
    cb:close()
  end)

  it("receive() in a waiting task and 'message' listeners get lipc.null too", function()
    local ca, cb = pair()
    local got = lipc.cond()
    local value = "unset"
    lipc.go(function() value = cb:receive(); got:signal() end)
    ca:send(nil)
    got:wait(2000)
    assert.is_true(is_null(value))
    local heard = {}
    cb:on("message", function(m) heard[#heard + 1] = m; got:signal() end)
    ca:send(nil)
    got:wait(2000)
    assert.is_true(#heard == 1 and is_null(heard[1]))
    ca:close()
    cb:close()
  end)

  it("lipc.null is cjson.null and sends as nil, at the top and inside", function()
    assert.are.equal(require("cjson").null, lipc.null)
    local ca, cb = pair()
    ca:send(lipc.null)
    ca:send({lipc.null, 2})                       -- an array with a hole: a map
    assert.is_true(is_null(cb:receive()))
    assert.are.same({[2] = 2}, cb:receive())
    ca:close()
    cb:close()
  end)

  it("a nil message with a handle: lipc.null, handle", function()
    local ca, cb = pair()
    local srv = assert(require("net").create_server():listen(0))
    ca:send(nil, srv)
    local m, h = cb:receive()
    assert.is_true(is_null(m))
    assert.truthy(h)
    h:close(); srv:close()
    ca:close()
    cb:close()
  end)

  it("JSON lines: a null message arrives as lipc.null, the end as nil", function()
    local ch, raw = raw_pair({serialization = "json"})
    raw:write('null\n"x"\n')
    raw:shutdown()
    assert.is_true(is_null(ch:receive()))
    assert.are.equal("x", ch:receive())
    assert.is_nil(ch:receive())
    raw:close()
    ch:close()
  end)
end)

describe("a frame cut short by the peer's end", function()
  local spawn = require "spawn"

  -- A real process writes two whole frames ("a", "b") and the first 8 of
  -- the 14 bytes of a third on fd 3, then exits: a channel over the other
  -- end of that socketpair, made with opts.
  local function dying_writer(opts)
    local child = assert(spawn("sh", {"-c",
      [[printf '\000\000\000\002\241a\000\000\000\002\241b\000\000\000\012\251abc' >&3]]},
      {stdio = {"ignore", "inherit", "inherit", "ipc"}}))
    local ch = child.stdio[4]:channel(opts)
    return ch, child
  end

  it("receive() gets the messages before it, then nil, msg, ERR_IPC_TRUNCATED", function()
    local ch, child = dying_writer()
    assert.are.equal("a", ch:receive())
    assert.are.equal("b", ch:receive())
    local m, err, code = ch:receive()
    assert.is_nil(m)
    assert.are.equal("ERR_IPC_TRUNCATED", code)
    assert.matches("ended inside a frame %(8 of 14 bytes%)", err)
    assert.is_nil(ch:receive())                   -- then the plain end
    assert.are.equal(0, child:wait())
  end)

  it("'error' listeners hear it after the 'message's before it", function()
    local ch, child = dying_writer()
    local seen, done = {}, lipc.cond()
    ch:on("message", function(m) seen[#seen + 1] = m end)
    ch:on("error", function(_, code) seen[#seen + 1] = code end)
    ch:on("disconnect", function() done:signal() end)
    done:wait(5000)
    assert.are.same({"a", "b", "ERR_IPC_TRUNCATED"}, seen)
    child:wait()
  end)

  it("with nobody listening it is kept for receive(), not an uncaught error", function()
    local ch, child = dying_writer()
    child:wait()
    assert.is_true(S.wait_for(function() return not ch.connected end, 5000))
    assert.are.equal(2, ch:pending())
    assert.are.equal("a", ch:receive())
    assert.are.equal("b", ch:receive())
    assert.are.equal("ERR_IPC_TRUNCATED", select(3, ch:receive()))
  end)

  it("JSON lines: an unfinished line is reported the same way", function()
    local child = assert(spawn("sh", {"-c", [[printf '"a"\n{"b":' >&3]]},
      {stdio = {"ignore", "inherit", "inherit", "ipc"}}))
    local ch = child.stdio[4]:channel({serialization = "json"})
    assert.are.equal("a", ch:receive())
    local m, err, code = ch:receive()
    assert.is_nil(m)
    assert.are.equal("ERR_IPC_TRUNCATED", code)
    assert.matches("ended inside a line %(5 bytes%)", err)
    child:wait()
  end)

  it("after close(), the peer's end in the middle of a frame or line is no error", function()
    -- close() ends the channel in the loop's close phase; the stream
    -- still read until then, and reported the peer's end as a truncation
    -- (found by fuzz_json)
    for _, opts in ipairs({{}, {serialization = "json"}}) do
      local ch, raw = raw_pair(opts)
      local errors, messages = 0, 0
      ch:on("error", function() errors = errors + 1 end)
      ch:on("message", function() messages = messages + 1 end)
      raw:write(opts.serialization and '"a"\n{"half' or be32(2) .. "\xa1a" .. be32(9) .. "abc")
      assert.is_true(S.wait_for(function() return messages == 1 end, 5000))
      ch:close()
      raw:close()
      for _ = 1, 20 do lipc.sleep(0) end
      lipc.sleep(20)
      assert.are.equal(0, errors, opts.serialization)
      assert.are.equal(1, messages)
      assert.is_nil(ch:receive())
    end
  end)
end)
