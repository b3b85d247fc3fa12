/*
 * pipe.c - the `pipe` module: Unix domain socket servers and clients,
 * named pipes (FIFOs) and anonymous pipes.
 *
 * Servers are server.c's servers bound to a path. We bind and connect Unix
 * sockets ourselves instead of through uv_pipe_bind/uv_pipe_connect:
 * libuv 1.44 silently truncates a path longer than sun_path and cannot
 * name Linux abstract sockets ("\0name"), and we want the socket file's
 * mode set before anybody can connect (bind, chmod, then listen).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "sockets.h"
#include "modules.h"

#define DEFAULT_MODE 0600
#define FIFO_RETRY_MAX 32 /* ms between tries to open a FIFO's write end */

/* "0600", 384 or nil (-> def) as a file mode; raises on anything else. */
static int check_mode(lua_State *L, int idx, int arg, int def,
                      const char *fname) {
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
    return lipc__argerror(L, arg, fname,
                          "mode must be an octal string (\"0600\") or an "
                          "integer");
  return (int)m;
}

/* ---- addresses ----------------------------------------------------------- */

/* Fills sun from path ("\0name" is abstract); 0, or UV_ENAMETOOLONG
 * rather than a truncated, different, path. */
static int make_sun(const char *path, size_t len, struct sockaddr_un *sun,
                    socklen_t *salen) {
  memset(sun, 0, sizeof(*sun));
  sun->sun_family = AF_UNIX;
  if (len == 0)
    return UV_EINVAL;
  if (path[0] == '\0') { /* abstract: no terminator */
    if (len > sizeof(sun->sun_path))
      return UV_ENAMETOOLONG;
    memcpy(sun->sun_path, path, len);
    *salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    return 0;
  }
  if (len >= sizeof(sun->sun_path) || strlen(path) != len)
    return len >= sizeof(sun->sun_path) ? UV_ENAMETOOLONG : UV_EINVAL;
  memcpy(sun->sun_path, path, len + 1);
  *salen = (socklen_t)sizeof(*sun);
  return 0;
}

/* The path as error messages show it: "@name" for abstract names. */
static const char *show_path(lua_State *L, const char *path, size_t len) {
  if (len > 0 && path[0] == '\0') {
    lua_pushliteral(L, "@");
    lua_pushlstring(L, path + 1, len - 1);
    lua_concat(L, 2);
  } else if (len >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
    lua_pushlstring(L, path, 60);
    lua_pushfstring(L, "%s...: socket path of %d bytes, the limit is %d",
                    lua_tostring(L, -1), (int)len,
                    (int)sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
    lua_remove(L, -2);
  } else {
    lua_pushlstring(L, path, len);
  }
  return lua_tostring(L, -1);
}

static int check_path(lua_State *L, int idx, const char *fname, size_t *len) {
  if (lua_type(L, idx) != LUA_TSTRING)
    return lipc__argerror(L, idx, fname, "path must be a string, got %s",
                          luaL_typename(L, idx));
  lua_tolstring(L, idx, len);
  return 0;
}

static int unix_socket(void) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  return fd < 0 ? -errno : fd;
}

/* A socket file nobody answers on is a dead server's leftover; one that
 * answers (or is not a socket at all) is in use. */
static int is_stale(const char *path, const struct sockaddr_un *sun,
                    socklen_t salen) {
  struct stat st;
  int fd, rc, e;
  if (lstat(path, &st) != 0 || !S_ISSOCK(st.st_mode))
    return 0;
  if ((fd = unix_socket()) < 0)
    return 0;
  rc = connect(fd, (const struct sockaddr *)sun, salen);
  e = errno;
  close(fd);
  return rc != 0 && e == ECONNREFUSED;
}

/* ---- servers ------------------------------------------------------------- */

static int bind_unix(lipc__server *srv, const char *path, size_t len,
                     int mode) {
  struct sockaddr_un sun;
  socklen_t salen;
  struct stat st;
  int fd, err, abstract = path[0] == '\0';
  if ((err = make_sun(path, len, &sun, &salen)) != 0)
    return err;
  if ((fd = unix_socket()) < 0)
    return fd;
  err = bind(fd, (struct sockaddr *)&sun, salen) ? -errno : 0;
  if (err == UV_EADDRINUSE && !abstract && is_stale(path, &sun, salen)) {
    unlink(path);
    err = bind(fd, (struct sockaddr *)&sun, salen) ? -errno : 0;
  }
  if (err == 0 && !abstract) {
    /* Before listen(): until then nobody can connect, so the file is
     * never reachable with looser permissions than asked. */
    if (chmod(path, (mode_t)mode) != 0 || lstat(path, &st) != 0) {
      err = -errno;
      unlink(path);
    } else {
      srv->path = strdup(path);
      srv->dev = st.st_dev;
      srv->ino = st.st_ino;
    }
  }
  if (err == 0)
    err = uv_pipe_open((uv_pipe_t *)srv->h.uv, fd);
  if (err) {
    close(fd);
    return err;
  }
  err = lipc__server_start(srv); /* the fd is libuv's now */
  return err;
}

