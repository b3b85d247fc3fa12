-- layers_spec.lua - lipc's C layers call only down (docs/architecture.md):
-- runtime/ (the host, tasks, events, handles, streams) < channel/ (the
-- message channel) < modules/ (the Lua modules). Read from the objects
-- themselves: whatever lipc function an object of one layer calls must be
-- defined in that layer or one below.
local support = require "support"
local q = support.shell_quote

local build = support.lipc:match("^(.*)/lipc$") or "build"
local LAYERS = {"runtime", "channel", "modules"}

-- The objects of a layer's sources (the executable's main.c is above them
-- all; the generated embedded.o holds runtime/ and modules/ Lua, loaded
-- by name).
local function objects(dir)
  local out = support.sh(("cd %s && ls %s/*.c"):format(q(support.root), dir))
  local list = {}
  for src in out:gmatch("[^\n]+") do
    if not src:match("/main%.c$") then
      list[#list + 1] = q(build .. "/obj/" .. src:gsub("%.c$", ".o"))
    end
  end
  if dir == "runtime" then list[#list + 1] = q(build .. "/obj/embedded.o") end
  return table.concat(list, " ")
end

-- lipc's own function and variable names in nm's output.
local function names(out)
  local set = {}
  for name in out:gmatch("%f[%w_](lipc_[%w_]+)") do set[name] = true end
  for name in out:gmatch("%f[%w_](luaopen_[%w_]+)") do set[name] = true end
  return set
end

describe("the C layers", function()
  it("call only down: runtime/ < channel/ < modules/", function()
    local level = {}
    for i, dir in ipairs(LAYERS) do
      local out, status = support.sh("nm --defined-only " .. objects(dir))
      assert.are.equal(0, status, out)
      for name in pairs(names(out)) do level[name] = i end
    end
    local up, down = {}, 0
    for i, dir in ipairs(LAYERS) do
      local out, status = support.sh("nm -u " .. objects(dir))
      assert.are.equal(0, status, out)
      for name in pairs(names(out)) do
        local at = level[name]
        if at and at > i then
          up[#up + 1] = dir .. " calls " .. LAYERS[at] .. "'s " .. name
        elseif at and at < i then
          down = down + 1
        end
      end
    end
    table.sort(up)
    assert.are.same({}, up)
    assert.is_true(down > 50, "calls down: " .. down)
  end)
end)
