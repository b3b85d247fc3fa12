-- tree_spec.lua - whole process trees: a child in its own process group,
-- kill(sig, {tree = true}) and opts.kill_tree, die_with_parent
-- (PR_SET_PDEATHSIG), and lipc as PID 1 (reaping orphans, passing
-- SIGTERM on), with real trees of processes.
local lipc = require "lipc"
local spawn = require "spawn"
local support = require "support"

local q = support.shell_quote

-- A shell that starts two background sleepers (each writes its pid to
-- dir/<n>) and waits; its own pid is child.pid.
local function tree(dir, opts, leader_exits)
  local script = ("sleep 60 & echo $! > %s/1; sleep 60 & echo $! > %s/2; %s")
    :format(q(dir), q(dir), leader_exits and "exit 0" or "wait")
  opts = opts or {}
  opts.stdio = opts.stdio or "ignore"
  return spawn("sh", {"-c", script}, opts)
end

local function pids_of(dir)
  local pids = {}
  assert.is_true(support.wait_for(function()
    for i = 1, 2 do
      local f = io.open(dir .. "/" .. i)
      local pid = f and f:read("n")
      if f then f:close() end
      pids[i] = pid
    end
    return pids[1] ~= nil and pids[2] ~= nil
  end))
  return pids
end

local function gone(pid)
  return support.wait_for(function() return not support.alive(pid) end, 5000)
end

-- Sleepers orphaned by a failed spec go to init: kill them anyway.
local function cleanup(pids)
  for _, pid in ipairs(pids) do lipc.kill(pid, "SIGKILL") end
end

describe("process trees", function()
  it("process_group: the child leads a group of its own", function()
    local child = spawn("sh", {"-c", "ps -o pgid= -p $$"}, {stdio = {"ignore", "pipe", "inherit"},
                                                          process_group = true})
    local pgid = tonumber(child.stdout:read_all())
    assert.are.equal(child.pid, pgid)
    assert.are.equal(0, child:wait())
  end)

  it("kill(sig, {tree = true}) signals the group: the child and all it started", function()
    local dir = support.tmpdir()
    local child = tree(dir, {process_group = true})
    local pids = pids_of(dir)
    assert.is_true(child:kill("SIGTERM", {tree = true}))
    assert.are.same({nil, "SIGTERM"}, {child:wait()})
    assert.is_true(gone(pids[1]))
    assert.is_true(gone(pids[2]))
    cleanup(pids)
  end)

  it("kill(sig, {tree = true}) without a group walks /proc for the descendants", function()
    local dir = support.tmpdir()
    local child = tree(dir)
    local pids = pids_of(dir)
    assert.is_true(child:kill("SIGKILL", {tree = true}))
    assert.are.same({nil, "SIGKILL"}, {child:wait()})
    assert.is_true(gone(pids[1]))
    assert.is_true(gone(pids[2]))
    cleanup(pids)
  end)

  it("a plain kill() leaves the grandchildren running (the reason for tree)", function()
    local dir = support.tmpdir()
    local child = tree(dir)
    local pids = pids_of(dir)
    assert.is_true(child:kill("SIGKILL"))
    child:wait()
    assert.is_true(support.alive(pids[1]))
    cleanup(pids)
    assert.is_true(gone(pids[1]))
  end)

  it("kills a tree whose leader already exited, through its group", function()
    local dir = support.tmpdir()
    local child = tree(dir, {process_group = true}, true)
    local pids = pids_of(dir)
    assert.are.equal(0, child:wait()) -- the leader is gone, the sleepers are not
    assert.is_true(support.alive(pids[1]))
    assert.is_true(child:kill("SIGTERM", {tree = true}))
    assert.is_true(gone(pids[1]))
    assert.is_true(gone(pids[2]))
    cleanup(pids)
  end)

  it("without a group, a tree whose leader exited is out of reach: ESRCH", function()
    local dir = support.tmpdir()
    local child = tree(dir, {}, true)
    local pids = pids_of(dir)
    assert.are.equal(0, child:wait())
    local ok, _, code = child:kill("SIGTERM", {tree = true})
    assert.is_nil(ok)
    assert.are.equal("ESRCH", code)
    cleanup(pids)
  end)

  it("opts.kill_tree: the timeout (and kill()) signal the whole tree", function()
    local dir = support.tmpdir()
    local child = tree(dir, {process_group = true, kill_tree = true, timeout = 50})
    local pids = pids_of(dir)
    assert.are.same({nil, "SIGTERM"}, {child:wait()})
    assert.is_true(child.timed_out)
    assert.is_true(gone(pids[1]))
    assert.is_true(gone(pids[2]))
    cleanup(pids)
  end)

  it("opts.kill_tree with opts.cancel: a cancelled scope leaves no grandchild", function()
    local dir = support.tmpdir()
    local child
    lipc.scope(function(s)
      child = tree(dir, {process_group = true, kill_tree = true, cancel = s})
      s:go(function() lipc.sleep(1e9) end)
    end, {timeout = 50})
    local pids = pids_of(dir)
    child:wait()
    assert.is_true(gone(pids[1]))
    assert.is_true(gone(pids[2]))
    cleanup(pids)
  end)

  it("refuses bad options", function()
    assert.has_error(function() spawn("true", {}, {process_group = 1}) end,
      "bad argument #3 to 'spawn' (opts.process_group: boolean expected, got number)")
    assert.has_error(function() spawn("true", {}, {die_with_parent = "SIGNOPE"}) end,
      "bad argument #3 to 'spawn' (opts.die_with_parent: unknown signal)")
    assert.has_error(function() spawn("true", {}, {die_with_parent = true, uid = 0}) end,
      "bad argument #3 to 'spawn' (opts.die_with_parent cannot be combined with uid or gid)")
    local child = spawn("true", {}, {stdio = "ignore"})
    assert.has_error(function() child:kill("SIGTERM", 5) end)
    child:wait()
  end)
end)

