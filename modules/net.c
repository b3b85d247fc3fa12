/*
 * net.c - the `net` module (TCP servers and sockets) and what it shares
 * with `pipe` (pipe.c): the one server implementation, the socket methods
 * both socket types have, and how a server or socket that came with a
 * message is wrapped (lipc__net_wrap, for channel/handoff.c).
 *
 * Sockets are streams (runtime/stream.c) of their own type, so they
 * inherit the whole stream API and `channel`. A server accepts only while
 * somebody takes the connection: a 'connection' listener or a task in
 * accept(); otherwise libuv keeps the one accepted fd and the kernel's
 * backlog holds the rest, so an accept()-driven server has backpressure.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "net.h"
#include "modules.h"

#define MAX_ADDRS 8

int lipc__check_mode(lua_State *L, int idx, int def, const char *fname) {
  lua_Integer m;
  if (lua_isnoneornil(L, idx))
    return def;
  if (lua_type(L, idx) == LUA_TSTRING) {
    const char *s = lua_tostring(L, idx);
    char *end;
    m = (lua_Integer)strtol(s, &end, 8);
    if (*s == '\0' || *end != '\0')
      m = -1;
  } else if (lua_isinteger(L, idx)) {
    m = lua_tointeger(L, idx);
  } else {
    m = -1;
  }
  if (m < 0 || m > 07777)
    return luaL_argerror(
        L, idx,
        lua_pushfstring(L,
                        "%s: mode must be an "
                        "octal string (\"0600\") or an integer",
                        fname));
  return (int)m;
}

/* ---- addresses ----------------------------------------------------------- */

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

/* A literal IPv4/IPv6 address and port into ss; 0 or UV_EINVAL. */
static int parse_ip(const char *host, int port, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof(*ss));
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0)
    return 0;
  if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0)
    return 0;
  return UV_EINVAL;
}

static int check_port(lua_State *L, int idx, const char *fname) {
  lua_Integer port;
  if (!lua_isinteger(L, idx))
    luaL_argerror(L, idx,
                  lua_pushfstring(L,
                                  "%s: port must be an integer, "
                                  "got %s",
                                  fname, luaL_typename(L, idx)));
  port = lua_tointeger(L, idx);
  if (port < 0 || port > 65535)
    luaL_argerror(L, idx,
                  lua_pushfstring(L, "%s: port must be 0..65535", fname));
  return (int)port;
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

/* getsockname/getpeername of a handle: a table for TCP, a string for
 * Unix sockets; 0 when there is none (closed, not connected). */
static int push_name(lua_State *L, uv_handle_t *uv, int peer) {
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

lipc__stream *lipc__socket_new(lua_State *L, uv_stream_t *h, int is_pipe) {
  return lipc__stream_new(L, h, is_pipe ? LIPC_PIPE_SOCKET : LIPC_TCP_SOCKET,
                          is_pipe ? "pipe" : "tcp");
}

static lipc__stream *check_socket(lua_State *L, const char *fname) {
  return lipc__stream_check(L, 1, fname);
}

static uv_tcp_t *check_tcp(lua_State *L, const char *fname) {
  lipc__stream *s = lipc__checkobj(L, 1, LIPC_TCP_SOCKET, fname);
  return (uv_tcp_t *)lipc__stream_handle(s)->uv;
}

/* set_nodelay([on=true]) -> self */
static int sock_set_nodelay(lua_State *L) {
  uv_tcp_t *t = check_tcp(L, "socket.set_nodelay");
  if (t)
    uv_tcp_nodelay(t, lua_isnone(L, 2) || lua_toboolean(L, 2));
  lua_settop(L, 1);
  return 1;
}

/* set_keepalive([on=true][, initial_delay_ms]) -> self */
static int sock_set_keepalive(lua_State *L) {
  uv_tcp_t *t = check_tcp(L, "socket.set_keepalive");
  lua_Integer ms = luaL_optinteger(L, 3, 0);
  luaL_argcheck(L, ms >= 0, 3, "socket.set_keepalive: delay must be >= 0");
  if (t)
    uv_tcp_keepalive(t, lua_isnone(L, 2) || lua_toboolean(L, 2),
                     ms >= 1000 ? (unsigned)(ms / 1000) : 1);
  lua_settop(L, 1);
  return 1;
}

/* reset(): close at once with an RST instead of a FIN (SO_LINGER 0): the
 * peer's pending reads and writes fail with ECONNRESET. */
static int sock_reset(lua_State *L) {
  lipc__stream *s = lipc__checkobj(L, 1, LIPC_TCP_SOCKET, "socket.reset");
  lipc__handle *h = lipc__stream_handle(s);
  struct linger l = {1, 0};
  uv_os_fd_t fd;
  if (h->uv && !h->closing && uv_fileno(h->uv, &fd) == 0)
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  lipc__handle_close(h);
  return 0;
}

static int sock_address(lua_State *L) {
  lipc__stream *s = check_socket(L, "socket.address");
  return push_name(L, lipc__stream_handle(s)->uv, 0);
}

static int sock_remote(lua_State *L) {
  lipc__stream *s = check_socket(L, "socket.remote");
  return push_name(L, lipc__stream_handle(s)->uv, 1);
}

/* remote_address/remote_port/local_address/local_port: one field of the
 * address table (the upvalues say which). */
static int sock_field(lua_State *L) {
  lipc__stream *s = check_socket(L, "socket.address");
  if (!push_name(L, lipc__stream_handle(s)->uv,
                 (int)lua_tointeger(L, lua_upvalueindex(1))))
    return 0;
  if (lua_istable(L, -1))
    lua_getfield(L, -1, lua_tostring(L, lua_upvalueindex(2)));
  return 1;
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
    uv_timer_start(uv, on_idle, t->ms - (now - last), 0);
    return;
  }
  uv_timer_start(uv, on_idle, t->ms, 0);
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
  lua_Number ms = luaL_checknumber(L, 2);
  lipc_runtime *rt = lipc__rt(L);
  idle_timer *t = NULL;
  luaL_argcheck(L, ms >= 0 && ms < 1e12, 2,
                "socket.set_timeout: must be a number of ms >= 0");
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TFUNCTION);
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
  uv_update_time(rt->loop);
  t->ms = (uint64_t)ms;
  t->since = uv_now(rt->loop);
  t->fired = 0;
  uv_timer_start(&t->timer, on_idle, t->ms, 0);
  lua_settop(L, 1);
  return 1;
}

