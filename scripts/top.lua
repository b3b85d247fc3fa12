-- top.lua - a live table of a worker pool's children and their counters
-- (child:stats(): messages and bytes each way, queued bytes, high-water
-- hits), redrawn while tasks keep the workers busy. Bounded: it runs for
-- `seconds` (default 3), then closes the pool and exits.
--   lipc scripts/top.lua [seconds] [interval_ms]
local lipc = require "lipc"
local fork = require "fork"

local seconds = tonumber(arg and arg[1]) or 3
local interval = tonumber(arg and arg[2]) or 500
local dir = arg and arg[0] and arg[0]:match("^(.*)/[^/]*$") or "scripts"
local pool = fork.pool(dir .. "/pool_worker.lua", {size = 3})
local tty = os.execute("test -t 1")  -- redraw in place on a terminal

local function row(cols)
  return ("%7s %9s %9s %10s %10s %7s %5s"):format(table.unpack(cols))
end

local function draw(frame)
  local lines = {}
  lines[#lines + 1] = ("lipc top - frame %d, %d workers, %.1f s"):format(
    frame, pool.size, (lipc.hrtime() - pool.started) / 1e9)
  lines[#lines + 1] = row({"pid", "msgs out", "msgs in", "bytes out", "bytes in", "queued", "hwm"})
  local entries = {}
  for entry in pairs(pool.workers) do entries[#entries + 1] = entry end
  table.sort(entries, function(a, b) return (a.child.pid or 0) < (b.child.pid or 0) end)
  for _, entry in ipairs(entries) do
    local w = entry.child
    local st = w:stats()
    lines[#lines + 1] = row({w.pid or "-", st.messages_sent, st.messages_received,
                             st.bytes_sent, st.bytes_received, st.queued, st.high_water_hits})
  end
  if tty then io.write("\27[H\27[2J") end
  io.write(table.concat(lines, "\n"), "\n\n")
  io.stdout:flush()
end

pool.started = lipc.hrtime()
local running, calls = true, 0
-- Four clients keep the pool busy until the time is up.
for c = 1, 4 do
  lipc.go(function()
    local i = c
    while running do
      local r = pool:call({square = i})
      if r then calls = calls + 1 end
      i = i + 4
      lipc.sleep(1)
    end
  end)
end

local frame = 0
local deadline = lipc.hrtime() + seconds * 1e9
while lipc.hrtime() < deadline do
  lipc.sleep(interval)
  frame = frame + 1
  draw(frame)
end
running = false
lipc.sleep(20)
pool:close()
print(("done: %d calls in %d frames"):format(calls, frame))
