/*
 * embed.c - an example embedder: a C program that runs a lipc script on
 * its own libuv loop, next to a timer of its own, and whose fork workers
 * are this program too, with its C functions.
 *
 *   cc -D_GNU_SOURCE embed.c -Iruntime build/liblipc.a $(pkg-config --cflags --libs lua5.4 libuv)
 *   ./a.out script.lua args...
 */
#include <stdio.h>

#include <lauxlib.h>

#include "lipc.h"

static int ticks;

static void on_tick(uv_timer_t *t) {
  ticks++;
  uv_close((uv_handle_t *)t, NULL);
}

/* embedder_add(a, b) -> a + b: a C function of the embedder's. */
static int l_add(lua_State *L) {
  lua_pushinteger(L, luaL_checkinteger(L, 1) + luaL_checkinteger(L, 2));
  return 1;
}

/* What the embedder gives its scripts: run for the main runtime and for
 * each worker's. */
static void setup(lipc_runtime *rt, void *ud) {
  lua_State *L = lipc_state(rt);
  (void)ud;
  lua_pushstring(L, "hello from C"); /* a global the script can read */
  lua_setglobal(L, "EMBEDDER");
  lua_register(L, "embedder_add", l_add);
}

int main(int argc, char **argv) {
  uv_loop_t loop;
  uv_timer_t timer;
  lipc_runtime *rt;
  int status;

  /* First: in a process that fork started, run the worker and return. */
  status = lipc_worker_main(argc, argv, setup, NULL);
  if (status >= 0)
    return status;
  if (argc < 2) {
    fprintf(stderr, "usage: %s script.lua [args...]\n", argv[0]);
    return 2;
  }
  uv_loop_init(&loop);
  uv_timer_init(&loop, &timer);
  uv_timer_start(&timer, on_tick, 1, 0);

  rt = lipc_new(&loop); /* the runtime shares our loop */
  setup(rt, NULL);
  if (lipc_run_file(rt, argv[1], argc - 2, argv + 2) == 0)
    lipc_run(rt);
  status = lipc_exit_status(rt);
  lipc_free(rt);

  uv_run(&loop, UV_RUN_DEFAULT); /* our own handles, if any */
  uv_loop_close(&loop);
  printf("embedder: ticks=%d status=%d\n", ticks, status);
  return status;
}
