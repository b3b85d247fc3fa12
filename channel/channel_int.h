/*
 * channel_int.h - what the files of the message channel share, and
 * nobody else (the other layers use channel.h).
 *
 *   channel.c  the object: options, lifetime, the end, stats, ref/unref
 *   receive.c  frames in: assembly, the messages nobody took yet,
 *              delivery, receive(), faults
 *   send.c     frames out: batches, big strings by reference, send(),
 *              drain(), disconnect()
 *   json.c     Node's JSON lines, both ways
 *   handoff.c  handles that travel with a message (SCM_RIGHTS)
 *   codec.c    Lua values <-> MessagePack (codec.h)
 *
 * Native frame (docs/wire-format.md): a 4-byte big-endian length of what
 * follows, then optionally the handle marker (fixext1 0xd4, type 1, one
 * byte of kind) when a handle travels with the frame as SCM_RIGHTS, then
 * one MessagePack value. JSON mode: one JSON text and "\n" per message.
 *
 * Hot helpers are static inline here: every message passes through them
 * on both sides.
 */
#ifndef LIPC_CHANNEL_INT_H
#define LIPC_CHANNEL_INT_H

#include "internal.h"
#include "codec.h"
#include "channel.h"

#define CHANNEL "lipc.channel"
#define MARKER_LEN 3 /* 0xd4 0x01 kind */
/* A control frame's payload starts with 0xd4 CONTROL_EXT kind (fixext1 of
 * ext type 2): hello and bye of a worker reached through a launcher
 * (docs/wire-format.md section 8). It is not a message: the channel
 * emits 'control' (kind, value) on its target instead. */
#define CONTROL_EXT 0x02

typedef struct lchannel lchannel;
typedef struct lipc__chan_job lipc__chan_job; /* receive.c */

/* One write in flight: the bytes, and the callbacks of its frames. */
typedef struct wnode {
  lipc__buf buf;
  lchannel *ch;     /* NULL once the channel is gone */
  lipc_runtime *rt; /* for what outlives the channel */
  int cbs;          /* registry ref: array of send callbacks */
  int handle_ref;   /* keeps a sent handle's object alive */
  int close_handle; /* close that object once written (a sent socket) */
  int strs_ref;     /* keeps the big strings written by reference */
  size_t str_bytes; /* and their size */
  struct wnode *next, *prev;
} wnode;

/* A big string of `out` sent by reference: it goes before out byte `at`. */
typedef struct strseg {
  size_t at;
  const char *p;
  size_t n;
} strseg;

struct lchannel {
  lipc__handle h;  /* h.uv: the idle handle that flushes `out` */
  lipc__stream *s; /* NULL once detached */
  int stream_ref;  /* registry refs, LUA_NOREF when unused */
  int owner_ref;   /* emit events here (fork's child) or on self */
  int queue_ref;   /* decoded messages nobody took yet: msg, handle */
  int out_cbs;     /* callbacks of frames in `out` */
  int err_ref;     /* a fault for receive() once the queue is empty */
  const char *err_code;
  lua_Integer qhead, qtail;
  /* Frame assembly. [dpos, ipos) holds nlazy whole frames nobody took yet,
   * still encoded; [ipos, in.len) is unread. */
  lipc__buf in;
  size_t dpos, ipos, nlazy;
  lipc__chan_job *job; /* the frame at ipos, being built in steps */
  lipc__buf out;       /* frames encoded since the last flush */
  /* Big strings of those frames, written from the Lua strings themselves
   * (kept alive in the table at strs_ref) instead of being copied. */
  strseg *segs;
  int nsegs, segcap, strs_ref;
  size_t str_bytes;
  size_t max;           /* max_message: the largest frame body */
  uint64_t max_decoded; /* what one frame's Lua objects may take */
  size_t hwm;
  size_t rhwm;        /* receive_high_water: untaken bytes before reads stop */
  size_t qbytes;      /* bytes of the frames whose values are in the queue */
  size_t deliver_len; /* bytes of the frame being delivered */
  wnode *spare;       /* a buffer to swap in at the next flush */
  wnode *writes;      /* writes in flight */
  unsigned nregular;  /* of which batch writes (not handle frames) */
  uint64_t msgs_out, msgs_in, bytes_out, bytes_in, hwm_hits; /* stats() */
  lipc__waitq receivers, drainers; /* tasks in receive() and drain() */
  unsigned lgen;                   /* rt->listener_gen when lcount was taken */
  int lcount; /* 'message' listeners of the target, cached */
  unsigned lvalid : 1;
  unsigned json : 1;
  unsigned connected : 1;
  unsigned gone : 1;        /* 'disconnect' was emitted */
  unsigned auto_ref : 1;    /* ref'd only while somebody waits (children) */
  unsigned close_after : 1; /* disconnect(): close once writes are done */
  unsigned need_drain : 1;
  unsigned local_end : 1;      /* we disconnected, not the peer */
  unsigned exit_on_gone : 1;   /* fork.parent: no orphans */
  unsigned own_disconnect : 1; /* 'disconnect' on self, not the owner */
  unsigned held : 1;           /* reads held off (lipc__chan_update_hold) */
  unsigned reply_wait : 1;     /* JSON: our replies to the peer are over
                                  the high-water mark: read no more */
  unsigned no_handles : 1;     /* over a launcher: fds cannot cross */
  unsigned in_read : 1;        /* its read callback runs (receive.c) */
  unsigned read_wrote : 1;     /* ... and its first frame was sent
                                  (send.c's write_now) */
};

