/*
 * socket.c - what TCP and Unix sockets have in common: their addresses,
 * idle timeouts (set_timeout), the options a server or connect gives
 * them, and how a server or socket that came with a message is wrapped
 * (registered with the channel by lipc__sockets_open).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "sockets.h"

static int sockaddr_port(const struct sockaddr_storage *ss) {
  if (ss->ss_family == AF_INET6)
    return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
  return ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

static void sockaddr_name(const struct sockaddr_storage *ss, char *buf,
                          size_t n) {
  if (ss->ss_family == AF_INET6)
    uv_ip6_name((const struct sockaddr_in6 *)ss, buf, n);
  else
    uv_ip4_name((const struct sockaddr_in *)ss, buf, n);
}

/* Pushes {address=, port=, family="IPv4"|"IPv6"}. */
static void push_sockaddr(lua_State *L, const struct sockaddr_storage *ss) {
  char name[64] = "";
  sockaddr_name(ss, name, sizeof(name));
  lua_createtable(L, 0, 3);
  lua_pushstring(L, name);
  lua_setfield(L, -2, "address");
  lua_pushinteger(L, sockaddr_port(ss));
  lua_setfield(L, -2, "port");
  lua_pushstring(L, ss->ss_family == AF_INET6 ? "IPv6" : "IPv4");
  lua_setfield(L, -2, "family");
}

/* The name of a Unix socket as Lua sees it: a path, or "\0name". */
static void push_sun(lua_State *L, const struct sockaddr_un *sun,
                     socklen_t len) {
  size_t n = len > offsetof(struct sockaddr_un, sun_path)
                 ? len - offsetof(struct sockaddr_un, sun_path)
                 : 0;
  if (n > 0 && sun->sun_path[0] != '\0')
    n = strnlen(sun->sun_path, n);
  lua_pushlstring(L, sun->sun_path, n);
}

int lipc__push_sockname(lua_State *L, uv_handle_t *uv, int peer) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  uv_os_fd_t fd;
  int rc;
  if (uv == NULL || uv_fileno(uv, &fd) != 0)
    return 0;
  memset(&ss, 0, sizeof(ss));
  rc = peer ? getpeername(fd, (struct sockaddr *)&ss, &len)
            : getsockname(fd, (struct sockaddr *)&ss, &len);
  if (rc != 0)
    return 0;
  if (ss.ss_family == AF_UNIX)
    push_sun(L, (struct sockaddr_un *)&ss, len);
  else
    push_sockaddr(L, &ss);
  return 1;
}

/* ---- sockets ------------------------------------------------------------- */

void lipc__once_listener(lua_State *L, int obj, const char *ev, int fn) {
  lua_getfield(L, obj, "once");
  lua_pushvalue(L, obj);
  lua_pushstring(L, ev);
  lua_pushvalue(L, fn);
  lua_call(L, 3, 0);
}

lipc__stream *lipc__socket_new(lua_State *L, uv_stream_t *h, int is_pipe) {
  return lipc__stream_new(L, h, is_pipe ? LIPC_PIPE_SOCKET : LIPC_TCP_SOCKET,
                          is_pipe ? "pipe" : "tcp");
}

static lipc__stream *check_socket(lua_State *L, const char *fname) {
  return lipc__stream_check(L, 1, fname);
}

static int sock_address(lua_State *L) {
  lipc__stream *s = check_socket(L, "socket.address");
  return lipc__push_sockname(L, lipc__stream_handle(s)->uv, 0);
}

int lipc__socket_remote(lua_State *L) {
  lipc__stream *s = check_socket(L, "socket.remote");
  return lipc__push_sockname(L, lipc__stream_handle(s)->uv, 1);
}

/* ---- idle timeouts ------------------------------------------------------- */

/* set_timeout(ms) emits 'timeout' once the socket has been idle (no read,
 * no write) for ms. One lazy timer per socket: activity only stamps a time
 * in the stream; the timer, when it fires early, re-arms for the rest. It
 * does not keep the process alive and closes itself with the socket. */
static const char TIMEOUT_KEY = 'T';

typedef struct {
  lipc__handle h; /* bare handle of the timer */
  uv_timer_t timer;
  uint64_t ms;
  uint64_t since; /* set_timeout time: idle counts from here */
  uint64_t fired; /* activity stamp 'timeout' was emitted for */
  int sock_ref;
  lipc__stream *s;
} idle_timer;

static void idle_free(lipc__handle *h) {
  idle_timer *t = (idle_timer *)h;
  lua_State *L = h->rt->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->sock_ref);
  if (lua_getiuservalue(L, -1, 1) == LUA_TTABLE &&
      lua_rawgetp(L, -1, &TIMEOUT_KEY) == LUA_TLIGHTUSERDATA &&
      lua_touserdata(L, -1) == t) {
    lua_pushnil(L);
    lua_rawsetp(L, -3, &TIMEOUT_KEY);
  }
  lua_pop(L, 3);
  luaL_unref(L, LUA_REGISTRYINDEX, t->sock_ref);
  free(t);
}