/* listen(path[, opts]) -> self | nil, msg, code; opts.mode (default
 * "0600": owner only), opts.backlog. */
static int pipe_listen(lua_State *L) {
  lipc__server *srv =
      lipc__checkobj(L, 1, LIPC_PIPE_SERVER, "pipe.server.listen");
  const char *path, *shown;
  size_t len;
  int mode = DEFAULT_MODE, err;
  if (srv->imported && lua_isnoneornil(L, 2))
    return lipc__server_listened(L, 1, srv, lipc__server_start(srv), "listen");
  check_path(L, 2, "pipe.server.listen", &len);
  path = lua_tostring(L, 2);
  if (!lua_isnoneornil(L, 3)) {
    lipc__checktype(L, 3, LUA_TTABLE, "pipe.server.listen");
    lua_getfield(L, 3, "mode");
    mode = check_mode(L, -1, 3, DEFAULT_MODE, "pipe.server.listen");
    lua_pop(L, 1);
    srv->backlog = lipc__server_backlog(L, 3, "pipe.server.listen");
  }
  if (srv->h.uv == NULL || srv->h.closing)
    return lipc__push_error(L, UV_EBADF, "pipe.server.listen: server closed");
  if (srv->listening)
    return luaL_error(L, "pipe.server.listen: already listening");
  err = bind_unix(srv, path, len, mode);
  shown = show_path(L, path, len);
  return lipc__server_listened(L, 1, srv, err, shown);
}

/* pipe.create_server([opts,] [on_connection]) -> server */
static int l_create_server(lua_State *L) {
  lipc__server_new(L, NULL, LIPC_PIPE_SERVER, 1, 1);
  return 1;
}

/* ---- clients ------------------------------------------------------------- */

/* Wraps fd (or nothing yet, fd < 0) as a pipe stream; pushes it. */
static lipc__stream *new_pipe_stream(lua_State *L, int fd, const char *kind,
                                     int *err) {
  lipc_runtime *rt = lipc__rt(L);
  uv_pipe_t *p = malloc(sizeof(*p));
  *err = 0;
  if (p == NULL) {
    if (fd >= 0)
      close(fd);
    luaL_error(L, "pipe: out of memory");
    return NULL;
  }
  uv_pipe_init(rt->loop, p, 0);
  if (fd >= 0 && (*err = uv_pipe_open(p, fd)) != 0)
    close(fd);
  return lipc__stream_new(L, (uv_stream_t *)p, LIPC_PIPE_SOCKET, kind);
}

/* pipe.connect(path[, listener]) -> in a task the connected socket or
 * nil, msg, code, and 'connect' on the next turn; elsewhere, or with a
 * listener (Node's form), the socket at once, which emits 'connect' or
 * 'error'. A Unix socket connects (or fails) at once, so this never waits
 * for long. */
static int l_connect(lua_State *L) {
  lipc_runtime *rt = lipc__rt(L);
  struct sockaddr_un sun;
  socklen_t salen;
  const char *path, *shown;
  size_t len;
  int fd, err, oerr, listener = !lua_isnoneornil(L, 2);
  int in_task = L == rt->current && lua_isyieldable(L) && !listener;
  if (listener)
    lipc__checktype(L, 2, LUA_TFUNCTION, "pipe.connect");
  check_path(L, 1, "pipe.connect", &len);
  path = lua_tostring(L, 1);
  shown = show_path(L, path, len);
  err = make_sun(path, len, &sun, &salen);
  fd = err ? err : unix_socket();
  if (fd >= 0) {
    do
      err = connect(fd, (struct sockaddr *)&sun, salen) ? -errno : 0;
    while (err == UV_EINTR);
    if (err) {
      close(fd);
      fd = -1;
    }
  } else {
    err = fd;
  }
  if (rt->trace & LIPC_TRACE_NET) {
    if (err)
      lipc__trace(rt, "net", "connect pipe %s: %s", shown, lipc__err_name(err));
    else
      lipc__trace(rt, "net", "connect pipe fd %d -> %s", fd, shown);
  }
  if (err && in_task)
    return lipc__push_error(L, err, shown);
  new_pipe_stream(L, err ? -1 : fd, "pipe", &oerr); /* sock */
  if (!err)
    err = oerr;
  if (in_task) {
    if (err) {
      lipc__handle_close(lipc__stream_handle(lipc__stream_test(L, -1)));
      return lipc__push_error(L, err, shown);
    }
    lua_pushvalue(L, -1); /* as Node: a listener added after hears it */
    lipc__emit_soon(L, "connect", 0, 0);
    return 1;
  }
  if (listener)
    lipc__once_listener(L, lua_gettop(L), "connect", 2);
  lua_pushvalue(L, -1);
  if (err) {
    lipc__stream_set_error(lipc__stream_test(L, -1), err, shown);
    lipc__push_errpair(L, err, shown);
    lipc__emit_soon(L, "error", 2, 1);
  } else {
    lipc__emit_soon(L, "connect", 0, 0);
  }
  return 1;
}