static const luaL_Reg tcp_socket_methods[] = {
    {"set_nodelay", sock_set_nodelay},
    {"set_keepalive", sock_set_keepalive},
    {"set_timeout", sock_set_timeout},
    {"reset", sock_reset},
    {"address", sock_address},
    {"remote", sock_remote},
    {NULL, NULL},
};

const luaL_Reg lipc__socket_methods[] = {
    {"set_timeout", sock_set_timeout},
    {"address", sock_address},
    {"remote_address", sock_remote},
    {NULL, NULL},
};

static void tcp_socket_class(lua_State *L) {
  static const char *const fields[][3] = {{"remote_address", "1", "address"},
                                          {"remote_port", "1", "port"},
                                          {"remote_family", "1", "family"},
                                          {"local_address", "0", "address"},
                                          {"local_port", "0", "port"},
                                          {NULL, NULL, NULL}};
  int i;
  lipc__stream_class(L, LIPC_TCP_SOCKET, tcp_socket_methods); /* methods */
  for (i = 0; fields[i][0]; i++) {
    lua_pushinteger(L, fields[i][1][0] - '0');
    lua_pushstring(L, fields[i][2]);
    lua_pushcclosure(L, sock_field, 2);
    lua_setfield(L, -2, fields[i][0]);
  }
  lua_pop(L, 1);
}

/* Applies the server's options to an accepted or connected TCP socket. */
static void tune_tcp(uv_tcp_t *t, int no_delay, int keep_alive) {
  if (no_delay)
    uv_tcp_nodelay(t, 1);
  if (keep_alive)
    uv_tcp_keepalive(t, 1, 60);
}

/* Socket on top of L: keep writing after the peer's end. */
static void set_half_open(lua_State *L) {
  lua_getfield(L, -1, "set_half_open");
  lua_pushvalue(L, -2);
  lua_pushboolean(L, 1);
  lua_call(L, 2, 0);
}

/* ---- servers ------------------------------------------------------------- */

lipc__server *lipc__server_check(lua_State *L, int idx, const char *fname) {
  lipc__server *srv = lipc__testobj(L, idx, LIPC_TCP_SERVER);
  if (srv == NULL)
    srv = lipc__testobj(L, idx, LIPC_PIPE_SERVER);
  if (srv == NULL)
    luaL_argerror(L, idx,
                  lua_pushfstring(L, "%s: server expected, got %s", fname,
                                  luaL_typename(L, idx)));
  return srv;
}

static int server_open(lipc__server *srv) {
  return srv->h.uv != NULL && !srv->h.closing;
}

/* Takes the connection libuv holds; pushes the socket on L. */
static int accept_one(lipc__server *srv, lua_State *L) {
  lipc_runtime *rt = srv->h.rt;
  uv_stream_t *c;
  int err;
  c = malloc(srv->is_pipe ? sizeof(uv_pipe_t) : sizeof(uv_tcp_t));
  if (c == NULL)
    return UV_ENOMEM;
  if (srv->is_pipe)
    uv_pipe_init(rt->loop, (uv_pipe_t *)c, 0);
  else
    uv_tcp_init(rt->loop, (uv_tcp_t *)c);
  err = uv_accept((uv_stream_t *)srv->h.uv, c);
  srv->pending = 0;
  if (err) {
    lipc__close_free((uv_handle_t *)c);
    return err;
  }
  if (!srv->is_pipe)
    tune_tcp((uv_tcp_t *)c, srv->no_delay, srv->keep_alive);
  if (rt->trace & LIPC_TRACE_NET) {
    char a[128], b[128];
    uv_os_fd_t fd = -1;
    uv_fileno((uv_handle_t *)c, &fd);
    lipc__trace(rt, "net", "accept %s fd %d %s <- %s",
                srv->is_pipe ? "pipe" : "tcp", (int)fd,
                lipc__trace_addr((uv_handle_t *)c, 0, a, sizeof(a)) ? a : "?",
                lipc__trace_addr((uv_handle_t *)c, 1, b, sizeof(b)) ? b : "?");
  }
  lipc__socket_new(L, c, srv->is_pipe);
  if (srv->half_open)
    set_half_open(L);
  return 0;
}

