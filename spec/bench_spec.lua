-- bench_spec.lua - `make bench` still runs: every program of a few cases,
-- lipc, Node, C and the floors, at a tiny scale. Only that each cell got a
-- figure is checked, never the figure (benchmarks are not timed assertions).
local support = require "support"

local q = support.shell_quote

describe("bench/run.sh", function()
  it("fills every cell and floor of a small run", function()
    local cases = {"ipc_pingpong", "ipc_stream", "stdout_read", "tcp_echo_rr"}
    local out, status = support.sh(("cd %s && BENCH_SCALE=0.02 LIPC=%s bash bench/run.sh %s 2>&1")
      :format(q(support.root), q(support.lipc), table.concat(cases, " ")))
    assert.are.equal(0, status, out)
    assert.is_nil(out:find("\nnotes:", 1, true), out)
    local num = "(%d[%d.]*)"
    for _, name in ipairs(cases) do
      local lipc, node, c = out:match("\n" .. name .. " %([^)]+%)%s+" .. num .. "%s+" .. num .. "%s+" .. num)
      assert.is_truthy(lipc and node and c, name .. ": a cell without a figure\n" .. out)
      local floor, ratio = out:match("\n  " .. name .. "%s+" .. num .. " %S+%s+lipc/floor " .. num)
      assert.is_truthy(floor and ratio, name .. ": no floor\n" .. out)
    end
  end)
end)
