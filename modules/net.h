/*
 * net.h - what net.c shares with pipe.c: the one server implementation
 * (TCP and Unix socket servers differ only in how they bind), the socket
 * types, and deferred events. Private to the two modules.
 */
#ifndef LIPC_NET_H
#define LIPC_NET_H

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
  lipc__waitq acceptors; /* tasks in accept() */
  char *path;            /* Unix socket file we created, unlinked at close */
  dev_t dev;             /* ... only while it is still ours */
  ino_t ino;
} lipc__server;

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
/* The methods every server has (accept, close, address for TCP...). */
void lipc__server_class(lua_State *L, const char *tname, const luaL_Reg *extra);

/* Wraps a connected socket as a stream of the right type; pushes it. */
lipc__stream *lipc__socket_new(lua_State *L, uv_stream_t *h, int is_pipe);
/* The socket methods shared by TCP and Unix sockets (set_timeout...). */
extern const luaL_Reg lipc__socket_methods[];

/* Wraps a server or socket that came with a message (lipc__wrap_fn). */
void lipc__net_wrap(lua_State *L, uv_stream_t *h, int kind);

/* "0600", 384 or nil (-> def) as a file mode; raises on anything else. */
int lipc__check_mode(lua_State *L, int idx, int def, const char *fname);

#endif
