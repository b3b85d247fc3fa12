/*
 * runtime.c - lipc_runtime: owns the uv loop and the lua_State.
 *
 * It starts scripts as tasks, reports uncaught errors, and decides when
 * and how the process ends: when nothing is pending, on lipc.exit(), or
 * after an uncaught error, always flushing queued writes (bounded in
 * time) before the Lua state goes away. It names no module: modules/
 * init.c loads them (lipc_new) and core.c is the `lipc` module, also the
 * entry point of lipc.so for stock lua (luaopen_lipc).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lualib.h>

#include "internal.h"

/* How long the exit flush may wait for peers to take queued writes. */
#define EXIT_FLUSH_MS 2000

lipc_runtime *lipc__rt(lua_State *L) {
  return *(lipc_runtime **)lua_getextraspace(L);
}

static void ignore_sigpipe(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &sa, NULL);
}

/* Gives an uncaught error to the handler set with lipc.on_uncaught
 * (rt->uncaught_ref), if any: M holds the error value, its message and
 * the report (message and traceback). Returns 1 when the handler took
 * it. When the handler fails the report says so too, and the error stays
 * uncaught. */
static int hand_over(lipc_runtime *rt, lua_State *M) {
  const char *why;
  if (rt->uncaught_ref <= 0)
    return 0;
  lua_rawgeti(M, LUA_REGISTRYINDEX, rt->uncaught_ref);
  lua_pushvalue(M, -4); /* err msg report fn err report */
  lua_pushvalue(M, -3);
  if (lua_pcall(M, 2, 0, 0) == LUA_OK)
    return 1;
  why = luaL_tolstring(M, -1, NULL); /* err msg report herr why */
  lua_pushfstring(M, "%s\n(and the lipc.on_uncaught handler failed: %s)",
                  lua_tostring(M, -3), why);
  lua_replace(M, -4);
  lua_pop(M, 2);
  return 0;
}

/* Reports the error value at idx of L (a failed coroutine gets its
 * traceback) and ends the run with status 1, unless a handler set with
 * lipc.on_uncaught takes it (`lipc test` does: the spec fails, the run
 * goes on). */
void lipc__uncaught(lipc_runtime *rt, lua_State *L, int idx) {
  lua_State *M = rt->L;
  const char *msg;
  if (rt->exiting)
    return;
  luaL_checkstack(M, 8, "uncaught");
  lua_pushvalue(L, idx);
  if (L != M)
    lua_xmove(L, M, 1);
  msg = luaL_tolstring(M, -1, NULL);
  if (rt->last_fail[0] && strstr(msg, "a nil value")) { /* a nil used */
    lua_pushfstring(M,
                    "%s\n(a lipc call before it had failed, returning "
                    "nil, \"%s\")",
                    msg, rt->last_fail);
    lua_replace(M, -2);
    msg = lua_tostring(M, -1);
  }
  rt->last_fail[0] = '\0';
  if (L != M && lua_status(L) != LUA_OK && lua_status(L) != LUA_YIELD)
    luaL_traceback(M, L, msg, 0);
  else
    lua_pushstring(M, msg);
  if (hand_over(rt, M)) {
    lua_pop(M, 3);
    return;
  }
  fflush(stdout);
  fprintf(stderr, "lipc: uncaught error: %s\n", lua_tostring(M, -1));
  fflush(stderr);
  if (rt->on_fatal)
    rt->on_fatal(rt, lua_tostring(M, -1));
  lua_pop(M, 3);
  lipc__exit_now(rt, 1);
}

/* A count hook set on the running task when the process must end: the
 * task stops at its next instruction wherever it is, as Node's
 * process.exit() stops the code that follows it. */
static void stop_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  if (lua_isyieldable(L))
    lua_yield(L, 0);
  luaL_error(L, "lipc: exiting");
}

/* Stops running Lua: the loop stops at the end of this turn and the
 * runtime flushes and closes from lipc_free. */
