/*
 * json.c - Node's JSON lines: a lipc started by Node's fork (NODE_CHANNEL_FD)
 * talks to its parent in Node's format, and fork with serialization =
 * "json" talks to a Node child the same way. One JSON text and "\n" per
 * message, read by jsonread.c (strict JSON, a large line in steps); Node's
 * control messages ({"cmd": "NODE_..."}) are its own, except NODE_HANDLE,
 * which carries a handle and is answered with NODE_HANDLE_ACK or _NACK.
 */
#include <stdlib.h>
#include <string.h>

#include "channel_int.h"

/* Appends the C string s to b: 0, or -1 out of memory. */
static int put_text(lipc__buf *b, const char *s) {
  size_t n = strlen(s);
  if (lipc__buf_reserve(b, n) != 0)
    return -1;
  memcpy(b->data + b->len, s, n);
  b->len += n;
  return 0;
}

/* Queues one of Node's control lines ({"cmd": "NODE_HANDLE_ACK"}). They
 * count against the high-water mark: past it we read no more of the
 * peer's lines until it has read our replies, or a peer that sends
 * NODE_HANDLE lines without an fd and never reads would make us queue
 * NACKs without bound. */
static void json_control(lchannel *ch, const char *cmd) {
  size_t start = ch->out.len;
  if (put_text(&ch->out, "{\"cmd\":\"") || put_text(&ch->out, cmd) ||
      put_text(&ch->out, "\"}\n")) {
    ch->out.len = start; /* Node then waits for it, as for a slow peer */
    return;
  }
  lipc__chan_schedule(ch);
  if (out_queued(ch) >= ch->hwm) {
    ch->reply_wait = 1;
    lipc__chan_update_hold(ch);
  }
}

/* Node's handle message (the table on top of rt->L; popped):
 * {"cmd": "NODE_HANDLE", "type": "net.Server" | "net.Socket", "msg": v},
 * the fd sent with its bytes. v is delivered with the handle. Node holds
 * back all it sends until our ACK; a NACK (the fd did not come) makes it
 * send again. */
static void json_handle(lchannel *ch) {
  lua_State *L = ch->h.rt->L;
  uv_stream_t *ipc = lipc__stream_uv(ch->s);
  int server, kind, top, real;
  lua_getfield(L, -1, "type");
  server = lua_type(L, -1) == LUA_TSTRING &&
           strcmp(lua_tostring(L, -1), "net.Server") == 0;
  lua_pop(L, 1);
  kind = lipc__handoff_pending(ipc, server); /* -1: dropped, a UDP socket */
  if (kind == 0) {
    json_control(ch, "NODE_HANDLE_NACK");
    lua_pop(L, 1);
    return;
  }
  lua_getfield(L, -1, "msg");
  nil_as_null(L); /* a NODE_HANDLE line without its msg */
  lua_remove(L, -2);
  top = lua_gettop(L);
  if (kind > 0 && lipc__handoff_take(L, ipc, kind, &real) == UV_EPROTO) {
    lua_settop(L, top - 1); /* a lie about the fd: not to be wrapped */
    lipc__chan_protocol_error(ch, "ERR_IPC_BAD_HANDLE",
                              "channel: the peer sent %s as %s",
                              lipc__handoff_name(real),
                              lipc__handoff_name(kind));
    return;
  }
  if (kind < 0 || lua_gettop(L) != top + 1) {
    lua_settop(L, top);
    lua_pushnil(L);
  }
  json_control(ch, "NODE_HANDLE_ACK");
  lipc__chan_deliver(ch);
}

/* The value of a line, on top of rt->L (popped): Node's own messages
 * ({"cmd": "NODE_..."}) are not for us, but for the one that carries a
 * handle; any other is delivered. */
void lipc__chan_json_value(lchannel *ch) {
  lua_State *L = ch->h.rt->L;
  if (lua_istable(L, -1)) {
    int t = lua_getfield(L, -1, "cmd");
    const char *cmd = t == LUA_TSTRING ? lua_tostring(L, -1) : "";
    int handle = strcmp(cmd, "NODE_HANDLE") == 0;
    int internal = strncmp(cmd, "NODE_", 5) == 0;
    lua_pop(L, 1);
    if (handle) {
      json_handle(ch);
      return;
    }
    if (internal) {
      lua_pop(L, 1);
      return;
    }
  }
  lua_pushnil(L); /* no handle; the reader gives null as lipc.null */
  lipc__chan_deliver(ch);
}

/* A line's bad JSON: the channel closes with the reason. */
void lipc__chan_json_bad(lchannel *ch, const char *why) {
  lipc__chan_protocol_error(ch, "ERR_IPC_BAD_MESSAGE",
                            "channel: bad JSON message from peer: %s", why);
}

size_t lipc__chan_json_text(const char *p, size_t n) {
  return n > 0 && p[n - 1] == '\r' ? n - 1 : n;
}

int lipc__chan_json_line(lchannel *ch, const char *p, size_t n) {
  char why[128];
  ch->deliver_len = n + 1;
  n = lipc__chan_json_text(p, n);
  if (n == 0)
    return 0;
  if (lipc__json_decode(ch->h.rt->L, p, n, why, sizeof why) < 0) {
    lipc__chan_json_bad(ch, why);
    return -1;
  }
  lipc__chan_json_value(ch);
  return 0;
}

/* One JSON line into `out`; with a handle of the given kind, wrapped as
 * Node wraps it: {"cmd": "NODE_HANDLE", "type":
 * "net.Server" or "net.Socket", "msg": value}. On failure: -1, `out` as
 * it was, and the message (naming the key path) on top of L. */
int lipc__chan_json_encode(lchannel *ch, lua_State *L, int idx,
                           lipc__handoff_kind kind) {
  size_t start = ch->out.len;
  const char *type =
      kind == LIPC_HANDOFF_TCP_SERVER || kind == LIPC_HANDOFF_PIPE_SERVER
          ? "net.Server"
          : "net.Socket";
  if (kind && (put_text(&ch->out, "{\"cmd\":\"NODE_HANDLE\",\"type\":\"") ||
               put_text(&ch->out, type) || put_text(&ch->out, "\",\"msg\":")))
    goto nomem;
  if (lipc__codec_encode_json(L, idx, &ch->out) != 0) {
    ch->out.len = start;
    return -1;
  }
  if (put_text(&ch->out, kind ? "}\n" : "\n") == 0)
    return 0;
nomem:
  ch->out.len = start;
  lua_pushliteral(L, "not enough memory");
  return -1;
}
