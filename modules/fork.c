/*
 * fork.c - the `fork` module: the C half.
 *
 * fork.lua does the work (spawn a child lipc with an "ipc" stdio entry and
 * a channel over it, pools, serve); this file gives it what Lua cannot do:
 * socketpairs, the lipc executable's path, and the channel a parent
 * handed down through LIPC_CHANNEL_FD (lipc) or NODE_CHANNEL_FD (Node).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "channel.h"
#include "modules.h"

/* socketpair() -> a, b: two connected IPC pipe streams (handles can pass
 * between them); mostly for specs and in-process channels. */
static int l_socketpair(lua_State *L) {
  lipc_runtime *rt = lipc__rt(L);
  int fds[2], i;
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
    return lipc__push_error(L, UV_EMFILE, "fork.socketpair");
  for (i = 0; i < 2; i++) {
    uv_pipe_t *p = malloc(sizeof(*p));
    if (p == NULL || uv_pipe_init(rt->loop, p, 1) != 0 ||
        uv_pipe_open(p, fds[i]) != 0) {
      free(p);
      close(fds[i]);
      if (i == 1)
        lipc__handle_close(lipc__stream_handle(lipc__stream_test(L, -1)));
      return lipc__push_error(L, UV_ENOMEM, "fork.socketpair");
    }
    lipc__stream_new(L, (uv_stream_t *)p, LIPC_STREAM, "pipe");
  }
  return 2;
}

/* readable(path) -> true | nil, msg, code: whether a worker could read
 * its script. Checked before the child starts, so that a missing or
 * unreadable script is fork()'s error and not a child that exits at once
 * (a directory opens, but is no script: EISDIR). */
static int l_readable(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  int err = 0, fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    err = -errno;
  else if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode))
    err = UV_EISDIR;
  if (fd >= 0)
    close(fd);
  if (err) {
    lua_pushfstring(L, "fork: %s", path);
    return lipc__push_error(L, err, lua_tostring(L, -1));
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* exepath() -> the running lipc executable */
static int l_exepath(lua_State *L) {
  char buf[4096];
  size_t n = sizeof(buf);
  int err = uv_exepath(buf, &n);
  if (err)
    return lipc__push_error(L, err, "fork.exepath");
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
 * once per runtime, on first use (rt->parent_ref). Node's JSON mode when
 * Node is the parent. */
static int l_parent(lua_State *L) {
  lipc_runtime *rt = lipc__rt(L);
  int fd, json = 0;
  if (rt->parent_ref != 0) { /* known: LUA_REFNIL when not forked */
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->parent_ref);
    return 1;
  }
  fd = env_fd("LIPC_CHANNEL_FD");
  if (fd < 0) {
    const char *mode = getenv("NODE_CHANNEL_SERIALIZATION_MODE");
    fd = env_fd("NODE_CHANNEL_FD");
    if (fd >= 0 && mode && strcmp(mode, "json") != 0)
      return luaL_error(L,
                        "fork: Node's '%s' serialization is not "
                        "supported; use 'json'",
                        mode);
    json = fd >= 0;
    unsetenv("NODE_CHANNEL_SERIALIZATION_MODE");
  }
  if (fd < 0 || !lipc__channel_from_fd(L, fd, json, 1))
    lua_pushnil(L); /* not forked: remembered as LUA_REFNIL */
  lua_pushvalue(L, -1);
  rt->parent_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 1;
}

int luaopen_fork(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"socketpair", l_socketpair},
      {"exepath", l_exepath},
      {"readable", l_readable},
      {"parent", l_parent},
      {NULL, NULL},
  };
  lipc__channel_open(L);          /* streams, with `channel` */
  lipc__load_embedded(L, "fork"); /* fn */
  luaL_newlib(L, fns);            /* fn C */
  lua_call(L, 1, 1);              /* the module */
  return 1;
}
