-- test_harness.lua - what `lipc test` adds to busted (runtime/test.lua
-- installs it into the busted instance the runner makes).
--
-- Every block a spec runs (it, before_each, after_each, finally, and the
-- setup and teardown of describe blocks) runs in its own task with a
-- deadline, so a block that waits for ever fails instead of hanging the
-- run. A spec is everything from its first before_each to its last
-- after_each: what it leaves open after that (a handle, a task still
-- waiting, a child process, an fd) fails it, listed, and is closed; an
-- error raised in a listener, timer or task while it runs fails it too.
-- Either way the run goes on with the next spec.
--
-- Busted decides a spec's status before its after_each blocks run, so the
-- harness takes over the spec's "test end" event and publishes it itself
-- once the spec is checked.
local lipc = require "lipc"
local helpers = require "lipc.test"

local M = {timeout = 30000}

local busted        -- the busted core instance
local blocks        -- busted's block helpers, for lazy setups
local spec          -- the spec running now (see run_spec)
local block         -- the block running now (see in_task)
local outside = {}  -- uncaught errors while no spec ran
local base = {}     -- what was open before the first spec

-- How long what a spec closed may take to be gone (a child killed at the
-- end of the spec has to exit; a closed handle waits a loop turn).
local GRACE_MS = 500

local TASKED = {it = true, before_each = true, after_each = true, finally = true,
                lazy_setup = true, lazy_teardown = true, strict_setup = true,
                strict_teardown = true}

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- ---- names ------------------------------------------------------------------

local function full_name(element)
  local names = {element.name or element.descriptor}
  local parent = busted.context.parent(element)
  while parent and (parent.name or parent.descriptor) and parent.descriptor ~= "file" do
    table.insert(names, 1, parent.name or parent.descriptor)
    parent = busted.context.parent(parent)
  end
  return table.concat(names, " ")
end

-- "spec/x_spec.lua:12: " where the block was written: busted then shows
-- the message as it is instead of pointing into the harness.
local function where(element)
  local t = element.trace
  return t and t.short_src and (t.short_src .. ":" .. tostring(t.currentline) .. ": ") or ""
end

local function timeout_of(element)
  while element do
    if element.lipc_timeout then return element.lipc_timeout end
    element = busted.context.parent(element)
  end
  return M.timeout
end

-- ---- what is open -----------------------------------------------------------

local children_file

local function command_of(pid)
  local cmd = (read_file("/proc/" .. pid .. "/cmdline") or ""):gsub("%z$", ""):gsub("%z", " ")
  if #cmd > 60 then cmd = cmd:sub(1, 57) .. "..." end
  return cmd
end

-- Our running children (zombies have ended: the runtime reaps them).
local function children()
  local set = {}
  for pid in (read_file(children_file) or ""):gmatch("%d+") do
    pid = tonumber(pid)
    local state = (read_file("/proc/" .. pid .. "/stat") or ""):match("%) (%a)")
    if state and state ~= "Z" then set[pid] = command_of(pid) end
  end
  return set
end

-- Sockets, pipes and files; not the runtime's own descriptors (epoll,
-- eventfd: anon_inode) nor terminals and /dev/null.
local function fds()
  local set, all = {}, lipc.fds() or {}
  for fd, what in pairs(all) do
    if not what:find("^/dev/") and not what:find("^anon_inode:") then set[fd] = what end
  end
  -- lipc.stdin over a pipe reads through its own copy of fd 0
  for fd = 0, 2 do
    for other, what in pairs(set) do
      if other > 2 and what == all[fd] then set[other] = nil end
    end
  end
  return set
end

-- Handles with no object of their own that mean a task is still waiting.
local WAITS = {sleep = "a task in lipc.sleep", cond = "a task waiting on a lipc.cond",
               connect = "a task in net.connect", ["fifo open"] = "a task opening a FIFO"}

-- Objects, and the waits of tasks (by id): the runtime's own handles
-- (its SIGCHLD watcher...) are neither.
local function handles()
  local set = {}
  for _, h in ipairs(lipc.handles()) do
    if h.object then
      set[h.object] = h.kind
    elseif WAITS[h.kind] then
      set[h.id] = h.kind
    end
  end
  return set
end

local function snapshot()
  return {handles = handles(), children = children(), fds = fds()}
end

