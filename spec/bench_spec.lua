-- bench_spec.lua - `make bench` still runs: every program of a few cases,
-- lipc, Node, C and the floors, at a tiny scale. Only that each cell got a
-- figure is checked, never the figure (benchmarks are not timed assertions).
local support = require "support"

local q = support.shell_quote

describe("bench/run.sh", function()
  it("fills every cell and floor of a small run, and the poll table", function()
    local cases = {"ipc_pingpong", "ipc_stream", "stdout_read", "tcp_echo_rr"}
    local out, status = support.sh(("cd %s && BENCH_SCALE=0.02 LIPC=%s bash bench/run.sh %s 2>&1")
      :format(q(support.root), q(support.lipc), table.concat(cases, " ") .. " ipc_idle ipc_bursty"))
    assert.are.equal(0, status, out)
    assert.is_nil(out:find("\nnotes:", 1, true), out)
    local num = "(%d[%d.]*)"
    for _, name in ipairs(cases) do
      local lipc, node, c = out:match("\n" .. name .. " %([^)]+%)%s+" .. num .. "%s+" .. num .. "%s+" .. num)
      assert.is_truthy(lipc and node and c, name .. ": a cell without a figure\n" .. out)
      local floor, ratio = out:match("\n  " .. name .. "%s+" .. num .. " %S+%s+lipc/floor " .. num)
      assert.is_truthy(floor and ratio, name .. ": no floor\n" .. out)
    end
    -- the poll: the latency cases' floors with it, and every case on and off
    -- (and ipc_pingpong's in the same loop with Lua's floor)
    for _, fid in ipairs({"ipc_pingpong%+poll", "tcp_echo_rr%+poll", "ipc_pingpong%+poll%+lua"}) do
      local floor = out:match("\n  " .. fid .. "%s+" .. num .. " %S+%s+lipc/floor %d")
      assert.is_truthy(floor, fid .. ": no floor with the poll\n" .. out)
    end
    local poll = out:match("\nthe poll %(same run%).-\n\n")
    assert.is_truthy(poll, "no poll table\n" .. out)
    for _, name in ipairs({"ipc_pingpong", "ipc_stream", "tcp_echo_rr", "ipc_idle", "ipc_bursty"}) do
      local on, off = poll:match("\n" .. name .. " %([^)]+%)%s+" .. num .. "%s+" .. num)
      assert.is_truthy(on and off, name .. ": no figure on and off\n" .. out)
    end
    local row = "\nipc_pingpong %S+%s+%S+%s+%S+%s+%S+%s+"
    local cpu_on, cpu_off = poll:match(row .. num .. "%s+" .. num .. "%s+us/rt")
    assert.is_truthy(cpu_on and cpu_off, "ipc_pingpong: no CPU per round trip\n" .. out)
  end)
end)

describe("bench/remote.sh", function()
  it("fills the local and the launcher cells (ssh's too where sshd runs)", function()
    local out, status = support.sh(("cd %s && BENCH_SCALE=0.01 LIPC=%s bash bench/remote.sh 2>&1")
      :format(q(support.root), q(support.lipc)))
    assert.are.equal(0, status, out)
    local ssh = not out:find("ssh column is n/a", 1, true)
    for _, name in ipairs({"remote_pingpong", "remote_stream"}) do
      local a, b, c = out:match("\n" .. name .. "%s+%S+%s+(%S+)%s+(%S+)%s+(%S+)")
      assert.is_truthy(tonumber(a) and tonumber(b), name .. ": a cell without a figure\n" .. out)
      if ssh then assert.is_truthy(tonumber(c), name .. ": no ssh figure\n" .. out) end
    end
  end)
end)

