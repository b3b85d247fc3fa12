-- support.lua - lipc's own tools for its specs, beside what lipc.test
-- gives every project: where the lipc binary under test is, running a
-- lipc child or a shell command to completion, channels made by hand.
local lipc = require "lipc"
local t = require "lipc.test"

local M = {}

-- The lipc executable running these specs (build/lipc, or the ASan one).
-- (/proc/self/exe says " (deleted)" once the binary was rebuilt under us.)
M.root = lipc.cwd()
M.lipc = os.getenv("LIPC") or (lipc.argv[1]:gsub(" %(deleted%)$", ""))
if M.lipc:sub(1, 1) ~= "/" then M.lipc = M.root .. "/" .. M.lipc end

-- open_fds([pid]) -> how many fds the process (default: this one) has.
function M.open_fds(pid)
  local p = assert(io.popen("ls /proc/" .. (pid or lipc.pid) .. "/fd"))
  local n = 0
  for _ in p:lines() do n = n + 1 end
  p:close()
  return n
end

-- proc_state(pid) -> the process's state letter in /proc ("R", "S",
-- "Z" for a zombie...), or nil when there is no such process.
function M.proc_state(pid)
  local f = io.open(("/proc/%d/stat"):format(pid))
  if not f then return nil end
  local state = f:read("a"):match("%) (%a)")
  f:close()
  return state
end

-- alive(pid) -> whether pid still runs. A zombie has ended: an orphan
-- reparented to a pid 1 that does not reap (as in some containers) stays
-- one forever, and kill(pid, 0) would still find it.
function M.alive(pid)
  local state = M.proc_state(pid)
  return state ~= nil and state ~= "Z"
end

