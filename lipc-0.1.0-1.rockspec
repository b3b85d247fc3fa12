-- luarocks make: builds lipc.so, the lipc runtime as a module for stock
-- Lua 5.4 (require "lipc"; ...; lipc.run()), and the lipc executable
-- (scripts, `lipc test`) into the tree's bin. `make install` installs the
-- library and header for embedders too.
package = "lipc"
version = "0.1.0-1"
source = { url = "git+https://example.invalid/lipc.git" }
description = {
  summary = "Lua-scriptable IPC runtime on libuv: spawn, fork, pipe, net",
  license = "MIT",
}
dependencies = { "lua >= 5.4, < 5.5" }
external_dependencies = { LIBUV = { header = "uv.h" } }
build = {
  type = "make",
  build_target = "rock",
  install_target = "install-rock",
  install_variables = { LUA_LIBDIR = "$(LIBDIR)", BINDIR = "$(BINDIR)" },
}
