-- backpressure_spec.lua - a peer that sends faster than it is served, or
-- never reads what it is sent, cannot make lipc queue without bound: the
-- channel stops reading, the peer's writes wait, nothing is lost.
local lipc = require "lipc"
local S = require "support"

local MiB = 1 << 20

describe("backpressure", function()

  describe("JSON mode: a peer flooding NODE_HANDLE lines with no fd, never reading", function()
    -- Each such line is answered with a NACK. The peer is a raw stream
    -- of this process: it writes and never reads.
    local LINE = '{"cmd":"NODE_HANDLE","type":"net.Socket","msg":1}\n'

    local function flood(raw, total)
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
      local st = flood(raw, 64 * MiB)
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
      local st = flood(raw, total)
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