-- The scaling curves (bench/scale.sh) at a tiny size: one point each (two
-- for the pool's), 20 ms a point. Again only that every cell got its figure.
local CURVES = {"pool_empty", "pool_cpu", "spawn", "conns", "conns_rss", "msg_size", "msg_rate", "fanout"}
local TINY = "BENCH_POINT_MS=20 BENCH_TIMEOUT=60 BENCH_WORKERS='1 2' BENCH_SPAWNS=2 "
  .. "BENCH_CLIENTS=10 BENCH_SIZES=65536 BENCH_FANOUT=2"
local POINTS = {pool_empty = 2, pool_cpu = 2}

-- rows of a scale.tsv: {curve, x, unit, lipc, node, c, ...}
local function rows_of(tsv)
  local rows = {}
  for line in tsv:gmatch("[^\n]+") do
    if not line:find("^#") and not line:find("^curve\t") then
      local r = {}
      for field in (line .. "\t"):gmatch("([^\t]*)\t") do r[#r + 1] = field end
      rows[#rows + 1] = r
    end
  end
  return rows
end

local function is_figure(s) return tonumber(s) ~= nil end

describe("bench/scale.sh", function()
  local dir, out, status

  setup(function()
    dir = support.tmpdir()
    out, status = support.sh(("cd %s && %s BENCH_OUT=%s LIPC=%s bash bench/scale.sh 2>&1")
      :format(q(support.root), TINY, q(dir), q(support.lipc)))
  end)

  it("gives every curve's figures for lipc, Node and C at a tiny size", function()
    assert.are.equal(0, status, out)
    assert.is_nil(out:find("\nnotes:", 1, true), out)
    local seen = {}
    for _, r in ipairs(rows_of(support.read_file(dir .. "/scale.tsv"))) do
      local curve, x, lipc, node, c = r[1], r[2], r[4], r[5], r[6]
      seen[curve] = (seen[curve] or 0) + 1
      assert.is_truthy(is_figure(lipc) and is_figure(node), curve .. " " .. x .. ": no figure\n" .. out)
      -- empty calls have no C peer: there is no work to do without IPC
      if curve == "pool_empty" then assert.are.equal("n/a", c)
      else assert.is_truthy(is_figure(c), curve .. " " .. x .. ": no C figure\n" .. out) end
    end
    for _, curve in ipairs(CURVES) do
      assert.are.equal(POINTS[curve] or 1, seen[curve], curve .. ": points missing\n" .. out)
      assert.is_truthy(out:find("\n" .. curve .. " %("), curve .. ": no table\n" .. out)
    end
  end)

  it("records the date and the machine with the figures", function()
    local tsv = support.read_file(dir .. "/scale.tsv")
    assert.is_truthy(tsv:find("^# date: %d%d%d%d%-%d%d%-%d%d\n"), tsv)
    assert.is_truthy(tsv:find("\n# machine: [^\n]*%d+ cores"), tsv)
  end)

  it("is drawn by bench/plot.sh: one SVG a curve, axes labelled, lipc, Node and C", function()
    local svgs = dir .. "/svg"
    local pout, pstatus = support.sh(("bash %s/bench/plot.sh %s %s 2>&1")
      :format(q(support.root), q(dir .. "/scale.tsv"), q(svgs)))
    assert.are.equal(0, pstatus, pout)
    local labels = {pool_empty = {"workers", "calls/s"}, pool_cpu = {"workers", "calls/s"},
                    spawn = {"in flight", "spawns/s"}, conns = {"clients", "rt/s"},
                    conns_rss = {"clients", "KiB/conn"}, msg_size = {"bytes", "MB/s"},
                    msg_rate = {"bytes", "msg/s"}, fanout = {"workers", "msg/s"}}
    for _, curve in ipairs(CURVES) do
      local svg = support.read_file(svgs .. "/" .. curve .. ".svg")
      assert.is_truthy(svg:find("<svg", 1, true), curve)
      for _, text in ipairs({labels[curve][1], labels[curve][2], ">lipc<", ">Node<", "cores"}) do
        assert.is_truthy(svg:find(text, 1, true), curve .. ".svg lacks " .. text)
      end
      if curve ~= "pool_empty" then assert.is_truthy(svg:find(">C<", 1, true), curve .. ".svg lacks C") end
    end
    assert.are.equal(support.read_file(dir .. "/scale.tsv"), support.read_file(svgs .. "/scale.tsv"))
  end)

  it("runs from lipc and the C programs alone: no compiler, Lua or Node", function()
    -- the shape of a `make bench-bundle` tree, with a PATH that has only
    -- the shell tools
    local tree, bin = dir .. "/bundle", dir .. "/bin"
    local tools = {"bash", "awk", "date", "sort", "mkdir", "mktemp", "rm", "cut", "head", "grep",
                   "sed", "nproc", "uname", "dirname", "basename", "timeout", "sleep", "tr", "cat"}
    local root = q(support.root)
    local cmd = {("mkdir -p %s/bench/lipc %s/build/bench %s"):format(q(tree), q(tree), q(bin)),
                 ("cp %s/bench/lib.sh %s/bench/scale.sh %s/bench/"):format(root, root, q(tree)),
                 ("cp %s/bench/lipc/*.lua %s/bench/lipc/"):format(root, q(tree))}
    for _, p in ipairs({"pool_limit", "spawn_rate"}) do
      cmd[#cmd + 1] = ("cp %s/build/bench/%s %s/build/bench/"):format(root, p, q(tree))
    end
    for _, t in ipairs(tools) do
      cmd[#cmd + 1] = ("ln -s \"$(command -v %s)\" %s/%s"):format(t, q(bin), t)
    end
    local _, st = support.sh(table.concat(cmd, " && "))
    assert.are.equal(0, st)
    local bout, bstatus = support.sh(("cd / && PATH=%s %s LIPC=%s %s/bash %s/bench/scale.sh %s 2>&1")
      :format(q(bin), TINY, q(support.lipc), q(bin), q(tree), "pool_cpu spawn"))
    assert.are.equal(0, bstatus, bout)
    local rows = rows_of(support.read_file(tree .. "/build/bench/scale.tsv"))
    assert.are.equal(3, #rows, bout)
    for _, r in ipairs(rows) do
      assert.is_truthy(is_figure(r[4]) and is_figure(r[6]), r[1] .. " " .. r[2] .. "\n" .. bout)
      assert.are.equal("n/a", r[5])
    end
    assert.is_truthy(bout:find("node: 'node' not found", 1, true), bout)
  end)
end)
