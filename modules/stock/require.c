/*
 * require.c - spawn.so, fork.so, pipe.so and net.so for stock lua5.4, one
 * per module (compiled with -DLIPC_MODULE=name): `require "spawn"` works
 * before `require "lipc"`. Each requires lipc (lipc.so, which makes the
 * runtime and preloads the modules), then the module itself, which
 * package.preload now has. Not part of liblipc: a module of its own,
 * with the Lua API from the interpreter.
 */
#include <lauxlib.h>
#include <lua.h>

#ifndef LIPC_MODULE
#error "compile with -DLIPC_MODULE=spawn (or fork, pipe, net)"
#endif

#define STR_(x) #x
#define STR(x) STR_(x)
#define OPEN_(x) luaopen_##x
#define OPEN(x) OPEN_(x)

static void require(lua_State *L, const char *name, int nresults) {
  lua_getglobal(L, "require");
  lua_pushstring(L, name);
  lua_call(L, 1, nresults);
}

__attribute__((visibility("default"))) int OPEN(LIPC_MODULE)(lua_State *L) {
  require(L, "lipc", 0);
  /* Without lipc's preload the require below would find this file again,
   * and again. */
  lua_getglobal(L, "package");
  if (lua_type(L, -1) != LUA_TTABLE ||
      lua_getfield(L, -1, "preload") != LUA_TTABLE ||
      lua_getfield(L, -1, STR(LIPC_MODULE)) == LUA_TNIL)
    return luaL_error(L, "module '%s': the lipc module loaded gives no '%s'",
                      STR(LIPC_MODULE), STR(LIPC_MODULE));
  lua_settop(L, 0);
  require(L, STR(LIPC_MODULE), 1);
  return 1;
}
