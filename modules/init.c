/*
 * init.c - the list of lipc's modules, and lipc_new, which makes a
 * runtime with them. As Lua's linit.c, the one file that names every
 * module: the runtime below knows none of them.
 */
#include <stdio.h>
#include <stdlib.h>

#include <lualib.h>

#include "internal.h"
#include "modules.h"

/* require "lipc.test": the helpers for specs, Lua only (test_helpers.lua). */
static int open_test(lua_State *L) {
  lipc__load_embedded(L, "test_helpers");
  lua_call(L, 0, 1);
  return 1;
}

void lipc__open_modules(lua_State *L) {
  static const luaL_Reg mods[] = {
      {"lipc", luaopen_lipc}, {"spawn", luaopen_spawn},
      {"fork", luaopen_fork}, {"pipe", luaopen_pipe},
      {"net", luaopen_net},   {"lipc.test", open_test},
      {NULL, NULL},
  };
  int i;
  lipc__fork_take_env(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  for (i = 0; mods[i].name; i++) {
    lua_pushcfunction(L, mods[i].func);
    lua_setfield(L, -2, mods[i].name);
  }
  lua_pop(L, 1);
}

/* os.exit is lipc.exit: a script (or busted) ending through os.exit still
 * gets its queued writes flushed and its handles closed. */
static void install_os_exit(lua_State *L) {
  lua_getglobal(L, "os");
  lua_getglobal(L, "require");
  lua_pushstring(L, "lipc");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "exit");
  lua_setfield(L, -3, "exit");
  lua_pop(L, 2);
}

lipc_runtime *lipc_new(uv_loop_t *loop) {
  lipc_runtime *rt = lipc__runtime_new(loop);
  if (rt == NULL)
    return NULL;
  lipc__open_modules(rt->L);
  install_os_exit(rt->L);
  return rt;
}

/* The worker entry of an embedder (lipc.h). */
int lipc_worker_main(int argc, char **argv, lipc_setup_fn setup, void *ud) {
  lipc_runtime *rt;
  int status;
  lipc__worker_exec = LIPC__EXEC_ENTRY; /* our workers run this program */
  if (getenv(LIPC__WORKER_ENV) == NULL)
    return -1;
  unsetenv(LIPC__WORKER_ENV); /* its own workers are told afresh */
  if (argc < 2) {
    fputs("lipc: a fork worker needs its script as argv[1]\n", stderr);
    return 1;
  }
  rt = lipc_new(NULL);
  if (rt == NULL) {
    fputs("lipc: cannot create the runtime\n", stderr);
    return 1;
  }
  if (setup)
    setup(rt, ud);
  if (lipc_run_file(rt, argv[1], argc - 2, argv + 2) == 0)
    lipc_run(rt);
  status = lipc_exit_status(rt);
  lipc_free(rt);
  return status;
}
