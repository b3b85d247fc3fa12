-- fork.lua - the `fork` module: child lipc (or Node) processes with a
-- message channel, the channel to our own parent, worker pools.
--
-- Called once by luaopen_fork with the C helpers (fork.c). A forked child
-- is spawn's child wrapped in a table that adds the channel API; events
-- of the process are relayed so that the order is always spawn, exit,
-- disconnect, close (DESIGN §3), whichever of the process end and the
-- channel end the kernel reports first.
local C = ...
local lipc = require "lipc"

local M = {}

M.socketpair = C.socketpair

local emitter_methods = getmetatable(lipc.emitter()).__index

-- ---- the child object ----------------------------------------------------

local Child = {}
for k, f in pairs(emitter_methods) do Child[k] = f end

function Child:send(...) return self.channel:send(...) end
function Child:receive() return self.channel:receive() end
function Child:drain() return self.channel:drain() end
function Child:disconnect() return self.channel:disconnect() end
function Child:pending() return self.channel:pending() end

-- stats() -> the channel's counters (messages, bytes, queued, high-water
-- hits) plus channel = channel:stats() and each stdio stream's stats().
function Child:stats()
  local ch = self.channel:stats()
  local t = {channel = ch, messages_sent = ch.messages_sent,
             messages_received = ch.messages_received, bytes_sent = ch.bytes_sent,
             bytes_received = ch.bytes_received, queued = ch.queued,
             high_water_hits = ch.high_water_hits}
  local proc = rawget(self, "process")
  for _, name in ipairs({"stdin", "stdout", "stderr"}) do
    local s = proc[name]
    if s and s.stats then
      local st = s:stats()
      t[name] = st
      t.queued = t.queued + st.queued
      t.high_water_hits = t.high_water_hits + st.high_water_hits
    end
  end
  return t
end

-- on(name, fn): a 'message' listener first gets what arrived before it.
function Child:on(name, fn)
  emitter_methods.on(self, name, fn)
  if name == "message" then self.channel:deliver_queued() end
  return self
end

function Child:once(name, fn)
  emitter_methods.once(self, name, fn)
  if name == "message" then self.channel:deliver_queued() end
  return self
end

-- Anything else (pid, stdio, kill, wait...) is the process's. Each child
-- has its own metatable whose __index is a table of the Child methods, so
-- `worker:send(msg)` in a loop is a table lookup, not a call of an __index
-- function per message (ipc_stream: -1,500 instructions a message); only
-- the process's fields go through a function.
local function child_tostring(self)
  return ("lipc.fork.child (pid %s)"):format(tostring(self.process.pid))
end

local function new_child(proc)
  local self = {process = proc}
  local cache = {}
  local methods = {}
  for k, f in pairs(Child) do methods[k] = f end
  setmetatable(methods, {__index = function(_, k)
    local v = proc[k]
    if type(v) ~= "function" then return v end
    local f = cache[k]
    if not f then
      f = function(s, ...)
        if s == self then s = proc end
        return v(s, ...)
      end
      cache[k] = f
    end
    return f
  end})
  return setmetatable(self, {__name = "lipc.fork.child", __index = methods,
                             __tostring = child_tostring})
end

local function is_array(t)
  return type(t) == "table" and (next(t) == nil or t[1] ~= nil)
end

local function copy(t)
  local r = {}
  if t then for k, v in pairs(t) do r[k] = v end end
  return r
end

local OWN_OPTS = {exec_path = true, exec_argv = true, serialization = true,
                  max_message = true, high_water = true, receive_high_water = true,
                  max_decoded = true, via = true, ship = true,
                  modules = true, start_timeout = true}

-- fork's own options and those it reads itself, checked before anything
-- starts (a bad max_message found by the channel would leave the child
-- running): errors name fork and its argument, not spawn or
-- stream.channel. spawn's other options are checked by spawn (spawn_opts).
local SIZE_OPTS = {max_message = 0xffffffff - 3, high_water = 1 << 40,
                   receive_high_water = 1 << 40, max_decoded = 1 << 50}
local TYPED_OPTS = {exec_path = "string", cwd = "string", stdio = "table", env = "table",
                    exec_argv = "table", ship = "boolean"}

local function check_opts(opts, arg)
  local function bad(fmt, ...)
    error(("bad argument #%d to 'fork' (" .. fmt .. ")"):format(arg, ...), 4)
  end
  for name, want in pairs(TYPED_OPTS) do
    local v = opts[name]
    if v ~= nil and type(v) ~= want and not (name == "stdio" and opts.via ~= nil) then
      bad("opts.%s: %s expected, got %s", name, want, type(v))
    end
  end
  for i, a in ipairs(opts.exec_argv or {}) do
    if type(a) ~= "string" then bad("opts.exec_argv[%d]: string expected, got %s", i, type(a)) end
  end
  for name, max in pairs(SIZE_OPTS) do
    local v = opts[name]
    if v ~= nil and (math.type(v) ~= "integer" or v < 1 or v > max) then
      bad("opts.%s must be an integer in 1..%d", name, max)
    end
  end
  local mode = opts.serialization
  if mode ~= nil and mode ~= "json" and mode ~= "lipc" then
    bad("opts.serialization must be 'lipc' or 'json'")
  end