-- children() -> the pids of this process's children as the kernel sees
-- them (zombies included).
function M.children()
  local f = io.open(("/proc/%d/task/%d/children"):format(lipc.pid, lipc.pid))
  local list = {}
  if not f then return list end
  for pid in f:read("a"):gmatch("%d+") do list[#list + 1] = tonumber(pid) end
  f:close()
  return list
end

-- channel_pair([opts_a, opts_b]) -> two channels over the two ends of a
-- socketpair, then the two streams.
function M.channel_pair(opts_a, opts_b)
  local a, b = assert(require("fork").socketpair())
  return a:channel(opts_a), b:channel(opts_b), a, b
end

-- raw_channel([opts]) -> a channel on one end of a socketpair and the
-- plain stream on the other, to write frames by hand.
function M.raw_channel(opts)
  local a, b = assert(require("fork").socketpair())
  return a:channel(opts), b
end

-- be32(n) -> n as a native frame's 4-byte big-endian length.
function M.be32(n)
  return string.char(n >> 24 & 255, n >> 16 & 255, n >> 8 & 255, n & 255)
end

-- wait_for(pred[, ms]) in a task -> whether pred() became true within
-- ms (default 2000): lipc.test.wait_for, as a boolean for assert.is_true.
function M.wait_for(pred, ms)
  return t.wait_for(pred, ms or 2000) ~= nil
end

-- A private directory, removed after the spec (or the describe block).
M.tmpdir = t.tmpdir

function M.write_file(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
end

function M.read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
M.shell_quote = shell_quote

-- sh(cmd) -> stdout, status: a shell command run to completion (blocking;
-- for tools only, the specs under test use spawn).
function M.sh(cmd)
  local p = assert(io.popen(cmd .. "; echo \"__status=$?\"", "r"))
  local out = p:read("a")
  p:close()
  local body, status = out:match("^(.-)__status=(%d+)\n?$")
  return body, tonumber(status)
end

-- run_script(name[, args]) -> output, status: scripts/<name> run to
-- completion by the lipc under test from the tree's root, with args;
-- output is its stdout and stderr together.
function M.run_script(name, args)
  local argv = {}
  for i, a in ipairs(args or {}) do argv[i] = M.shell_quote(a) end
  return M.sh(("cd %s && %s scripts/%s %s 2>&1"):format(M.shell_quote(M.root),
    M.shell_quote(M.lipc), name, table.concat(argv, " ")))
end

-- run_lipc(code[, args][, opts]) -> stdout, stderr, status: code run by a
-- child lipc through a file (opts.stdin feeds its standard input). The
-- wait is blocking, which the spec's deadline cannot stop: a child still
-- running after opts.timeout seconds (default 120) is killed and the
-- status is 124, so a hang fails its spec instead of the whole run.
function M.run_lipc(code, args, opts)
  opts = opts or {}
  local dir = M.tmpdir()
  local script = M.write_file(dir .. "/main.lua", code)
  local argv = {}
  for i, a in ipairs(args or {}) do argv[i] = shell_quote(a) end
  local cmd = ("timeout -k 5 %d %s %s %s 2>%s/stderr"):format(opts.timeout or 120,
    shell_quote(M.lipc), shell_quote(script), table.concat(argv, " "), dir)
  if opts.stdin then
    M.write_file(dir .. "/stdin", opts.stdin)
    cmd = cmd .. " <" .. dir .. "/stdin"
  else
    cmd = cmd .. " </dev/null"
  end
  local out, status = M.sh(cmd)
  local err = M.read_file(dir .. "/stderr")
  M.check_sanitizers(err)
  return out, err, status
end

-- Under `make check` children run with ASan+UBSan: their reports fail the
-- spec that started them.
function M.check_sanitizers(stderr)
  for _, pat in ipairs({"ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"}) do
    if stderr:find(pat, 1, true) then
      error("sanitizer report from a child:\n" .. stderr, 2)
    end
  end
end

-- The README's embedding program (its comments left out): it runs
-- topology.lua from the current directory.
M.README_EMBEDDER = [[
#include "lipc.h"

int main(int argc, char **argv) {
  lipc_runtime *rt = lipc_new(NULL);
  lipc_run_file(rt, "topology.lua", argc - 1, argv + 1);
  lipc_run(rt);
  int status = lipc_exit_status(rt);
  lipc_free(rt);
  return status;
}
]]

-- ---- a real sshd for the specs of workers through ssh --------------------

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- sshd() in a task -> a server, or nil and why not (the caller marks its
-- specs pending). Debian's sshd runs in the foreground on 127.0.0.1 and
-- 127.0.0.2 (two "hosts") at a free port, with a host key, a user key and
-- known_hosts made for it in a private dir, and is ended after the spec
-- or describe block that started it (or by server:stop()). Nothing of the
-- machine's own ssh set-up is read or changed. server.via(host[, key])
-- -> the launcher argv for fork's opts.via (host "127.0.0.1" by default;
-- key: another private key, to be refused). opts.netns: sshd and the ssh
-- of server.via run in that network namespace (`ip netns exec`).
function M.sshd(opts)
  opts = opts or {}
  local spawn = require "spawn"
  -- opts.netns: sshd, and the ssh of server.via, run in that namespace
  local pre = opts.netns and {"ip", "netns", "exec", opts.netns} or {}
  local function cmd(argv)
    local r = {}
    for _, a in ipairs(pre) do r[#r + 1] = a end
    for _, a in ipairs(argv) do r[#r + 1] = a end
    return r[1], {table.unpack(r, 2)}
  end
  for _, tool in ipairs({"/usr/sbin/sshd", "/usr/bin/ssh", "/usr/bin/ssh-keygen"}) do
    if not exists(tool) then return nil, tool .. " is missing (make deps: openssh-server)" end
  end
  if (M.sh("id -u")) ~= "0\n" then return nil, "sshd needs root here" end
  if not exists("/run/sshd") then os.execute("mkdir -p /run/sshd") end
  local dir = M.tmpdir()
  local function keygen(name)
    local r = spawn.run("/usr/bin/ssh-keygen", {"-q", "-t", "ed25519", "-N", "", "-C", name,
                                                "-f", dir .. "/" .. name})
    return r and r.code == 0
  end
  if not (keygen("host_key") and keygen("user_key") and keygen("other_key")) then
    return nil, "ssh-keygen failed"
  end
  local port = t.free_port()
  local host_pub = M.read_file(dir .. "/host_key.pub"):match("^(%S+ %S+)")
  M.write_file(dir .. "/authorized_keys", M.read_file(dir .. "/user_key.pub"))
  M.write_file(dir .. "/known_hosts", ("[127.0.0.1]:%d %s\n[127.0.0.2]:%d %s\n")
    :format(port, host_pub, port, host_pub))
  M.write_file(dir .. "/sshd_config", table.concat({
    "Port " .. port, "ListenAddress 127.0.0.1", "ListenAddress 127.0.0.2",
    "HostKey " .. dir .. "/host_key", "PidFile none",
    "AuthorizedKeysFile " .. dir .. "/authorized_keys", "StrictModes no", "UsePAM no",
    "PasswordAuthentication no", "KbdInteractiveAuthentication no",
    "PermitRootLogin prohibit-password", "PubkeyAuthentication yes", "UseDNS no",
    "MaxStartups 64", "MaxSessions 64", "LogLevel ERROR", "PrintMotd no",
    -- bash reads ~/.bashrc for a command run by sshd, unless SHLVL says
    -- it is not the first shell: the machine's own rc files stay out
    "SetEnv SHLVL=1", "",
  }, "\n"))
  local exe, argv = cmd({"/usr/sbin/sshd", "-D", "-e", "-f", dir .. "/sshd_config"})
  local proc = spawn(exe, argv, {stdio = {"ignore", "ignore", "pipe"}})
  if not proc then return nil, "sshd did not start" end
  local log = ""
  proc.stderr:on("data", function(d) log = (log .. d):sub(-4096) end)
  local server = {port = port, dir = dir, proc = proc}
  function server.stop()
    if proc.exit_code == nil and proc.signal_code == nil then proc:kill("SIGTERM") end
    proc:wait()
  end
  function server.log() return log end
  function server.via(host, key)
    local via = {table.unpack(pre)}
    for _, a in ipairs({"ssh", "-T", "-F", "/dev/null", "-p", tostring(port),
            "-i", dir .. "/" .. (key or "user_key"), "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", "UserKnownHostsFile=" .. dir .. "/known_hosts",
            "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR",
            "root@" .. (host or "127.0.0.1")}) do via[#via + 1] = a end
    return via
  end
  local h = t._harness
  if h then h.defer(server.stop) end
  -- ready once it accepts (bounded)
  local net = require "net"
  local probe = ("local s = require('net').connect({host = '127.0.0.1', port = %d})"
    .. " os.exit(s and 0 or 1)"):format(port)
  local up = t.wait_for(function()
    if proc.exit_code ~= nil or proc.signal_code ~= nil then return true end
    if opts.netns then -- its loopback is not ours
      local pexe, pargv = cmd({M.lipc, "-e", probe})
      local r = spawn.run(pexe, pargv)
      return r ~= nil and r.code == 0
    end
    local sock = net.connect({host = "127.0.0.1", port = port})
    if sock then sock:close() return true end
    return false
  end, 5000)
  if not up or proc.exit_code ~= nil or proc.signal_code ~= nil then
    server.stop()
    return nil, "sshd did not come up: " .. log
  end
  return server
end

return M
