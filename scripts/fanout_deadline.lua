-- fanout_deadline.lua - a scoped fan-out with a deadline: ask several
-- workers at once, keep the answers that come in time, and leave nothing
-- running behind. Each worker is a child process (here `sleep`, standing
-- for a slow service); the scope gives every wait its deadline and kills
-- the children still running when it passes.
--
--   lipc scripts/fanout_deadline.lua [deadline_ms]
local lipc = require "lipc"
local spawn = require "spawn"

local deadline = tonumber(arg and arg[1]) or 300
local jobs = {
  {name = "fast", seconds = 0},
  {name = "quick", seconds = 0.05},
  {name = "slow", seconds = 30}, -- never in time: cancelled, its child killed
}

local answers = {}
local ok, msg, code = lipc.scope(function(scope)
  for _, job in ipairs(jobs) do
    scope:go(function()
      -- cancel = scope: the child is killed when the scope is cancelled
      -- (spawn.run would kill it anyway: its own wait is cancelled)
      local r, _, ecode = spawn.run("sleep", {tostring(job.seconds)}, {cancel = scope})
      answers[job.name] = r and (r.code == 0 and "ok" or "failed") or ecode
    end)
  end
  return true
end, {timeout = deadline})

for _, job in ipairs(jobs) do
  print(("%s: %s"):format(job.name, tostring(answers[job.name])))
end
print(("scope: %s"):format(ok and "in time" or code))
if not ok then print(msg) end

-- Nothing outlives the scope: every child has ended (spawn reaps them).
local function children()
  local f = io.open(("/proc/%d/task/%d/children"):format(lipc.pid, lipc.pid))
  local n = 0
  if f then
    for pid in f:read("a"):gmatch("%d+") do
      local st = io.open("/proc/" .. pid .. "/stat")
      local state = st and st:read("a"):match("%) (%a)")
      if st then st:close() end
      if state and state ~= "Z" then n = n + 1 end
    end
    f:close()
  end
  return n
end
print(("children left: %d"):format(children()))
