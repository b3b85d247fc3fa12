-- peers_spec.lua - hostile, or merely fast, peers: one peer must not
-- freeze the loop for the others, grow memory without bound or end the
-- process. Each attack is raw bytes from a real TCP socket into a channel
-- served by this process; bounds are checked by counts and sizes, never
-- by time (bench/lipc/hostile_peers.lua measures the time).
local net = require "net"
local t = require "lipc.test"
local S = require "support"

local be32 = S.be32

-- MessagePack pieces.
local function f64(x) return "\xcb" .. string.pack(">d", x) end

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
