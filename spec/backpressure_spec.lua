-- backpressure_spec.lua - a peer that sends faster than it is served, or
-- never reads what it is sent, cannot make lipc queue without bound: the
-- channel stops reading, the peer's writes wait, nothing is lost.
local lipc = require "lipc"
local S = require "support"

local MiB = 1 << 20

-- The receiving side's bound in these specs: receive_high_water, plus
-- what one read may bring past it (a read is not cut short).
local RHWM = 256 * 1024
local SLACK = 512 * 1024
local N, PAD = 16384, ("x"):rep(1000) -- 16 MiB of messages

-- Sends N numbered messages on ch as fast as it takes them, honouring
-- drain(), then "end". In a task of its own.
local function flood(ch)
  lipc.go(function()
    for i = 1, N do
      if not ch:send({i = i, pad = PAD}) and not ch:drain() then return end
    end
    ch:send("end")
  end)
end

-- Takes the N messages slowly (a pause after every 256), checks their
-- order, and returns the most bytes that were ever waiting to be taken.
local function take_slowly(ch)
  local most, stats_of = 0, ch.channel or ch -- a fork child: its channel's
  for i = 1, N do
    local m = ch:receive()
    if type(m) ~= "table" or m.i ~= i then
      error(("message %d: got %s"):format(i, type(m) == "table" and tostring(m.i) or tostring(m)))
    end
    if i % 256 == 0 then
      local st = stats_of:stats()
      most = math.max(most, st.pending_bytes or st.pending * #PAD)
      lipc.sleep(2)
    end
  end
  assert.are.equal("end", ch:receive())
  return most
end

-- A connected pair of channels over a real server: TCP or Unix socket.
local function socket_pair(kind)
  local mod = require(kind)
  local srv, addr
  if kind == "net" then
    srv = assert(mod.create_server():listen(0))
    addr = {port = srv:address().port}
  else
    addr = S.tmpdir() .. "/s.sock"
    srv = assert(mod.create_server():listen(addr))
  end
  local client = assert(mod.connect(addr))
  local peer = assert(srv:accept())
  local opts = {receive_high_water = RHWM}
  return client:channel(opts), peer:channel(opts), srv
end

describe("backpressure", function()

  for _, kind in ipairs({"net", "pipe"}) do
    for _, dir in ipairs({"client to server", "server to client"}) do
      it(("%s, %s: a receiver taking slowly keeps a bounded queue; all arrive in order")
         :format(kind == "net" and "TCP" or "Unix socket", dir), function()
        local c, p, srv = socket_pair(kind)
        local from, to = c, p
        if dir == "server to client" then from, to = p, c end
        flood(from)
        local most = take_slowly(to)
        assert.is_true(most <= RHWM + SLACK, ("%d bytes were waiting"):format(most))
        c:disconnect()
        p:disconnect()
        srv:close()
      end)
    end
  end

  it("fork, child to parent: a parent taking slowly keeps a bounded queue", function()
    local dir = S.tmpdir()
    local child = assert(require("fork")(S.write_file(dir .. "/w.lua", ([[
      local parent = require("fork").parent
      local pad = ("x"):rep(1000)
      for i = 1, %d do
        if not parent:send({i = i, pad = pad}) and not parent:drain() then return end
      end
      parent:send("end")
    ]]):format(N)), {}, {receive_high_water = RHWM}))
    local most = take_slowly(child)
    assert.is_true(most <= RHWM + SLACK, ("%d bytes were waiting"):format(most))
    assert.are.equal(0, (child:wait()))
  end)

  it("fork, parent to child: a child taking slowly stays bounded (1 MiB default)", function()
    local dir = S.tmpdir()
    local child = assert(require("fork")(S.write_file(dir .. "/w.lua", ([[
      local lipc = require "lipc"
      local parent = require("fork").parent
      local most = 0
      for i = 1, %d do
        local m = parent:receive()
        if type(m) ~= "table" or m.i ~= i then parent:send("out of order at " .. i) return end
        if i %% 256 == 0 then
          local st = parent:stats()
          most = math.max(most, st.pending_bytes or st.pending * 1000)
          lipc.sleep(2)
        end
      end
      parent:send({most = most, last = parent:receive()})
    ]]):format(N))))
    flood(child)
    local r = child:receive()
    assert.are.equal("table", type(r), tostring(r))
    assert.are.equal("end", r.last)
    assert.is_true(r.most <= (1 << 20) + SLACK, ("%d bytes were waiting"):format(r.most))
    assert.are.equal(0, (child:wait()))
  end)

  it("a sender to a receiver taking nothing: send() false, drain() waits, nothing lost", function()
    local a, b = S.channel_pair({}, {receive_high_water = RHWM})
    local sent, blocked = 0, false
    lipc.go(function()
      for i = 1, N do
        if not a:send({i = i, pad = PAD}) then
          blocked = true
          if not a:drain() then return end
        end
        sent = i
      end
    end)
    -- the sender is held back: b has stopped reading
    assert.is_true(S.wait_for(function() return b:stats().receive_held end, 20000))
    assert.is_true(blocked)
    assert.is_true(sent < N)
    assert.is_true(b:stats().pending_bytes <= RHWM + SLACK)
    -- taking them lets the rest come, in order
    for i = 1, N do assert.are.equal(i, b:receive().i) end
    assert.are.equal(N, sent)
    assert.is_false(b:stats().receive_held)
    a:disconnect()
  end)

  it("receive_high_water is checked: an integer in 1..2^40", function()
    local a, b = assert(require("fork").socketpair())
    for _, bad in ipairs({0, -1, 1.5, "x", (1 << 40) + 1}) do
      assert.has_error(function() a:channel({receive_high_water = bad}) end,
        "bad argument #1 to 'stream.channel' "
          .. "(opts.receive_high_water must be an integer in 1..1099511627776)")
    end
    a:close()
    b:close()
  end)

  it("a byte stream nobody reads stops reading: the writer's write() turns false", function()
    local a, b = assert(require("fork").socketpair())
    local chunk = ("z"):rep(64 * 1024)
    local n = 0
    while a:write(chunk) do n = n + 1; assert(n < 1000, "write() never turned false") end
    lipc.sleep(50)
    assert.is_true(a:stats().queued > 0) -- the kernel holds no more
    assert.are.equal(0, b:stats().bytes_read)
    a:close()
    b:close()
  end)

  describe("JSON mode: a peer flooding NODE_HANDLE lines with no fd, never reading", function()
    -- Each such line is answered with a NACK. The peer is a raw stream
    -- of this process: it writes and never reads.
    local LINE = '{"cmd":"NODE_HANDLE","type":"net.Socket","msg":1}\n'

    local function flood_lines(raw, total)
      local state = {written = 0, done = false}
      local chunk = LINE:rep(1000)
      lipc.go(function()
        while state.written < total do
          state.written = state.written + #chunk
          if not raw:write(chunk) and not raw:drain() then break end
        end
        state.done = true
      end)
      return state
    end

    it("the replies stay under the high-water mark: the channel holds reads off", function()
      local ch, raw = S.raw_channel({serialization = "json"})
      local st = flood_lines(raw, 64 * MiB)
      assert.is_true(S.wait_for(function()
        local cs = ch:stats()
        return st.done or cs.queued > 4 * MiB or cs.receive_held
      end, 30000))
      assert.is_true(ch:stats().queued < 4 * MiB, ("%d bytes of replies queued"):format(ch:stats().queued))
      assert.is_false(st.done)
      assert.is_true(ch:stats().receive_held)
      assert.is_true(ch.connected)
      ch:disconnect()
      raw:close()
    end)

    it("once the peer reads its replies, reading resumes and every line is answered", function()
      local ch, raw = S.raw_channel({serialization = "json"})
      local total = 8 * MiB
      local st = flood_lines(raw, total)
      assert.is_true(S.wait_for(function() return ch:stats().receive_held or st.done end, 30000))
      local got = 0
      raw:on("data", function(chunk) got = got + #chunk end)
      local lines = total // #LINE + 1000
      local nack = #'{"cmd":"NODE_HANDLE_NACK"}\n'
      -- every line the flood wrote gets its NACK: none lost, none held
      assert.is_true(S.wait_for(function()
        return st.done and got >= (st.written // #LINE) * nack
      end, 60000), ("%d of %d lines answered"):format(got // nack, lines))
      assert.are.equal((st.written // #LINE) * nack, got)
      assert.is_false(ch:stats().receive_held)
      ch:disconnect()
      raw:close()
    end)
  end)
end)