static void server_error(lipc__server *srv, int err, const char *what) {
  lipc_runtime *rt = srv->h.rt;
  lua_State *L = rt->L;
  if (lipc__waitq_waiting(&srv->acceptors)) {
    lua_pushnil(L);
    lipc__push_errpair(L, err, what);
    lipc__waitq_wake(rt, &srv->acceptors, 3);
    return;
  }
  if (lipc__handle_push(&srv->h)) {
    lipc__push_errpair(L, err, what);
    lipc__emit(rt, -3, "error", 2);
  }
  lua_pop(L, 1);
}

/* Hands the pending connection to a task in accept() or to the
 * 'connection' listeners; with neither it stays with libuv (which stops
 * accepting until it is taken). */
static void deliver(lipc__server *srv) {
  lipc_runtime *rt = srv->h.rt;
  lua_State *L = rt->L;
  int waiting, err;
  if (!srv->pending || !server_open(srv))
    return;
  waiting = lipc__waitq_waiting(&srv->acceptors);
  if (!waiting) {
    int has;
    lipc__handle_push(&srv->h);
    has = lipc__has_listeners(L, -1, "connection");
    lua_pop(L, 1);
    if (!has)
      return;
  }
  if ((err = accept_one(srv, L)) != 0) {
    server_error(srv, err, "accept");
    return;
  }
  if (waiting) {
    lipc__waitq_wake(rt, &srv->acceptors, 1);
    return;
  }
  lipc__handle_push(&srv->h); /* sock srv */
  lua_insert(L, -2);          /* srv sock */
  lipc__emit(rt, -2, "connection", 1);
  lua_pop(L, 1);
}

static void on_connection(uv_stream_t *uv, int status) {
  lipc__server *srv = uv->data;
  if (srv == NULL)
    return;
  if (status < 0) {
    server_error(srv, status, "accept");
    return;
  }
  srv->pending = 1;
  deliver(srv);
}

int lipc__server_start(lipc__server *srv) {
  int err;
  if (srv->listening)
    return 0;
  if (!server_open(srv))
    return UV_EBADF;
  err = uv_listen((uv_stream_t *)srv->h.uv, srv->backlog, on_connection);
  if (err == 0)
    srv->listening = 1;
  if (srv->h.rt->trace & LIPC_TRACE_NET) {
    char a[128];
    lipc__trace(srv->h.rt, "net", "listen %s %s%s%s",
                srv->is_pipe ? "pipe" : "tcp",
                lipc__trace_addr(srv->h.uv, 0, a, sizeof(a)) ? a : "?",
                err ? ": " : "", err ? lipc__err_name(err) : "");
  }
  return err;
}

static void server_closing(lipc__handle *h) {
  lipc__server *srv = (lipc__server *)h;
  lipc_runtime *rt = h->rt;
  struct stat st;
  srv->listening = 0;
  lua_pushnil(rt->L);
  lipc__push_errpair(rt->L, UV_ECANCELED, "server closed");
  lipc__waitq_wake_all(rt, &srv->acceptors, 3);
  lipc__waitq_free(rt, &srv->acceptors);
  /* The socket file goes with the server, unless somebody else has
   * replaced it since. */
  if (srv->path && lstat(srv->path, &st) == 0 && S_ISSOCK(st.st_mode) &&
      st.st_dev == srv->dev && st.st_ino == srv->ino)
    unlink(srv->path);
  free(srv->path);
  srv->path = NULL;
}

lipc__server *lipc__server_new(lua_State *L, uv_stream_t *h, const char *tname,
                               int is_pipe, int arg) {
  lipc__server *srv;
  int opts = 0, fn = 0;
  if (arg > 0) {
    const char *fname = is_pipe ? "pipe.create_server" : "net.create_server";
    if (lua_istable(L, arg)) {
      opts = arg;
      arg++;
    }
    if (!lua_isnoneornil(L, arg)) {
      if (!lua_isfunction(L, arg))
        luaL_argerror(L, arg,
                      lua_pushfstring(L,
                                      "%s: on_connection must be "
                                      "a function, got %s",
                                      fname, luaL_typename(L, arg)));
      fn = arg;
    }
  }
  if (h == NULL) { /* after the checks: a raise
                      must not leak a handle */
    lipc_runtime *rt = lipc__rt(L);
    h = malloc(is_pipe ? sizeof(uv_pipe_t) : sizeof(uv_tcp_t));
    if (h == NULL)
      luaL_error(L, "create_server: out of memory");
    if (is_pipe)
      uv_pipe_init(rt->loop, (uv_pipe_t *)h, 0);
    else
      uv_tcp_init(rt->loop, (uv_tcp_t *)h);
  }
  srv = lipc__handle_new(L, sizeof(*srv), tname, (uv_handle_t *)h,
                         is_pipe ? "pipe server" : "tcp server");
  srv->is_pipe = is_pipe;
  srv->backlog = LIPC_DEFAULT_BACKLOG;
  srv->no_delay = 1;
  srv->h.on_close = server_closing;
  if (opts) {
    if (lua_getfield(L, opts, "no_delay") != LUA_TNIL)
      srv->no_delay = lua_toboolean(L, -1);
    if (lua_getfield(L, opts, "keep_alive") != LUA_TNIL)
      srv->keep_alive = lua_toboolean(L, -1);
    if (lua_getfield(L, opts, "allow_half_open") != LUA_TNIL)
      srv->half_open = lua_toboolean(L, -1);
    lua_pop(L, 3);
  }
  if (fn) {
    lua_pushcfunction(L, lipc__emitter_on);
    lua_pushvalue(L, -2);
    lua_pushliteral(L, "connection");
    lua_pushvalue(L, fn);
    lua_call(L, 3, 0);
  }
  return srv;
}