void lipc__exit_now(lipc_runtime *rt, int code) {
  if (rt->exiting)
    return;
  rt->exiting = 1;
  rt->exit_code = code;
  uv_stop(rt->loop);
  if (rt->current)
    lua_sethook(rt->current, stop_hook, LUA_MASKCOUNT, 1);
}

static lipc_runtime *rt_alloc(uv_loop_t *loop) {
  lipc_runtime *rt = calloc(1, sizeof(*rt));
  if (rt == NULL)
    return NULL;
  rt->pool_ref = LUA_NOREF;
  rt->parked_ref = LUA_NOREF;
  rt->task_mt_ref = LUA_NOREF;
  rt->tasks_ref = LUA_NOREF;
  rt->trace = lipc__trace_parse(getenv("LIPC_TRACE"));
  if (loop) {
    rt->loop = loop;
  } else {
    if (uv_loop_init(&rt->own_loop) != 0) {
      free(rt);
      return NULL;
    }
    rt->loop = &rt->own_loop;
    rt->owns_loop = 1;
  }
  lipc__poll_init(rt);
  return rt;
}

/* The big blocks the allocator keeps for reuse (alloc.c) are unmapped
 * once a second has passed without one being reused: a timer that runs
 * only while some are kept, and never keeps the process alive. */
typedef struct trimmer {
  lipc__handle h;
  uv_timer_t t;
} trimmer;

#define TRIM_MS 1000

static void trim_tick(uv_timer_t *t) {
  trimmer *tr = (trimmer *)t->data;
  if (lipc__state_trim(tr->h.rt->L) == 0)
    uv_timer_stop(t);
}

static void trimmer_closed(lipc__handle *h) {
  h->rt->trimmer = NULL;
  free(h);
}

/* Called by the allocator, from wherever Lua allocates: no Lua here. */
static void on_keep(void *arg) {
  lipc_runtime *rt = arg;
  trimmer *tr = rt->trimmer;
  if (rt->exiting)
    return;
  if (tr == NULL) {
    if ((tr = calloc(1, sizeof(*tr))) == NULL)
      return; /* kept until the state closes */
    uv_timer_init(rt->loop, &tr->t);
    lipc__handle_bare(rt, &tr->h, (uv_handle_t *)&tr->t, "trim",
                      trimmer_closed);
    uv_unref((uv_handle_t *)&tr->t);
    rt->trimmer = tr;
  }
  if (!uv_is_active((uv_handle_t *)&tr->t))
    uv_timer_start(&tr->t, trim_tick, TRIM_MS, TRIM_MS);
}

static const char RT_KEY = 'R';

static void set_rt(lua_State *L, lipc_runtime *rt) {
  lua_State *main;
  lua_pushlightuserdata(L, rt);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &RT_KEY);
  *(lipc_runtime **)lua_getextraspace(L) = rt;
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  main = lua_tothread(L, -1);
  lua_pop(L, 1);
  *(lipc_runtime **)lua_getextraspace(main) = rt;
}

lipc_runtime *lipc__runtime_new(uv_loop_t *loop) {
  lipc_runtime *rt = rt_alloc(loop);
  lua_State *L;
  if (rt == NULL)
    return NULL;
  L = lipc__state_new();
  if (L == NULL) {
    lipc__poll_close(rt);
    if (rt->owns_loop) {
      uv_run(rt->loop, UV_RUN_NOWAIT); /* the poll's close callbacks */
      uv_loop_close(rt->loop);
    }
    free(rt);
    return NULL;
  }
  rt->L = L;
  rt->owns_state = 1;
  set_rt(L, rt);
  lipc__state_on_keep(L, on_keep, rt);
  ignore_sigpipe();
  /* Generational GC: an IPC runtime's garbage is mostly young (decoded
   * messages, read chunks) while the modules and objects stay. A minor
   * collection skips the old objects that the incremental collector
   * marked again on every cycle (unix_bulk 3.8 -> 5.2 GB/s). A state
   * given to lipc by its embedder keeps the embedder's mode. */
  lua_gc(L, LUA_GCGEN, 0, 0);
  luaL_openlibs(L);
  return rt;
}

