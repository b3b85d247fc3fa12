-- embed_spec.lua - the C embedding API (examples/embed.c compiled against
-- build/liblipc.a) and the lipc.so module loaded by stock lua5.4.
local support = require "support"
local q = support.shell_quote

local build = support.lipc:match("^(.*)/lipc$") or "build"

-- A topology that forks a worker and prints its answer; run a second time
-- (a worker that ran the embedder's topology) it says so and stops there.
local TOPOLOGY = [[
local lipc = require "lipc"
if lipc.getenv("SPEC_TOPOLOGY_RAN") then print("topology ran again") lipc.exit(9) end
lipc.setenv("SPEC_TOPOLOGY_RAN", "1")
local w = assert(require("fork")(lipc.getenv("SPEC_WORKER")))
print("worker:", (w:receive()))
print("status:", (w:wait()))
]]
local WORKER = [[
local parent = require("fork").parent
parent:send(embedder_add and embedder_add(2, 3) or "no embedder_add")
]]

local san = build:find("asan") and "-fsanitize=address,undefined" or ""

-- A dir with topology.lua and worker.lua; returns the dir and the env
-- prefix of a command that runs an embedder in it.
local function topology_dir()
  local dir = support.tmpdir()
  support.write_file(dir .. "/topology.lua", TOPOLOGY)
  support.write_file(dir .. "/worker.lua", WORKER)
  return dir, ("cd %s && SPEC_WORKER=%s "):format(q(dir), q(dir .. "/worker.lua"))
end

describe("embedding", function()
  it("an embedder that calls lipc_worker_main runs its workers, with its C functions", function()
    local dir, run = topology_dir()
    local out, status = support.sh(("cc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror " ..
      "-o %s/embed examples/embed.c -Iruntime %s/liblipc.a $(pkg-config --cflags --libs lua5.4 libuv) " ..
      "-lm -ldl %s 2>&1"):format(dir, build, san))
    assert.are.equal(0, status, out)
    out, status = support.sh(run .. "./embed topology.lua 2>&1")
    assert.are.equal(0, status, out)
    assert.are.equal("worker:\t5\nstatus:\t0\nembedder: ticks=1 status=0\n", out)
  end)

  it("the README's embedder forks workers that run (lipc's executable); none runs the topology", function()
    local dir, run = topology_dir()
    support.write_file(dir .. "/app.c", support.README_EMBEDDER)
    -- against the shared library of the tree: its lipc is next to it
    local out, status = support.sh(("cc -std=c11 -D_GNU_SOURCE -Wall -Werror -o %s/app %s/app.c " ..
      "-Iruntime -L%s -llipc -Wl,-rpath,%s $(pkg-config --cflags --libs lua5.4 libuv) %s 2>&1")
      :format(dir, dir, build, build:sub(1, 1) == "/" and build or support.root .. "/" .. build, san))
    assert.are.equal(0, status, out)
    out, status = support.sh(run .. "./app 2>&1")
    assert.are.equal(0, status, out)
    assert.are.equal("worker:\tno embedder_add\nstatus:\t0\n", out)

    -- started as a worker without lipc_worker_main: runs nothing, says why
    out, status = support.sh(run .. "LIPC_WORKER=1 ./app worker.lua 2>&1")
    assert.are.equal(1, status)
    assert.matches("started by fork%(%) as a worker, but its main%(%) does not call " ..
      "lipc_worker_main%(%) first: not running topology%.lua", out)
    assert.is_nil(out:find("worker:", 1, true))
  end)

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

  -- lua5.4 with the tree's modules on package.cpath; stdout and stderr
  local function stock(code, dir)
    dir = dir or support.tmpdir()
    local out, status = support.sh(("cd %s && LUA_CPATH=%s lua5.4 -e %s 2>%s/stderr"):format(
      q(dir), q(build .. "/?.so"), q(code), q(dir)))
    return out, support.read_file(dir .. "/stderr"), status
  end
  -- lua5.4 itself is not instrumented: it cannot load an ASan lipc.so
  local stock_ok = not build:find("asan")

  it("stock lua5.4 forks workers that have lipc's modules and their channel", function()
    if not stock_ok then return end
    local dir = support.tmpdir()
    support.write_file(dir .. "/w.lua", [[
      local lipc = require "lipc"
      local parent = require("fork").parent
      local m = parent:receive()
      parent:send({twice = m * 2, spawn = type(require("spawn").run), version = lipc.version})
    ]])
    local out, err, status = stock([[
      local lipc = require "lipc"
      local fork = require "fork"
      lipc.go(function()
        local w = assert(fork("w.lua"))
        w:send(21)
        local r = assert(w:receive())
        print(r.twice, r.spawn, r.version == lipc.version, (w:wait()))
      end)
      os.exit(lipc.run())
    ]], dir)
    assert.are.equal(0, status, err)
    assert.are.equal("42\tfunction\ttrue\t0\n", out)
    assert.are.equal("", err)

    -- lipc.so alone, no lipc executable anywhere: fork says so
    assert(os.execute(("cp %s %s/"):format(q(build .. "/lipc.so"), q(dir))))
    out, status = support.sh(("cd %s && PATH=/usr/bin:/bin LUA_CPATH='./?.so' lua5.4 -e %s 2>&1")
      :format(q(dir), q([[
        local lipc = require "lipc"
        lipc.go(function() print(require("fork")("w.lua")) end)
        os.exit(lipc.run())
      ]])))
    assert.are.equal(0, status, out)
    assert.matches("^nil\tfork: no lipc executable to run the worker .-\tENOENT\n$", out)
  end)

  it("stock lua5.4 requires spawn, fork, pipe and net before lipc", function()
    if not stock_ok then return end
    local out, err, status = stock([[
      local mods = {}
      for _, name in ipairs({"spawn", "fork", "pipe", "net"}) do mods[name] = require(name) end
      local lipc = require "lipc"
      local same = {}
      for _, name in ipairs({"spawn", "fork", "pipe", "net"}) do
        same[#same + 1] = tostring(lipc[name] == mods[name] and type(mods[name]) == "table")
      end
      lipc.go(function() print(table.concat(same, " "), mods.spawn.run("echo", {"ran"}).stdout) end)
      os.exit(lipc.run())
    ]])
    assert.are.equal(0, status, err)
    assert.are.equal("true true true true\tran\n\n", out)
  end)

  it("stock lua5.4: a script that sets up work and never calls lipc.run() gets a warning", function()
    if not stock_ok then return end
    local warning = "never called lipc.run%(%)"
    for _, code in ipairs({
      [[require("lipc").set_timeout(10, function() print("never") end)]],
      [[local lipc = require "lipc"; lipc.go(function() lipc.sleep(5) print("never") end)]],
      [[require("net").create_server(print):listen(0, "127.0.0.1")]],
    }) do
      local out, err = stock(code)
      assert.are.equal("", out)
      assert.matches(warning, err, 1)
    end
    for _, code in ipairs({
      [[require "lipc"]],
      [[local lipc = require "lipc"; lipc.set_timeout(10, function() print("ran") end); lipc.run()]],
      [[local lipc = require "lipc"; lipc.set_timeout(10, print):stop()]],
    }) do
      local _, err = stock(code)
      assert.are.equal("", err)
    end
  end)
end)

-- The Lua parts of lipc are carried precompiled (tools/embed.lua): a worker
-- loads fork.lua's bytecode instead of parsing its source. Debug info is
-- kept, so errors and tracebacks still name the files and lines.
describe("the embedded Lua parts", function()
  local gen = build .. "/gen/embedded.c"

  it("are precompiled, each next to its source", function()
    local f = assert(io.open(gen, "rb"))
    local c = f:read("a")
    f:close()
    local names = 0
    for name in c:gmatch("static const char src_([%w_]+)%[%]") do
      names = names + 1
      -- "\27Lua": the precompiled chunk's signature
      assert.matches("static const char bin_" .. name .. "%[%] = {\n  27,76,117,97,", c)
    end
    assert.is_true(names >= 5)
  end)

  it("keep their debug info: functions name their file and line", function()
    local info = debug.getinfo(require("fork").pool, "S")
    assert.are.equal("@modules/fork.lua", info.source)
    assert.is_true(info.linedefined > 1)
    local ok, err = pcall(require("fork").pool, "x", {per_worker = 0})
    assert.is_false(ok)
    assert.matches("bad argument #2 to 'fork.pool'", err, 1, true)
  end)
end)
