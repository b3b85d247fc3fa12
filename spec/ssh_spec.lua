-- ssh_spec.lua - workers reached through a real ssh: Debian's sshd on
-- 127.0.0.1 and 127.0.0.2 with keys made for this file (support.sshd),
-- one server for all of it. Messages, script shipping, a pool over the
-- two addresses, the far side killed, the link dropped, a refused key;
-- and, where root and ip netns are, a second sshd in a network namespace
-- of the spec's own. Without sshd or root they are pending, saying why.
local lipc = require "lipc"
local fork = require "fork"
local S = require "support"

describe("fork through ssh", function()
  local server, why
  setup(function() server, why = S.sshd() end)

  local function need_sshd()
    if not server then pending("needs sshd and root: " .. tostring(why)) end
    return server
  end

  local function ppid(pid)
    local f = io.open(("/proc/%d/stat"):format(pid))
    if not f then return nil end
    local n = f:read("a"):match("%) %a (%d+)")
    f:close()
    return tonumber(n)
  end

  local function worker(code)
    return S.write_file(S.tmpdir() .. "/worker.lua", code)
  end

  -- up_worker(rest) -> child: a worker over ssh that has said "up" and
  -- then runs `rest` (Lua, with `parent` in scope).
  local function up_worker(rest)
    local child = assert(fork(worker([[
      local parent = require("fork").parent
      parent:send("up")
      ]] .. rest), {via = server.via(), exec_path = S.lipc}))
    assert.are.equal("up", child:receive())
    return child
  end

  local function no_orphan(pid)
    assert.is_true(S.wait_for(function() return not S.alive(pid) end, 5000),
      "the worker on the far side is an orphan")
  end

  it("carries messages both ways, with the script and its modules sent over", function()
    if not need_sshd() then return end
    local dir = S.tmpdir()
    S.write_file(dir .. "/ssh_shipped.lua", "return {n = 21}")
    local saved = package.path
    package.path = dir .. "/?.lua;" .. package.path
    local child, err = fork(worker([[
      local parent = require("fork").parent
      parent:send({n = require("ssh_shipped").n, args = {...}})
      for m in function() return parent:receive() end do parent:send(m * 2) end
    ]]), {"x y"}, {via = server.via(), exec_path = S.lipc})
    package.path = saved
    assert(child, err)
    assert.are.same({n = 21, args = {"x y"}}, child:receive())
    for i = 1, 50 do
      child:send(i)
      assert.are.equal(2 * i, child:receive())
    end
    child:disconnect()
    assert.are.equal(0, (child:wait()))
  end)

  it("kill() ends ssh, and with it the worker over there", function()
    if not need_sshd() then return end
    local child = up_worker('require("lipc").sleep(60000)')
    local pid = child.remote.pid
    child:kill()
    assert.are.equal(255, (child:wait())) -- ssh ends on SIGTERM with 255
    no_orphan(pid)
  end)

  it("killing the far side: receive() gives ERR_IPC_LINK_LOST, ssh ends", function()
    if not need_sshd() then return end
    local child = up_worker("parent:receive()")
    assert(lipc.kill(child.remote.pid, "SIGKILL"))
    local m, msg, code = child:receive()
    assert.is_nil(m)
    assert.are.equal("ERR_IPC_LINK_LOST", code, msg)
    assert.are.equal(255, (child:wait()))
  end)

  it("dropping the link (the sshd session killed): the worker ends, the parent is told", function()
    if not need_sshd() then return end
    local child = up_worker('require("lipc").sleep(60000)')
    local pid = child.remote.pid
    local session = assert(ppid(pid))
    assert.are_not.equal(server.proc.pid, session) -- the connection's own sshd
    assert(lipc.kill(session, "SIGKILL"))
    local m, msg, code = child:receive()
    assert.is_nil(m)
    assert.are.equal("ERR_IPC_LINK_LOST", code, msg)
    assert.are.equal(255, (child:wait()))
    no_orphan(pid)
  end)

  it("a refused key: ERR_LAUNCH_FAILED with ssh's own words", function()
    if not need_sshd() then return end
    local child, msg, code = fork(worker(""), {via = server.via("127.0.0.1", "other_key"),
                                               exec_path = S.lipc})
    assert.is_nil(child)
    assert.are.equal("ERR_LAUNCH_FAILED", code)
    assert.matches("Permission denied %(publickey", msg)
  end)

  it("a pool over two hosts: calls spread, a lost host's call fails, a new worker comes", function()
    if not need_sshd() then return end
    local mark = S.tmpdir() .. "/hanging"
    local pool = fork.pool(worker(([[
      local lipc = require "lipc"
      local addr = os.getenv("SSH_CONNECTION"):match("^%%S+ %%S+ (%%S+)")
      require("fork").serve(function(msg)
        if msg == "where" then lipc.sleep(50) end
        if msg == "hang" then
          local f = assert(io.open(%q, "w"))
          f:write(lipc.pid)
          f:close()
          lipc.sleep(60000)
        end
        return addr
      end)
    ]]):format(mark)), {size = 2, exec_path = S.lipc,
                        hosts = {server.via("127.0.0.1"), server.via("127.0.0.2")}})
    assert.is_true(pool:started(20000))
    local seen, done = {}, 0
    for _ = 1, 4 do -- at once: one for each slot
      lipc.go(function()
        seen[assert(pool:call("where"))] = true
        done = done + 1
      end)
    end
    assert.is_true(S.wait_for(function() return done == 4 end, 10000))
    assert.are.same({["127.0.0.1"] = true, ["127.0.0.2"] = true}, seen)
    -- the link of the worker holding this call drops
    local result
    lipc.go(function() result = table.pack(pool:call("hang")) end)
    assert.is_true(S.wait_for(function()
      local f = io.open(mark)
      if f then f:close() end
      return f ~= nil and #S.read_file(mark) > 0
    end, 10000))
    local pid = tonumber(S.read_file(mark))
    assert(lipc.kill(assert(ppid(pid)), "SIGKILL"))
    assert.is_true(S.wait_for(function() return result ~= nil end, 10000))
    assert.is_nil(result[1])
    assert.are.equal("ERR_HOST_LOST", result[3])
    assert.matches("host root@127%.0%.0%.%d lost during the call", result[2])
    assert.is_true(S.wait_for(function() return not S.alive(pid) end, 5000))
    assert.is_true(pool:started(20000)) -- its replacement
    for _ = 1, 4 do assert.is_string(pool:call("where")) end
    pool:close()
  end)

  it("scripts/remote_pool.lua feeds workers on two hosts through ssh", function()
    if not need_sshd() then return end
    local function line(via) return table.concat(via, " ") end
    local r = assert(require("spawn").run(S.lipc, {"scripts/remote_pool.lua",
      line(server.via("127.0.0.1")), line(server.via("127.0.0.2"))},
      {cwd = S.root, env = {LIPC_REMOTE_EXEC = S.lipc}}))
    assert.are.equal(0, r.code, r.stderr)
    assert.matches("primes up to 200000: 17984\n", r.stdout)
    assert.matches("127%.0%.0%.1 answered %d+ calls", r.stdout)
    assert.matches("127%.0%.0%.2 answered %d+ calls", r.stdout)
  end)
end)

