/*
 * fork.c - the `fork` module (placeholder until the module lands).
 */
#include "internal.h"

int luaopen_fork(lua_State *L) {
  lua_newtable(L);
  return 1;
}
