/*
 * handoff.c - handles that travel with messages: a net or pipe server or
 * socket sent over an IPC pipe (SCM_RIGHTS, through uv_write2) and taken
 * back as an object of the same kind on the other side.
 *
 * The channel knows the kinds only as data: their Lua type, the module
 * that makes them, and the byte that says them on the wire. The modules
 * register how to wrap a received handle (lipc__handoff_register); a
 * handle of a kind whose module the receiver has not loaded yet (a
 * worker that only requires "pipe" can be handed a TCP server) loads it
 * by name, as require would.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "channel_int.h"

static const struct {
  const char *type;   /* the object's Lua type */
  const char *module; /* the module that makes it */
  const char *name;   /* for messages */
} kinds[LIPC_HANDOFF_KINDS] = {
    [LIPC_HANDOFF_NONE] = {NULL, NULL, "an fd lipc does not take"},
    [LIPC_HANDOFF_TCP_SERVER] = {LIPC_TCP_SERVER, "net", "a TCP server"},
    [LIPC_HANDOFF_TCP_SOCKET] = {LIPC_TCP_SOCKET, "net", "a TCP socket"},
    [LIPC_HANDOFF_PIPE_SERVER] = {LIPC_PIPE_SERVER, "pipe", "a pipe server"},
    [LIPC_HANDOFF_PIPE_SOCKET] = {LIPC_PIPE_SOCKET, "pipe", "a pipe socket"},
};

_Static_assert(LIPC_HANDOFF_KINDS <=
                   sizeof(((lipc_runtime *)0)->wrap) / sizeof(lipc__wrap_fn),
               "lipc_runtime.wrap has a place for every kind");

static int valid_kind(int kind) {
  return kind > LIPC_HANDOFF_NONE && kind < LIPC_HANDOFF_KINDS;
}

void lipc__handoff_register(lua_State *L, lipc__handoff_kind kind,
                            lipc__wrap_fn wrap) {
  lipc__rt(L)->wrap[kind] = wrap;
}

uv_stream_t *lipc__handoff_export(lua_State *L, int idx,
                                  lipc__handoff_kind *kind) {
  int k;
  for (k = LIPC_HANDOFF_NONE + 1; k < LIPC_HANDOFF_KINDS; k++) {
    /* servers and sockets (streams) both start with their lipc__handle */
    lipc__handle *h = lipc__testobj(L, idx, kinds[k].type);
    if (h == NULL)
      continue;
    if (h->uv == NULL || h->closing)
      return NULL;
    *kind = (lipc__handoff_kind)k;
    return (uv_stream_t *)h->uv;
  }
  return NULL;
}

/* Loads the module name as require does, from the table of preloaded
 * modules the runtime filled (the global require may be anybody's). */
static void load_module(lua_State *L, const char *name) {
  int top = lua_gettop(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, name) == LUA_TNIL) {
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    if (lua_getfield(L, -1, name) == LUA_TFUNCTION) {
      lua_pushstring(L, name);
      lua_call(L, 1, 1);
      lua_setfield(L, top + 1, name);
    }
  }
  lua_settop(L, top);
}

/* The wrapper of kind, loading its module first when need be. */
static lipc__wrap_fn wrapper(lua_State *L, int kind) {
  lipc_runtime *rt = lipc__rt(L);
  if (!valid_kind(kind))
    return NULL;
  if (rt->wrap[kind] == NULL)
    load_module(L, kinds[kind].module);
  return rt->wrap[kind];
}

const char *lipc__handoff_name(int kind) {
  return valid_kind(kind) ? kinds[kind].name : kinds[0].name;
}

static int has_pending(uv_pipe_t *pipe) {
  return pipe != NULL && pipe->type == UV_NAMED_PIPE && pipe->ipc &&
         uv_pipe_pending_count(pipe) > 0;
}

void lipc__handoff_drop(uv_stream_t *ipc) {
  uv_pipe_t *pipe = (uv_pipe_t *)ipc, *sink;
  if (!has_pending(pipe))
    return;
  /* Accepting into a pipe handle takes an fd of any type (libuv only
   * stores it), and closing the handle closes the fd. */
  if ((sink = malloc(sizeof(*sink))) == NULL)
    return;
  uv_pipe_init(pipe->loop, sink, 0);
  uv_accept(ipc, (uv_stream_t *)sink);
  lipc__close_free((uv_handle_t *)sink);
}