describe("fork through ssh into another network namespace", function()
  local function can_netns()
    local probe = "lipc-ssh-probe-" .. lipc.pid
    local _, status = S.sh(("test \"$(id -u)\" = 0 && test -x /usr/sbin/sshd && "
      .. "ip netns add %s 2>/dev/null && ip netns del %s"):format(probe, probe))
    return status == 0
  end

  it("runs the worker on a network stack that is not ours", function()
    if not can_netns() then
      pending("needs root, ip netns and sshd: skipped")
      return
    end
    local ns = "lipc-ssh-" .. lipc.pid
    local _, status = S.sh(("ip netns add %s && ip netns exec %s ip link set lo up")
      :format(ns, ns))
    assert.are.equal(0, status)
    finally(function() S.sh("ip netns del " .. ns) end)
    local server = assert(S.sshd({netns = ns}))
    local child = assert(fork(S.write_file(S.tmpdir() .. "/w.lua", [[
      local parent = require("fork").parent
      parent:send(parent:receive() + 1)
    ]]), {via = server.via(), exec_path = S.lipc}))
    local function netns_of(pid)
      return (S.sh("readlink /proc/" .. pid .. "/ns/net"))
    end
    assert.are_not.equal(netns_of(lipc.pid), netns_of(child.remote.pid))
    child:send(41)
    assert.are.equal(42, child:receive())
    assert.are.equal(0, (child:wait()))
    server.stop()
  end)
end)
