/*
 * fork.c - the `fork` module: the C half.
 *
 * fork.lua does the work (spawn a child lipc with an "ipc" stdio entry and
 * a channel over it, pools, serve); this file gives it what Lua cannot do:
 * socketpairs, the program that runs workers, and the channel a parent
 * handed down through LIPC_CHANNEL_FD (lipc) or NODE_CHANNEL_FD (Node),
 * read and removed from the environment as the runtime starts;
 * LIPC_CHANNEL_REMOTE says it crosses a launcher (`lipc --stdio-channel`).
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
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

/* Whether path is an executable file other than this program. */
static int is_lipc(const char *path, const char *self) {
  struct stat st;
  char real[PATH_MAX];
  if (access(path, X_OK) != 0 || stat(path, &st) != 0 || !S_ISREG(st.st_mode))
    return 0;
  return realpath(path, real) != NULL && strcmp(real, self) != 0;
}

/* The lipc executable that comes with this library: next to it (the
 * build tree), in the bin/ of its prefix (lib/liblipc.so, or the stock
 * lua module lib/lua/5.4/lipc.so), or else `lipc` on PATH. Never this
 * program: a worker must not run the embedder's topology again. Pushes
 * the path, or nil, msg, code when there is none; returns the count. */
static int push_lipc(lua_State *L, const char *self) {
  static const char *const rel[] = {"lipc", "../bin/lipc", "../../../bin/lipc"};
  Dl_info info;
  char dir[PATH_MAX], path[PATH_MAX + 32];
  const char *p = getenv("PATH"), *end;
  size_t i;
  if (dladdr((void *)push_lipc, &info) && info.dli_fname &&
      realpath(info.dli_fname, dir) != NULL && strcmp(dir, self) != 0) {
    *strrchr(dir, '/') = '\0'; /* a realpath has one */
    for (i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
      snprintf(path, sizeof(path), "%s/%s", dir, rel[i]);
      if (is_lipc(path, self)) {
        lua_pushstring(L, path);
        return 1;
      }
    }
  }
  for (; p && *p; p = *end ? end + 1 : end) {
    end = strchr(p, ':');
    if (end == NULL)
      end = p + strlen(p);
    snprintf(path, sizeof(path), "%.*s/lipc",
             (int)(end - p < PATH_MAX ? end - p : PATH_MAX), p);
    if (end > p && is_lipc(path, self)) {
      lua_pushstring(L, path);
      return 1;
    }
  }
  lua_pushnil(L);
  lua_pushliteral(L, "fork: no lipc executable to run the worker (none "
                     "next to the lipc library, in the bin/ of its prefix "
                     "or on PATH): install lipc, or give opts.exec_path");
  lua_pushliteral(L, "ENOENT");
  return 3;
}

/* worker_exec() -> program, marked: what fork runs when opts.exec_path
 * is not given (lipc__worker_exec, lipc.h); marked: the worker gets
 * LIPC_WORKER=1, for lipc_worker_main. */
static int l_worker_exec(lua_State *L) {
  char self[PATH_MAX];
  size_t n = sizeof(self);
  int err = uv_exepath(self, &n);
  if (err)
    return lipc__push_error(L, err, "fork: the running program");
  if (lipc__worker_exec == LIPC__EXEC_FIND)
    return push_lipc(L, self);
  lua_pushlstring(L, self, n);
  lua_pushboolean(L, lipc__worker_exec == LIPC__EXEC_ENTRY);
  return 2;
}

/* Why fd cannot be a channel handed down to us, or NULL when it can: an
 * open, connected Unix stream socket. A stale or wrong number may name
 * any fd this process has opened since (the loop's epoll fd, a file),
 * and a channel over it would corrupt it or abort in libuv. */
static const char *not_a_channel(int fd) {
  struct stat st;
  struct sockaddr_storage ss;
  socklen_t len = sizeof(int);
  int type = 0, listening = 0;
  if (fstat(fd, &st) != 0)
    return "is not an open fd";
  if (!S_ISSOCK(st.st_mode))
    return "is not a socket";
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 ||
      type != SOCK_STREAM)
    return "is not a stream socket";
  len = sizeof(int);
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 &&
      listening)
    return "is a listening socket";
  len = sizeof(ss);
  if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0 ||
      ss.ss_family != AF_UNIX)
    return "is not a Unix socket";
  return NULL;
}

/* Reads the variable name into rt->parent_fd (-1 when unset) and removes
 * it, so that our own children (os.execute's shell included) do not
 * inherit it. A usable fd is made close-on-exec for the same reason; an
 * unusable one is left alone (it is not ours) and described in
 * rt->parent_err. */
