-- demo_spec.lua - `make demo`'s showcase (scripts/demo.lua) runs and every
-- number agrees: served by workers, reported live over the Unix socket
-- hub, and seen by the spawned client.
local support = require "support"
local q = support.shell_quote

describe("scripts/demo.lua", function()
  it("forks workers sharing a TCP server, spawns a client, counts over pipe and fork channels", function()
    local out, status = support.sh(("%s %s/scripts/demo.lua 120 12 3 2>&1"):format(
      q(support.lipc), q(support.root)))
    support.check_sanitizers(out)
    assert.are.equal(0, status, out)
    assert.matches("client exited with 0: 120 ok, 0 failed", out)
    assert.matches("total   120 served, 120 reported live, client saw 120", out)
    assert.matches("demo: all numbers agree", out)
    local workers = 0
    for _ in out:gmatch("\n  %d +%d+ +%d+ +%d+") do workers = workers + 1 end
    assert.are.equal(3, workers)
  end)
end)