/* What the fd of a TCP or Unix stream socket (t) really is: a server when
 * it listens. 0 when the kernel will not say. */
static int real_kind(uv_handle_type t, int fd) {
  int on = 0;
  socklen_t len = sizeof(on);
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) != 0)
    return LIPC_HANDOFF_NONE;
  if (t == UV_TCP)
    return on ? LIPC_HANDOFF_TCP_SERVER : LIPC_HANDOFF_TCP_SOCKET;
  return on ? LIPC_HANDOFF_PIPE_SERVER : LIPC_HANDOFF_PIPE_SOCKET;
}

/* A handle came with this frame: it was queued by libuv when the bytes
 * carrying it arrived; take it and wrap it as the object of its kind.
 * The peer's word is not trusted: the fd must really be what the kind
 * says (family, SO_TYPE through libuv's pending type, SO_ACCEPTCONN), and
 * it is made non-blocking, as the peer may have left it blocking (one
 * accept4 or write on it would then stop the loop). */
int lipc__handoff_take(lua_State *L, uv_stream_t *ipc, lipc__handoff_kind kind,
                       int *real) {
  lipc_runtime *rt = lipc__rt(L);
  uv_pipe_t *pipe = (uv_pipe_t *)ipc;
  uv_stream_t *h = NULL;
  uv_handle_type t;
  uv_os_fd_t fd = -1;
  lipc__wrap_fn wrap;
  int err, one = 1;
  *real = LIPC_HANDOFF_NONE;
  if (!has_pending(pipe))
    return UV_EINVAL;
  t = uv_pipe_pending_type(pipe);
  if (!valid_kind(kind) || (t != UV_TCP && t != UV_NAMED_PIPE)) {
    lipc__handoff_drop(ipc); /* the next marker gets the next fd */
    return UV_ENOTSOCK;
  }
  if (t == UV_TCP) {
    h = malloc(sizeof(uv_tcp_t));
    if (h)
      uv_tcp_init(rt->loop, (uv_tcp_t *)h);
  } else {
    h = malloc(sizeof(uv_pipe_t));
    if (h)
      uv_pipe_init(rt->loop, (uv_pipe_t *)h, 0);
  }
  if (h == NULL) {
    lipc__handoff_drop(ipc);
    return UV_ENOMEM;
  }
  if ((err = uv_accept((uv_stream_t *)pipe, h)) != 0) {
    lipc__close_free((uv_handle_t *)h);
    return err;
  }
  uv_fileno((uv_handle_t *)h, &fd);
  if ((*real = real_kind(t, fd)) != (int)kind) {
    lipc__close_free((uv_handle_t *)h);
    return UV_EPROTO;
  }
  if (ioctl(fd, FIONBIO, &one) != 0) {
    err = -errno;
    lipc__close_free((uv_handle_t *)h);
    return err;
  }
  if ((wrap = wrapper(L, kind)) == NULL) {
    lipc__close_free((uv_handle_t *)h);
    return UV_EINVAL;
  }
  wrap(L, h, kind);
  return 0;
}

int lipc__handoff_pending(uv_stream_t *ipc, int server) {
  uv_pipe_t *pipe = (uv_pipe_t *)ipc;
  uv_handle_type t;
  if (pipe == NULL || pipe->type != UV_NAMED_PIPE || !pipe->ipc ||
      uv_pipe_pending_count(pipe) == 0)
    return 0;
  t = uv_pipe_pending_type(pipe);
  if (t == UV_TCP)
    return server ? LIPC_HANDOFF_TCP_SERVER : LIPC_HANDOFF_TCP_SOCKET;
  if (t == UV_NAMED_PIPE)
    return server ? LIPC_HANDOFF_PIPE_SERVER : LIPC_HANDOFF_PIPE_SOCKET;
  lipc__handoff_drop(ipc); /* no dgram module */
  return -1;
}
