-- rockspec_spec.lua - `luarocks make` with the repo's rockspec builds the
-- lipc module for stock Lua 5.4, which lua5.4 then requires from the rocks
-- tree and runs the loop with, and the lipc executable, whose `lipc test`
-- runs a project's specs.
local support = require "support"
local q = support.shell_quote

describe("the rockspec", function()
  it("luarocks make builds lipc.so that stock lua5.4 requires, and bin/lipc", function()
    local dir = support.tmpdir()
    local src, tree = dir .. "/src", dir .. "/tree"
    local copy = "mkdir %s && cd %s && cp -r Makefile lipc-*.rockspec runtime channel modules tools %s/"
    local out, status = support.sh(copy:format(q(src), q(support.root), q(src)))
    assert.are.equal(0, status, out)
    out, status = support.sh(("cd %s && luarocks --lua-version=5.4 make --tree=%s lipc-*.rockspec 2>&1")
      :format(q(src), q(tree)))
    assert.are.equal(0, status, out)
    assert.matches("lipc 0%.1%.0%-1 is now installed", out)
    -- spawn.so & co. come with lipc.so, and a worker forked from stock Lua
    -- runs the tree's bin/lipc
    support.write_file(dir .. "/w.lua", "require('fork').parent:send(require('lipc').version)")
    out, status = support.sh(("cd %s && LUA_CPATH=%s/lib/lua/5.4/?.so lua5.4 -e %s 2>&1"):format(
      q(dir), q(tree), q([[
      local fork = require "fork"
      local lipc = require "lipc"
      lipc.go(function()
        lipc.sleep(5)
        print("slept in a task, " .. lipc.version)
        print("worker: " .. fork("w.lua"):receive())
      end)
      os.exit(lipc.run())
    ]])))
    if not support.lipc:find("asan") then -- lua5.4 is not instrumented
      assert.are.equal(0, status, out)
      assert.matches("^slept in a task, 0%.1%.0\nworker: 0%.1%.0\n$", out)
    end

    local project = dir .. "/project"
    assert(os.execute(("cp -r %s/examples/kv %s"):format(q(support.root), q(project))))
    out, status = support.sh(("cd %s && %s/bin/lipc test -o TAP 2>&1"):format(q(project), q(tree)))
    assert.are.equal(0, status, out)
    assert.matches("\nok 8 %- kv [^\n]*\n1%.%.8\n$", out)
  end)
end)