static void take_fd(lipc_runtime *rt, const char *name) {
  const char *v = getenv(name);
  const char *why;
  char *end;
  long fd;
  if (v == NULL || *v == '\0') {
    unsetenv(name);
    return;
  }
  fd = strtol(v, &end, 10);
  if (*end != '\0' || fd < 0 || fd > 1 << 20) {
    snprintf(rt->parent_err, sizeof(rt->parent_err),
             "%s='%.40s' is not an fd number", name, v);
  } else if ((why = not_a_channel((int)fd)) != NULL) {
    snprintf(rt->parent_err, sizeof(rt->parent_err),
             "%s=%ld %s (a stale value, inherited?)", name, fd, why);
  } else {
    (void)fcntl((int)fd, F_SETFD, FD_CLOEXEC);
    rt->parent_fd = (int)fd;
  }
  unsetenv(name);
}

static int l_parent(lua_State *L);

/* rt->on_fatal of a worker: the first line of the report (at most 300
 * bytes) goes to the parent as an 'error' control frame (kind 3,
 * {error = line}, docs/wire-format.md), queued before the exit that
 * flushes the channel. fork.lua adds it to receive()'s ERR_WORKER_EXIT. */
static void tell_parent(lipc_runtime *rt, const char *report) {
  lua_State *L = rt->L;
  int top = lua_gettop(L);
  size_t n = strcspn(report, "\n");
  rt->on_fatal = NULL; /* once */
  lua_pushcfunction(L, l_parent);
  if (lua_pcall(L, 0, 1, 0) == LUA_OK && !lua_isnil(L, -1)) {
    lua_getfield(L, -1, "send_control");
    lua_pushvalue(L, -2);
    lua_pushinteger(L, 3);
    lua_createtable(L, 0, 1);
    lua_pushlstring(L, report, n < 300 ? n : 300);
    lua_setfield(L, -2, "error");
    (void)lua_pcall(L, 3, 0, 0); /* at worst the parent learns less */
  }
  lua_settop(L, top);
}

void lipc__fork_take_env(lua_State *L) {
  lipc_runtime *rt = lipc__rt(L);
  const char *mode;
  if (rt->parent_env)
    return;
  rt->parent_env = 1;
  rt->parent_fd = -1;
  take_fd(rt, "LIPC_CHANNEL_FD");
  if (rt->parent_fd < 0 && rt->parent_err[0] == '\0') {
    mode = getenv("NODE_CHANNEL_SERIALIZATION_MODE");
    take_fd(rt, "NODE_CHANNEL_FD");
    rt->parent_json = rt->parent_fd >= 0;
    if (rt->parent_json && mode && strcmp(mode, "json") != 0) {
      snprintf(rt->parent_err, sizeof(rt->parent_err),
               "Node's '%.40s' serialization is not supported; use 'json'",
               mode);
      rt->parent_fd = -1;
    }
  }
  unsetenv("NODE_CHANNEL_FD");
  unsetenv("NODE_CHANNEL_SERIALIZATION_MODE");
  rt->parent_remote = getenv("LIPC_CHANNEL_REMOTE") != NULL;
  unsetenv("LIPC_CHANNEL_REMOTE");
  /* a lipc parent that reads why its worker failed (fork.lua) */
  if (getenv("LIPC_WORKER_ERRORS") && rt->parent_fd >= 0 && !rt->parent_json)
    rt->on_fatal = tell_parent;
  unsetenv("LIPC_WORKER_ERRORS");
}

/* parent() -> the channel to the process that forked us, or nil; made
 * once per runtime, on first use (rt->parent_ref), from what
 * lipc__fork_take_env read when the runtime started. Node's JSON mode
 * when Node is the parent. */
static int l_parent(lua_State *L) {
  lipc_runtime *rt = lipc__rt(L);
  if (rt->parent_ref != 0) { /* known: LUA_REFNIL when not forked */
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->parent_ref);
    return 1;
  }
  lipc__fork_take_env(L);
  if (rt->parent_err[0] != '\0')
    return luaL_error(L, "fork.parent: %s", rt->parent_err);
  if (rt->parent_fd < 0 ||
      !lipc__channel_from_fd(L, rt->parent_fd, rt->parent_json, 1))
    lua_pushnil(L);           /* not forked: remembered as LUA_REFNIL */
  else if (rt->parent_remote) /* the channel leaves the host: no fds */
    lipc__channel_no_handles(L, -1);
  lua_pushvalue(L, -1);
  rt->parent_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 1;
}

int luaopen_fork(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"socketpair", l_socketpair},
      {"worker_exec", l_worker_exec},
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