int lipc__server_listened(lua_State *L, int idx, lipc__server *srv, int err,
                          const char *detail) {
  lipc_runtime *rt = lipc__rt(L);
  int in_task = L == rt->current && lua_isyieldable(L), top;
  idx = lua_absindex(L, idx);
  if (err == 0) {
    srv->listening = 1;
    lua_pushvalue(L, idx);
    lipc__emit_soon(L, "listening", 0, 0);
    lua_pushvalue(L, idx);
    return 1;
  }
  lipc__push_error(L, err, detail); /* nil msg code */
  top = lua_gettop(L);
  if (!in_task || lipc__has_listeners(L, idx, "error")) {
    lua_pushvalue(L, idx);
    lua_pushvalue(L, top - 1);
    lua_pushvalue(L, top);
    lipc__emit_soon(L, "error", 2, 1); /* error, then close */
  } else {
    lipc__handle_close(&srv->h);
  }
  return 3;
}

/* accept() in a task -> the next connection's socket, or nil, msg, code */
static int server_accept(lua_State *L) {
  lipc__server *srv = lipc__server_check(L, 1, "server.accept");
  int err;
  lipc__task_check(L, "server.accept");
  if (!server_open(srv))
    return lipc__push_error(L, UV_EBADF, "server.accept: server closed");
  if (srv->imported && !srv->listening && (err = lipc__server_start(srv)) != 0)
    return lipc__push_error(L, err, "server.accept");
  if (srv->pending) {
    if ((err = accept_one(srv, L)) != 0)
      return lipc__push_error(L, err, "server.accept");
    return 1;
  }
  if (!srv->listening && !srv->binding)
    return luaL_error(L, "server.accept: the server is not listening");
  return lipc__waitq_park(L, &srv->acceptors);
}

/* on(ev, fn) / once(ev, fn): a 'connection' listener takes connections
 * that waited, and starts a received server. Upvalue 1 is the emitter's
 * own method. */
static int server_on(lua_State *L) {
  lipc__server *srv = lipc__server_check(L, 1, "server.on");
  int conn = strcmp(luaL_checkstring(L, 2), "connection") == 0;
  lua_settop(L, 3);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  lua_call(L, 3, 0);
  if (conn) {
    if (srv->imported && !srv->listening)
      lipc__server_start(srv);
    deliver(srv);
  }
  lua_settop(L, 1);
  return 1;
}

/* close([fn]): stop accepting; fn is a once('close'). Connections already
 * accepted stay open. */
static int server_close(lua_State *L) {
  lipc__server *srv = lipc__server_check(L, 1, "server.close");
  if (lua_isfunction(L, 2)) {
    if (!server_open(srv)) {
      lua_pushvalue(L, 2);
      lua_pushliteral(L, "ERR_SERVER_NOT_RUNNING: server is not running");
      lua_pushliteral(L, "ERR_SERVER_NOT_RUNNING");
      lipc__task_start(srv->h.rt, L, 2);
      return 0;
    }
    lua_getfield(L, 1, "once");
    lua_pushvalue(L, 1);
    lua_pushliteral(L, "close");
    lua_pushvalue(L, 2);
    lua_call(L, 3, 0);
  }
  lipc__handle_close(&srv->h);
  return 0;
}

/* address() -> {address=, port=, family=} (TCP) or the path (Unix); nil
 * when not listening. */
static int server_address(lua_State *L) {
  lipc__server *srv = lipc__server_check(L, 1, "server.address");
  if (!server_open(srv) || !(srv->listening || srv->imported))
    return 0;
  return push_name(L, srv->h.uv, 0);
}

static int server_listening(lua_State *L) {
  lipc__server *srv = lipc__server_check(L, 1, "server.listening");
  lua_pushboolean(L, server_open(srv) && srv->listening);
  return 1;
}

void lipc__server_class(lua_State *L, const char *tname,
                        const luaL_Reg *extra) {
  static const char *const adders[] = {"on", "once", NULL};
  static const luaL_Reg methods[] = {
      {"accept", server_accept},
      {"close", server_close},
      {"address", server_address},
      {"listening", server_listening},
      {NULL, NULL},
  };
  int i;
  lipc__class(L, tname, methods); /* methods */
  for (i = 0; adders[i]; i++) {
    lua_getfield(L, -1, adders[i]);
    lua_pushcclosure(L, server_on, 1);
    lua_setfield(L, -2, adders[i]);
  }
  if (extra)
    luaL_setfuncs(L, extra, 0);
  lua_pop(L, 1);
}

