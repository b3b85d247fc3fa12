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
local typed = "" -- what was typed after it so far (raw mode)

-- What is written while the prompt waits goes above it: the prompt line
-- is cleared first and drawn again after.
local function write_above(s)
  if prompt and is_tty then
    out:write("\r\27[K" .. s .. (s:sub(-1) == "\n" and "" or "\n") .. prompt .. typed)
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

-- ---- the line being typed ----------------------------------------------
-- On a terminal the prompt reads in raw mode and edits the line itself
-- (backspace, ^U, ^C, ^D), so output that comes meanwhile is written
-- above it and the prompt is drawn again with what was typed so far.
local stdin = lipc.stdin
local raw = is_tty and stdin:set_raw_mode(true) == true
if raw then stdin:set_raw_mode(false) end -- raw only while a line is typed
local pending = "" -- bytes read past the line just ended

local function redraw()
  out:write("\r\27[K" .. prompt .. typed)
end

-- The next line typed; false after ^C (the line dropped), nil at the end.
-- The terminal is raw before the prompt shows: what is typed once it
-- shows is ours to echo, never the terminal's too.
local function edit_line()
  typed = ""
  stdin:set_raw_mode(true)
  out:write(prompt)
  local result
  while result == nil do
    if pending == "" then
      local chunk = stdin:read()
      if not chunk then break end
      pending = chunk
    end
    local i, n = 1, #pending
    while i <= n do
      local b = pending:byte(i)
      if b == 13 or b == 10 then                       -- Enter
        if b == 13 and pending:byte(i + 1) == 10 then i = i + 1 end
        out:write("\r\n")
        result = typed
        break
      elseif b == 127 or b == 8 then                   -- backspace: one character
        typed = typed:gsub("[%z\1-\127\194-\244][\128-\191]*$", "")
        redraw()
      elseif b == 21 then                              -- ^U
        typed = ""
        redraw()
      elseif b == 3 then                               -- ^C: drop the line
        out:write("^C\r\n")
        i = n
        result = false
        break
      elseif b == 4 then                               -- ^D on an empty line: the end
        if typed == "" then
          i = n
          result = "\4"
          break
        end
      elseif b == 27 then                              -- an escape sequence: skipped
        local c = pending:sub(i + 1, i + 1)
        i = i + 1
        if c == "[" or c == "O" then
          i = i + 1
          while i <= n and not pending:sub(i, i):match("[\64-\126]") do i = i + 1 end
        end
      elseif b >= 32 then
        typed = typed .. string.char(b)
        out:write(string.char(b))
      end
      i = i + 1
    end
    pending = pending:sub(i + 1)
  end
  stdin:set_raw_mode(false)
  typed = ""
  if result == "\4" then return nil end
  return result
end

out:write(("lipc %s (%s) -- the event loop runs between lines; Ctrl-D exits\n")
  :format(lipc.version, lipc.versions.lua))
local buffer
local next_line = raw and edit_line or lipc.stdin:lines()
while true do
  prompt = buffer and ">> " or "> "
  if not raw then out:write(prompt) end
  local line = next_line()
  prompt = nil
  if line == nil then break end
  if line == false then
    buffer = nil
  else
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
end
out:write("\n")
lipc.exit(0)
