-- Shared helpers of the lipc side (loaded with dofile by every case, so it
-- does not depend on package.path). Every case prints one line per figure:
--   RESULT <case> <value> <unit>
-- Counts come from the script's arguments (run.sh passes them) or the
-- default scaled by $BENCH_SCALE. The cases that need a second process fork
-- the same script with a role argument ("child", "client").
local lipc = require "lipc"

local M = {}

local scale = tonumber(os.getenv("BENCH_SCALE"))
if not scale or scale <= 0 then scale = 1 end

-- The path of the calling script, as given to lipc (for fork).
function M.script(level)
  local info = debug and debug.getinfo and debug.getinfo((level or 1) + 1, "S")
  local src = info and info.source or ""
  local c = src:sub(1, 1)
  if c == "@" or c == "=" then src = src:sub(2) end
  if not src:find("%.lua$") and type(arg) == "table" and arg[0] then src = arg[0] end
  return src
end

-- The directory of this file (no trailing slash).
M.dir = (M.script(1):match("^(.*)/[^/]*$")) or "."

-- The script's arguments: the main chunk's varargs, or the global `arg`.
function M.args(...)
  local t = table.pack(...)
  if t.n == 0 and type(arg) == "table" then
    t = {}
    for i = 1, #arg do t[i] = arg[i] end
  end
  return t
end

function M.count(a, default)
  local n = tonumber(a)
  if n then return math.floor(n) end
  return math.max(1, math.floor(default * scale))
end

function M.now() return lipc.hrtime() end

function M.secs(t0, t1) return (t1 - t0) / 1e9 end

function M.result(name, value, unit, digits)
  print(string.format("RESULT %s %." .. (digits or 0) .. "f %s", name, value, unit))
  if io and io.stdout then io.stdout:flush() end
end

-- The small table every implementation sends.
function M.small(seq) return {seq = seq, op = "add", args = {1, 2, 3}} end

-- The child of the forked IPC cases: answers each message with reply(m)
-- until the parent disconnects. True in the child (the case then returns),
-- false in the parent.
function M.serve_child(reply)
  local parent = require("fork").parent
  if not parent then return false end
  while true do
    local m = parent:receive()
    if m == nil then break end -- the parent disconnected: done
    parent:send(reply(m))
  end
  return true
end

-- One round trip with a worker that serve_child answers: M.small(seq)
-- sent, the reply's seq checked.
function M.round_trip(worker, seq)
  worker:send(M.small(seq))
  local r = worker:receive()
  if r == nil or r.seq ~= seq then error("parent: bad reply " .. tostring(r and r.seq), 2) end
end

-- Unwraps the (value) or (nil, message, code) convention.
function M.check(v, err, ...)
  if v == nil or v == false then error(tostring(err or "failed"), 2) end
  return v, err, ...
end

-- The C helper that writes N bytes to stdout (stdout_read's child).
function M.writer()
  local w = os.getenv("BENCH_WRITER") or (M.dir .. "/../../build/bench/writer")
  local f = io.open(w, "rb")
  if f then f:close(); return w end
  return nil
end

function M.tmpdir() return os.getenv("BENCH_TMP") or "/tmp" end

-- CPU time a process (default: this one) has run, in ns: user + system,
-- from /proc/<pid>/schedstat (the scheduler's own count, to the ns).
function M.cpu_ns(pid)
  local f = io.open(("/proc/%s/schedstat"):format(pid or "self"))
  if not f then return nil end
  local ns = f:read("n")
  f:close()
  return ns
end

-- CPU time, in ns, this process and the process `pid` have run together.
function M.cpu_pair_ns(pid)
  local p, c = M.cpu_ns(), M.cpu_ns(pid)
  if not (p and c) then error("no /proc/<pid>/schedstat here", 2) end
  return p + c
end

return M
