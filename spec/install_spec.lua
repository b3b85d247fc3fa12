-- install_spec.lua - `make install` into a temporary prefix gives a
-- working tool, library, header, pkg-config file, Lua module and man page;
-- `make uninstall` takes them all away again.
local support = require "support"
local q = support.shell_quote

local build = support.lipc:match("^(.*)/lipc$") or "build"
local asan = build:find("asan") ~= nil

describe("make install", function()
  it("installs into a prefix, builds the embedder with pkg-config, uninstalls", function()
    local prefix = support.tmpdir() .. "/prefix"
    local make = ("make -s -C %s BUILD=%s PREFIX=%s"):format(q(support.root), q(build), q(prefix))
    if asan then
      make = make .. " SAN='-fsanitize=address,undefined -fno-omit-frame-pointer' OPT='-O1 -g'"
    end
    local out, status = support.sh(make .. " install 2>&1")
    assert.are.equal(0, status, out)
    for _, f in ipairs({"bin/lipc", "lib/liblipc.a", "lib/liblipc.so", "include/lipc.h",
                        "lib/pkgconfig/lipc.pc", "share/man/man1/lipc.1", "lib/lua/5.4/lipc.so",
                        "lib/lua/5.4/spawn.so", "lib/lua/5.4/fork.so", "lib/lua/5.4/pipe.so",
                        "lib/lua/5.4/net.so"}) do
      assert.is_truthy(io.open(prefix .. "/" .. f), f)
    end

    out, status = support.sh(q(prefix .. "/bin/lipc") .. " -e 'print(require(\"lipc\").version)'")
    assert.are.equal(0, status)
    assert.matches("^%d+%.%d+%.%d+\n$", out)

    local exe = prefix .. "/embed"
    out, status = support.sh(("cd %s && PKG_CONFIG_PATH=%s/lib/pkgconfig cc -std=c11 -Wall -Werror " ..
      "-o %s examples/embed.c $(PKG_CONFIG_PATH=%s/lib/pkgconfig pkg-config --cflags --libs lipc) %s 2>&1")
      :format(q(support.root), q(prefix), q(exe), q(prefix), asan and "-fsanitize=address,undefined" or ""))
    assert.are.equal(0, status, out)
    local script = support.write_file(prefix .. "/s.lua", "print(EMBEDDER) require('lipc').exit(4)")
    -- The documented build line alone gives a program that finds the
    -- installed library (no LD_LIBRARY_PATH).
    out, status = support.sh(("env -u LD_LIBRARY_PATH %s %s"):format(q(exe), q(script)))
    assert.are.equal(4, status)
    assert.matches("^hello from C\n", out)

    -- Workers of embedders: examples/embed.c runs its own (lipc_worker_main),
    -- with its C functions; the README's shape, without it, gets the
    -- installed lipc for them. Neither runs the topology again.
    local topo = support.write_file(prefix .. "/topology.lua", [[
      local lipc = require "lipc"
      if lipc.getenv("SPEC_TOPOLOGY_RAN") then print("topology ran again") lipc.exit(9) end
      lipc.setenv("SPEC_TOPOLOGY_RAN", "1")
      local w = assert(require("fork")((arg[0]:gsub("topology", "worker"))))
      print("worker:", (w:receive()), (w:wait()))
    ]])
    local worker = support.write_file(prefix .. "/worker.lua", [[
      require("fork").parent:send(embedder_add and embedder_add(2, 3) or "no embedder_add")
    ]])
    out, status = support.sh(("env -u LD_LIBRARY_PATH %s %s 2>&1"):format(q(exe), q(topo)))
    assert.are.equal(0, status, out)
    assert.are.equal("worker:\t5\t0\nembedder: ticks=1 status=0\n", out)
    local app = prefix .. "/app"
    support.write_file(app .. ".c", support.README_EMBEDDER)
    out, status = support.sh(("PKG_CONFIG_PATH=%s/lib/pkgconfig; export PKG_CONFIG_PATH; " ..
      "cc -std=c11 -Wall -Werror -o %s %s.c $(pkg-config --cflags --libs lipc) %s 2>&1")
      :format(q(prefix), q(app), q(app), asan and "-fsanitize=address,undefined" or ""))
    assert.are.equal(0, status, out)
    -- not from PATH: the lipc of the prefix liblipc.so comes from
    out, status = support.sh(("cd %s && env -u LD_LIBRARY_PATH PATH=/usr/bin:/bin %s 2>&1")
      :format(q(prefix), q(app)))
    assert.are.equal(0, status, out)
    assert.are.equal("worker:\tno embedder_add\t0\n", out)

    out = support.read_file(prefix .. "/share/man/man1/lipc.1")
    assert.matches("^%.TH LIPC 1", out)

    -- `lipc test` from a project of its own, outside the repository
    local project = support.tmpdir()
    assert(os.execute(("cp -r %s/examples/kv/. %s"):format(q(support.root), q(project))))
    out, status = support.sh(("cd %s && %s test -o TAP 2>&1"):format(q(project), q(prefix .. "/bin/lipc")))
    support.check_sanitizers(out)
    assert.are.equal(0, status, out)
    assert.matches("\nok 8 %- kv [^\n]*\n1%.%.8\n$", out)

    out, status = support.sh(make .. " uninstall 2>&1")
    assert.are.equal(0, status, out)
    -- Only what the spec itself made is left.
    out = support.sh("find " .. q(prefix) .. " -type f | sort")
    local left = {exe, app, app .. ".c", prefix .. "/s.lua", topo, worker}
    table.sort(left)
    assert.are.equal(table.concat(left, "\n") .. "\n", out)
  end)
end)
