-- docs_spec.lua - the API reference and the editor types come from one
-- description (docs/api/*.lua): they are up to date, and every function
-- registered in C has an entry (what `make docs-check` runs in CI).
local support = require "support"

local q = support.shell_quote

describe("docs from one source", function()
  it("docs/api.md and types/*.lua are what tools/gendocs.lua makes", function()
    local dir = support.tmpdir()
    local out, status = support.sh(("cd %s && lua5.4 tools/gendocs.lua %s 2>&1")
      :format(q(support.root), q(dir)))
    assert.are.equal(0, status, out)
    out, status = support.sh(("cd %s && diff -u docs/api.md %s/docs/api.md && diff -ru types %s/types")
      :format(q(support.root), q(dir), q(dir)))
    assert.are.equal(0, status, "stale: run `make docs`\n" .. out)
  end)

  it("every function registered in C has a description entry", function()
    local out, status = support.sh(("cd %s && %s tools/gendocs.lua --undocumented 2>&1")
      :format(q(support.root), q(support.lipc)))
    assert.are.equal(0, status, out)
    assert.matches("every registered function is documented", out)
  end)

  it("the check finds a function with no entry", function()
    -- a copy of the description without the entry for lipc.sleep
    local dir = support.tmpdir()
    assert(os.execute(("cp -r %s/docs %s/tools %s/"):format(q(support.root), q(support.root), q(dir))))
    local core = support.read_file(dir .. "/docs/api/1_core.lua")
    local cut, n = core:gsub('{"lipc%.sleep%(ms: integer%)", task = true,.-%]%]},', "")
    assert.are.equal(1, n)
    support.write_file(dir .. "/docs/api/1_core.lua", cut)
    local out, status = support.sh(("cd %s && %s tools/gendocs.lua --undocumented 2>&1")
      :format(q(dir), q(support.lipc)))
    assert.are.equal(1, status)
    assert.matches("undocumented: lipc%.sleep", out)
  end)

  it("types are LuaLS meta files, one per module, returning the module class", function()
    for _, mod in ipairs({"lipc", "spawn", "fork", "pipe", "net", "lipc.test"}) do
      local text = support.read_file(support.root .. "/types/" .. mod .. ".lua")
      assert.matches("^%-%-%-@meta " .. mod:gsub("%.", "%%.") .. "\n", text)
      assert.matches("\nreturn " .. mod:gsub("%.", "_") .. "\n$", text)
      assert.truthy(load(text, "=types/" .. mod .. ".lua"))
    end
  end)
end)

-- The README's examples run as they are and end by themselves.
describe("README examples", function()
  local function block(section)
    local text = support.read_file(support.root .. "/README.md")
    section = section:gsub("%-", "%%-")
    local body = text:match("<!%-%- section:" .. section .. " %-%->(.-)"
      .. "<!%-%- /section:" .. section .. " %-%->")
    return assert(body and body:match("```lua\n(.-)```"), section)
  end

  local function run(code)
    local dir = support.tmpdir()
    local file = support.write_file(dir .. "/example.lua", code)
    return support.sh(("cd %s && timeout 20 %s %s 2>&1")
      :format(q(support.root), q(support.lipc), q(file)))
  end

  it("the spawn example exits by itself", function()
    local out, status = run(block("spawn"))
    assert.are.equal(0, status, out)
    assert.matches("^2\n", out)
  end)

  it("the testing example is a spec of examples/kv, word for word", function()
    local spec = support.read_file(support.root .. "/examples/kv/spec/kv_spec.lua")
    local indented = ("\n" .. block("testing")):gsub("\n(.)", "\n  %1")
    assert.truthy(spec:find(indented, 1, true), "README's spec differs from examples/kv/spec/kv_spec.lua")
  end)

  it("the pipe and net example exits by itself", function()
    local path = support.tmpdir() .. "/app.sock"
    local code = block("pipe-net"):gsub("/tmp/app%.sock", path)
    local out, status = run(code)
    assert.are.equal(0, status, out)
    assert.are.equal("HELLO\nhi\n\n", out)   -- print adds a newline to "hi\n"
  end)
end)
