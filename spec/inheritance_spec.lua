-- inheritance_spec.lua - nothing of lipc's leaks into the processes it
-- starts: a worker's channel fd is close-on-exec, LIPC_CHANNEL_FD leaves
-- the environment as the runtime starts (whether or not the script uses
-- fork.parent), and a stale or bogus value is a clear error, never an
-- abort.
local lipc = require "lipc"
local fork = require "fork"
local S = require "support"

local q = S.shell_quote

-- A worker script in a private dir; returns its path and the dir.
local function script(code)
  local dir = S.tmpdir()
  return S.write_file(dir .. "/worker.lua", code), dir
end

-- child:wait() in a task of its own, for at most ms: whether it returned.
local function waits_within(child, ms)
  local c, done = lipc.cond(), false
  lipc.go(function()
    child:wait()
    done = true
    c:signal()
  end)
  if not done then c:wait(ms) end
  return done
end

-- Runs a lipc script with extra shell words before it (environment,
-- redirections): stdout and stderr together, and the exit status.
local function run_with(prefix, code)
  local dir = S.tmpdir()
  local path = S.write_file(dir .. "/main.lua", code)
  local out, status = S.sh(("%s %s %s </dev/null 2>&1"):format(prefix, q(S.lipc), q(path)))
  S.check_sanitizers(out)
  return out, status
end

describe("inheritance", function()

  it("a worker's channel fd is close-on-exec: os.execute's shell holds no socket", function()
    local path, dir = script([[
      local parent = require("fork").parent
      local lipc = require "lipc"
      local dir = ...
      local me = io.popen("readlink /proc/" .. lipc.pid .. "/fd/3"):read("l")
      os.execute("ls -l /proc/$$/fd > " .. dir .. "/shell_fds")
      local f = io.open(dir .. "/shell_fds")
      parent:send({channel = me, shell = f:read("a")})
      f:close()
    ]])
    local child = assert(fork(path, {dir}))
    local m = assert(child:receive())
    assert.matches("^socket:", m.channel)
    assert.is_nil(m.shell:find(m.channel, 1, true))
    assert.are.equal(0, (child:wait()))
  end)

  it("a background grandchild does not hold the channel: wait() returns", function()
    local path, dir = script([[
      local dir = ...
      os.execute("sleep 20 & echo $! > " .. dir .. "/sleep_pid")
    ]])
    local child = assert(fork(path, {dir}))
    local returned = waits_within(child, 10000)
    local pid = S.read_file(dir .. "/sleep_pid"):match("%d+")
    if pid then os.execute("kill " .. pid .. " 2>/dev/null") end
    assert.is_true(returned)
    assert.are.equal(0, child.exit_code)
  end)

  it("a worker that never touches fork.parent passes no LIPC_CHANNEL_FD on", function()
    local path, dir = script([[
      local dir, lipc_path = ...
      os.execute("echo ${LIPC_CHANNEL_FD-unset} > " .. dir .. "/env")
      os.execute("'" .. lipc_path .. "' -e 'print(require(\"fork\").parent == nil)' > "
                 .. dir .. "/grandchild 2>&1")
    ]])
    local child = assert(fork(path, {dir, S.lipc}))
    assert.are.equal(0, (child:wait()))
    assert.are.equal("unset\n", S.read_file(dir .. "/env"))
    assert.are.equal("true\n", S.read_file(dir .. "/grandchild"))
  end)

  it("a LIPC_CHANNEL_FD that is no socket is a clear error from fork.parent", function()
    local out, status = run_with("LIPC_CHANNEL_FD=0", [[require "fork"]])
    assert.are.equal(1, status)
    assert.matches("fork.parent: LIPC_CHANNEL_FD=0 is not a socket", out, 1, true)
  end)

  it("a stale LIPC_CHANNEL_FD (closed, then reused by the loop) is an error, not an abort", function()
    local out, status = run_with("exec 3<&-; LIPC_CHANNEL_FD=3", [[require "fork"]])
    assert.are.equal(1, status)
    assert.matches("fork.parent: LIPC_CHANNEL_FD=3 is not", out, 1, true)
    out, status = run_with("LIPC_CHANNEL_FD=900", [[require "fork"]])
    assert.are.equal(1, status)
    assert.matches("LIPC_CHANNEL_FD=900 is not an open fd", out, 1, true)
  end)

  it("a LIPC_CHANNEL_FD that is no number is an error naming it", function()
    local out, status = run_with("LIPC_CHANNEL_FD=three", [[require "fork"]])
    assert.are.equal(1, status)
    assert.matches("LIPC_CHANNEL_FD='three' is not an fd number", out, 1, true)
  end)

  it("a script that never uses fork runs despite a bogus value, and drops it", function()
    local out, status = run_with("LIPC_CHANNEL_FD=0",
      [[os.execute("echo ${LIPC_CHANNEL_FD-unset}")]])
    assert.are.equal(0, status)
    assert.are.equal("unset\n", out)
  end)
end)
