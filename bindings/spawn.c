/*
 * spawn.c - the `spawn` module (placeholder until the module lands).
 */
#include "internal.h"

int luaopen_spawn(lua_State *L) {
  lua_newtable(L);
  return 1;
}
