/*
 * modules.h - the entry points of lipc's Lua modules, for init.c (which
 * preloads them) and for the `lipc` module (which loads them when stock
 * lua requires it). Each pushes its module table and returns 1.
 */
#ifndef LIPC_MODULES_H
#define LIPC_MODULES_H

#include <lua.h>

#include "lipc.h" /* luaopen_lipc: core.c, the `lipc` module */

int luaopen_spawn(lua_State *L); /* spawn.c */
int luaopen_fork(lua_State *L);  /* fork.c */
int luaopen_pipe(lua_State *L);  /* pipe.c */
int luaopen_net(lua_State *L);   /* net.c */

/* Makes every module requirable in L (package.preload). */
void lipc__open_modules(lua_State *L);

#endif
