-- embed_spec.lua - the C embedding API (examples/embed.c compiled against
-- build/liblipc.a) and the lipc.so module loaded by stock lua5.4.
local support = require "support"
local q = support.shell_quote

local build = support.lipc:match("^(.*)/lipc$") or "build"

describe("embedding", function()
  it("a C program runs a script on its own loop through lipc.h", function()
    local dir = support.tmpdir()
    local _, status = support.sh(("cc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror " ..
      "-o %s/embed examples/embed.c -Iruntime " ..
      "%s/liblipc.a $(pkg-config --cflags --libs lua5.4 libuv) -lm -ldl %s 2>&1"):format(
      dir, build, build:find("asan") and "-fsanitize=address,undefined" or ""))
    assert.are.equal(0, status)
    support.write_file(dir .. "/s.lua", [[
      local lipc = require "lipc"
      lipc.sleep(5)
      print(EMBEDDER, ...)
      lipc.exit(3)
    ]])
    local out
    out, status = support.sh(("%s/embed %s/s.lua x y 2>&1"):format(dir, dir))
    assert.are.equal(3, status)
    assert.are.equal("hello from C\tx\ty\nembedder: ticks=1 status=3\n", out)
  end)

  it("stock lua5.4 requires lipc.so and drives the loop with lipc.run()", function()
    local out, status = support.sh(("cd %s && LUA_CPATH=%s/?.so lua5.4 -e %s 2>&1"):format(
      q(support.root), q(build), q([[
        local lipc = require "lipc"
        local log = {}
        lipc.set_timeout(10, function() log[#log + 1] = "timer" end)
        lipc.go(function() lipc.sleep(5); log[#log + 1] = "task" end)
        print(lipc.run(), table.concat(log, ","))
      ]])))
    if build:find("asan") then return end -- lua5.4 itself is not instrumented
    assert.are.equal(0, status)
    assert.are.equal("0\ttask,timer\n", out)
  end)
end)
