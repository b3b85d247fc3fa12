-- spawn_rate (lipc): spawn("/bin/true") + child:wait(), N times one after
-- another ("seq"), or N times keeping K in flight ("parK", e.g. par8: K
-- tasks started with lipc.go, each spawning and waiting in turn). stdio
-- inherited (no pipes), like the C and Node sides. With MS, no spawn
-- starts once MS milliseconds have passed.
--   lipc spawn_rate.lua [spawns] [seq|parK|both] [ms]
--        -> RESULT spawn_seq <n> spawns/s  and/or  RESULT spawn_parK <n> spawns/s
local C = dofile((debug.getinfo(1, "S").source:match("^[@=]?(.*/)") or "./") .. "common.lua")
local lipc = require "lipc"
local spawn = require "spawn"

local argv = C.args(...)
local n = C.count(argv[1], 2000)
local mode = argv[2] or "both"
local ms = tonumber(argv[3])
local opts = {stdio = {"inherit", "inherit", "inherit"}}

local function one()
  local child = C.check(spawn("/bin/true", {}, opts))
  local code, signal = child:wait()
  if code ~= 0 then error("/bin/true: code " .. tostring(code) .. " signal " .. tostring(signal)) end
end

-- n spawns (fewer when the time is up) by `width` tasks; returns when done
local function run(name, width)
  local started, done, left, finished = 0, 0, width, lipc.cond()
  local t0 = C.now()
  local stop = ms and t0 + math.floor(ms * 1e6) or math.huge
  local function worker()
    while started < n and (started == 0 or C.now() < stop) do
      started = started + 1
      one()
      done = done + 1
    end
    left = left - 1
    if left == 0 then finished:signal() end
  end
  for _ = 1, width do lipc.go(worker) end
  if left > 0 then finished:wait() end
  C.result(name, done / C.secs(t0, C.now()), "spawns/s")
end

if mode == "seq" or mode == "both" then run("spawn_seq", 1) end
if mode == "both" then run("spawn_par8", 8) end
local k = math.tointeger(tonumber(mode:match("^par(%d+)$")))
if k and k > 0 then run("spawn_par" .. k, k) end