/* ---- TCP servers --------------------------------------------------------- */

typedef struct {
  uv_getaddrinfo_t req;
  lipc__server *srv;
  int srv_ref;
  lipc__wait wait;
  int port;
  int flags;
  int reuse_port;
  char host[256];
} listen_op;

static int bind_listen(lipc__server *srv, const struct sockaddr_storage *ss,
                       int flags, int reuse_port) {
  uv_tcp_t *t = (uv_tcp_t *)srv->h.uv;
  int err;
  if (reuse_port) { /* before bind: own the fd */
    int on = 1, fd = socket(ss->ss_family,
                            SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
      return -errno;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0 ||
        (err = uv_tcp_open(t, fd)) != 0) {
      err = -errno;
      close(fd);
      return err ? err : UV_EINVAL;
    }
  }
  err = uv_tcp_bind(t, (const struct sockaddr *)ss, (unsigned)flags);
  if (err == 0)
    err = lipc__server_start(srv);
  return err;
}

static void on_listen_resolved(uv_getaddrinfo_t *req, int status,
                               struct addrinfo *res) {
  listen_op *op = (listen_op *)req;
  lipc__server *srv = op->srv;
  lipc_runtime *rt = srv->h.rt;
  lua_State *L = rt->L;
  struct sockaddr_storage ss;
  char detail[300];
  int err = status, top = lua_gettop(L), waiting = lipc__waiting(&op->wait);
  srv->binding = 0;
  if (err == 0 && !server_open(srv))
    err = UV_ECANCELED;
  if (err == 0) {
    memset(&ss, 0, sizeof(ss));
    memcpy(&ss, res->ai_addr, res->ai_addrlen);
    ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)op->port);
    err = bind_listen(srv, &ss, op->flags, op->reuse_port);
  }
  uv_freeaddrinfo(res);
  snprintf(detail, sizeof(detail), "%s:%d", op->host, op->port);
  lua_rawgeti(L, LUA_REGISTRYINDEX, op->srv_ref); /* srv */
  if (err == 0) {
    lipc__emit(rt, top + 1, "listening", 0);
    if (waiting) {
      lua_pushvalue(L, top + 1);
      lipc__wake(rt, &op->wait, 1);
    }
  } else if (err != UV_ECANCELED || waiting) {
    lipc__push_error(L, err, detail); /* srv nil msg code */
    if (!waiting || lipc__has_listeners(L, top + 1, "error")) {
      lua_pushvalue(L, top + 3);
      lua_pushvalue(L, top + 4);
      lipc__emit(rt, top + 1, "error", 2);
    }
    lipc__wake(rt, &op->wait, 3);
    lipc__handle_close(&srv->h);
  }
  lua_settop(L, top);
  luaL_unref(L, LUA_REGISTRYINDEX, op->srv_ref);
  lipc__wait_cancel(rt, &op->wait);
  free(op);
}

/* listen(port[, host][, opts]) -> self | nil, msg, code. Without a host
 * only loopback (127.0.0.1) hears it; "0.0.0.0" or "::" expose it. */
static int tcp_listen(lua_State *L) {
  lipc__server *srv =
      lipc__checkobj(L, 1, LIPC_TCP_SERVER, "net.server.listen");
  lipc_runtime *rt = lipc__rt(L);
  const char *host = "127.0.0.1";
  struct sockaddr_storage ss;
  int port, opts = 0, flags = 0, reuse_port = 0, err;
  char detail[300];
  listen_op *op;
  if (srv->imported && lua_isnoneornil(L, 2))
    return lipc__server_listened(L, 1, srv, lipc__server_start(srv), "listen");
  port = check_port(L, 2, "net.server.listen");
  if (lua_type(L, 3) == LUA_TSTRING) {
    host = lua_tostring(L, 3);
    opts = lua_istable(L, 4) ? 4 : 0;
  } else if (lua_istable(L, 3)) {
    opts = 3;
  } else if (!lua_isnoneornil(L, 3)) {
    return luaL_argerror(L, 3,
                         lua_pushfstring(L,
                                         "net.server.listen: host "
                                         "must be a string, got %s",
                                         luaL_typename(L, 3)));
  }
  if (opts) {
    lua_Integer b;
    lua_getfield(L, opts, "backlog");
    b = luaL_optinteger(L, -1, LIPC_DEFAULT_BACKLOG);
    luaL_argcheck(L, b > 0 && b < 1 << 20, opts,
                  "net.server.listen: backlog must be > 0");
    srv->backlog = (int)b;
    if (lua_getfield(L, opts, "ipv6_only") != LUA_TNIL && lua_toboolean(L, -1))
      flags |= UV_TCP_IPV6ONLY;
    lua_getfield(L, opts, "reuse_port");
    reuse_port = lua_toboolean(L, -1);
    lua_pop(L, 3);
  }
  if (!server_open(srv))
    return lipc__push_error(L, UV_EBADF, "net.server.listen: server closed");
  if (srv->listening || srv->binding)
    return luaL_error(L, "net.server.listen: already listening");
  if (strcmp(host, "localhost") == 0)
    host = "127.0.0.1";
  snprintf(detail, sizeof(detail), "%s:%d", host, port);
  if (parse_ip(host, port, &ss) == 0)
    return lipc__server_listened(L, 1, srv,
                                 bind_listen(srv, &ss, flags, reuse_port),
                                 detail);
  /* A host name: resolved on the thread pool, the loop keeps going. */
  op = calloc(1, sizeof(*op));
  if (op == NULL)
    return luaL_error(L, "net.server.listen: out of memory");
  op->srv = srv;
  op->port = port;
  op->flags = flags;
  op->reuse_port = reuse_port;
  op->wait.ref = LUA_NOREF;
  snprintf(op->host, sizeof(op->host), "%s", host);
  {
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    err = uv_getaddrinfo(rt->loop, &op->req, on_listen_resolved, op->host, NULL,
                         &hints);
  }
  if (err) {
    free(op);
    return lipc__server_listened(L, 1, srv, err, detail);
  }
  srv->binding = 1;
  lua_pushvalue(L, 1);
  op->srv_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (L == rt->current && lua_isyieldable(L))
    return lipc__task_park(L, &op->wait);
  lua_settop(L, 1);
  return 1;
}

