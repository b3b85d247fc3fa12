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

/* fork.c: reads LIPC_CHANNEL_FD (or NODE_CHANNEL_FD) into the runtime
 * and removes the variables from the environment, once per runtime:
 * lipc__open_modules calls it, whether or not the script uses fork. */
void lipc__fork_take_env(lua_State *L);

/* Makes every module requirable in L (package.preload); takes the
 * channel variables from the environment (lipc__fork_take_env). */
void lipc__open_modules(lua_State *L);

#endif
