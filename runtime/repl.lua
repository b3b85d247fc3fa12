-- repl.lua - the interactive prompt: `lipc` on a terminal, or `lipc -i`.
-- Each line runs as a task while the event loop keeps running between
-- lines, so events from children and sockets show up as they happen.
local lipc = require "lipc"

local out = lipc.stdout

local function show(ok, ...)
  if not ok then
    out:write(tostring((...)) .. "\n")
    return
  end
  local n = select("#", ...)
  if n == 0 then return end
  local parts = {}
  for i = 1, n do parts[i] = tostring((select(i, ...))) end
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
    show(xpcall(fn, debug.traceback))
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
  out:write(buffer and ">> " or "> ")
  local line = next_line()
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