/* net.create_server([opts,] [on_connection]) -> server */
static int l_create_server(lua_State *L) {
  lipc__server_new(L, NULL, LIPC_TCP_SERVER, 0, 1);
  return 1;
}

/* ---- TCP connect --------------------------------------------------------- */

/* One connect: resolve, try each address in turn, time out. Lives until
 * its requests are done and its timer is closed, whichever is last. */
typedef struct {
  lipc__handle h; /* bare handle of the timeout timer */
  uv_timer_t timer;
  uv_connect_t req;
  uv_getaddrinfo_t gai;
  lipc__stream *s;
  int sock_ref;
  lipc__wait wait; /* the task in net.connect */
  struct sockaddr_storage addrs[MAX_ADDRS];
  struct sockaddr_storage local;
  int naddr, next, port, last_err, sync_err;
  int busy; /* requests in flight */
  unsigned has_local : 1, no_delay : 1, keep_alive : 1, half_open : 1;
  unsigned in_task : 1, in_call : 1, done : 1, tried : 1, freed : 1;
  unsigned resolving : 1;
  char detail[300];
} connect_op;

static void op_free(lipc__handle *h) {
  connect_op *op = (connect_op *)h;
  lipc__wait_cancel(h->rt, &op->wait);
  op->freed = 1;
  if (op->busy == 0)
    free(op);
}

static void op_release(connect_op *op) {
  if (op->freed && op->busy == 0)
    free(op);
  else if (op->done && op->busy == 0)
    lipc__handle_close(&op->h);
}

static void finish(connect_op *op, int err) {
  lipc_runtime *rt = op->h.rt;
  lua_State *L = rt->L;
  lipc__handle *sh = lipc__stream_handle(op->s);
  int top = lua_gettop(L), quiet = sh->uv == NULL || sh->closing;
  op->done = 1;
  uv_timer_stop(&op->timer);
  if (op->resolving)
    uv_cancel((uv_req_t *)&op->gai);
  if (rt->exiting)
    goto out;
  if (rt->trace & LIPC_TRACE_NET) {
    char a[128], b[128];
    uv_os_fd_t fd = -1;
    if (err == 0 && sh->uv)
      uv_fileno(sh->uv, &fd);
    if (err == 0)
      lipc__trace(rt, "net", "connect tcp fd %d %s -> %s", (int)fd,
                  lipc__trace_addr(sh->uv, 0, a, sizeof(a)) ? a : "?",
                  lipc__trace_addr(sh->uv, 1, b, sizeof(b)) ? b : "?");
    else
      lipc__trace(rt, "net", "connect tcp %s: %s", op->detail,
                  lipc__err_name(err));
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, op->sock_ref); /* sock */
  if (err == 0) {
    tune_tcp((uv_tcp_t *)sh->uv, op->no_delay, op->keep_alive);
    lipc__stream_connected(op->s, 0); /* the writes that waited */
    lipc__stream_read_start(op->s);   /* 'data' listeners wait */
    if (op->in_task) {
      lipc__wake(rt, &op->wait, 1);
    } else {
      lipc__emit(rt, top + 1, "connect", 0);
    }
    goto out;
  }
  if (op->in_task) {
    if (op->in_call) {
      op->sync_err = err;
    } else {
      lipc__push_error(L, err, op->detail);
      lipc__wake(rt, &op->wait, 3);
    }
  } else if (!quiet) {
    lipc__push_errpair(L, err, op->detail);
    if (op->in_call) {
      lipc__emit_soon(L, "error", 2, 1); /* pops sock msg code */
      lua_settop(L, top);
      goto unref;
    }
    lipc__emit(rt, top + 1, "error", 2);
  }
  lipc__stream_connected(op->s, err); /* their callbacks get the error */
  lipc__handle_close(sh);
out:
  lua_settop(L, top);
unref:
  luaL_unref(L, LUA_REGISTRYINDEX, op->sock_ref);
  op->sock_ref = LUA_NOREF;
  op_release(op);
}

