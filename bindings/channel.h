/*
 * channel.h - the message channel over a stream (bindings/channel.c).
 *
 * Every module opens the channel layer (lipc__channel_open) before it
 * makes stream types, so that every stream has `channel`; fork.c opens
 * the channel a parent handed down (LIPC_CHANNEL_FD / NODE_CHANNEL_FD).
 */
#ifndef LIPC_CHANNEL_H
#define LIPC_CHANNEL_H

#include <lua.h>

/* Makes the stream type (if need be) and the "lipc.channel" type, and
 * gives every stream `channel`; once per state. Pushes nothing. */
void lipc__channel_open(lua_State *L);

/* Wraps fd (a socketpair end made by a parent) as an IPC pipe stream and
 * a channel over it; json selects Node's JSON lines; auto_ref makes the
 * channel keep the loop alive only while somebody waits for messages.
 * Pushes the channel, or returns 0 and pushes nothing on failure. */
int lipc__channel_from_fd(lua_State *L, int fd, int json, int auto_ref);

/* Feeds n bytes to the channel at idx as if read from its stream (for the
 * fuzz harnesses). Returns how many were taken before the channel went. */
size_t lipc__channel_feed(lua_State *L, int idx, const char *p, size_t n);

#endif
