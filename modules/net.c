/*
 * net.c - the `net` module: TCP servers (listen on an address, resolved
 * on the thread pool when it is a name), connect (each resolved address
 * in turn, with a timeout) and the TCP socket's own methods. Servers and
 * what both socket types share are server.c's and socket.c's.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sockets.h"
#include "modules.h"

#define MAX_ADDRS 8

/* A literal IPv4/IPv6 address and port into ss; 0 or UV_EINVAL. */
static int parse_ip(const char *host, int port, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof(*ss));
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0)
    return 0;
  if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0)
    return 0;
  return UV_EINVAL;
}

/* The port at idx, which is (or is in) argument arg of fname. */
static int check_port(lua_State *L, int idx, int arg, const char *fname) {
  lua_Integer port;
  if (!lua_isinteger(L, idx))
    lipc__argerror(L, arg, fname, "port must be an integer, got %s",
                   luaL_typename(L, idx));
  port = lua_tointeger(L, idx);
  if (port < 0 || port > 65535)
    lipc__argerror(L, arg, fname, "port must be 0..65535");
  return (int)port;
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
  lua_Integer ms = lipc__optinteger(L, 3, 0, "socket.set_keepalive");
  if (ms < 0)
    lipc__argerror(L, 3, "socket.set_keepalive", "delay must be >= 0");
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

/* remote_address/remote_port/local_address/local_port: one field of the
 * address table (the upvalues say which). */
static int sock_field(lua_State *L) {
  lipc__stream *s = lipc__stream_check(L, 1, "socket.address");
  if (!lipc__push_sockname(L, lipc__stream_handle(s)->uv,
                           (int)lua_tointeger(L, lua_upvalueindex(1))))
    return 0;
  if (lua_istable(L, -1))
    lua_getfield(L, -1, lua_tostring(L, lua_upvalueindex(2)));
  return 1;
}

/* TCP's own, besides lipc__socket_methods. */
static const luaL_Reg tcp_socket_methods[] = {
    {"set_nodelay", sock_set_nodelay},
    {"set_keepalive", sock_set_keepalive},
    {"reset", sock_reset},
    {"remote", lipc__socket_remote},
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
  lipc__stream_class(L, LIPC_TCP_SOCKET, lipc__socket_methods); /* methods */
  luaL_setfuncs(L, tcp_socket_methods, 0);
  for (i = 0; fields[i][0]; i++) {
    lua_pushinteger(L, fields[i][1][0] - '0');
    lua_pushstring(L, fields[i][2]);
    lua_pushcclosure(L, sock_field, 2);
    lua_setfield(L, -2, fields[i][0]);
  }
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
  if (err == 0 && !lipc__server_open(srv))
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
  port = check_port(L, 2, 2, "net.server.listen");
  if (lua_type(L, 3) == LUA_TSTRING) {
    host = lua_tostring(L, 3);
    opts = lua_istable(L, 4) ? 4 : 0;
  } else if (lua_istable(L, 3)) {
    opts = 3;
  } else if (!lua_isnoneornil(L, 3)) {
    return lipc__argerror(L, 3, "net.server.listen",
                          "host must be a string, got %s", luaL_typename(L, 3));
  }
  if (opts) {
    srv->backlog = lipc__server_backlog(L, opts, "net.server.listen");
    if (lua_getfield(L, opts, "ipv6_only") != LUA_TNIL && lua_toboolean(L, -1))
      flags |= UV_TCP_IPV6ONLY;
    lua_getfield(L, opts, "reuse_port");
    reuse_port = lua_toboolean(L, -1);
    lua_pop(L, 2);
  }
  if (!lipc__server_open(srv))
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

/* A cancelled connect closes its socket: the attempt ends with it. */
static void connect_cancel(lipc_runtime *rt, lipc__wait *w) {
  connect_op *op = (connect_op *)((char *)w - offsetof(connect_op, wait));
  (void)rt; /* the task gets nothing more: in_task's wake finds none */
  lipc__handle_close(lipc__stream_handle(op->s));
}

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
    lipc__tcp_tune((uv_tcp_t *)sh->uv, op->no_delay, op->keep_alive);
    lipc__stream_connected(op->s, 0); /* the writes that waited */
    lipc__stream_read_start(op->s);   /* 'data' listeners wait */
    if (op->in_task) {
      /* 'connect' too, on the next turn, as Node: a listener added
       * right after the call (Node's shape) hears it in a task too */
      lua_pushvalue(L, top + 1);
      lipc__emit_soon(L, "connect", 0, 0);
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
    op->port = check_port(L, -1, 1, fname);
    if (lua_getfield(L, 1, "host") != LUA_TNIL) {
      if (lua_type(L, -1) != LUA_TSTRING)
        lipc__argerror(L, 1, fname, "host must be a string");
      *host = lua_tostring(L, -1);
    }
    if (lua_getfield(L, 1, "local_address") != LUA_TNIL) {
      const char *la = lua_tostring(L, -1);
      if (la == NULL || parse_ip(la, 0, &op->local) != 0)
        lipc__argerror(L, 1, fname, "local_address must be an IP address");
      op->has_local = 1;
    }
    if (lua_getfield(L, 1, "timeout") != LUA_TNIL) {
      *timeout = lua_tonumber(L, -1);
      if (!lua_isnumber(L, -1) || *timeout < 0)
        lipc__argerror(L, 1, fname, "timeout must be a number of ms >= 0");
    }
    if (lua_getfield(L, 1, "no_delay") != LUA_TNIL)
      op->no_delay = lua_toboolean(L, -1);
    if (lua_getfield(L, 1, "keep_alive") != LUA_TNIL)
      op->keep_alive = lua_toboolean(L, -1);
    if (lua_getfield(L, 1, "allow_half_open") != LUA_TNIL)
      op->half_open = lua_toboolean(L, -1);
    lua_getfield(L, 1, "cancel");
    lipc__cancel_check(L, -1, fname);
    /* host stays referenced from the table at 1 */
    lua_pop(L, 8);
  } else if (lua_type(L, 1) == LUA_TNUMBER) {
    op->port = check_port(L, 1, 1, fname);
    if (!lua_isnoneornil(L, 2) && !lua_isfunction(L, 2))
      *host = lipc__checkstring(L, 2, fname);
  } else {
    lipc__typeerror(L, 1, fname, "options table or port");
  }
}

/* The index of connect's connect listener (Node's last argument), or 0. */
static int connect_listener(lua_State *L) {
  int i = lua_istable(L, 1) ? 2 : lua_isfunction(L, 2) ? 2 : 3;
  if (lua_isnoneornil(L, i))
    return 0;
  lipc__checktype(L, i, LUA_TFUNCTION, "net.connect");
  return i;
}

/* net.connect{host=, port=[, local_address=, timeout=]}[, listener] or
 * net.connect(port[, host][, listener]). In a task: the connected socket
 * or nil, msg, code, and 'connect' on the next turn. Elsewhere, or with a
 * listener (Node's form): the socket at once; it emits 'connect' or
 * 'error'. */
static int l_connect(lua_State *L) {
  lipc_runtime *rt = lipc__rt(L);
  connect_op args, *op;
  const char *host;
  lua_Number timeout;
  uv_tcp_t *t;
  int err = 0, top, listener;
  memset(&args, 0, sizeof(args));
  args.no_delay = 1;
  connect_args(L, &args, &host, &timeout); /* may raise: nothing held */
  listener = connect_listener(L);
  op = malloc(sizeof(*op));
  t = malloc(sizeof(*t));
  if (op == NULL || t == NULL) {
    free(op);
    free(t);
    return luaL_error(L, "net.connect: out of memory");
  }
  memcpy(op, &args, sizeof(*op));
  op->wait.ref = LUA_NOREF;
  /* with a connect listener (Node's form) it never waits */
  op->in_task = L == rt->current && lua_isyieldable(L) && !listener;
  uv_tcp_init(rt->loop, t);
  snprintf(op->detail, sizeof(op->detail),
           strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, op->port);
  op->s = lipc__socket_new(L, (uv_stream_t *)t, 0);
  if (!op->in_task)
    lipc__stream_connecting(op->s);
  top = lua_gettop(L);
  if (listener)
    lipc__once_listener(L, top, "connect", listener);
  if (op->half_open)
    lipc__socket_half_open(L);
  lua_pushvalue(L, top);
  op->sock_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  uv_timer_init(rt->loop, &op->timer);
  lipc__handle_bare(rt, &op->h, (uv_handle_t *)&op->timer, "connect", op_free);
  if (timeout > 0) {
    lipc__timer_start(&op->timer, on_connect_timeout, (uint64_t)timeout, 0);
  }
  op->in_call = 1;
  if (lua_istable(L, 1) && lua_getfield(L, 1, "cancel") != LUA_TNIL &&
      lipc__cancel_bind(L, -1, top, "net.connect")) {
    err = UV_ECANCELED; /* opts.cancel was cancelled already */
  } else if (strcmp(host, "localhost") == 0) { /* RFC 6761: no resolver */
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
  return lipc__task_park_c(L, &op->wait, connect_cancel);
}

/* is_ip(s) -> 4, 6 or 0 */
static int l_is_ip(lua_State *L) {
  const char *s = lipc__checkstring(L, 1, "net.is_ip");
  struct sockaddr_in a4;
  struct sockaddr_in6 a6;
  lua_pushinteger(L, uv_ip4_addr(s, 0, &a4) == 0   ? 4
                     : uv_ip6_addr(s, 0, &a6) == 0 ? 6
                                                   : 0);
  return 1;
}

int luaopen_net(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"create_server", l_create_server},
      {"connect", l_connect},
      {"is_ip", l_is_ip},
      {NULL, NULL},
  };
  lipc__channel_open(L); /* streams, with `channel` */
  if (luaL_getmetatable(L, LIPC_TCP_SOCKET) == LUA_TNIL)
    tcp_socket_class(L);
  lua_pop(L, 1);
  lipc__sockets_open(L, 0, tcp_listen);
  luaL_newlib(L, fns);
  return 1;
}
