/*
 * fork.c - the `fork` module: the C half.
 *
 * fork.lua does the work (spawn a child lipc with an "ipc" stdio entry and
 * a channel over it, pools, serve); this file gives it what Lua cannot do:
 * socketpairs, the lipc executable's path, and the channel a parent
 * handed down through LIPC_CHANNEL_FD (lipc) or NODE_CHANNEL_FD (Node).
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "channel.h"

#define PROCESS "lipc.fork.process"

static const char PARENT_KEY = 'P';

extern char **environ;

/* ---- a minimal process, until spawn supports "ipc" stdio --------------- */

/* fork.lua prefers spawn; this stand-in runs exe with stdio 0-2 inherited
 * and fd 3 the child's end of a socketpair, and gives what fork needs:
 * pid, kill, wait, 'exit' and 'close'. */
typedef struct {
  lipc_handle h;
  int exited;
  lua_Integer code;
  int signal;
  lipc_wait waiter;
} lproc;

static void proc_free(lipc_handle *h) {
  lproc *p = (lproc *)h;
  lipc_wait_cancel(h->rt, &p->waiter);
}

static void push_status(lua_State *L, lproc *p) {
  lua_pushinteger(L, p->code);
  if (p->signal)
    lua_pushstring(L, lipc_signame(p->signal));
  else
    lua_pushnil(L);
}

static void on_exit_cb(uv_process_t *uv, int64_t status, int sig) {
  lproc *p = uv->data;
  lipc_runtime *rt = p->h.rt;
  lua_State *L = rt->L;
  p->exited = 1;
  p->code = status;
  p->signal = sig;
  push_status(L, p);
  lipc_wake(rt, &p->waiter, 2);
  if (lipc_handle_push(&p->h)) {
    push_status(L, p);
    lipc_emit(rt, -3, "exit", 2);
  }
  lua_pop(L, 1);
  lipc_handle_close(&p->h);
}

static int proc_wait(lua_State *L) {
  lproc *p = luaL_checkudata(L, 1, PROCESS);
  lipc_task_check(L, "process.wait");
  if (p->exited) {
    push_status(L, p);
    return 2;
  }
  return lipc_task_park(L, &p->waiter);
}

static int proc_kill(lua_State *L) {
  lproc *p = luaL_checkudata(L, 1, PROCESS);
  int sig = lua_isnoneornil(L, 2) ? SIGTERM : lipc_signum(L, 2);
  int err;
  if (sig < 0)
    return luaL_argerror(L, 2, "process.kill: unknown signal");
  if (p->h.uv == NULL || p->exited)
    return lipc_push_error(L, UV_ESRCH, "process.kill");
  err = uv_process_kill((uv_process_t *)p->h.uv, sig);
  if (err)
    return lipc_push_error(L, err, "process.kill");
  lua_pushboolean(L, 1);
  return 1;
}

/* spawn_ipc(exe, argv, env) -> process, stream (our end of fd 3) */
static int l_spawn_ipc(lua_State *L) {
  lipc_runtime *rt = lipc_rt(L);
  const char *exe = luaL_checkstring(L, 1);
  uv_process_options_t o;
  uv_stdio_container_t stdio[4];
  uv_process_t *uv;
  char **args, **env;
  int fds[2], i, n, ne, err;
  lproc *p;
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TTABLE);
  n = (int)lua_rawlen(L, 2);
  args = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n + 2), 0);
  args[0] = (char *)exe;
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, 2, i);
    args[i] = (char *)luaL_checkstring(L, -1);
    lua_pop(L, 1);                            /* kept by the argv table */
  }
  args[n + 1] = NULL;
  ne = (int)lua_rawlen(L, 3);
  env = lua_newuserdatauv(L, sizeof(char *) * (size_t)(ne + 1), 0);
  for (i = 1; i <= ne; i++) {
    lua_rawgeti(L, 3, i);
    env[i - 1] = (char *)luaL_checkstring(L, -1);
    lua_pop(L, 1);
  }
  env[ne] = NULL;
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
    return lipc_push_error(L, UV_EMFILE, "fork");
  memset(&o, 0, sizeof(o));
  for (i = 0; i < 3; i++) {
    stdio[i].flags = UV_INHERIT_FD;
    stdio[i].data.fd = i;
  }
  stdio[3].flags = UV_INHERIT_FD;
  stdio[3].data.fd = fds[1];
  o.file = exe;
  o.args = args;
  o.env = env;
  o.stdio = stdio;
  o.stdio_count = 4;
  o.exit_cb = on_exit_cb;
  uv = malloc(sizeof(*uv));
  if (uv == NULL) {
    close(fds[0]);
    close(fds[1]);
    return lipc_push_error(L, UV_ENOMEM, "fork");
  }
  err = uv_spawn(rt->loop, uv, &o);
  close(fds[1]);
  if (err) {
    close(fds[0]);
    uv_close((uv_handle_t *)uv, (uv_close_cb)free);
    return lipc_push_error(L, err, exe);
  }
  p = lipc_handle_new(L, sizeof(*p), PROCESS, (uv_handle_t *)uv, "process");
  p->h.on_close = proc_free;
  p->waiter.ref = LUA_NOREF;
  lua_pushinteger(L, uv->pid);
  lua_setfield(L, -2, "pid");
  {
    uv_pipe_t *pp = malloc(sizeof(*pp));
    if (pp == NULL || uv_pipe_init(rt->loop, pp, 1) != 0 ||
        uv_pipe_open(pp, fds[0]) != 0) {
      free(pp);
      close(fds[0]);
      return lipc_push_error(L, UV_ENOMEM, "fork");
    }
    lipc_stream_new(L, (uv_stream_t *)pp, LIPC_STREAM, "pipe");
  }
  return 2;
}