/* channel.c */
/* The fd of the channel's stream, for trace lines (-1 when detached). */
int lipc__chan_fd(lchannel *ch);
/* Sets target.connected (a plain field: __newindex stores it). */
void lipc__chan_set_connected(lchannel *ch, int on);
/* Pushes on L where ch's events go: its owner (fork's child) or itself,
 * also once it is closed; idx is ch's userdata on L. */
void lipc__chan_push_target(lchannel *ch, lua_State *L, int idx);
/* The channel is over (peer went, error, disconnect or close). */
void lipc__chan_gone(lchannel *ch);

/* receive.c */
/* Makes the stream's reads the channel's frames; 0 or a UV_E* error. */
int lipc__chan_read_start(lchannel *ch);
/* Ends the building in steps of a large frame, if one is going on. */
void lipc__chan_job_drop(lchannel *ch);
/* Tasks waiting in receive() get the messages nobody took, one each. */
void lipc__chan_wake_receivers(lchannel *ch);
/* Hands msg, handle (on top of rt->L; popped) to whoever takes them. */
void lipc__chan_deliver(lchannel *ch);
/* The peer broke the protocol: the message on top of rt->L (popped). */
void lipc__chan_fault(lchannel *ch, const char *code, int taken);
void lipc__chan_protocol_error(lchannel *ch, const char *code, const char *fmt,
                               ...);
int lipc__chan_receive(lua_State *L); /* the receive method */
/* Holds the stream's reads off while the peer is ahead of us (more than
 * receive_high_water bytes of its messages not taken yet, or our JSON
 * replies to it over the high-water mark), and lets them go again once it
 * is not; called whenever that may have changed. */
void lipc__chan_update_hold(lchannel *ch);
/* Adds receive, on, off, pending, deliver_queued to the methods table on
 * top. */
void lipc__chan_receive_methods(lua_State *L);

/* send.c */
/* Hands the buffered frames to the stream (force: even while another
 * batch is in flight). */
void lipc__chan_flush(lchannel *ch, int force);
/* Flushes at the end of this loop turn. */
void lipc__chan_schedule(lchannel *ch);
int lipc__chan_send(lua_State *L); /* the send method */
/* Adds send, drain, disconnect to the table on top. */
void lipc__chan_send_methods(lua_State *L);

/* json.c: Node's JSON lines */
/* One line (without its "\n") from the peer; 0, or -1 after a fault. */
int lipc__chan_json_line(lchannel *ch, const char *p, size_t n);
/* One message (with a handle of the given kind, or 0) as a line in `out`;
 * 0, or -1 with the reason on top of L and `out` as it was. */
int lipc__chan_json_encode(lchannel *ch, lua_State *L, int idx,
                           lipc__handoff_kind kind);
/* A line's text: without the "\r" before its "\n", if any. */
size_t lipc__chan_json_text(const char *p, size_t n);
/* The value a line (or a large line's job) decoded, on top of rt->L
 * (popped): delivered, or Node's control message acted on. */
void lipc__chan_json_value(lchannel *ch);
/* Closes the channel for a line that is not JSON (why: the reason). */
void lipc__chan_json_bad(lchannel *ch, const char *why);

/* handoff.c: handles that travel with messages */
/* Takes the handle that came with a frame of this kind from the IPC pipe
 * and pushes its object (a net or pipe server or socket); 0 or an error
 * (then nothing is pushed and the fd is closed): UV_EINVAL when no fd
 * waits, UV_ENOTSOCK for an fd that is no TCP or Unix stream socket (or
 * an unknown kind), UV_EPROTO when it is another kind than claimed, which
 * *real then says. */
int lipc__handoff_take(lua_State *L, uv_stream_t *ipc, lipc__handoff_kind kind,
                       int *real);
/* Takes the oldest fd waiting in the IPC pipe, if any, and closes it. */
void lipc__handoff_drop(uv_stream_t *ipc);
/* "a TCP server"... for messages. */
const char *lipc__handoff_name(int kind);
/* The kind of the handle waiting in the IPC pipe for a Node message
 * ("net.Server" when server is set): 0 when none waits; -1 when it is of
 * a type lipc does not wrap (a UDP socket), which is then taken and
 * closed, so that the next one is not taken in its place. */