lua_State *lipc_state(lipc_runtime *rt) {
  return rt->L;
}

uv_loop_t *lipc_loop(lipc_runtime *rt) {
  return rt->loop;
}

int lipc_exit_status(lipc_runtime *rt) {
  return rt->exit_code;
}

void lipc__set_arg(lua_State *L, const char *script, int argc, char **argv) {
  int i;
  lua_createtable(L, argc, 1);
  lua_pushstring(L, script);
  lua_rawseti(L, -2, 0);
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setglobal(L, "arg");
}

/* Why path could not be read, as an errno: Lua's message says it, but
 * not as a code, and its errno may be gone by now. Non-blocking, so a
 * FIFO with no writer does not stop us. */
static int file_error(const char *path) {
  struct stat st;
  int fd, err = UV_EIO;
  if (path == NULL) /* stdin */
    return UV_EIO;
  if ((fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)) < 0)
    return -errno;
  if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode))
    err = UV_EISDIR;
  close(fd);
  return err;
}

static int load_error(lipc_runtime *rt, int status, const char *path) {
  fflush(stdout);
  fprintf(stderr, "lipc: %s\n", lua_tostring(rt->L, -1));
  if (rt->on_fatal)
    rt->on_fatal(rt, lua_tostring(rt->L, -1));
  lua_pop(rt->L, 1);
  rt->exit_code = 1;
  rt->exiting = 1;
  if (status == LUA_ERRFILE)
    return file_error(path);
  return status == LUA_ERRMEM ? UV_ENOMEM : UV_EINVAL;
}

int lipc__worker_exec = LIPC__EXEC_FIND;

/* A program that fork started as a worker (LIPC_WORKER set) runs no
 * script of its own: without lipc_worker_main at the top of its main()
 * that script is the parent's topology, which would fork again, and
 * again. Returns UV_EPERM (and ends the runtime) in that case. */
static int refuse_worker(lipc_runtime *rt, const char *what) {
  char exe[1024];
  size_t n = sizeof(exe);
  if (getenv(LIPC__WORKER_ENV) == NULL)
    return 0;
  if (uv_exepath(exe, &n) != 0)
    strcpy(exe, "this program");
  fflush(stdout);
  fprintf(stderr,
          "lipc: %s was started by fork() as a worker, but its main() "
          "does not call lipc_worker_main() first: not running %s "
          "(see lipc.h)\n",
          exe, what);
  rt->exit_code = 1;
  rt->exiting = 1;
  return UV_EPERM;
}

int lipc_run_file(lipc_runtime *rt, const char *path, int argc, char **argv) {
  lua_State *L = rt->L;
  const char *file = strcmp(path, "-") == 0 ? NULL : path;
  int i, status;
  if (refuse_worker(rt, path))
    return UV_EPERM;
  lipc__set_arg(L, path, argc, argv);
  status = luaL_loadfile(L, file);
  if (status != LUA_OK)
    return load_error(rt, status, file);
  for (i = 0; i < argc; i++)
    lua_pushstring(L, argv[i]);
  lipc__task_start(rt, L, argc);
  return rt->exiting ? UV_ECANCELED : 0;
}

int lipc_run_string(lipc_runtime *rt, const char *code, const char *name) {
  int status;
  if (refuse_worker(rt, name))
    return UV_EPERM;
  status = luaL_loadbuffer(rt->L, code, strlen(code), name);
  if (status != LUA_OK)
    return load_error(rt, status, NULL);
  lipc__task_start(rt, rt->L, 0);
  return rt->exiting ? UV_ECANCELED : 0;
}