/* socketpair() -> a, b: two connected IPC pipe streams (handles can pass
 * between them); mostly for specs and in-process channels. */
static int l_socketpair(lua_State *L) {
  lipc_runtime *rt = lipc_rt(L);
  int fds[2], i;
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
    return lipc_push_error(L, UV_EMFILE, "fork.socketpair");
  for (i = 0; i < 2; i++) {
    uv_pipe_t *p = malloc(sizeof(*p));
    if (p == NULL || uv_pipe_init(rt->loop, p, 1) != 0 ||
        uv_pipe_open(p, fds[i]) != 0) {
      free(p);
      close(fds[i]);
      if (i == 1)
        lipc_handle_close(lipc_stream_handle(lipc_stream_test(L, -1)));
      return lipc_push_error(L, UV_ENOMEM, "fork.socketpair");
    }
    lipc_stream_new(L, (uv_stream_t *)p, LIPC_STREAM, "pipe");
  }
  return 2;
}

/* exepath() -> the running lipc executable */
static int l_exepath(lua_State *L) {
  char buf[4096];
  size_t n = sizeof(buf);
  int err = uv_exepath(buf, &n);
  if (err)
    return lipc_push_error(L, err, "fork.exepath");
  lua_pushlstring(L, buf, n);
  return 1;
}

/* An fd number from the environment variable name, or -1. The variable
 * is removed so that our own children do not inherit a channel. */
static int env_fd(const char *name) {
  const char *v = getenv(name);
  char *end;
  long fd;
  if (v == NULL || *v == '\0')
    return -1;
  fd = strtol(v, &end, 10);
  unsetenv(name);
  if (*end != '\0' || fd < 0 || fd > 1 << 20)
    return -1;
  return (int)fd;
}

/* parent() -> the channel to the process that forked us, or nil; made
 * once, on first use. Node's JSON mode when Node is the parent. */
static int l_parent(lua_State *L) {
  int fd, json = 0;

  int t = lua_rawgetp(L, LUA_REGISTRYINDEX, &PARENT_KEY);
  if (t == LUA_TBOOLEAN) {                    /* known: not forked */
    lua_pushnil(L);
    return 1;
  }
  if (t != LUA_TNIL)
    return 1;
  lua_pop(L, 1);
  fd = env_fd("LIPC_CHANNEL_FD");
  if (fd < 0) {
    const char *mode = getenv("NODE_CHANNEL_SERIALIZATION_MODE");
    fd = env_fd("NODE_CHANNEL_FD");
    if (fd >= 0 && mode && strcmp(mode, "json") != 0)
      return luaL_error(L, "fork: Node's '%s' serialization is not "
                        "supported; use 'json'", mode);
    json = fd >= 0;
    unsetenv("NODE_CHANNEL_SERIALIZATION_MODE");
  }
  if (fd < 0 || !lipc_channel_from_fd(L, fd, json, 1)) {
    lua_pushboolean(L, 0);                    /* not forked: remember it */
    lua_rawsetp(L, LUA_REGISTRYINDEX, &PARENT_KEY);
    lua_pushnil(L);
    return 1;
  }
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &PARENT_KEY);
  return 1;
}

int luaopen_fork(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"socketpair", l_socketpair},
    {"exepath", l_exepath},
    {"parent", l_parent},
    {"spawn_ipc", l_spawn_ipc},
    {NULL, NULL}
  };
  static const luaL_Reg proc_methods[] = {
    {"wait", proc_wait},
    {"kill", proc_kill},
    {NULL, NULL}
  };
  lipc_class(L, PROCESS, proc_methods);
  lua_pop(L, 1);
  luaopen_lipc_stream(L);
  lipc_load_embedded(L, "fork");              /* fn */
  luaL_newlib(L, fns);                        /* fn C */
  lua_call(L, 1, 1);                          /* the module */
  return 1;
}
