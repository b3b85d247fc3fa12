-- luarocks make: builds lipc.so, the lipc runtime as a module for stock
-- Lua 5.4 (require "lipc"; ...; lipc.run()). The lipc executable itself
-- is installed with `make install`.
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
  build_target = "module",
  install_target = "install-module",
  install_variables = { LUA_LIBDIR = "$(LIBDIR)" },
}
