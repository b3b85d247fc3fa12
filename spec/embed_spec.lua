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

  it("lipc_run_file returns the errno of a file it cannot read, as lipc.h says", function()
    local dir = support.tmpdir()
    assert(os.execute("chmod 755 " .. q(dir)))
    support.write_file(dir .. "/prog.c", [[
      #include <stdio.h>
      #include "lipc.h"
      int main(int argc, char **argv) {
        lipc_runtime *rt = lipc_new(NULL);
        int rc = lipc_run_file(rt, argv[1], 0, NULL);
        (void)argc;
        printf("%s %d\n", rc ? uv_err_name(rc) : "0", lipc_exit_status(rt));
        lipc_free(rt);
        return 0;
      }
    ]])
    local san = build:find("asan") and "-fsanitize=address,undefined" or ""
    local out, status = support.sh(("cc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror " ..
      "-o %s/prog %s/prog.c -Iruntime %s/liblipc.a $(pkg-config --cflags --libs lua5.4 libuv) " ..
      "-lm -ldl %s 2>&1"):format(dir, dir, build, san))
    assert.are.equal(0, status, out)
    support.write_file(dir .. "/secret.lua", "print('never')\n")
    assert(os.execute("chmod 000 " .. q(dir .. "/secret.lua")))
    support.write_file(dir .. "/bad.lua", "x = = 1\n")
    support.write_file(dir .. "/exits.lua", "require('lipc').exit(3)\n")
    assert(os.execute("mkdir " .. q(dir .. "/sub")))
    -- root reads any file: the unreadable one is tried as nobody
    local as = support.sh("id -u") == "0\n" and "setpriv --reuid=65534 --regid=65534 --clear-groups " or ""
    local function run(file)
      local o = support.sh(("%s%s/prog %s 2>/dev/null"):format(as, dir, q(dir .. "/" .. file)))
      return o
    end
    assert.are.equal("ENOENT 1\n", run("missing.lua"))
    assert.are.equal("EACCES 1\n", run("secret.lua"))
    assert.are.equal("EISDIR 1\n", run("sub"))
    assert.are.equal("EINVAL 1\n", run("bad.lua"))
    assert.are.equal("ECANCELED 3\n", run("exits.lua"))
  end)

  it("liblipc.so and lipc.so export lipc.h's functions and nothing else", function()
    local api = {}
    for name in ("\n" .. support.read_file("runtime/lipc.h")):gmatch("\nLIPC_API [^;(]-([%w_]+)%(") do
      api[#api + 1] = name
    end
    table.sort(api)
    assert.is_true(#api >= 9, "lipc.h declares " .. #api .. " functions")
    for _, lib in ipairs({"liblipc.so", "lipc.so"}) do
      local out, status = support.sh(("nm -D --defined-only %s/%s"):format(q(build), lib))
      assert.are.equal(0, status, out)
      local exported = {}
      for name in out:gmatch("%x+ [TtDdBbWwViRr] ([%w_.@]+)") do
        if not name:match("^_") then exported[#exported + 1] = name end
      end
      table.sort(exported)
      assert.are.same(api, exported, lib)
    end
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
