/*
 * server.c - the one server implementation, for TCP (net.c) and Unix
 * socket (pipe.c) servers: they differ only in how they bind. A server
 * accepts only while somebody takes the connection: a 'connection'
 * listener or a task in accept(); otherwise libuv keeps the one accepted
 * fd and the kernel's backlog holds the rest, so an accept()-driven
 * server has backpressure.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sockets.h"

lipc__server *lipc__server_check(lua_State *L, int idx, const char *fname) {
  lipc__server *srv = lipc__testobj(L, idx, LIPC_TCP_SERVER);
  if (srv == NULL)
    srv = lipc__testobj(L, idx, LIPC_PIPE_SERVER);
  if (srv == NULL)
    lipc__typeerror(L, idx, fname, "server");
  return srv;
}

#define DROPPED 1 /* accept_one: over max_connections, closed */

/* server.max_connections (the field, which opts.max_connections sets) of
 * the server on top of L: a number > 0 limits, anything else does not (0
 * neither, as Node). */
static int over_limit(lipc__server *srv, lua_State *L) {
  int top = lua_gettop(L);
  lua_Number max = 0;
  if (lua_getiuservalue(L, -1, 1) == LUA_TTABLE &&
      lua_getfield(L, -1, "max_connections") == LUA_TNUMBER)
    max = lua_tonumber(L, -1);
  lua_settop(L, top);
  return max > 0 && srv->nconn >= max;
}

/* 'close' of an accepted socket (upvalue 1: its server). */
static int conn_closed(lua_State *L) {
  lipc__server *srv = lua_touserdata(L, lua_upvalueindex(1));
  if (srv->nconn > 0)
    srv->nconn--;
  return 0;
}

/* L: sock srv. Over the limit: the socket is closed at once and the
 * server emits 'drop(remote)' (the peer's address), as Node; pops both. */
static void drop(lipc__server *srv, lua_State *L) {
  lipc_runtime *rt = srv->h.rt;
  lipc__handle *sh = lipc__stream_handle(lipc__stream_test(L, -2));
  if (!lipc__push_sockname(L, sh->uv, 1))
    lua_pushnil(L);
  lipc__handle_close(sh);
  lua_remove(L, -3); /* srv addr */
  if (L != rt->L)
    lua_xmove(L, rt->L, 2);
  lipc__emit(rt, -2, "drop", 1);
  lua_pop(rt->L, 1);
}

/* L: sock srv. The server counts the socket until it closes; pops srv. */
static void count_conn(lipc__server *srv, lua_State *L) {
  srv->nconn++;
  lua_pushcclosure(L, conn_closed, 1); /* sock fn */
  lua_pushcfunction(L, lipc__emitter_on);
  lua_pushvalue(L, -3);
  lua_pushliteral(L, "close");
  lua_pushvalue(L, -4);
  lua_call(L, 3, 0);
  lua_pop(L, 1);
}

/* Takes the connection libuv holds; pushes the socket on L, or returns
 * DROPPED when it was over the server's max_connections. */
static int accept_one(lipc__server *srv, lua_State *L) {
  lipc_runtime *rt = srv->h.rt;
  uv_stream_t *c;
  lipc__stream *sock;
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
    lipc__tcp_tune((uv_tcp_t *)c, srv->no_delay, srv->keep_alive);
  if (rt->trace & LIPC_TRACE_NET) {
    char a[128], b[128];
    uv_os_fd_t fd = -1;
    uv_fileno((uv_handle_t *)c, &fd);
    lipc__trace(rt, "net", "accept %s fd %d %s <- %s",
                srv->is_pipe ? "pipe" : "tcp", (int)fd,
                lipc__trace_addr((uv_handle_t *)c, 0, a, sizeof(a)) ? a : "?",
                lipc__trace_addr((uv_handle_t *)c, 1, b, sizeof(b)) ? b : "?");
  }
  sock = lipc__socket_new(L, c, srv->is_pipe);
  lipc__handle_push(&srv->h); /* on rt->L; open, so not nil */
  if (L != rt->L)
    lua_xmove(rt->L, L, 1);
  if (over_limit(srv, L)) {
    drop(srv, L);
    return DROPPED;
  }
  /* Its errors that nobody handles become the server's 'client_error'. */
  lipc__stream_set_sink(sock, L, -1);
  count_conn(srv, L);
  if (srv->half_open)
    lipc__socket_half_open(L);
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
  if (!srv->pending || !lipc__server_open(srv))
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
    if (err != DROPPED)
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
  if (!lipc__server_open(srv))
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
        lipc__argerror(L, arg, fname,
                       "on_connection must be a function, got %s",
                       luaL_typename(L, arg));
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
    if (lua_getfield(L, opts, "max_connections") != LUA_TNIL) {
      if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0) {
        lipc__handle_close(&srv->h);
        lipc__argerror(L, opts,
                       is_pipe ? "pipe.create_server" : "net.create_server",
                       "opts.max_connections must be an integer >= 0");
      }
      lua_setfield(L, -2, "max_connections"); /* in the env, as a field */
    } else {
      lua_pop(L, 1);
    }
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
  /* error, then close; in a task the caller has nil, msg, code, so
   * only a listener (one added after the call too, Node's shape) */
  lua_pushvalue(L, idx);
  lua_pushvalue(L, top - 1);
  lua_pushvalue(L, top);
  lipc__emit_soon(L, "error", 2, in_task ? 1 | LIPC_SOON_IF_LISTENED : 1);
  return 3;
}

/* accept() in a task -> the next connection's socket, or nil, msg, code */
static int server_accept(lua_State *L) {
  lipc__server *srv = lipc__server_check(L, 1, "server.accept");
  int err;
  lipc__task_check(L, "server.accept");
  if (!lipc__server_open(srv))
    return lipc__push_error(L, UV_EBADF, "server.accept: server closed");
  if (srv->imported && !srv->listening && (err = lipc__server_start(srv)) != 0)
    return lipc__push_error(L, err, "server.accept");
  if (srv->pending) {
    if ((err = accept_one(srv, L)) == 0)
      return 1;
    if (err != DROPPED)
      return lipc__push_error(L, err, "server.accept");
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
  int conn = strcmp(lipc__checkstring(L, 2, "server.on"), "connection") == 0;
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
    if (!lipc__server_open(srv)) {
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
  if (!lipc__server_open(srv) || !(srv->listening || srv->imported))
    return 0;
  return lipc__push_sockname(L, srv->h.uv, 0);
}

static int server_listening(lua_State *L) {
  lipc__server *srv = lipc__server_check(L, 1, "server.listening");
  lua_pushboolean(L, lipc__server_open(srv) && srv->listening);
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

int lipc__server_backlog(lua_State *L, int opts, const char *fname) {
  lua_Integer b = LIPC_DEFAULT_BACKLOG;
  if (lua_getfield(L, opts, "backlog") != LUA_TNIL) {
    if (!lua_isinteger(L, -1))
      lipc__argerror(L, opts, fname, "opts.backlog must be an integer");
    b = lua_tointeger(L, -1);
    if (b <= 0 || b >= 1 << 20)
      lipc__argerror(L, opts, fname, "backlog must be > 0");
  }
  lua_pop(L, 1);
  return (int)b;
}