/* ---- FIFOs --------------------------------------------------------------- */

/* pipe.mkfifo(path[, mode="0600"]) -> true | nil, msg, code. The mode is
 * exact (the umask does not apply), as with mkfifo -m. */
static int l_mkfifo(lua_State *L) {
  const char *path = lipc__checkstring(L, 1, "pipe.mkfifo");
  int mode = check_mode(L, 2, 2, DEFAULT_MODE, "pipe.mkfifo");
  if (mkfifo(path, (mode_t)mode) != 0 || chmod(path, (mode_t)mode) != 0)
    return lipc__push_error(L, -errno, path);
  lua_pushboolean(L, 1);
  return 1;
}

/* Opening a FIFO for writing fails (ENXIO, non-blocking) until a reader
 * has it open; a blocking open would stall the loop or a thread-pool
 * thread forever, so we try again on a timer, backing off to 32 ms. */
typedef struct {
  lipc__handle h; /* bare handle of the retry timer */
  uv_timer_t timer;
  lipc__stream *s;
  int sock_ref;
  unsigned delay;
  lipc__wait wait;
  char path[];
} fifo_op;

static void fifo_free(lipc__handle *h) {
  fifo_op *op = (fifo_op *)h;
  lipc__wait_cancel(h->rt, &op->wait);
  luaL_unref(h->rt->L, LUA_REGISTRYINDEX, op->sock_ref);
  free(op);
}