end

-- spawn's errors about the options fork passes on name fork's argument.
-- level: the user's frame, counted from spawn_for.
local function spawn_for(file, argv, sopts, arg, level)
  local ok, proc, err, code = pcall(require("spawn"), file, argv, sopts)
  if not ok then
    error((tostring(proc):gsub("bad argument #3 to 'spawn' %(",
      ("bad argument #%d to 'fork' ("):format(arg), 1)), level)
  end
  return proc, err, code
end

-- How a worker ended, for receive() at the channel's end: nothing when
-- it exited with status 0, else nil, msg, ERR_WORKER_EXIT.
local function worker_status(script, proc, why)
  local code, signal = proc.exit_code, proc.signal_code
  if code == 0 or (code == nil and signal == nil) then return nil end
  local how = signal and ("was killed by " .. signal) or ("exited with code " .. code)
  return nil, ("fork: worker %s (pid %s) %s%s"):format(script, tostring(proc.pid), how,
    why and ": " .. why or ""), "ERR_WORKER_EXIT"
end

local WORKER_ERROR = 3 -- the control frame of a worker whose script failed

-- Wires the process events and the channel's end into the child object.
-- Returns a function that says whether the child was disconnected from
-- this side (child:disconnect()).
local function relay(child, proc, ch, script)
  local exited, gone, disconnect_sent = false, false, false
  local closed, ended, why = false, nil, nil
  -- the first line of a failed script's error, from the worker itself
  child:on("control", function(kind, value)
    if kind == WORKER_ERROR and why == nil and type(value) == "table"
        and type(value.error) == "string" then
      why = value.error
    end
  end)
  local function send_disconnect()
    if disconnect_sent then return end
    disconnect_sent = true
    child:emit("disconnect")
  end
  proc:on("spawn", function(...) child:emit("spawn", ...) end)
  proc:on("error", function(...)
    if #child:listeners("error") > 0 then child:emit("error", ...)
    else error(select(1, ...) or "fork: child error", 0) end
  end)
  proc:on("exit", function(...)
    exited = true
    if ended then ended:broadcast() end
    child:emit("exit", ...)
    if gone then send_disconnect() end
  end)
  proc:on("close", function(...)
    closed = true
    if ended then ended:broadcast() end
    if not disconnect_sent then
      if ch.connected then ch:disconnect() end
      send_disconnect()
    end
    child:emit("close", ...)
  end)
  -- A disconnect of our own is reported at once; the peer's end waits for
  -- the process's exit so that listeners see exit first.
  local local_end = false
  local disconnect = child.disconnect
  child.disconnect = function(self)
    local_end = true
    return disconnect(self)
  end
  ch:on("disconnect", function()
    gone = true
    if exited or local_end then send_disconnect() end
  end)
  -- receive(): when the worker ends the channel, the answer waits for
  -- its exit, so that a worker that could not start (a syntax error) or
  -- crashed is told from one that finished: nil, msg, ERR_WORKER_EXIT.
  local methods = getmetatable(child).__index
  local recv = methods.receive
  methods.receive = function(self, ...)
    local m, h, c = recv(self, ...)
    if m ~= nil or h ~= nil or ch.connected or local_end then return m, h, c end
    while not exited and not closed do
      ended = ended or lipc.cond()
      ended:wait()
    end
    return worker_status(script, proc, why)
  end
  return function() return local_end end
end

local function find_ipc(stdio)
  for i = 1, #stdio do
    if stdio[i] == "ipc" then return i end
  end
end

-- ---- workers through a launcher ---------------------------------------------
-- opts.via = {"ssh", "-T", "host"} runs `<via...> lipc --stdio-channel`
-- with the channel on the launcher's stdin and stdout (one end of a
-- socketpair is both). Control frames (docs/wire-format.md section 8):
-- both sides say hello (kind 1) first, with their versions; the parent's
-- carries the script, its arguments and the modules it requires; the
-- worker's bye (kind 2) says it ended in order. The child object is a
-- local fork's, over the launcher process.

local PROTO, HELLO, BYE = 1, 1, 2
local MAX_MODULES = 256

