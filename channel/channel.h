/*
 * channel.h - the message channel layer, as the modules see it.
 *
 * A channel carries Lua values over any stream (the files of channel/).
 * Every module opens the layer (lipc__channel_open) before it makes
 * stream types, so that every stream has `channel`; fork.c opens the
 * channel a parent handed down (LIPC_CHANNEL_FD / NODE_CHANNEL_FD). The
 * net and pipe modules tell the layer how to wrap the handles that travel
 * with messages (lipc__handoff_register).
 */
#ifndef LIPC_CHANNEL_H
#define LIPC_CHANNEL_H

#include "internal.h"

/* Makes the stream type (if need be) and the "lipc.channel" type, and
 * gives every stream `channel`; once per state. Pushes nothing. */
void lipc__channel_open(lua_State *L);

/* Wraps fd (a socketpair end made by a parent) as an IPC pipe stream and
 * a channel over it; json selects Node's JSON lines; auto_ref makes the
 * channel keep the loop alive only while somebody waits for messages.
 * Pushes the channel, or returns 0 and pushes nothing on failure. */
int lipc__channel_from_fd(lua_State *L, int fd, int json, int auto_ref);

/* The channel at idx refuses handles at send: its bytes leave the host
 * (a worker reached through a launcher). */
void lipc__channel_no_handles(lua_State *L, int idx);

/* Feeds n bytes to the channel at idx as if read from its stream (for the
 * fuzz harnesses). Returns how many were taken before the channel went. */
size_t lipc__channel_feed(lua_State *L, int idx, const char *p, size_t n);

/* ---- handles that travel with messages (handoff.c) -------------------- */

/* The Lua types whose handles a message can carry. */
#define LIPC_TCP_SERVER "lipc.net.server"
#define LIPC_TCP_SOCKET "lipc.net.socket"
#define LIPC_PIPE_SERVER "lipc.pipe.server"
#define LIPC_PIPE_SOCKET "lipc.pipe.socket"

/* Their kinds, as the marker byte of a native frame says them
 * (docs/wire-format.md); 0 is no handle. */
typedef enum lipc__handoff_kind {
  LIPC_HANDOFF_NONE = 0,
  LIPC_HANDOFF_TCP_SERVER = 1,
  LIPC_HANDOFF_TCP_SOCKET = 2,
  LIPC_HANDOFF_PIPE_SERVER = 3,
  LIPC_HANDOFF_PIPE_SOCKET = 4
} lipc__handoff_kind;
#define LIPC_HANDOFF_KINDS 5

/* How the module that owns a kind wraps a handle received over an IPC
 * pipe (malloc'd, initialised with uv_tcp_init/uv_pipe_init and
 * uv_accept'ed by the channel) as its Lua object; pushes it. Kept per
 * runtime (lipc_runtime.wrap); the channel loads the module by name when
 * a handle of a kind nobody registered yet arrives. */
void lipc__handoff_register(lua_State *L, lipc__handoff_kind kind,
                            lipc__wrap_fn wrap);

#endif