static int open_fifo(const char *path, int flags) {
  struct stat st;
  int fd = open(path, flags | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  if (fstat(fd, &st) != 0 || !S_ISFIFO(st.st_mode)) {
    close(fd);
    return UV_EINVAL;
  }
  return fd;
}

/* A cancelled open gives up: the retry timer and the stream close. */
static void fifo_cancel(lipc_runtime *rt, lipc__wait *w) {
  fifo_op *op = (fifo_op *)((char *)w - offsetof(fifo_op, wait));
  (void)rt;
  lipc__handle_close(lipc__stream_handle(op->s));
  lipc__handle_close(&op->h);
}

static void on_fifo_retry(uv_timer_t *t) {
  fifo_op *op = t->data;
  lipc_runtime *rt = op->h.rt;
  lua_State *L = rt->L;
  lipc__handle *sh = lipc__stream_handle(op->s);
  int fd, err, top = lua_gettop(L);
  if (sh->uv == NULL || sh->closing) { /* closed while waiting */
    if (lipc__waiting(&op->wait)) {
      lua_pushnil(L);
      lipc__push_errpair(L, UV_ECANCELED, op->path);
      lipc__wake(rt, &op->wait, 3);
    }
    lipc__handle_close(&op->h);
    return;
  }
  fd = open_fifo(op->path, O_WRONLY);
  if (fd == UV_ENXIO) {
    op->delay = op->delay * 2 > FIFO_RETRY_MAX ? FIFO_RETRY_MAX : op->delay * 2;
    lipc__timer_start(t, on_fifo_retry, op->delay, 0);
    return;
  }
  err = fd < 0 ? fd : uv_pipe_open((uv_pipe_t *)sh->uv, fd);
  if (err && fd >= 0)
    close(fd);
  lua_rawgeti(L, LUA_REGISTRYINDEX, op->sock_ref); /* sock */
  if (lipc__waiting(&op->wait)) {
    if (err) {
      lua_pushnil(L);
      lipc__push_errpair(L, err, op->path);
      lipc__wake(rt, &op->wait, 3);
      lipc__handle_close(sh);
    } else {
      lua_pushvalue(L, top + 1); /* 'open' too, on the next turn */
      lipc__emit_soon(L, "open", 0, 0);
      lua_pushvalue(L, top + 1);
      lipc__wake(rt, &op->wait, 1);
    }
  } else if (err) {
    lipc__push_errpair(L, err, op->path);
    lipc__emit(rt, top + 1, "error", 2);
    lipc__stream_connected(op->s, err); /* the writes that waited fail */
    lipc__handle_close(sh);
  } else {
    lipc__stream_connected(op->s, 0); /* the writes that waited go */
    lipc__emit(rt, top + 1, "open", 0);
  }
  lua_settop(L, top);
  lipc__handle_close(&op->h);
}

/* pipe.open(path, "r"|"w") -> stream. "r" opens at once; its 'data' and
 * 'end' follow the writers. "w" waits, without blocking the loop, until
 * a reader has the FIFO open: in a task open() returns then (or nil, msg,
 * code); elsewhere it returns the stream at once and it emits 'open'. */
static int l_open(lua_State *L) {
  lipc_runtime *rt = lipc__rt(L);
  const char *path = lipc__checkstring(L, 1, "pipe.open");
  const char *how = lipc__checkstring(L, 2, "pipe.open");
  int in_task = L == rt->current && lua_isyieldable(L), fd, err;
  size_t plen = strlen(path);
  fifo_op *op;
  if (strcmp(how, "r") != 0 && strcmp(how, "w") != 0)
    return lipc__argerror(L, 2, "pipe.open", "mode must be \"r\" or \"w\"");
  fd = open_fifo(path, how[0] == 'r' ? O_RDONLY : O_WRONLY);
  if (fd < 0 && fd != UV_ENXIO) {
    if (fd == UV_EINVAL)
      return lipc__push_error(L, fd,
                              lua_pushfstring(L, "%s: not a FIFO", path));
    return lipc__push_error(L, fd, path);
  }
  if (fd >= 0) {
    new_pipe_stream(L, fd, "fifo", &err);
    if (err) {
      lipc__handle_close(lipc__stream_handle(lipc__stream_test(L, -1)));
      return lipc__push_error(L, err, path);
    }
    lua_pushvalue(L, -1); /* in a task too, as Node's 'open' */
    lipc__emit_soon(L, "open", 0, 0);
    return 1;
  }
  op = calloc(1, sizeof(*op) + plen + 1);
  if (op == NULL)
    return luaL_error(L, "pipe.open: out of memory");
  memcpy(op->path, path, plen + 1);
  op->s = new_pipe_stream(L, -1, "fifo", &err);
  lua_pushvalue(L, -1);
  op->sock_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  op->wait.ref = LUA_NOREF;
  op->delay = 1;
  uv_timer_init(rt->loop, &op->timer);
  lipc__handle_bare(rt, &op->h, (uv_handle_t *)&op->timer, "fifo open",
                    fifo_free);
  lipc__timer_start(&op->timer, on_fifo_retry, op->delay, 0);
  if (in_task)
    return lipc__task_park_c(L, &op->wait, fifo_cancel);
  lipc__stream_connecting(op->s); /* writes wait for a reader */
  return 1;
}

/* ---- anonymous pipes ----------------------------------------------------- */

/* pipe.new() -> reader, writer: a real pipe(2), close-on-exec, as spawn
 * stdio or between tasks. */
static int l_new(lua_State *L) {
  int fds[2], err;
  if (pipe2(fds, O_CLOEXEC) != 0)
    return lipc__push_error(L, -errno, "pipe.new");
  new_pipe_stream(L, fds[0], "pipe", &err);
  if (err) {
    close(fds[1]);
    lipc__handle_close(lipc__stream_handle(lipc__stream_test(L, -1)));
    return lipc__push_error(L, err, "pipe.new");
  }
  new_pipe_stream(L, fds[1], "pipe", &err);
  if (err) {
    lipc__handle_close(lipc__stream_handle(lipc__stream_test(L, -1)));
    lipc__handle_close(lipc__stream_handle(lipc__stream_test(L, -2)));
    return lipc__push_error(L, err, "pipe.new");
  }
  return 2;
}

int luaopen_pipe(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"create_server", l_create_server},
      {"connect", l_connect},
      {"mkfifo", l_mkfifo},
      {"open", l_open},
      {"new", l_new},
      {NULL, NULL},
  };
  lipc__channel_open(L); /* streams, with `channel` */
  if (luaL_getmetatable(L, LIPC_PIPE_SOCKET) == LUA_TNIL) {
    lipc__stream_class(L, LIPC_PIPE_SOCKET, lipc__socket_methods);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  lipc__sockets_open(L, 1, pipe_listen);
  luaL_newlib(L, fns);
  return 1;
}
