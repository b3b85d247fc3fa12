-- repl.lua - the interactive prompt: `lipc` on a terminal, or `lipc -i`.
-- Each line runs as a task while the event loop keeps running between
-- lines, so events from children and sockets show up as they happen.
-- At the prompt lipc and its modules are globals, values print through
-- lipc.inspect, and on a terminal output that comes while the prompt
-- waits (a listener's print) is written above it, the prompt redrawn.
local is_tty = ...
local lipc = require "lipc"

local out = lipc.stdout
local inspect = lipc.inspect

for _, name in ipairs({"lipc", "spawn", "fork", "pipe", "net"}) do
  if rawget(_G, name) == nil then rawset(_G, name, require(name)) end
end

local prompt -- the prompt on screen while waiting for a line, else nil

-- What is written while the prompt waits goes above it: the prompt line
-- is cleared first and drawn again after.
local function write_above(s)
  if prompt and is_tty then
    out:write("\r\27[K" .. s .. (s:sub(-1) == "\n" and "" or "\n") .. prompt)
  else
    out:write(s)
  end
end

if is_tty then
  local tostring, select, concat = tostring, select, table.concat
  _G.print = function(...)
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
    write_above(concat(parts, "\t") .. "\n")
  end
  local stdout = io.stdout
  io.write = function(...) -- luacheck: ignore 122
    if io.output() ~= stdout then return io.output():write(...) end
    local parts = {}
    for i = 1, select("#", ...) do
      local v = select(i, ...)
      if type(v) ~= "string" and type(v) ~= "number" then
        error(("bad argument #%d to 'io.write' (string expected, got %s)"):format(i, type(v)), 2)
      end
      parts[i] = tostring(v)
    end
    write_above(concat(parts))
    return stdout
  end
end

-- The traceback of an error at the prompt, without the prompt's frames.
local function traceback(msg)
  local tb = debug.traceback(msg, 2)
  return (tb:gsub("\n%s*%[C%]: in function 'xpcall'.*$", ""))
end

local function show(ok, ...)
  if not ok then
    out:write(tostring((...)) .. "\n")
    return
  end
  local n = select("#", ...)
  if n == 0 then return end
  local parts = {}
  for i = 1, n do parts[i] = inspect((select(i, ...))) end
  out:write(table.concat(parts, "\t") .. "\n")
end

-- Compiles a line as an expression first (so `1 + 1` prints 2), then as
-- a statement; nil, "incomplete" when more lines are needed.
local function compile(src)
  local fn = load("return " .. src, "=stdin")
  if fn then return fn end
  local err
  fn, err = load(src, "=stdin")
  if fn then return fn end
  if err:find("<eof>$") then return nil, "incomplete" end
  return nil, err
end

local function run(fn)
  local done, finished = lipc.cond(), false
  lipc.go(function()
    show(xpcall(fn, traceback))
    finished = true
    done:signal()
  end)
  if not finished then done:wait() end
end

out:write(("lipc %s (%s) -- the event loop runs between lines; Ctrl-D exits\n")
  :format(lipc.version, lipc.versions.lua))
local buffer
local next_line = lipc.stdin:lines()
while true do
  prompt = buffer and ">> " or "> "
  out:write(prompt)
  local line = next_line()
  prompt = nil
  if line == nil then break end
  local src = buffer and (buffer .. "\n" .. line) or line
  local fn, err = compile(src)
  if fn then
    buffer = nil
    run(fn)
  elseif err == "incomplete" then
    buffer = src
  else
    buffer = nil
    out:write(err .. "\n")
  end
end
out:write("\n")
lipc.exit(0)