static void on_connect(uv_connect_t *req, int status);

/* A new handle for the next address: a failed connect leaves the old
 * socket in no state to try again (and the family may differ). */
static int fresh_handle(connect_op *op) {
  lipc__handle *h = lipc__stream_handle(op->s);
  uv_tcp_t *t = malloc(sizeof(*t));
  if (t == NULL)
    return UV_ENOMEM;
  uv_tcp_init(op->h.rt->loop, t);
  h->uv->data = NULL;
  lipc__close_free(h->uv);
  h->uv = (uv_handle_t *)t;
  t->data = h;
  return 0;
}

static int start_next(connect_op *op) {
  int err = 0;
  while (op->next < op->naddr) {
    struct sockaddr_storage *ss = &op->addrs[op->next++];
    uv_tcp_t *t;
    if (op->tried && (err = fresh_handle(op)) != 0)
      return err;
    op->tried = 1;
    t = (uv_tcp_t *)lipc__stream_handle(op->s)->uv;
    err = op->has_local ? uv_tcp_bind(t, (struct sockaddr *)&op->local, 0) : 0;
    if (err == 0)
      err = uv_tcp_connect(&op->req, t, (struct sockaddr *)ss, on_connect);
    if (err == 0) {
      op->busy++;
      return 0;
    }
    op->last_err = err;
  }
  return op->last_err ? op->last_err : UV_EAI_NONAME;
}

static void on_connect(uv_connect_t *req, int status) {
  connect_op *op = (connect_op *)((char *)req - offsetof(connect_op, req));
  lipc__handle *sh;
  op->busy--;
  if (op->done || op->freed) {
    op_release(op);
    return;
  }
  sh = lipc__stream_handle(op->s);
  if (status == 0) {
    finish(op, 0);
    return;
  }
  op->last_err = status;
  if (status != UV_ECANCELED && sh->uv && !sh->closing && start_next(op) == 0)
    return;
  finish(op, op->last_err);
}

static void on_resolved(uv_getaddrinfo_t *req, int status,
                        struct addrinfo *res) {
  connect_op *op = (connect_op *)((char *)req - offsetof(connect_op, gai));
  lipc__handle *sh;
  struct addrinfo *ai;
  int err;
  op->busy--;
  op->resolving = 0;
  if (op->done || op->freed) {
    uv_freeaddrinfo(res);
    op_release(op);
    return;
  }
  sh = lipc__stream_handle(op->s);
  for (ai = res; ai && op->naddr < MAX_ADDRS; ai = ai->ai_next) {
    struct sockaddr_storage *ss = &op->addrs[op->naddr];
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
      continue;
    memset(ss, 0, sizeof(*ss));
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)op->port);
    op->naddr++;
  }
  uv_freeaddrinfo(res);
  if (status == 0 && (sh->uv == NULL || sh->closing))
    status = UV_ECANCELED;
  if (status < 0 || (err = start_next(op)) != 0)
    finish(op, status < 0 ? status : err);
}

static void on_connect_timeout(uv_timer_t *t) {
  connect_op *op = t->data;
  if (!op->done)
    finish(op, UV_ETIMEDOUT);
}

/* Reads connect's ({host=, port=, ...} | port[, host]) into op. */
static void connect_args(lua_State *L, connect_op *op, const char **host,
                         lua_Number *timeout) {
  const char *fname = "net.connect";
  *host = "localhost";
  *timeout = 0;
  if (lua_istable(L, 1)) {
    lua_getfield(L, 1, "port");
    op->port = check_port(L, -1, fname);
    if (lua_getfield(L, 1, "host") != LUA_TNIL) {
      if (lua_type(L, -1) != LUA_TSTRING)
        luaL_argerror(L, 1, "net.connect: host must be a string");
      *host = lua_tostring(L, -1);
    }
    if (lua_getfield(L, 1, "local_address") != LUA_TNIL) {
      const char *la = lua_tostring(L, -1);
      if (la == NULL || parse_ip(la, 0, &op->local) != 0)
        luaL_argerror(L, 1,
                      "net.connect: local_address must be an IP "
                      "address");
      op->has_local = 1;
    }
    if (lua_getfield(L, 1, "timeout") != LUA_TNIL) {
      *timeout = lua_tonumber(L, -1);
      if (!lua_isnumber(L, -1) || *timeout < 0)
        luaL_argerror(L, 1,
                      "net.connect: timeout must be a number of "
                      "ms >= 0");
    }
    if (lua_getfield(L, 1, "no_delay") != LUA_TNIL)
      op->no_delay = lua_toboolean(L, -1);
    if (lua_getfield(L, 1, "keep_alive") != LUA_TNIL)
      op->keep_alive = lua_toboolean(L, -1);
    if (lua_getfield(L, 1, "allow_half_open") != LUA_TNIL)
      op->half_open = lua_toboolean(L, -1);
    /* host stays referenced from the table at 1 */
    lua_pop(L, 7);
  } else if (lua_type(L, 1) == LUA_TNUMBER) {
    op->port = check_port(L, 1, fname);
    if (!lua_isnoneornil(L, 2))
      *host = luaL_checkstring(L, 2);
  } else {
    luaL_argerror(L, 1,
                  lua_pushfstring(L,
                                  "net.connect: options table or "
                                  "port expected, got %s",
                                  luaL_typename(L, 1)));
  }
}

