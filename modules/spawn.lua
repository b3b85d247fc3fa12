-- spawn.lua - the Lua half of the `spawn` module: the callable module
-- table, the shell and input options, and the run() and exec() helpers.
-- Called once with the C functions ({spawn = fn}) and the child methods
-- table; returns the module.
local C, child_methods = ...
local lipc = require "lipc"

local cspawn = C.spawn
local concat = table.concat

local M = {}

local function quote(s)
  return "'" .. s:gsub("'", [['\'']]) .. "'"
end

local function copy(t)
  local r = {}
  for k, v in pairs(t) do r[k] = v end
  return r
end

-- opts.shell: file is a command line for the shell; args are appended
-- quoted, so they still arrive as words and are never re-parsed.
local function through_shell(file, args, opts)
  if type(file) ~= "string" then return file, args, opts end
  if args ~= nil and type(args) ~= "table" then return file, args, opts end
  local sh = opts.shell == true and "/bin/sh" or opts.shell
  if type(sh) ~= "string" then
    error("bad argument #3 to 'spawn' (opts.shell: true or a shell path expected, got "
          .. type(sh) .. ")", 3)
  end
  local words = {file}
  for i, a in ipairs(args or {}) do
    if type(a) ~= "string" and type(a) ~= "number" then
      error(("bad argument #2 to 'spawn' (args[%d]: string expected, got %s)"):format(i, type(a)), 3)
    end
    words[#words + 1] = quote(tostring(a))
  end
  opts = copy(opts)
  opts.shell = nil
  return sh, {"-c", concat(words, " ")}, opts
end

local function is_token(v)
  local mt = type(v) == "userdata" and getmetatable(v)
  return mt and (mt.__name == "lipc.task" or mt.__name == "lipc.scope")
end

-- opts.cancel: when the task or scope is cancelled, the child is sent
-- kill_signal (at once when it is cancelled already), as Node's signal.
local function bind_cancel(child, token, sig)
  local function on_cancel()
    if child.exit_code == nil and child.signal_code == nil and child.pid then
      child.cancelled = true
      child:kill(sig or "SIGTERM")
    end
  end
  if token:cancelled() then return on_cancel() end
  token:once("cancel", on_cancel)
  child:once("close", function() token:off("cancel", on_cancel) end)
end

-- spawn(file[, args][, opts]) -> child
local function spawn(file, args, opts)
  if type(opts) ~= "table" or (opts.shell == nil and opts.input == nil and opts.cancel == nil) then
    return cspawn(file, args, opts)
  end
  local cancel = opts.cancel
  if cancel ~= nil then
    if not is_token(cancel) then
      error("bad argument #3 to 'spawn' (opts.cancel: a task or a scope expected, got "
            .. type(cancel) .. ")", 2)
    end
    opts = copy(opts)
    opts.cancel = nil
    local child = spawn(file, args, opts)
    bind_cancel(child, cancel, opts.kill_signal)
    return child
  end
  if opts.shell then file, args, opts = through_shell(file, args, opts) end
  local input = opts.input
  if input == nil then return cspawn(file, args, opts) end
  if type(input) ~= "string" then
    error("bad argument #3 to 'spawn' (opts.input: string expected, got " .. type(input) .. ")", 2)
  end
  local child = cspawn(file, args, opts)
  local stdin = child.stdin
  if not stdin then
    child:close()
    error("bad argument #3 to 'spawn' (opts.input needs stdin to be a \"pipe\")", 2)
  end
  -- A child that exits without reading its input is not an error.
  stdin:on("error", function(msg, code)
    if code ~= "EPIPE" then child:emit("error", msg, code) end
  end)
  if #input > 0 then stdin:write(input) end
  stdin:shutdown()
  return child
end

M.spawn = spawn

local function check_task(fname)
  if not lipc.in_task() then
    error(fname .. ": must be called inside a task (lipc.go)", 3)
  end
end

-- Waits for the child's exit (not for its output to end).
local function wait_exit(child)
  if child.exit_code ~= nil or child.signal_code ~= nil or not child.pid then return end
  local c = lipc.cond()
  child:once("exit", function() c:signal() end)
  c:wait()
end

local DEFAULT_MAX_BUFFER = 16 * 1024 * 1024

-- run(file[, args][, opts]) in a task -> {code, signal, stdout, stderr,
-- pid}; nil, msg, code when the program could not be started, ran past
-- opts.timeout (ETIMEDOUT) or wrote more than opts.max_buffer bytes on
-- stdout or stderr (ENOBUFS; the child is killed); the result so far is
-- the fourth value.
function M.run(file, args, opts)
  check_task("spawn.run")
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #3 to 'spawn.run' (table expected, got " .. type(opts) .. ")", 2)
  end
  opts = opts and copy(opts) or {}
  local max = opts.max_buffer or DEFAULT_MAX_BUFFER
  if type(max) ~= "number" or max < 0 then
    error("bad argument #3 to 'spawn.run' (opts.max_buffer: number >= 0 expected)", 2)
  end
  opts.max_buffer = nil
  if opts.stdio == nil and not opts.pty then
    opts.stdio = {opts.input and "pipe" or "ignore", "pipe", "pipe"}
  end

  local child = spawn(file, args, opts)
  local failure
  child:on("error", function(msg, code) failure = failure or {msg, code} end)
  local bufs, overflow = {}, nil
  local function collect(name)
    local stream = child[name]
    if name == "stdout" and child.pty then stream = child.pty end -- a terminal: all output
    local parts, size = {}, 0
    bufs[name] = parts
    if not stream then return end
    stream:on("data", function(chunk)
      if overflow then return end
      size = size + #chunk
      if size > max then
        -- As Node's maxBuffer: keep exactly the first max bytes.
        local keep = max - (size - #chunk)
        if keep > 0 then parts[#parts + 1] = chunk:sub(1, keep) end
        overflow = name
        child:kill(opts.kill_signal or "SIGTERM")
        if child.stdout then child.stdout:close() end
        if child.stderr then child.stderr:close() end
        if child.pty then child.pty:close() end
        return
      end
      parts[#parts + 1] = chunk
    end)
  end
  collect("stdout")
  collect("stderr")
  local code, signal, ecode = child:wait()
  if ecode == "ECANCELED" and code == nil then
    -- our task was cancelled: the child goes too, and run() returns once
    -- it has (its output pipes may be held by processes it started)
    child.cancelled = true
    child:kill(opts.kill_signal or "SIGTERM")
    lipc.shield(wait_exit, child)
    child:close()
    code, signal = child.exit_code, child.signal_code
  end
  local result = {
    code = code, signal = signal, pid = child.pid, timed_out = child.timed_out,
    stdout = concat(bufs.stdout), stderr = concat(bufs.stderr),
  }
  if child.cancelled then
    return nil, ("ECANCELED: operation canceled: child killed with %s (spawn %s)")
      :format(tostring(signal or opts.kill_signal or "SIGTERM"), tostring(file)), "ECANCELED", result
  end
  if failure then return nil, failure[1], failure[2], result end
  if overflow then
    return nil, ("ENOBUFS: %s exceeded max_buffer (%d bytes): child killed (spawn %s)")
      :format(overflow, max, tostring(file)), "ENOBUFS", result
  end
  if child.timed_out then
    return nil, ("ETIMEDOUT: timed out after %s ms: child killed with %s (spawn %s)")
      :format(tostring(opts.timeout), tostring(signal or opts.kill_signal or "SIGTERM"),
              tostring(file)), "ETIMEDOUT", result
  end
  return result
end

-- exec(command_line[, opts]) in a task: run() through /bin/sh -c.
function M.exec(command, opts)
  check_task("spawn.exec")
  if type(command) ~= "string" then
    error("bad argument #1 to 'spawn.exec' (string expected, got " .. type(command) .. ")", 2)
  end
  return M.run("/bin/sh", {"-c", command}, opts)
end

-- child:stats() -> the sums over the child's stdio streams (bytes_read,
-- bytes_written, queued, high_water_hits) and each stream's own stats()
-- as stdin, stdout, stderr and stdio[i].
function child_methods:stats()
  local t = {bytes_read = 0, bytes_written = 0, queued = 0, high_water_hits = 0, stdio = {}}
  for i, s in pairs(self.stdio or {}) do
    if s and s.stats then
      local st = s:stats()
      t.stdio[i] = st
      for _, k in ipairs({"bytes_read", "bytes_written", "queued", "high_water_hits"}) do
        t[k] = t[k] + st[k]
      end
    end
  end
  t.stdin, t.stdout, t.stderr = t.stdio[1], t.stdio[2], t.stdio[3]
  return t
end

M.child_methods = child_methods

return setmetatable(M, {__call = function(_, file, args, opts) return spawn(file, args, opts) end})