static void on_idle(uv_timer_t *uv) {
  idle_timer *t = uv->data;
  lipc__handle *sh = lipc__stream_handle(t->s);
  uint64_t now = uv_now(uv->loop), last = lipc__stream_active(t->s);
  lipc_runtime *rt = t->h.rt;
  if (sh->uv == NULL || sh->closing) {
    lipc__handle_close(&t->h);
    return;
  }
  if (last < t->since)
    last = t->since;
  if (now - last < t->ms) {
    lipc__timer_start(uv, on_idle, t->ms - (now - last), 0);
    return;
  }
  lipc__timer_start(uv, on_idle, t->ms, 0);
  if (t->fired == last + 1) /* once per idle period */
    return;
  t->fired = last + 1;
  lua_rawgeti(rt->L, LUA_REGISTRYINDEX, t->sock_ref);
  lipc__emit(rt, -1, "timeout", 0);
  lua_pop(rt->L, 1);
}

/* set_timeout(ms[, fn]) -> self; 0 turns it off. fn is a once('timeout'). */
static int sock_set_timeout(lua_State *L) {
  lipc__stream *s = check_socket(L, "socket.set_timeout");
  lua_Number ms = lipc__checknumber(L, 2, "socket.set_timeout");
  lipc_runtime *rt = lipc__rt(L);
  idle_timer *t = NULL;
  if (!(ms >= 0 && ms < 1e12))
    lipc__argerror(L, 2, "socket.set_timeout", "must be a number of ms >= 0");
  if (!lua_isnoneornil(L, 3)) {
    lipc__checktype(L, 3, LUA_TFUNCTION, "socket.set_timeout");
    lua_getfield(L, 1, "once");
    lua_pushvalue(L, 1);
    lua_pushliteral(L, "timeout");
    lua_pushvalue(L, 3);
    lua_call(L, 3, 0);
  }
  lua_getiuservalue(L, 1, 1); /* env */
  if (lua_rawgetp(L, -1, &TIMEOUT_KEY) == LUA_TLIGHTUSERDATA)
    t = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (ms == 0 || lipc__stream_handle(s)->uv == NULL) {
    if (t)
      lipc__handle_close(&t->h);
    lua_settop(L, 1);
    return 1;
  }
  if (t == NULL || t->h.closing) {
    t = calloc(1, sizeof(*t));
    if (t == NULL)
      return luaL_error(L, "socket.set_timeout: out of memory");
    t->s = s;
    lua_pushvalue(L, 1);
    t->sock_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    uv_timer_init(rt->loop, &t->timer);
    lipc__handle_bare(rt, &t->h, (uv_handle_t *)&t->timer, "timeout",
                      idle_free);
    uv_unref((uv_handle_t *)&t->timer);
    lua_pushlightuserdata(L, t);
    lua_rawsetp(L, -2, &TIMEOUT_KEY);
  }
  uv_update_time(rt->loop); /* the idle period starts now */
  t->ms = (uint64_t)ms;
  t->since = uv_now(rt->loop);
  t->fired = 0;
  lipc__timer_start(&t->timer, on_idle, t->ms, 0);
  lua_settop(L, 1);
  return 1;
}

const luaL_Reg lipc__socket_methods[] = {
    {"set_timeout", sock_set_timeout},
    {"address", sock_address},
    {"remote_address", lipc__socket_remote},
    {NULL, NULL},
};

void lipc__tcp_tune(uv_tcp_t *t, int no_delay, int keep_alive) {
  if (no_delay)
    uv_tcp_nodelay(t, 1);
  if (keep_alive)
    uv_tcp_keepalive(t, 1, 60);
}

void lipc__socket_half_open(lua_State *L) {
  lua_getfield(L, -1, "set_half_open");
  lua_pushvalue(L, -2);
  lua_pushboolean(L, 1);
  lua_call(L, 2, 0);
}

/* A server or socket received over an IPC pipe (channel/handoff.c). A
 * received server is ready to listen(): it starts accepting when given a
 * 'connection' listener or when server:listen() / server:accept() is
 * called without an address. */
static void socket_wrap(lua_State *L, uv_stream_t *h, int kind) {
  lipc__server *srv;
  switch (kind) {
    case LIPC_HANDOFF_TCP_SERVER:
    case LIPC_HANDOFF_PIPE_SERVER:
      srv = lipc__server_new(L, h,
                             kind == LIPC_HANDOFF_TCP_SERVER ? LIPC_TCP_SERVER
                                                             : LIPC_PIPE_SERVER,
                             kind == LIPC_HANDOFF_PIPE_SERVER, 0);
      srv->imported = 1;
      break;
    default:
      lipc__socket_new(L, h, kind == LIPC_HANDOFF_PIPE_SOCKET);
      if (kind == LIPC_HANDOFF_TCP_SOCKET)
        lipc__tcp_tune((uv_tcp_t *)h, 1, 0);
      break;
  }
}

void lipc__sockets_open(lua_State *L, int is_pipe, lua_CFunction listen) {
  const luaL_Reg server_methods[] = {{"listen", listen}, {NULL, NULL}};
  const char *server = is_pipe ? LIPC_PIPE_SERVER : LIPC_TCP_SERVER;
  if (luaL_getmetatable(L, server) == LUA_TNIL)
    lipc__server_class(L, server, server_methods);
  lua_pop(L, 1);
  lipc__handoff_register(L,
                         is_pipe ? LIPC_HANDOFF_PIPE_SERVER
                                 : LIPC_HANDOFF_TCP_SERVER,
                         socket_wrap);
  lipc__handoff_register(L,
                         is_pipe ? LIPC_HANDOFF_PIPE_SOCKET
                                 : LIPC_HANDOFF_TCP_SOCKET,
                         socket_wrap);
}