/* net.connect{host=, port=[, local_address=, timeout=]} or
 * net.connect(port[, host]). In a task: the connected socket or nil, msg,
 * code. Elsewhere: the socket at once; it emits 'connect' or 'error'. */
static int l_connect(lua_State *L) {
  lipc_runtime *rt = lipc__rt(L);
  connect_op args, *op;
  const char *host;
  lua_Number timeout;
  uv_tcp_t *t;
  int err = 0, top;
  memset(&args, 0, sizeof(args));
  args.no_delay = 1;
  connect_args(L, &args, &host, &timeout); /* may raise: nothing held */
  op = malloc(sizeof(*op));
  t = malloc(sizeof(*t));
  if (op == NULL || t == NULL) {
    free(op);
    free(t);
    return luaL_error(L, "net.connect: out of memory");
  }
  memcpy(op, &args, sizeof(*op));
  op->wait.ref = LUA_NOREF;
  op->in_task = L == rt->current && lua_isyieldable(L);
  uv_tcp_init(rt->loop, t);
  snprintf(op->detail, sizeof(op->detail),
           strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, op->port);
  op->s = lipc__socket_new(L, (uv_stream_t *)t, 0);
  if (!op->in_task)
    lipc__stream_connecting(op->s);
  top = lua_gettop(L);
  if (op->half_open)
    set_half_open(L);
  lua_pushvalue(L, top);
  op->sock_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  uv_timer_init(rt->loop, &op->timer);
  lipc__handle_bare(rt, &op->h, (uv_handle_t *)&op->timer, "connect", op_free);
  if (timeout > 0) {
    uv_update_time(rt->loop); /* from now, not from this turn's start */
    uv_timer_start(&op->timer, on_connect_timeout, (uint64_t)timeout, 0);
  }
  op->in_call = 1;
  if (strcmp(host, "localhost") == 0) { /* RFC 6761: no resolver */
    parse_ip("127.0.0.1", op->port, &op->addrs[0]);
    parse_ip("::1", op->port, &op->addrs[1]);
    op->naddr = 2;
    err = start_next(op);
  } else if (parse_ip(host, op->port, &op->addrs[0]) == 0) {
    op->naddr = 1;
    err = start_next(op);
  } else {
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    err = uv_getaddrinfo(rt->loop, &op->gai, on_resolved, host, NULL, &hints);
    if (err == 0) {
      op->busy++;
      op->resolving = 1;
    }
  }
  if (err)
    finish(op, err);
  op->in_call = 0;
  lua_settop(L, top);
  if (!op->in_task)
    return 1;
  if (op->done) { /* failed at once */
    err = op->sync_err;
    return lipc__push_error(L, err ? err : UV_ECANCELED, op->detail);
  }
  return lipc__task_park(L, &op->wait);
}

/* is_ip(s) -> 4, 6 or 0 */
static int l_is_ip(lua_State *L) {
  const char *s = luaL_checkstring(L, 1);
  struct sockaddr_in a4;
  struct sockaddr_in6 a6;
  lua_pushinteger(L, uv_ip4_addr(s, 0, &a4) == 0   ? 4
                     : uv_ip6_addr(s, 0, &a6) == 0 ? 6
                                                   : 0);
  return 1;
}

/* ---- handle passing ------------------------------------------------------ */

/* A server or socket received over an IPC pipe (channel/handoff.c). A
 * received server is ready to listen(): it starts accepting when given a
 * 'connection' listener or when server:listen() / server:accept() is
 * called without an address. */
void lipc__net_wrap(lua_State *L, uv_stream_t *h, int kind) {
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
        tune_tcp((uv_tcp_t *)h, 1, 0);
      break;
  }
}

int luaopen_net(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"create_server", l_create_server},
      {"connect", l_connect},
      {"is_ip", l_is_ip},
      {NULL, NULL},
  };
  static const luaL_Reg server_methods[] = {
      {"listen", tcp_listen},
      {NULL, NULL},
  };
  lipc__channel_open(L); /* streams, with `channel` */
  if (luaL_getmetatable(L, LIPC_TCP_SOCKET) == LUA_TNIL)
    tcp_socket_class(L);
  lua_pop(L, 1);
  if (luaL_getmetatable(L, LIPC_TCP_SERVER) == LUA_TNIL)
    lipc__server_class(L, LIPC_TCP_SERVER, server_methods);
  lua_pop(L, 1);
  lipc__handoff_register(L, LIPC_HANDOFF_TCP_SERVER, lipc__net_wrap);
  lipc__handoff_register(L, LIPC_HANDOFF_TCP_SOCKET, lipc__net_wrap);
  luaL_newlib(L, fns);
  return 1;
}
