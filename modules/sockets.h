/*
 * sockets.h - what the `net` module (net.c: TCP) and the `pipe` module
 * (pipe.c: Unix sockets) share, and nobody else:
 *
 *   server.c  the one server implementation: TCP and Unix socket servers
 *             differ only in how they bind (accept, backpressure, close)
 *   socket.c  what both socket types have: addresses, idle timeouts, and
 *             how a server or socket that came with a message is wrapped
 *
 * Sockets are streams (runtime/stream.c) of their own type, so they
 * inherit the whole stream API and `channel`.
 */
#ifndef LIPC_SOCKETS_H
#define LIPC_SOCKETS_H

#include <sys/types.h>

#include "internal.h"
#include "channel.h"

#define LIPC_DEFAULT_BACKLOG 511

typedef struct lipc__server {
  lipc__handle h;
  unsigned is_pipe : 1;
  unsigned listening : 1; /* uv_listen succeeded */
  unsigned binding : 1;   /* a listen is resolving its host name */
  unsigned imported : 1;  /* received over IPC: bound, listens on demand */
  unsigned pending : 1;   /* libuv holds an accepted fd nobody took yet */
  unsigned no_delay : 1;  /* options given to accepted sockets */
  unsigned keep_alive : 1;
  unsigned half_open : 1;
  int backlog;
  int nconn;             /* accepted sockets not yet closed */
  lipc__waitq acceptors; /* tasks in accept() */
  char *path;            /* Unix socket file we created, unlinked at close */
  dev_t dev;             /* ... only while it is still ours */
  ino_t ino;
} lipc__server;

/* server.c */
static inline int lipc__server_open(lipc__server *srv) {
  return srv->h.uv != NULL && !srv->h.closing;
}
/* Creates a server object of type tname around h (malloc'd, initialised;
 * NULL: a new one); reads create_server's ([opts,] on_connection) at arg
 * (0: none); pushes it. */
lipc__server *lipc__server_new(lua_State *L, uv_stream_t *h, const char *tname,
                               int is_pipe, int arg);
lipc__server *lipc__server_check(lua_State *L, int idx, const char *fname);
/* Starts accepting; 0 or a negative UV_E* code. */
int lipc__server_start(lipc__server *srv);
/* Ends a listen() call (server at idx of L): err == 0 returns the server
 * and emits 'listening' soon; otherwise returns nil, msg, code and, when
 * somebody listens for 'error' or the caller is not a task, emits it
 * soon; the server is then closed. Returns the number of results. */
int lipc__server_listened(lua_State *L, int idx, lipc__server *srv, int err,
                          const char *detail);
/* opts.backlog of listen(), for argument opts of fname; raises. */
int lipc__server_backlog(lua_State *L, int opts, const char *fname);
/* The methods every server has (accept, close, address for TCP...). */
void lipc__server_class(lua_State *L, const char *tname, const luaL_Reg *extra);

/* socket.c */
/* Wraps a connected socket as a stream of the right type; pushes it. */
lipc__stream *lipc__socket_new(lua_State *L, uv_stream_t *h, int is_pipe);
/* The socket methods shared by TCP and Unix sockets (set_timeout...). */
extern const luaL_Reg lipc__socket_methods[];
/* socket:remote() / remote_address(): the peer's address. */
int lipc__socket_remote(lua_State *L);
/* getsockname (peer 0) or getpeername (peer 1) of a handle: pushes a
 * table {address=, port=, family=} for TCP, a string for Unix sockets;
 * returns 0 (nothing pushed) when there is none (closed, not connected). */
int lipc__push_sockname(lua_State *L, uv_handle_t *uv, int peer);
/* Socket on top of L: keep writing after the peer's end. */
void lipc__socket_half_open(lua_State *L);
/* obj:once(ev, fn) (fn: Node's connect listener argument). */
void lipc__once_listener(lua_State *L, int obj, const char *ev, int fn);
/* Applies a server's or connect's options to a TCP socket. */
void lipc__tcp_tune(uv_tcp_t *t, int no_delay, int keep_alive);
/* For the TCP (is_pipe 0) or Unix socket family: makes the server type,
 * with listen as its own method, unless it exists, and tells the channel
 * how a server or socket of the family that came with a message is
 * wrapped. */
void lipc__sockets_open(lua_State *L, int is_pipe, lua_CFunction listen);

#endif
