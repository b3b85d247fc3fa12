-- test_helpers.lua - the `lipc.test` module: what a spec of a topology
-- needs. Temp dirs, ports, waiting with a deadline, a child's output,
-- workers, fake peers, exits within a time. What a helper starts inside a
-- spec is stopped and removed after it (after its after_each blocks),
-- before `lipc test` checks what the spec left open; inside a describe
-- block, when the block ends; elsewhere, when the process exits.
local lipc = require "lipc"

local M = {}

-- Set by `lipc test` (test_harness.lua): {timeout = fn, defer = fn}.
M._harness = nil

local POLL_MS = 5        -- wait_for and eventually look again this often
local WAIT_MS = 5000     -- their default deadline
local STOP_MS = 2000     -- what a worker gets for each step of its stop

local execute, kill = os.execute, lipc.kill

-- Cleanups with no spec nor describe block to wait for: at exit, when the
-- Lua state closes (they may not wait).
local at_exit = setmetatable({}, {__gc = function(t)
  for i = #t, 1, -1 do pcall(t[i]) end
end})

-- later(fn[, at_exit_fn]): fn after the spec or block running now, or
-- at_exit_fn when the process exits.
local function later(fn, exit_fn)
  local h = M._harness
  if h and h.defer(fn) then return end
  if exit_fn then at_exit[#at_exit + 1] = exit_fn end
end

local function elapsed_ms(t0)
  return (lipc.hrtime() - t0) / 1e6
end

local function check_task(fname)
  if not lipc.in_task() then error(fname .. ": must be called inside a task (lipc.go)", 3) end
end

local function check_ms(ms, fname, n, default)
  if ms == nil and default then return default end
  if type(ms) ~= "number" or ms < 0 then
    error(("bad argument #%d to '%s' (milliseconds >= 0 expected, got %s)"):format(n, fname, tostring(ms)), 3)
  end
  return ms
end

-- A failure of the spec (busted's kind, so it reads as an assertion), or
-- a plain error outside busted. level as error's.
local function fail(msg, level)
  local busted = package.loaded.busted
  local ok, bfail = pcall(function() return busted.fail end)
  if ok and type(bfail) == "function" then bfail(msg, level + 1) end
  error(msg, level + 1)
end

local function quote(s)
  return "'" .. s:gsub("'", [['\'']]) .. "'"
end

-- ---- deadlines ----------------------------------------------------------------

function M.timeout(ms)
  ms = check_ms(ms, "lipc.test.timeout", 1)
  local h = M._harness
  if not h then error("lipc.test.timeout: only in specs run by `lipc test`", 2) end
  h.timeout(ms)
end

local function check_fn(fn, fname)
  if type(fn) ~= "function" then
    error(("bad argument #1 to '%s' (function expected, got %s)"):format(fname, type(fn)), 3)
  end
end

-- Calls try() now and every POLL_MS until it returns true, for at most
-- ms; returns whether it did.
local function poll(ms, try)
  local t0 = lipc.hrtime()
  while not try() do
    if elapsed_ms(t0) >= ms then return false end
    lipc.sleep(POLL_MS)
  end
  return true
end

function M.wait_for(pred, ms)
  check_fn(pred, "lipc.test.wait_for")
  ms = check_ms(ms, "lipc.test.wait_for", 2, WAIT_MS)
  check_task("lipc.test.wait_for")
  local v
  if poll(ms, function() v = pred(); return v end) then return v end
  return nil, ("lipc.test.wait_for: not true within %d ms"):format(ms)
end

function M.eventually(fn, ms)
  check_fn(fn, "lipc.test.eventually")
  ms = check_ms(ms, "lipc.test.eventually", 2, WAIT_MS)
  check_task("lipc.test.eventually")
  local r
  if poll(ms, function() r = table.pack(pcall(fn)); return r[1] end) then
    return table.unpack(r, 2, r.n)
  end
  local e, note = r[2], ("\n(still failing after %d ms)"):format(ms)
  if type(e) == "table" and type(e.message) == "string" then
    e.message = e.message .. note
  elseif type(e) == "string" then
    e = e .. note
  end
  error(e, 0)
end

-- ---- files and ports --------------------------------------------------------------

function M.tmpdir()
  local dir, err = lipc.mkdtemp((os.getenv("TMPDIR") or "/tmp") .. "/lipc-test-")
  if not dir then error("lipc.test.tmpdir: " .. tostring(err), 2) end
  local function remove() execute("rm -rf " .. quote(dir)) end
  later(remove, remove)
  return dir
end

function M.free_port(host)
  local srv = require("net").create_server()
  local ok, err = srv:listen(0, host or "127.0.0.1")
  local port = ok and srv:address().port
  srv:close()
  if not port then error("lipc.test.free_port: " .. tostring(err), 2) end
  return port
end

-- ---- a child's output -----------------------------------------------------------------

local Capture = {}

local function capture_index(self, k)
  local parts = rawget(self, "_parts")[k]
  if parts then return table.concat(parts) end
  return Capture[k]
end

function M.capture(child)
  local cap = setmetatable({_parts = {stdout = {}, stderr = {}, output = {}}, _more = lipc.cond(),
                            _open = 0}, {__index = capture_index})
  local streams = {stdout = child.stdout, stderr = child.stderr}
  if not streams.stdout and not streams.stderr and type(child.read) == "function" then
    streams.stdout = child -- a stream of its own
  end
  for name, s in pairs(streams) do
    cap._open = cap._open + 1
    s:on("data", function(chunk)
      local p = cap._parts
      p[name][#p[name] + 1] = chunk
      p.output[#p.output + 1] = chunk
      cap._more:broadcast()
    end)
    s:on("end", function()
      cap._open = cap._open - 1
      cap._more:broadcast()
    end)
  end
  return cap
end

function Capture:wait_for(pattern, ms)
  if type(pattern) ~= "string" then
    error("capture:wait_for: bad argument #1 (pattern string expected, got " .. type(pattern) .. ")", 2)
  end
  ms = check_ms(ms, "capture:wait_for", 2, WAIT_MS)
  check_task("capture:wait_for")
  local t0 = lipc.hrtime()
  while true do
    local out = self.output
    local r = table.pack(out:match(pattern))
    if r[1] ~= nil then return table.unpack(r, 1, r.n) end
    local left = ms - elapsed_ms(t0)
    if left <= 0 or self._open == 0 then
      return nil, ("capture:wait_for: no %q in the output %s; the output:\n%s")
        :format(pattern, left <= 0 and ("within " .. ms .. " ms") or "before it ended", out)
    end
    self._more:wait(math.ceil(left))
  end
end

-- ---- processes ------------------------------------------------------------------------

local function gone(child)
  return child.exit_code ~= nil or child.signal_code ~= nil
end

local function wait_exit(child, ms)
  if gone(child) then return true end
  local c = lipc.cond()
  child:once("exit", function() c:signal(true) end)
  return c:wait(ms) == true or gone(child)
end

local function wait_close(child, ms)
  local c, closed = lipc.cond(), false
  lipc.go(function()
    child:wait()
    closed = true
    c:signal()
  end)
  if not closed then c:wait(ms) end
  return closed
end

function M.exits_within(child, ms)
  ms = check_ms(ms, "lipc.test.exits_within", 2)
  check_task("lipc.test.exits_within")
  if wait_exit(child, ms) then return child.exit_code, child.signal_code end
  pcall(child.kill, child, "SIGKILL")
  wait_exit(child, STOP_MS)
  fail(("process %s did not exit within %d ms (it was killed)"):format(tostring(child.pid), ms), 2)
end

-- A worker's end: its channel disconnected (a well-behaved worker ends
-- then), SIGTERM, then SIGKILL, each given STOP_MS; then its streams.
local function stop(child)
  if not gone(child) then
    if child.connected then pcall(child.disconnect, child) end
    pcall(child.kill, child, "SIGTERM")
    if not wait_exit(child, STOP_MS) then
      pcall(child.kill, child, "SIGKILL")
      wait_exit(child, STOP_MS)
    end
  end
  local peer = child.peer
  if peer then pcall(peer.close, peer) end
  wait_close(child, STOP_MS)
  pcall(child.close, child)
end

local function exepath()
  return (lipc.argv[1]:gsub(" %(deleted%)$", ""))
end

-- The worker's end of the channel is a raw stream: the test plays the
-- parent byte by byte.
local function start_raw(script, args, opts)
  local argv = {script}
  for _, a in ipairs(args) do argv[#argv + 1] = tostring(a) end
  local env = {}
  for k, v in pairs(opts.env or {}) do env[k] = v end
  env.LIPC_CHANNEL_FD = "3"
  local sopts = {}
  for k, v in pairs(opts) do sopts[k] = v end
  local s = opts.stdio
  sopts.stdio, sopts.env = {s[1], s[2], s[3], "ipc"}, env
  local child = require("spawn")(exepath(), argv, sopts)
  child.peer = child.stdio[4]
  return child
end

function M.worker(script, args, opts)
  if type(script) ~= "string" then
    error("lipc.test.worker: bad argument #1 (script path expected, got " .. type(script) .. ")", 2)
  end
  if opts == nil and type(args) == "table" and args[1] == nil and next(args) ~= nil then
    args, opts = nil, args
  end
  args, opts = args or {}, opts or {}
  local fopts = {}
  for k, v in pairs(opts) do fopts[k] = v end
  fopts.fake_peer = nil
  fopts.stdio = fopts.stdio or {"ignore", "pipe", "pipe"}
  local child, err, code
  if opts.fake_peer then
    child = start_raw(script, args, fopts)
  else
    child, err, code = require("fork")(script, args, fopts)
    if not child then return nil, err, code end
  end
  if child.stdout or child.stderr then child.output = M.capture(child) end
  local pid = child.pid
  later(function() stop(child) end, function() if pid then kill(pid, "SIGKILL") end end)
  return child
end

-- ---- fake peers and frames ---------------------------------------------------------

function M.fake_peer()
  local peer, other = require("fork").socketpair()
  if not peer then error("lipc.test.fake_peer: " .. tostring(other), 2) end
  later(function()
    peer:close()
    other:close()
  end)
  return peer, other
end

-- One native frame: the bytes a channel writes for value.
function M.frame(value)
  check_task("lipc.test.frame")
  local a, b = assert(require("fork").socketpair())
  local ok, err = pcall(function() a:channel():send(value) end)
  local data = ""
  while ok and (#data < 4 or #data < 4 + (">I4"):unpack(data)) do
    local chunk = b:read()
    if not chunk then break end
    data = data .. chunk
  end
  a:close()
  b:close()
  if not ok then error(err, 2) end
  return data
end

local function decode(bytes)
  local a, b = assert(require("fork").socketpair())
  local ch = b:channel()
  a:write(bytes)
  a:shutdown()
  local v, err = ch:receive()
  a:close()
  b:close()
  return v, err
end

-- Bytes read from a stream beyond the frame read_frame returned.
local rest = setmetatable({}, {__mode = "k"})

function M.read_frame(stream)
  check_task("lipc.test.read_frame")
  local data = rest[stream] or ""
  while #data < 4 or #data < 4 + (">I4"):unpack(data) do
    local chunk, err = stream:read()
    if not chunk then
      rest[stream] = data
      return nil, err or (#data == 0 and "the stream ended" or "the stream ended inside a frame")
    end
    data = data .. chunk
  end
  local n = 4 + (">I4"):unpack(data)
  rest[stream] = data:sub(n + 1)
  return decode(data:sub(1, n))
end

return M
