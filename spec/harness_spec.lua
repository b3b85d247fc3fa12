-- harness_spec.lua - the spec harness itself (spec/helper.lua) fails a
-- spec that leaves a handle open and a spec that waits for ever, instead
-- of passing or hanging the suite.
local support = require "support"
local q = support.shell_quote

local function run_specs(body, timeout_ms)
  local dir = support.tmpdir()
  local file = support.write_file(dir .. "/victim_spec.lua", body)
  return support.sh(("cd %s && LIPC_SPEC_TIMEOUT=%d %s /usr/bin/busted -o TAP %s 2>&1"):format(
    q(support.root), timeout_ms or 30000, q(support.lipc), q(file)))
end

describe("the spec harness", function()
  it("fails a spec that leaves a handle open, and closes the handle", function()
    local out, status = run_specs([[
      local lipc = require "lipc"
      describe("victim", function()
        it("leaks a timer", function() lipc.set_interval(1000, function() end) end)
        it("closes what it opens", function() lipc.set_timeout(1, function() end):stop() end)
      end)
    ]])
    assert.are_not.equal(0, status)
    assert.matches("not ok 1 %- victim leaks a timer", out)
    assert.matches("spec left 1 handle%(s%) open: timer", out)
    assert.matches("\nok 2 %- victim closes what it opens", out)
  end)

  it("fails a spec that waits for ever, and goes on with the next", function()
    local out, status = run_specs([[
      local lipc = require "lipc"
      describe("victim", function()
        it("waits for ever", function() lipc.cond():wait() end)
        it("runs after it", function() assert.is_true(true) end)
      end)
    ]], 200)
    assert.are_not.equal(0, status)
    assert.matches("not ok 1 %- victim waits for ever", out)
    assert.matches("spec timed out after 200 ms", out)
    assert.matches("\nok 2 %- victim runs after it", out)
  end)
end)
