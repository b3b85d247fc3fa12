-- spawn_rate (lipc): spawn("/bin/true") + child:wait(), N times one after
-- another ("seq"), or N times keeping 8 in flight ("par8": 8 tasks started
-- with lipc.go, each spawning and waiting in turn). stdio inherited (no
-- pipes), like the C and Node sides.
--   lipc spawn_rate.lua [spawns] [seq|par8|both]
--        -> RESULT spawn_seq <n> spawns/s  and/or  RESULT spawn_par8 <n> spawns/s
local C = dofile((debug.getinfo(1, "S").source:match("^[@=]?(.*/)") or "./") .. "common.lua")
local lipc = require "lipc"
local spawn = require "spawn"

local argv = C.args(...)
local n = C.count(argv[1], 2000)
local mode = argv[2] or "both"
local opts = {stdio = {"inherit", "inherit", "inherit"}}

local function one()
  local child = C.check(spawn("/bin/true", {}, opts))
  local code, signal = child:wait()
  if code ~= 0 then error("/bin/true: code " .. tostring(code) .. " signal " .. tostring(signal)) end
end

if mode == "seq" or mode == "both" then
  local t0 = C.now()
  for _ = 1, n do one() end
  C.result("spawn_seq", n / C.secs(t0, C.now()), "spawns/s")
end

if mode == "par8" or mode == "both" then
  local started, done = 0, 0
  local t0 = C.now()
  local function worker()
    while started < n do
      started = started + 1
      one()
      done = done + 1
      if done == n then C.result("spawn_par8", n / C.secs(t0, C.now()), "spawns/s") end
    end
  end
  for _ = 1, 7 do lipc.go(worker) end
  worker() -- the main chunk is a task too: it is the eighth
end