int lipc__handoff_pending(uv_stream_t *ipc, int server);
/* The object at idx as a handle to send: its uv stream and kind, or NULL
 * when it is not a net or pipe server or socket, or is closed. */
uv_stream_t *lipc__handoff_export(lua_State *L, int idx,
                                  lipc__handoff_kind *kind);

static inline lchannel *check_channel(lua_State *L, int idx,
                                      const char *fname) {
  return lipc__checkobj(L, idx, CHANNEL, fname);
}

/* Pushes the object events go to (the owner, else the channel). */
static inline int push_target(lchannel *ch) {
  lua_State *L = ch->h.rt->L;
  if (ch->owner_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, ch->owner_ref);
    return 1;
  }
  return lipc__handle_push(&ch->h);
}

/* Drops the registry reference *ref, if any. */
static inline void chan_unref(lua_State *L, int *ref) {
  if (*ref != LUA_NOREF)
    luaL_unref(L, LUA_REGISTRYINDEX, *ref);
  *ref = LUA_NOREF;
}

/* Emits ev with the nargs values on top of rt->L on the target; pops. */
static inline void chan_emit(lchannel *ch, const char *ev, int nargs) {
  lipc_runtime *rt = ch->h.rt;
  lua_State *L = rt->L;
  if (rt->exiting) {
    lua_pop(L, nargs);
    return;
  }
  if (!push_target(ch)) {
    lua_pop(L, nargs + 1);
    return;
  }
  lua_insert(L, -(nargs + 1));
  lipc__emit(rt, -(nargs + 1), ev, nargs);
  lua_pop(L, 1);
}

/* Asked for every message: the count is cached until a listener is
 * added or removed anywhere (rt->listener_gen moves). */
static inline int has_message_listeners(lchannel *ch) {
  lipc_runtime *rt = ch->h.rt;
  lua_State *L = rt->L;
  int n;
  if (ch->lvalid && ch->lgen == rt->listener_gen)
    return ch->lcount;
  if (!push_target(ch)) {
    lua_pop(L, 1);
    return 0;
  }
  n = lipc__has_listeners(L, -1, "message");
  lua_pop(L, 1);
  ch->lgen = rt->listener_gen;
  ch->lcount = n;
  ch->lvalid = 1;
  return n;
}

/* A fork child's channel keeps the process alive only while somebody
 * waits for messages (as Node's process.channel): a child that just sends
 * and ends, ends. */
static inline void update_ref(lchannel *ch) {
  uv_stream_t *uv;
  if (!ch->auto_ref || ch->s == NULL || (uv = lipc__stream_uv(ch->s)) == NULL)
    return;
  if (ch->connected &&
      (lipc__waitq_waiting(&ch->receivers) || has_message_listeners(ch)))
    uv_ref((uv_handle_t *)uv);
  else
    uv_unref((uv_handle_t *)uv);
}

/* Bytes of messages received and not taken yet: the lazy frames still
 * encoded in `in`, and the frames of the values in the queue. */
static inline size_t untaken(lchannel *ch) {
  return (ch->ipos - ch->dpos) + ch->qbytes;
}

/* Bytes sent and not yet handed to the stream. */
static inline size_t unsent(lchannel *ch) {
  return ch->out.len + ch->str_bytes;
}

/* Bytes sent and not yet written: unsent, and the writes in flight. */
static inline size_t out_queued(lchannel *ch) {
  size_t n = unsent(ch);
  wnode *w;
  for (w = ch->writes; w; w = w->next)
    n += w->buf.len + w->str_bytes;
  return n;
}

/* A native frame's 4-byte big-endian length. */
static inline void put_be32(char *p, size_t v) {
  unsigned char *u = (unsigned char *)p;
  u[0] = (unsigned char)(v >> 24);
  u[1] = (unsigned char)(v >> 16);
  u[2] = (unsigned char)(v >> 8);
  u[3] = (unsigned char)v;
}

static inline size_t get_be32(const char *p) {
  const unsigned char *u = (const unsigned char *)p;
  return (size_t)u[0] << 24 | (size_t)u[1] << 16 | (size_t)u[2] << 8 | u[3];
}

/* A message that is nil, on top of L, becomes lipc.null (NULL as light
 * userdata, which is also cjson.null and sends back as nil): receive()
 * returns nil only when no message is left. */
static inline void nil_as_null(lua_State *L) {
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_pushlightuserdata(L, NULL);
  }
}

/* Messages received that nobody took yet: decoded ones in the queue
 * table, then the lazy frames (receive.c). */
static inline lua_Integer queue_values(lchannel *ch) {
  return ch->queue_ref == LUA_NOREF ? 0 : ch->qtail - ch->qhead;
}

static inline int queue_len(lchannel *ch) {
  return (int)(queue_values(ch) + (lua_Integer)ch->nlazy);
}

#endif
