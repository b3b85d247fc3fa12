-- helper.lua - busted hooks for every spec, loaded through .busted.
--
-- Each `it` body runs in its own task with a deadline (LIPC_SPEC_TIMEOUT
-- ms, default 30000), so a spec that waits forever fails instead of
-- hanging the suite; and a spec that leaves a handle open (a server, a
-- socket, a timer, a child) fails, as in libuv's and luv's own harnesses.
local busted = require "busted"
local lipc = require "lipc"

local TIMEOUT = tonumber(os.getenv("LIPC_SPEC_TIMEOUT")) or 30000

local function open_handles()
  local set = {}
  for _, h in ipairs(lipc.handles()) do
    if h.object then set[h.object] = h.kind end
  end
  return set
end

-- Handles opened by the body and still open: a short grace period lets
-- closes already under way finish.
local function leaked(before)
  local left
  for _ = 1, 20 do
    left = {}
    for obj, kind in pairs(open_handles()) do
      if not before[obj] then left[#left + 1] = {obj = obj, kind = kind} end
    end
    if #left == 0 then return left end
    lipc.sleep(10)
  end
  return left
end

local function wrap(run)
  return function(...)
    local args = table.pack(...)
    local before = open_handles()
    local done = lipc.cond()
    local finished, ok, err = false, true, nil
    lipc.go(function()
      ok, err = pcall(run, table.unpack(args, 1, args.n))
      finished = true
      done:signal()
    end)
    if not finished then
      done:wait(TIMEOUT)
    end
    if not finished then
      error(("spec timed out after %d ms (LIPC_SPEC_TIMEOUT)"):format(TIMEOUT), 0)
    end
    if not ok then error(err, 0) end
    local left = leaked(before)
    if #left > 0 then
      local kinds = {}
      for i, h in ipairs(left) do
        kinds[i] = h.kind
        h.obj:close()
      end
      lipc.sleep(10)
      error(("spec left %d handle(s) open: %s"):format(#left, table.concat(kinds, ", ")), 0)
    end
  end
end

busted.subscribe({"test", "start"}, function(element)
  element.run = wrap(element.run)
  return nil, true
end)