int lipc_run(lipc_runtime *rt) {
  if (rt->running)
    return rt->exit_code;
  rt->running = 1;
  rt->ran = 1;
  while (!rt->exiting && uv_run(rt->loop, UV_RUN_DEFAULT) != 0)
    ;
  rt->running = 0;
  return rt->exit_code;
}

static void flush_timeout(uv_timer_t *t) {
  lipc_runtime *rt = t->data;
  lipc__close_all(rt, 0);
}

/* Lets queued writes reach their peers (bounded), then closes every
 * handle and runs the loop until their close callbacks have run. */
static void drain_and_close(lipc_runtime *rt) {
  uv_timer_t guard;
  rt->exiting = 1;
  fflush(stdout);
  lipc__poll_close(rt); /* the flush below sleeps while it waits */
  lipc__close_all(rt, 1);
  if (rt->handles) {
    uv_timer_init(rt->loop, &guard);
    guard.data = rt;
    uv_timer_start(&guard, flush_timeout, EXIT_FLUSH_MS, 0);
    uv_unref((uv_handle_t *)&guard);
    while (rt->handles && uv_run(rt->loop, UV_RUN_ONCE))
      ;
    uv_close((uv_handle_t *)&guard, NULL);
  }
  lipc__close_all(rt, 0);
  while (uv_run(rt->loop, UV_RUN_NOWAIT) && rt->owns_loop)
    ;
}

void lipc_free(lipc_runtime *rt) {
  if (rt == NULL)
    return;
  uv_tty_reset_mode(); /* a terminal left raw (set_raw_mode) is restored */
  drain_and_close(rt);
  lipc__tasks_free(rt);
  if (rt->owns_state)
    lipc__state_close(rt->L);
  if (rt->owns_loop) {
    uv_run(rt->loop, UV_RUN_NOWAIT);
    uv_loop_close(rt->loop);
  }
  lipc__stream_free_buffers(rt);
  free(rt);
}

/* lipc.so in stock lua: the runtime lives as long as the Lua state; a
 * registry sentinel's __gc tears it down at lua_close (lipc_free leaves
 * the state alone: the runtime does not own it). */
static void count_waiting(uv_handle_t *h, void *arg) {
  if (uv_is_active(h) && uv_has_ref(h) && !uv_is_closing(h))
    ++*(int *)arg;
}

static int sentinel_gc(lua_State *L) {
  lipc_runtime *rt = *(lipc_runtime **)lua_touserdata(L, 1);
  int waiting = 0;
  /* Timers, tasks or I/O set up and the loop never run: in stock lua
   * nothing happens without lipc.run(), which is easy to miss. (Handles
   * the collector closed before this one are rt->unran.) */
  if (!rt->ran && !rt->exiting)
    uv_walk(rt->loop, count_waiting, &waiting);
  if (waiting > 0 || (rt->unran && !rt->ran && !rt->exiting)) {
    fflush(stdout);
    fputs("lipc: warning: the script set up timers, tasks or I/O but "
          "never called lipc.run(), so none of it ran (in stock Lua, end "
          "the script with lipc.run())\n",
          stderr);
  }
  lipc_free(rt);
  return 0;
}

static const char SENTINEL_KEY = 'S';

lipc_runtime *lipc__runtime_attach(lua_State *L, int *created) {
  lipc_runtime **box;
  lipc_runtime *rt;
  *created = 0;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &RT_KEY) != LUA_TNIL) {
    rt = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return rt;
  }
  lua_pop(L, 1);
  rt = rt_alloc(NULL);
  if (rt == NULL)
    luaL_error(L, "lipc: cannot create the event loop");
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  rt->L = lua_tothread(L, -1);
  lua_pop(L, 1);
  set_rt(L, rt);
  ignore_sigpipe();
  box = lua_newuserdatauv(L, sizeof(*box), 0);
  *box = rt;
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, sentinel_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &SENTINEL_KEY);
  *created = 1;
  return rt;
}
