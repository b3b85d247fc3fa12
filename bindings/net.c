/*
 * net.c - the `net` module (placeholder until the module lands).
 */
#include "internal.h"

int luaopen_net(lua_State *L) {
  lua_newtable(L);
  return 1;
}