-- What is open now and was not in `before`: nil when nothing.
local function new_since(before)
  local left, n = {handles = {}, waits = {}, children = {}, fds = {}}, 0
  for key, kind in pairs(handles()) do
    if not before.handles[key] then
      n = n + 1
      if WAITS[kind] then
        left.waits[#left.waits + 1] = WAITS[kind]
      else
        left.handles[#left.handles + 1] = {obj = key, kind = kind}
      end
    end
  end
  for pid, cmd in pairs(children()) do
    if not before.children[pid] then
      n = n + 1
      left.children[#left.children + 1] = {pid = pid, cmd = cmd}
    end
  end
  for fd, what in pairs(fds()) do
    if before.fds[fd] ~= what then
      n = n + 1
      left.fds[#left.fds + 1] = {fd = fd, what = what}
    end
  end
  return n > 0 and left or nil
end

local function describe_handle(h)
  local ok, a = pcall(function() return h.obj:address() end)
  if ok and type(a) == "table" and a.port then return ("%s %s:%d"):format(h.kind, a.address, a.port) end
  if ok and type(a) == "string" then return h.kind .. " " .. a end
  local pid = h.kind == "process" and tonumber(h.obj.pid)
  if pid then return ("process %d (%s)"):format(pid, command_of(pid)) end
  return h.kind
end

local function by(field)
  return function(a, b) return a[field] < b[field] end
end

-- Waits (bounded; not when `quick`) for what `before` did not have to
-- go away; closes and kills what stays. Returns the list of it, or nil.
local function leaks(before, quick)
  if not new_since(before) then return nil end
  collectgarbage() -- what nobody can reach is closed by its __gc
  local t0, left = lipc.hrtime(), new_since(before)
  while left and not quick and (lipc.hrtime() - t0) / 1e6 < GRACE_MS do
    lipc.sleep(10)
    left = new_since(before)
  end
  if not left then return nil end
  -- A child's stdio streams are part of its entry.
  local items, reaped, part_of = {}, {}, {}
  for _, h in ipairs(left.handles) do
    if h.kind == "process" then
      reaped[tonumber(h.obj.pid) or -1] = true
      for _, s in pairs(h.obj.stdio or {}) do part_of[s] = true end
    end
  end
  for _, h in ipairs(left.handles) do
    if not part_of[h.obj] then items[#items + 1] = describe_handle(h) end
  end
  table.sort(left.waits)
  for _, w in ipairs(left.waits) do items[#items + 1] = w end
  table.sort(left.children, by("pid"))
  for _, c in ipairs(left.children) do
    if not reaped[c.pid] then items[#items + 1] = ("child process %d (%s)"):format(c.pid, c.cmd) end
    lipc.kill(c.pid, "SIGKILL")
  end
  for _, h in ipairs(left.handles) do pcall(h.obj.close, h.obj) end
  -- The descriptors of the handles just closed go with them; the others
  -- were opened some other way (io.open...) and are only listed.
  local t1 = lipc.hrtime()
  repeat
    lipc.sleep(5)
    left = new_since(before)
  until not left or (#left.handles == 0 and #left.children == 0) or (lipc.hrtime() - t1) / 1e6 > GRACE_MS
  local fd_list = left and left.fds or {}
  table.sort(fd_list, by("fd"))
  for _, f in ipairs(fd_list) do items[#items + 1] = ("fd %d (%s)"):format(f.fd, f.what) end
  if #items == 0 then return nil end
  return table.concat(items, ", ")
end

-- ---- blocks in tasks --------------------------------------------------------------

local ABANDONED = "lipc test: this block's spec has ended"

-- Where the block's task waits, without the harness's own frames.
local function whereabouts(b)
  if not (b.co and coroutine.status(b.co) == "suspended") then return "" end
  local trace = debug.traceback(b.co, "it is waiting in:")
  trace = trace:gsub("\n[^\n]*runtime/test_harness%.lua[^\n]*", "")
  return "\n" .. trace:gsub("\n%s*%[C%]: in %?$", ""):gsub("\n%s*%[C%]: in function 'xpcall'$", "")
end

local function timeout_message(b)
  return ("%stimed out after %d ms: %q has not finished (raise the deadline with "
    .. "require(\"lipc.test\").timeout(ms) or lipc test --timeout MS)%s")
    :format(where(b.element), b.ms, b.name, whereabouts(b))
end

-- busted asks for the trace of an error where it catches it, in the
-- main task; the error a block's task raised is traced in that task, and
-- handed over here (busted.getTrace is wrapped in install).
local traced

local function element_trace(element)
  local t = {traceback = "", short_src = element.name or "?", currentline = 0}
  for k, v in pairs(element.trace or {}) do
    if k ~= "traceback" then t[k] = v end
  end
  return t
end

-- Runs run(...) as a task, waits for it until its deadline; returns what
-- it returns or raises what it raises, a timeout, or an uncaught error
-- of the block. A block that misses its deadline is abandoned: should
-- its task ever run again, it stops at its next instruction. (A count
-- hook on every block would also stop a loop that never waits, but any
-- count hook takes the Lua VM off its fast path: specs ran 2-3x slower.)
local function in_task(element, name, ms, run, ...)
  local b = {element = element, name = name, ms = ms, start = lipc.hrtime(), done = lipc.cond()}
  local body
  local function hook()
    if debug.getinfo(2, "f").func ~= body then error(ABANDONED, 0) end
  end
  local function trace(e)
    b.trace = {err = e, info = busted.getTrace(element, 3, e)}
    return e
  end
  body = function(...)
    b.co = coroutine.running()
    local r = table.pack(xpcall(run, trace, ...))
    if b.abandoned then
      debug.sethook()
    else
      b.result = r
      b.done:signal()
    end
  end
  local outer = block
  block = b
  lipc.go(body, ...)
  while not b.result and not b.failed do
    local left = b.ms - (lipc.hrtime() - b.start) / 1e6
    if left <= 0 then
      b.failed = timeout_message(b)
    else
      b.done:wait(math.ceil(left))
    end
  end
  block = outer
  if b.failed then
    b.abandoned = true
    if b.co and coroutine.status(b.co) ~= "dead" then debug.sethook(b.co, hook, "", 1) end
    traced = {err = b.failed, info = element_trace(element)}
    error(b.failed, 0)
  end
  if not b.result[1] then
    traced = b.trace
    error(b.result[2], 0)
  end
  return table.unpack(b.result, 2, b.result.n)
end

local function tasked(descriptor, run, element)
  return function(...)
    local ms = spec and spec.timeout or timeout_of(element)
    local name = spec and spec.name or full_name(busted.context.parent(element) or element)
    if descriptor ~= "it" then name = name .. " (" .. descriptor .. ")" end
    return in_task(element, name, ms, run, ...)
  end
end

-- ---- uncaught errors --------------------------------------------------------------

-- An error nobody caught: it ends the block running now, or fails the
-- spec running now, or is an error of the describe block (or file) being
-- run; the run goes on.
local function on_uncaught(_, report)
  local b = block
  if b and not b.result and not b.failed then
    b.failed = ("%san error in a listener, timer or task started by %q: %s")
      :format(where(b.element), b.name, report)
    b.done:signal()
    return
  end
  if spec then
    spec.problems[#spec.problems + 1] = "an error in a listener, timer or task it started: " .. report
    spec.uncaught = true
    return
  end
  local msg = "an error in a listener, timer or task while no spec ran: " .. report
  local el = busted.context.get()
  if el and el.descriptor and el.descriptor ~= "suite" then
    local parent = busted.context.parent(el)
    busted.publish({"error", el.descriptor}, el, parent, where(el) .. msg, element_trace(el))
  else
    outside[#outside + 1] = report
    io.stderr:write("lipc test: ", msg, "\n")
  end
end

-- ---- a spec ------------------------------------------------------------------------

-- Runs the spec (busted's executor: lazy setup, before_each, the body,
-- finally, after_each), runs the cleanups the helpers registered, checks
-- what was left, and only then publishes its end.
local function run_spec(element, execute, publish)
  local s = {element = element, name = full_name(element), timeout = timeout_of(element),
             problems = {}, cleanups = {}}
  -- A lazy setup (setup under --lazy) runs inside the first spec that
  -- needs it, and what it opens is meant to outlive that spec: it runs
  -- now, before the snapshot (busted then finds it done).
  local parent = busted.context.parent(element)
  if parent then blocks.lazySetup(parent) end
  s.before = snapshot()
  spec = s
  local results = table.pack(execute())
  for i = #s.cleanups, 1, -1 do
    local ok, err = pcall(s.cleanups[i])
    if not ok then s.problems[#s.problems + 1] = "a cleanup failed: " .. tostring(err) end
  end
  local left = leaks(s.before, not (s.ended and s.ended[5] == "success"))
  spec = nil
  if left then s.problems[#s.problems + 1] = "left open: " .. left end
  -- A spec that failed already gets no second failure: what it left is
  -- closed quietly (its failure is the likely cause); errors are told.
  local ended = s.ended
  if #s.problems > 0 then
    local msg = where(element) .. "spec " .. table.concat(s.problems, "; and ")
    if ended and ended[5] == "success" then
      local status = s.uncaught and "error" or "failure"
      busted.publish({status, "it"}, element, ended[4], msg, element_trace(element))
      ended[5] = status
    elseif s.uncaught then
      io.stderr:write(("lipc test: %q also raised: %s\n"):format(s.name, msg))
    end
  end
  if ended then publish(table.unpack(ended, 1, ended.n)) end
  return table.unpack(results, 1, results.n)
end

-- ---- the hooks for lipc.test --------------------------------------------------------

local hooks = {}

-- The deadline of the block running now and of the rest of its spec; or,
-- read in a describe block, of the specs in it.
function hooks.timeout(ms)
  if block then
    block.ms = ms
    block.done:signal()
  end
  if spec then
    spec.timeout = ms
  elseif not block then
    busted.context.get().lipc_timeout = ms
  end
end

-- fn runs after the spec running now (after its after_each blocks), or
-- after the describe block (or file) being run; false outside both.
function hooks.defer(fn)
  if spec then
    spec.cleanups[#spec.cleanups + 1] = fn
    return true
  end
  local el = busted.context.get()
  while el and el.descriptor ~= "describe" and el.descriptor ~= "file" do
    el = busted.context.parent(el)
  end
  if not el then return false end
  el.lipc_cleanups = el.lipc_cleanups or {}
  table.insert(el.lipc_cleanups, fn)
  return true
end

local function block_ended(element)
  local fns = element.lipc_cleanups or {}
  element.lipc_cleanups = nil
  for i = #fns, 1, -1 do
    local ok, err = pcall(fns[i])
    if not ok then io.stderr:write("lipc test: a cleanup failed: ", tostring(err), "\n") end
  end
  return nil, true
end

-- ---- install, finish ----------------------------------------------------------------------

-- The lazily made descriptors of the event loop (libuv's signal pipes,
-- made when the first child is spawned) are made now, before any spec.
local function warm_up()
  local w = lipc.on_signal("SIGWINCH", function() end)
  w:stop()
end

function M.install(b)
  busted = b
  blocks = require("busted.block")(b)
  children_file = ("/proc/%d/task/%d/children"):format(lipc.pid, lipc.pid)
  warm_up()
  base = snapshot()
  lipc.on_uncaught(on_uncaught)
  helpers._harness = hooks
  b.subscribe({"describe", "end"}, block_ended)
  b.subscribe({"file", "end"}, block_ended)
  local safe, safe_publish, get_trace = b.safe, b.safe_publish, b.getTrace
  function b.getTrace(element, level, msg)
    local t = traced
    traced = nil
    if t and rawequal(t.err, msg) then return t.info end
    local info = get_trace(element, level + 1, msg)
    return info
  end
  -- busted.execute runs a spec as safe('it', <executor>, element), and
  -- the executor runs its body as safe('it', element.run, element).
  function b.safe(descriptor, run, element)
    if descriptor == "it" and element.descriptor == "it" and run ~= element.run and not spec then
      return run_spec(element, function() return safe(descriptor, run, element) end, safe_publish)
    end
    if TASKED[descriptor] then run = tasked(descriptor, run, element) end
    return safe(descriptor, run, element)
  end
  function b.safe_publish(descriptor, channel, element, ...)
    if spec and element == spec.element and channel[1] == "test" and channel[2] == "end" then
      spec.ended = table.pack(descriptor, channel, element, ...)
      return true
    end
    return safe_publish(descriptor, channel, element, ...)
  end
end

-- After the last spec: errors no spec owned, and what is still open
-- (describe-level objects nobody closed). Returns the exit status.
function M.finish()
  local code = #outside > 0 and 1 or 0
  local left = leaks(base)
  if left then
    io.stderr:write("lipc test: left open after the last spec (close it in a teardown): ", left, "\n")
    code = 1
  end
  return code
end

return M