describe("die_with_parent", function()
  -- A lipc in between: it spawns `sleep` (with or without the option),
  -- prints the pid and waits; the spec kills it with SIGKILL.
  local function middle(opt)
    local code = ([[
      local spawn = require "spawn"
      local c = spawn("sleep", {"60"}, {stdio = "ignore", die_with_parent = %s})
      print(c.pid)
      io.stdout:flush()
      c:wait()
    ]]):format(opt)
    local dir = support.tmpdir()
    local file = support.write_file(dir .. "/middle.lua", code)
    local mid = spawn(support.lipc, {file}, {stdio = {"ignore", "pipe", "inherit"}})
    local line = mid.stdout:read()
    return mid, tonumber(line)
  end

  it("the child dies with its parent, even by SIGKILL", function()
    local mid, pid = middle("true")
    assert.is_true(support.alive(pid))
    mid:kill("SIGKILL")
    mid:wait()
    assert.is_true(gone(pid))
  end)

  it("takes a signal name; works with stdio, cwd and env as posix_spawn does", function()
    local r = assert(spawn.run("sh", {"-c", "pwd; echo $X; echo err >&2; ls /proc/self/fd | wc -l"},
      {die_with_parent = "SIGTERM", cwd = "/", env = {X = "y"}}))
    assert.are.equal("/\ny\n4\n", r.stdout) -- 0, 1, 2 and ls's own
    assert.are.equal("err\n", r.stderr)
    local missing = spawn("no-such-program-lipc", {}, {die_with_parent = true})
    local _, _, code = missing:wait()
    assert.are.equal("ENOENT", code)
  end)

  it("without it the child outlives a killed parent", function()
    local mid, pid = middle("false")
    mid:kill("SIGKILL")
    mid:wait()
    assert.is_true(support.alive(pid))
    lipc.kill(pid, "SIGKILL")
    assert.is_true(gone(pid))
  end)
end)

describe("lipc as PID 1", function()
  local function unshare_works()
    local _, status = support.sh("unshare --pid --fork --mount-proc true 2>/dev/null")
    return status == 0
  end

  local function run_as_init(code)
    local dir = support.tmpdir()
    local file = support.write_file(dir .. "/init.lua", code)
    return support.sh(("unshare --pid --fork --mount-proc %s %s 2>&1"):format(q(support.lipc), q(file)))
  end

  it("reaps the orphans reparented to it", function()
    if not unshare_works() then return pending("unshare --pid is not allowed here") end
    local out, status = run_as_init([[
      local lipc, spawn = require "lipc", require "spawn"
      assert(lipc.pid == 1)
      -- the shell exits at once; its background children become ours
      spawn.run("sh", {"-c", "(sleep 0.1) & (sleep 0.2) & exit 0"})
      lipc.sleep(600)
      local n = 0
      for pid in io.open("/proc/1/task/1/children"):read("a"):gmatch("%d+") do
        local st = io.open("/proc/" .. pid .. "/stat"):read("a"):match("%) (%a)")
        if st == "Z" then n = n + 1 end
      end
      print("zombies " .. n)
    ]])
    assert.are.equal(0, status, out)
    assert.matches("zombies 0", out)
  end)

  it("passes SIGTERM on to its children", function()
    if not unshare_works() then return pending("unshare --pid is not allowed here") end
    local out, status = run_as_init([[
      local lipc, spawn = require "lipc", require "spawn"
      local child = spawn("sleep", {"60"}, {stdio = "ignore"})
      lipc.set_timeout(50, function() lipc.kill(1, "SIGTERM") end)
      print("child", child:wait())
    ]])
    assert.are.equal(0, status, out)
    assert.matches("child\tnil\tSIGTERM", out)
  end)
end)