-- The names a chunk requires literally: require "x", require("x").
local function required(src)
  local names = {}
  for _, name in src:gmatch("require%s*%(?%s*([\"'])([%w_%.%-]+)%1") do
    names[#names + 1] = name
  end
  return names
end

local function read_file(path)
  local f, err, errno = io.open(path, "rb")
  if not f then return nil, err, errno == 2 and "ENOENT" or "EACCES" end
  local src = f:read("a")
  f:close()
  return src
end

-- Adds to mods what src requires and package.path finds here, and what
-- those require in turn; modules built into lipc are not shipped.
local function gather(src, mods, count)
  for _, name in ipairs(required(src)) do
    if mods[name] == nil and count[1] < MAX_MODULES then
      local path = package.searchpath(name, package.path)
      local msrc = path and read_file(path)
      mods[name] = msrc and {path = path, source = msrc} or false
      if msrc then
        count[1] = count[1] + 1
        gather(msrc, mods, count)
      end
    end
  end
end

local function check_via(via, arg)
  if type(via) ~= "table" or #via == 0 then
    error(("bad argument #%d to 'fork' (opts.via must be a non-empty array of strings)")
          :format(arg), 4)
  end
  for i = 1, #via do
    if type(via[i]) ~= "string" then
      error(("bad argument #%d to 'fork' (opts.via[%d] must be a string)"):format(arg, i), 4)
    end
  end
end

-- The parent's hello: the script (shipped, or a path over there) and the
-- modules. nil, msg, code when the script cannot be read here.
local function parent_hello(script, args, opts, arg)
  local hello = {lipc = lipc.version, proto = PROTO, script = script, args = args}
  if opts.ship == false then return hello end
  local src, err, code = read_file(script)
  if not src then return nil, "fork: cannot read the script to send: " .. err, code end
  hello.source = src
  local mods, count = {}, {0}
  if opts.modules ~= nil then
    if type(opts.modules) ~= "table" then
      error(("bad argument #%d to 'fork' (opts.modules must be an array of module names)")
            :format(arg), 4)
    end
    for _, name in ipairs(opts.modules) do
      local path = type(name) == "string" and package.searchpath(name, package.path)
      local msrc = path and read_file(path)
      if not msrc then
        error(("bad argument #%d to 'fork' (opts.modules: module '%s' not found in package.path)")
              :format(arg, tostring(name)), 4)
      end
      mods[name] = {path = path, source = msrc}
      gather(msrc, mods, count)
    end
  end
  gather(src, mods, count)
  local ship = {}
  for name, m in pairs(mods) do
    if m then ship[name] = m end
  end
  hello.modules = ship
  return hello
end

local function handshake_failed(proc, ch, msg, code)
  if ch.connected then ch:disconnect() end
  if proc.exit_code == nil and proc.signal_code == nil then proc:kill("SIGKILL") end
  proc:wait()
  return nil, msg, code
end

local fork

local function fork_via(script, args, opts, arg)
  local via = opts.via
  if not lipc.in_task() then
    error("fork: a worker through a launcher (opts.via) must be started inside a task", 3)
  end
  check_via(via, arg)
  if opts.stdio ~= nil or opts.serialization == "json" then
    error(("bad argument #%d to 'fork' (opts.via takes the stdio and the 'lipc' serialization)")
          :format(arg), 3)
  end
  local timeout = opts.start_timeout or 30000
  if math.type(timeout) ~= "integer" or timeout < 1 then
    error(("bad argument #%d to 'fork' (opts.start_timeout must be an integer >= 1 (ms))")
          :format(arg), 3)
  end
  local sargs = {}
  for i, a in ipairs(args) do sargs[i] = tostring(a) end
  local hello, err, code = parent_hello(script, sargs, opts, arg)
  if not hello then return nil, err, code end

  local argv = {}
  for i = 2, #via do argv[#argv + 1] = via[i] end
  argv[#argv + 1] = opts.exec_path or "lipc"
  argv[#argv + 1] = "--stdio-channel"
  local a, b = C.socketpair()
  local sopts = {}
  for k, v in pairs(opts) do
    if not OWN_OPTS[k] then sopts[k] = v end
  end
  sopts.stdio = {b, b, "pipe"}
  local proc
  proc, err, code = spawn_for(via[1], argv, sopts, arg, 3)
  b:close()
  if not proc then
    a:close()
    return nil, err, code
  end
  -- The launcher's stderr is the worker's: passed on, and its end kept
  -- for the message of a failed start.
  local tail, stderr_ended = "", false
  local wake = lipc.cond()
  proc.stderr:on("data", function(d)
    io.stderr:write(d)
    tail = (tail .. d):sub(-1024)
  end)
  proc.stderr:on("end", function()
    stderr_ended = true
    wake:signal(true)
  end)
  local child = new_child(proc)
  local ch = a:channel({owner = child, serialization = "lipc", max_message = opts.max_message,
                        high_water = opts.high_water,
                        receive_high_water = opts.receive_high_water,
                        max_decoded = opts.max_decoded,
                        own_disconnect = true, handles = false})
  child.channel = ch
  local methods = getmetatable(child).__index
  methods.send, methods.receive = ch:bound()
  -- before relay's: a failed spawn is this call's error, not a fault
  local spawn_err
  local function on_spawn_error(msg, ecode)
    spawn_err = spawn_err or {msg, ecode}
    wake:signal(true)
  end
  proc:on("error", on_spawn_error)
  local local_end = relay(child, proc, ch, script)

  local peer, bye, fault, exited
  child:on("control", function(kind, value)
    if kind == HELLO and peer == nil then
      peer = value
      wake:signal(true)
    elseif kind == BYE then
      bye = value
      -- nothing follows a bye: our end of the launcher's stdin goes too,
      -- for a launcher that waits for it before it ends
      local st = ch:stream()
      if st then pcall(st.shutdown, st) end
    end
  end)
  local function on_error(msg, ecode)
    fault = fault or {msg, ecode}
    wake:signal(true)
  end
  local function on_exit(ecode, sig)
    exited = {ecode, sig}
    wake:signal(true)
  end
  child:on("error", on_error)
  proc:on("exit", on_exit)
  ch:send_control(HELLO, hello)
  local timed_out = false
  while peer == nil and fault == nil and exited == nil do
    if wake:wait(timeout) == nil then
      timed_out = true
      break
    end
  end
  -- A worker that said hello and ended at once may be reported exited
  -- before its hello is read: the hello, if any, comes before the
  -- channel's end.
  if peer == nil and exited and not fault and not spawn_err then
    local function on_end() wake:signal(true) end
    ch:on("disconnect", on_end)
    while peer == nil and fault == nil and ch.connected and wake:wait(1000) ~= nil do end
    ch:off("disconnect", on_end)
  end
  child:off("error", on_error)
  proc:off("error", on_spawn_error)
  proc:off("exit", on_exit)

  local name = via[1]
  if peer == nil then
    if spawn_err then return handshake_failed(proc, ch, spawn_err[1], spawn_err[2]) end
    if fault then
      return handshake_failed(proc, ch, ("fork: no handshake with the worker through %s: %s")
        :format(name, fault[1]), "ERR_IPC_HANDSHAKE")
    end
    if timed_out then
      return handshake_failed(proc, ch, ("fork: no hello from the worker through %s within %d ms"
        .. " (opts.start_timeout)"):format(name, timeout), "ERR_LAUNCH_FAILED")
    end
    -- its last words come with the error: wait for the stderr's end
    while not stderr_ended and wake:wait(1000) ~= nil do end
    local words = tail:gsub("%s+$", "")
    return handshake_failed(proc, ch, ("fork: the launcher %s ended (exit code %s, signal %s)"
      .. " before the worker said hello%s"):format(name, tostring(exited[1]),
      tostring(exited[2]), words ~= "" and ": " .. words or ""), "ERR_LAUNCH_FAILED")
  end
  if type(peer) ~= "table" or peer.proto ~= PROTO then
    return handshake_failed(proc, ch, ("fork: no handshake with the worker through %s:"
      .. " protocol %s, this lipc speaks %d"):format(name, tostring(type(peer) == "table"
      and peer.proto), PROTO), "ERR_IPC_HANDSHAKE")
  end
  if peer.lipc ~= lipc.version then
    return handshake_failed(proc, ch, ("fork: the worker through %s runs lipc %s, this is lipc %s")
      :format(name, tostring(peer.lipc), lipc.version), "ERR_LIPC_VERSION")
  end
  local shipped = {}
  for mname in pairs(hello.modules or {}) do shipped[#shipped + 1] = mname end
  table.sort(shipped)
  child.remote = {pid = peer.pid, lipc = peer.lipc, via = via, modules = shipped,
                  shipped = hello.source ~= nil}
  -- The end of the channel without the worker's bye is a lost link;
  -- with it, relay's receive says how the worker ended.
  local function lost() return not (ch.connected or bye or local_end()) end
  local lost_msg = ("fork: the link to the worker through %s was lost (no goodbye)"):format(name)
  -- 'error' before 'disconnect', for code that takes events rather than
  -- receive()s (with a 'message' or an 'error' listener; others read it
  -- from receive(), as a pool does, and an unheard 'error' would raise).
  local emit = methods.emit
  methods.emit = function(self, ev, ...)
    if ev == "disconnect" and lost() and (#self:listeners("error") > 0
        or #self:listeners("message") > 0) then
      emit(self, "error", lost_msg, "ERR_IPC_LINK_LOST")
    end
    return emit(self, ev, ...)
  end
  local recv = methods.receive
  methods.receive = function(self)
    local m, h, c = recv(self)
    if m ~= nil or ch.connected or bye or local_end() then return m, h, c end
    if c ~= nil and c ~= "ERR_WORKER_EXIT" and c ~= "ERR_IPC_TRUNCATED" then
      return m, h, c -- a fault of the peer
    end
    return nil, lost_msg .. (h and "; " .. h or ""), "ERR_IPC_LINK_LOST"
  end
  return child
end

-- fork(script[, args][, opts]) -> child | nil, msg, code
function fork(script, args, opts)
  if type(script) ~= "string" then
    error("bad argument #1 to 'fork' (script path expected, got " .. type(script) .. ")", 2)
  end
  local opts_arg = 3
  if opts == nil and type(args) == "table" and not is_array(args) then
    args, opts, opts_arg = nil, args, 2
  end
  args, opts = args or {}, opts or {}
  check_opts(opts, opts_arg)
  if opts.via ~= nil then return fork_via(script, args, opts, opts_arg) end
  if script:sub(1, 1) ~= "-" then -- a script, not an option of exec_path's
    local path = script
    if type(opts.cwd) == "string" and script:sub(1, 1) ~= "/" then
      path = opts.cwd .. "/" .. script
    end
    local ok, err, code = C.readable(path)
    if not ok then return nil, err, code end
  end
  local node = script:match("%.[cm]?js$") ~= nil
  local exec, marked = opts.exec_path or (node and "node"), false
  if not exec then
    local err, code
    exec, err, code = C.worker_exec()
    if not exec then return nil, err, code end
    marked = err == true
  end
  local mode = opts.serialization or (node and "json") or "lipc"
  if mode ~= "json" and mode ~= "lipc" then
    error(("bad argument #%d to 'fork' (opts.serialization must be 'lipc' or 'json')")
          :format(opts_arg), 2)
  end
  local argv = {}
  for _, a in ipairs(opts.exec_argv or {}) do argv[#argv + 1] = a end
  argv[#argv + 1] = script
  for _, a in ipairs(args) do argv[#argv + 1] = tostring(a) end

  local stdio = copy(opts.stdio or {"inherit", "inherit", "inherit"})
  local idx = find_ipc(stdio)
  if not idx then
    idx = math.max(#stdio, 3) + 1
    for i = #stdio + 1, idx - 1 do stdio[i] = "inherit" end
    stdio[idx] = "ipc"
  end
  local env = copy(opts.env)
  if marked then env.LIPC_WORKER = "1" end -- for lipc_worker_main (lipc.h)
  if mode == "json" then
    env.NODE_CHANNEL_FD = tostring(idx - 1)
    env.NODE_CHANNEL_SERIALIZATION_MODE = "json"
  else
    env.LIPC_CHANNEL_FD = tostring(idx - 1)
    env.LIPC_WORKER_ERRORS = "1" -- it tells why its script failed (fork.c)
  end
  local sopts = {}
  for k, v in pairs(opts) do
    if not OWN_OPTS[k] then sopts[k] = v end
  end
  sopts.stdio, sopts.env = stdio, env

  local proc, err, code = spawn_for(exec, argv, sopts, opts_arg, 3)
  if not proc then return nil, err, code end
  local stream = proc.stdio[idx]
  local child = new_child(proc)
  local ch = stream:channel({owner = child, serialization = mode,
                             max_message = opts.max_message,
                             high_water = opts.high_water,
                             receive_high_water = opts.receive_high_water,
                             max_decoded = opts.max_decoded,
                             own_disconnect = true})
  child.channel = ch
  -- send and receive are C closures over the channel: no Child wrapper
  -- and no method lookup on the channel per message.
  local methods = getmetatable(child).__index
  methods.send, methods.receive = ch:bound()
  relay(child, proc, ch, script)
  return child
end

-- ---- in the child ------------------------------------------------------------

-- fork.parent: the channel to the process that forked us (nil if none).
M.parent = C.parent()

-- serve(fn): answers the pool's calls with fn(msg) until the parent goes.
function M.serve(fn)
  local parent = M.parent
  if not parent then error("fork.serve: this process was not forked", 2) end
  while true do
    local msg = parent:receive()
    if msg == nil then return end                -- the end (a nil call is lipc.null)
    if msg == lipc.null then msg = nil end
    local ok, reply = pcall(fn, msg)
    if ok then
      ok, reply = pcall(parent.send, parent, {true, reply})
      if not ok then parent:send({false, "fork.serve: " .. tostring(reply)}) end
    else
      parent:send({false, tostring(reply)})
    end
  end
end

-- ---- worker pools ----------------------------------------------------------------
-- A call takes a slot: a worker appears in `slots` once for every call it
-- may still take (per_worker, 2 by default), so a busy worker has its next
-- call queued in its channel when it finishes one and does not wait a round
-- trip through the parent for it. The slots of a worker's first calls lie
-- above those of its second ones, so every worker gets one before any gets
-- two; a finished call puts its slot back on top. A worker answers its calls
-- in order and its channel hands replies to the waiting tasks in order, so
-- each call gets its own reply.

local Pool = {}
Pool.__index = Pool
for k, f in pairs(emitter_methods) do Pool[k] = f end

local QUICK_EXIT_NS = 1000000000

local start_worker

-- A worker that ends within a second of its start is started again after
-- a delay that doubles from backoff to backoff_max (ms) while its
-- successors do the same (quick_exits), so that a script that cannot run
-- makes no storm of processes; close() cuts the delay short.
local function restart_worker(pool, entry)
  if entry.quick then
    pool.quick_exits = pool.quick_exits + 1
  else
    pool.quick_exits = 0
  end
  local q = pool.quick_exits
  if q == 0 then
    start_worker(pool, true)
    pool.ready:broadcast()
    return
  end
  pool.ready:broadcast() -- waiting calls see that no worker is up
  pool.starting = pool.starting + 1
  lipc.go(function()
    pool.retry:wait(math.min(pool.backoff * 2 ^ (q - 1) // 1, pool.backoff_max))
    pool.starting = pool.starting - 1
    if pool.closing then
      pool.ended:signal()
      return
    end
    start_worker(pool, true)
    pool.ready:broadcast()
  end)
end

-- Starts a worker; nil when fork fails (it is tried again after the
-- backoff, as a worker that ended at once).
function start_worker(pool, slots_on_top)
  local w, err, code = fork(pool.script, pool.args, pool.opts)
  if not w and not slots_on_top then error(err, 0) end -- fork.pool's own start
  if not w then
    local entry = {quick = true, why = err, code = code}
    pool.last_dead = entry
    restart_worker(pool, entry)
    return nil
  end
  local entry = {child = w, busy = false}
  local t0 = lipc.hrtime()
  pool.workers[entry] = true
  -- the first line of a failed script's error, from the worker itself
  w:on("control", function(kind, value)
    if kind == WORKER_ERROR and entry.why == nil and type(value) == "table"
        and type(value.error) == "string" then
      entry.why = value.error
    end
  end)
  w:on("disconnect", function() pool.ready:broadcast() end)
  w:on("exit", function(ecode, signal)
    entry.dead = {code = ecode, signal = signal}
    entry.quick = lipc.hrtime() - t0 < QUICK_EXIT_NS
    pool.workers[entry] = nil
    local slots = pool.slots
    for i = #slots, 1, -1 do
      if slots[i] == entry then table.remove(slots, i) end
    end
    if not pool.closing then
      pool.last_dead = entry
      restart_worker(pool, entry)
    else
      pool.ended:signal()
    end
  end)
  if slots_on_top then
    for _ = 1, pool.per_worker do pool.slots[#pool.slots + 1] = entry end
  end
  return entry
end

-- No worker is up and the last one failed at its start (it could not
-- start, its script raised, or it ended at once without a call): a call
-- fails now, with why, instead of waiting through the backoff. One that
-- ended with calls in flight and no error line had them fail already.
local function start_failing(pool)
  local e = pool.last_dead
  if next(pool.workers) or pool.quick_exits == 0 or not e or e.answered then return nil end
  -- its error line comes on the channel, which may end after the exit
  local waits = 0
  while e.why == nil and e.child and e.child.connected and waits < 10 do
    pool.ready:wait(100)
    waits = waits + 1
  end
  if e.why == nil and e.used then return nil end
  local how
  if e.child then
    local d = e.dead
    how = ("worker %d ended at its start (exit code %s, signal %s)"):format(e.child.pid or -1,
      tostring(d.code), tostring(d.signal))
  else
    how = "a worker could not start"
  end
  return nil, ("pool: no worker is up: %s%s"):format(how, e.why and ": " .. e.why or ""),
    "ERR_WORKER_EXIT"
end

-- ---- pools across hosts ----------------------------------------------------------
-- With opts.hosts (launchers, as fork's opts.via), worker i runs through
-- hosts[(i - 1) % #hosts + 1]. Each start is a task of its own: the pool
-- is usable as soon as one worker said hello, and a slow host does not
-- hold the others up. A start that fails is tried again after a delay
-- that doubles from backoff to backoff_max (ms) while that host keeps
-- failing; a worker that ends is started again on its host (after the
-- same backoff when it ended within a second of its start). A call finds
-- no worker when every host failed since its last success:
-- ERR_HOST_LOST, with each host's last error.

local function host_name(via) return via[#via] end

local function all_down(pool)
  if next(pool.workers) then return false end
  for _, host in ipairs(pool.remote_hosts) do
    if host.failures == 0 then return false end
  end
  return true
end

-- Every host has all its workers up, or failed since its last success.
local function settled(pool)
  for _, host in ipairs(pool.remote_hosts) do
    if host.workers < host.size and host.failures == 0 then return false end
  end
  return true
end

local function hosts_down_error(pool)
  local why = {}
  for _, host in ipairs(pool.remote_hosts) do
    why[#why + 1] = host.name .. ": " .. tostring(host.err)
  end
  return nil, "pool: no host is reachable (" .. table.concat(why, "; ") .. ")", "ERR_HOST_LOST"
end

local start_remote

local function remote_started(pool, host, w)
  local entry = {child = w, host = host}
  local t0 = lipc.hrtime()
  pool.workers[entry] = true
  host.failures, host.workers = 0, host.workers + 1
  w:on("exit", function()
    entry.dead = true
    pool.workers[entry] = nil
    host.workers = host.workers - 1
    local slots = pool.slots
    for i = #slots, 1, -1 do
      if slots[i] == entry then table.remove(slots, i) end
    end
    if pool.closing then
      pool.ended:signal()
      return
    end
    -- A worker that ends within a second of its start is started again
    -- after the backoff, so that a script that cannot run makes no storm
    -- of connections to its host.
    if lipc.hrtime() - t0 < QUICK_EXIT_NS then
      host.quick_exits = host.quick_exits + 1
    else
      host.quick_exits = 0
    end
    local q = host.quick_exits
    start_remote(pool, host, q == 0 and 0 or
      math.min(pool.backoff * 2 ^ (q - 1) // 1, pool.backoff_max))
  end)
  for _ = 1, pool.per_worker do pool.slots[#pool.slots + 1] = entry end
  pool.ready:broadcast()
  pool.up:broadcast(true)
end

function start_remote(pool, host, delay)
  pool.starting = pool.starting + 1
  lipc.go(function()
    if delay > 0 then host.retry:wait(delay) end -- close() cuts it short
    local w, err
    if not pool.closing then
      local opts = copy(pool.opts)
      opts.via = host.via
      w, err = fork(pool.script, pool.args, opts)
    end
    pool.starting = pool.starting - 1
    if pool.closing then
      if w then
        w:disconnect()
        w:wait()
      end
      pool.ended:signal()
      return
    end
    if w then return remote_started(pool, host, w) end
    host.failures, host.err = host.failures + 1, err
    pool.ready:broadcast() -- waiting calls see whether every host is down
    pool.up:broadcast(true)
    start_remote(pool, host, math.min(pool.backoff * 2 ^ (host.failures - 1) // 1,
                                      pool.backoff_max))
  end)
end

local function check_hosts(hosts)
  if type(hosts) ~= "table" or #hosts == 0 then
    error("bad argument #2 to 'fork.pool' (opts.hosts must be a non-empty array of launchers)", 3)
  end
  local r = {}
  for i, via in ipairs(hosts) do
    if type(via) ~= "table" or #via == 0 then
      error(("bad argument #2 to 'fork.pool' (opts.hosts[%d] must be a launcher argv,"
        .. " as fork's opts.via)"):format(i), 3)
    end
    for j = 1, #via do
      if type(via[j]) ~= "string" then
        error(("bad argument #2 to 'fork.pool' (opts.hosts[%d][%d] must be a string)")
          :format(i, j), 3)
      end
    end
    r[i] = {via = via, name = host_name(via), failures = 0, workers = 0, size = 0,
            quick_exits = 0, retry = lipc.cond()}
  end
  return r
end

local function ms_opt(opts, name, dflt)
  local v = opts[name]
  if v == nil then return dflt end
  if math.type(v) ~= "integer" or v < 1 then
    error(("bad argument #2 to 'fork.pool' (opts.%s must be an integer >= 1 (ms))"):format(name), 3)
  end
  return v
end

-- pool(script, {size = n, per_worker = 2, args = {...}, hosts = {...},
-- ...fork opts}) -> pool
function M.pool(script, opts)
  if type(script) ~= "string" then
    error("bad argument #1 to 'fork.pool' (script path expected, got " .. type(script) .. ")", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #2 to 'fork.pool' (table expected, got " .. type(opts) .. ")", 2)
  end
  opts = opts or {}
  local per_worker = opts.per_worker or 2
  if math.type(per_worker) ~= "integer" or per_worker < 1 then
    error("bad argument #2 to 'fork.pool' (opts.per_worker must be an integer >= 1)", 2)
  end
  local pool = setmetatable({
    script = script, args = opts.args or {}, size = opts.size or 4, per_worker = per_worker,
    workers = {}, slots = {}, ready = lipc.cond(), ended = lipc.cond(),
    inflight = 0, waiting = 0, closing = false, starting = 0, up = lipc.cond(),
    quick_exits = 0, retry = lipc.cond(),
  }, Pool)
  local fopts = copy(opts)
  fopts.size, fopts.args, fopts.per_worker = nil, nil, nil
  fopts.hosts, fopts.backoff, fopts.backoff_max = nil, nil, nil
  pool.opts = fopts
  pool.backoff = ms_opt(opts, "backoff", 100)
  pool.backoff_max = ms_opt(opts, "backoff_max", 5000)
  if opts.hosts ~= nil then
    if opts.via ~= nil then
      error("bad argument #2 to 'fork.pool' (opts.hosts and opts.via exclude each other)", 2)
    end
    pool.remote_hosts = check_hosts(opts.hosts)
    for i = 1, pool.size do
      local host = pool.remote_hosts[(i - 1) % #pool.remote_hosts + 1]
      host.size = host.size + 1
      start_remote(pool, host, 0)
    end
    return pool
  end
  local entries = {}
  for i = 1, pool.size do entries[i] = start_worker(pool, false) end
  for _ = 1, per_worker do
    for i = pool.size, 1, -1 do pool.slots[#pool.slots + 1] = entries[i] end
  end
  return pool
end

local function closed() return nil, "pool: closed", "ERR_POOL_CLOSED" end

-- call(msg) in a task -> reply | nil, msg, code
function Pool:call(msg)
  if self.closing then return closed() end
  local slots = self.slots
  local entry
  repeat
    local n = #slots
    while n == 0 do
      if self.remote_hosts and all_down(self) then return hosts_down_error(self) end
      if not self.remote_hosts then
        local _, fmsg, fcode = start_failing(self)
        if fmsg then return nil, fmsg, fcode end
      end
      self.waiting = self.waiting + 1
      self.ready:wait()
      self.waiting = self.waiting - 1
      if self.closing then return closed() end
      n = #slots
    end
    entry = slots[n]
    slots[n] = nil
    -- a slot of a worker whose channel ended before its exit was seen
  until not entry.dead and entry.child.connected
  self.inflight = self.inflight + 1
  entry.used = true
  local w = entry.child
  local ok, err = pcall(w.send, w, msg)
  local reply, rmsg, rcode
  if ok then reply, rmsg, rcode = w:receive() end
  if reply ~= nil then entry.answered = true end
  self.inflight = self.inflight - 1
  if not entry.dead and w.connected then
    slots[#slots + 1] = entry
    if self.waiting > 0 then self.ready:signal() end
  end
  if self.closing and self.inflight == 0 then self.ended:signal() end
  if not ok then error(err, 2) end
  if reply == nil and rcode == "ERR_IPC_LINK_LOST" then
    return nil, ("pool: host %s lost during the call: %s"):format(entry.host.name, rmsg),
      "ERR_HOST_LOST"
  end
  if reply == nil and entry.host then
    return nil, ("pool: the worker on %s ended during the call: %s")
      :format(entry.host.name, tostring(rmsg)), "ERR_WORKER_CRASHED"
  end
  if reply == nil then
    local d = entry.dead
    if not d then
      w:wait()
      d = entry.dead or {}
    end
    return nil, ("pool: worker %d crashed during the call (exit code %s, signal %s)%s")
      :format(w.pid or -1, tostring(d.code), tostring(d.signal),
              entry.why and ": " .. entry.why or ""), "ERR_WORKER_CRASHED"
  end
  if reply[1] then return reply[2] end
  return nil, "pool: worker error: " .. tostring(reply[2]), "ERR_WORKER_ERROR"
end

-- close() in a task: waits for calls in flight, then ends every worker.
function Pool:close()
  if self.closing then return end
  self.closing = true
  self.ready:broadcast()
  while self.inflight > 0 do self.ended:wait() end
  for entry in pairs(self.workers) do
    if entry.child.connected then entry.child:disconnect() end
  end
  self.retry:broadcast()
  if self.remote_hosts then
    for _, host in ipairs(self.remote_hosts) do host.retry:broadcast() end
  end
  while next(self.workers) or self.starting > 0 do self.ended:wait() end
end

-- started([timeout_ms]) in a task -> true once every host has its workers
-- up or has failed since its last success (at once for a local pool), or
-- nil, "timeout".
function Pool:started(timeout_ms)
  if not self.remote_hosts then return true end
  local t0 = lipc.hrtime()
  while not settled(self) and not self.closing do
    local left = timeout_ms and timeout_ms - (lipc.hrtime() - t0) // 1000000
    if left and left <= 0 then return nil, "timeout" end
    if self.up:wait(left) == nil and left then
      if not settled(self) then return nil, "timeout" end
    end
  end
  return true
end

-- hosts() -> {{name, workers, failures, error, quick_exits}, ...} of a pool across
-- hosts (nil for a local pool): how each host is doing.
function Pool:hosts()
  if not self.remote_hosts then return nil end
  local r = {}
  for i, host in ipairs(self.remote_hosts) do
    r[i] = {name = host.name, workers = host.workers, failures = host.failures, error = host.err,
            quick_exits = host.quick_exits}
  end
  return r
end

return setmetatable(M, {__call = function(_, ...) return fork(...) end})
