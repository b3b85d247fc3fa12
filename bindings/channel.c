/*
 * channel.c - the message channel over a stream: framing, codec calls,
 * handle passing, and Node's JSON lines.
 *
 * A channel takes over a stream's bytes through the stream hooks: reads
 * land straight in the frame-assembly buffer (no copy), frames are decoded
 * into Lua values and handed to a task in receive() or to 'message'
 * listeners; while nobody waits or listens they are checked and stay
 * encoded in that buffer until somebody takes them. Sends are encoded into
 * an output buffer and every frame of one loop turn goes out in one write,
 * flushed from a uv_idle (after the turn's callbacks, before polling);
 * while that write is in flight the next batch fills the other buffer.
 * Strings of 64 KiB or more are not copied into it: the write gathers
 * them from the Lua strings, kept alive until the kernel has the bytes
 * (ipc_bulk with both ends on one CPU: ~3.9 -> ~4.3 GB/s).
 *
 * Native frame (docs/wire-format.md): a 4-byte big-endian length of what
 * follows, then optionally the handle marker (fixext1 0xd4, type 1, one
 * byte of kind) when a handle travels with the frame as SCM_RIGHTS, then
 * one MessagePack value. JSON mode: one JSON text and "\n" per message.
 *
 * Lifetime: the channel is a lipc__handle over its idle handle, so the
 * runtime's exit path (flush_close) flushes what is still buffered. The
 * channel owns its stream: when either goes, both go.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "codec.h"
#include "channel.h"

#define CHANNEL "lipc.channel"
#define DEFAULT_MAX ((size_t)64 << 20)
/* The high-water mark also bounds what a busy sender encodes between two
 * loop turns. The kernel's socket buffer is ~208 KiB (wmem_default), so a
 * larger batch leaves the reader idle while the sender fills it: 64 KiB
 * (the read size, and the C baseline's write size) keeps the pipe fed and
 * the batch in cache. ipc_stream 0.88M -> 1.58M msg/s, ipc_bulk ~2.6 ->
 * ~3.3 GB/s against 1 MiB. */
#define DEFAULT_HWM ((size_t)64 << 10)
#define READ_CHUNK (64 * 1024)
#define KEEP_BUF_MAX ((size_t)4 << 20) /* larger buffers go back to malloc */
#define MARKER_LEN 3
#define CLOSED_CODE "ERR_IPC_CHANNEL_CLOSED"

typedef struct lchannel lchannel;

/* One write in flight: the bytes, and the callbacks of its frames. */
typedef struct wnode {
  lipc__buf buf;
  lchannel *ch;     /* NULL once the channel is gone */
  lipc_runtime *rt; /* for what outlives the channel */
  int cbs;          /* registry ref: array of send callbacks */
  int handle_ref;   /* keeps a sent handle's object alive */
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
  int dec_ref;     /* cjson decode in JSON mode */
  int err_ref;     /* a fault for receive() once the queue is empty */
  const char *err_code;
  lua_Integer qhead, qtail;
  /* Frame assembly. [dpos, ipos) holds nlazy whole frames nobody took yet,
   * still encoded; [ipos, in.len) is unread. */
  lipc__buf in;
  size_t dpos, ipos, nlazy;
  lipc__buf out; /* frames encoded since the last flush */
  /* Big strings of those frames, written from the Lua strings themselves
   * (kept alive in the table at strs_ref) instead of being copied. */
  strseg *segs;
  int nsegs, segcap, strs_ref;
  size_t str_bytes;
  size_t max; /* max_message: the largest frame body */
  size_t hwm;
  wnode *spare;      /* a buffer to swap in at the next flush */
  wnode *writes;     /* writes in flight */
  unsigned nregular; /* of which batch writes (not handle frames) */
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
};

static void peer_gone(lchannel *ch);
static void channel_flush(lchannel *ch, int force);
static void schedule_flush(lchannel *ch);

/* The fd of the channel's stream, for trace lines (-1 when detached). */
static int chan_fd(lchannel *ch) {
  uv_os_fd_t fd = -1;
  if (ch->s && lipc__stream_uv(ch->s))
    uv_fileno((uv_handle_t *)lipc__stream_uv(ch->s), &fd);
  return (int)fd;
}

/* Counts one incoming message of n bytes (frame or line) and traces it. */
static void count_in(lchannel *ch, size_t n) {
  ch->msgs_in++;
  ch->bytes_in += n;
  if (ch->h.rt->trace & LIPC_TRACE_IPC)
    lipc__trace(ch->h.rt, "ipc", "recv message %zu bytes fd %d", n,
                chan_fd(ch));
}

/* ---- helpers ----------------------------------------------------------- */

static lchannel *check_channel(lua_State *L, int idx, const char *fname) {
  return lipc__checkobj(L, idx, CHANNEL, fname);
}

/* Pushes the object events go to (the owner, else the channel). */
static int push_target(lchannel *ch) {
  lua_State *L = ch->h.rt->L;
  if (ch->owner_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, ch->owner_ref);
    return 1;
  }
  return lipc__handle_push(&ch->h);
}

static void unref(lua_State *L, int *ref) {
  if (*ref != LUA_NOREF)
    luaL_unref(L, LUA_REGISTRYINDEX, *ref);
  *ref = LUA_NOREF;
}

/* Emits ev with the nargs values on top of rt->L on the target; pops. */
static void emit(lchannel *ch, const char *ev, int nargs) {
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
static int has_message_listeners(lchannel *ch) {
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

/* Sets target.connected (a plain field: __newindex stores it). */
static void set_connected(lchannel *ch, int on) {
  lua_State *L = ch->h.rt->L;
  ch->connected = on;
  if (lipc__handle_push(&ch->h)) {
    lua_pushboolean(L, on);
    lua_setfield(L, -2, "connected");
  }
  lua_pop(L, 1);
  if (ch->owner_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, ch->owner_ref);
    lua_pushboolean(L, on);
    lua_setfield(L, -2, "connected");
    lua_pop(L, 1);
  }
}

/* A fork child's channel keeps the process alive only while somebody
 * waits for messages (as Node's process.channel): a child that just sends
 * and ends, ends. */
static void update_ref(lchannel *ch) {
  uv_stream_t *uv;
  if (!ch->auto_ref || ch->s == NULL || (uv = lipc__stream_uv(ch->s)) == NULL)
    return;
  if (ch->connected &&
      (lipc__waitq_waiting(&ch->receivers) || has_message_listeners(ch)))
    uv_ref((uv_handle_t *)uv);
  else
    uv_unref((uv_handle_t *)uv);
}

/* Bytes sent and not yet handed to the stream. */
static size_t unsent(lchannel *ch) {
  return ch->out.len + ch->str_bytes;
}

static void put_be32(char *p, size_t v) {
  unsigned char *u = (unsigned char *)p;
  u[0] = (unsigned char)(v >> 24);
  u[1] = (unsigned char)(v >> 16);
  u[2] = (unsigned char)(v >> 8);
  u[3] = (unsigned char)v;
}

static size_t get_be32(const char *p) {
  const unsigned char *u = (const unsigned char *)p;
  return (size_t)u[0] << 24 | (size_t)u[1] << 16 | (size_t)u[2] << 8 | u[3];
}

/* ---- the messages nobody took yet ------------------------------------- */

/* Frames that arrive while nobody listens or waits stay encoded in `in`
 * and are decoded when taken (lazy frames): a busy receiver then builds
 * each message right before its use, where generational GC finds it young,
 * and keeps no Lua queue (ipc_stream ~2.0M -> ~2.2M msg/s: the queue
 * table and GC's major collections left the receiver's profile). Decoded
 * values wait in the queue table only when a frame brought a handle,
 * which must be taken from libuv as it arrives, or when listeners went
 * away. Values in the queue always come before the lazy frames. */

static void queue_push(lchannel *ch, lua_State *L) { /* pops msg, handle */
  if (ch->queue_ref == LUA_NOREF) {
    lua_newtable(L);
    ch->queue_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    ch->qhead = ch->qtail = 0;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, ch->queue_ref);
  lua_pushvalue(L, -3);
  lua_rawseti(L, -2, 2 * ch->qtail + 1);
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, 2 * ch->qtail + 2);
  ch->qtail++;
  lua_pop(L, 3);
}

static int queue_shift(lchannel *ch, lua_State *L) { /* pushes msg, handle */
  if (ch->queue_ref == LUA_NOREF || ch->qhead == ch->qtail)
    return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ch->queue_ref);
  lua_rawgeti(L, -1, 2 * ch->qhead + 1);
  lua_rawgeti(L, -2, 2 * ch->qhead + 2);
  lua_pushnil(L);
  lua_rawseti(L, -4, 2 * ch->qhead + 1);
  lua_pushnil(L);
  lua_rawseti(L, -4, 2 * ch->qhead + 2);
  lua_remove(L, -3);
  if (++ch->qhead == ch->qtail)
    ch->qhead = ch->qtail = 0;
  return 1;
}

static lua_Integer queue_values(lchannel *ch) {
  return ch->queue_ref == LUA_NOREF ? 0 : ch->qtail - ch->qhead;
}

static int queue_len(lchannel *ch) {
  return (int)(queue_values(ch) + (lua_Integer)ch->nlazy);
}

static const char *bad_reason(ptrdiff_t used, const char *err) {
  return used < 0    ? err
         : used == 0 ? "truncated value"
                     : "bytes after the value";
}

/* Decodes the first lazy frame onto L as msg, nil (a frame with a handle
 * is never lazy). Returns 0, or -1 with the reason on L instead: lazy
 * frames were checked as they came, so only a Lua state short of stack
 * gets there. */
static int take_lazy(lchannel *ch, lua_State *L) {
  const char *p = ch->in.data + ch->dpos, *err = NULL;
  size_t n = get_be32(p);
  ptrdiff_t used;
  ch->dpos += 4 + n;
  ch->nlazy--;
  luaL_checkstack(L, 8, "channel");
  used = lipc__codec_decode_checked(L, p + 4, n, &err);
  if (used > 0 && (size_t)used == n) {
    lua_pushnil(L);
    return 0;
  }
  if (used > 0)
    lua_pop(L, 1);
  lua_pushfstring(L, "channel: bad message from peer: %s",
                  bad_reason(used, err));
  ch->nlazy = 0; /* what follows a bad frame is not trusted */
  ch->dpos = ch->ipos;
  return -1;
}

/* Pushes the next message nobody took yet onto L: msg, handle. Returns
 * 1, 0 when there is none, or -1 with the reason for a malformed one on
 * L instead (the caller faults the channel). */
static int take_next(lchannel *ch, lua_State *L) {
  if (queue_values(ch) > 0)
    return queue_shift(ch, L);
  if (ch->nlazy == 0)
    return 0;
  return take_lazy(ch, L) < 0 ? -1 : 1;
}

static void fault(lchannel *ch, const char *code, int taken);

/* The fault kept for the first receive() after the messages before it:
 * pushes nil, msg, code on L and forgets it. Returns 3, or 0 when there
 * is none. */
static int take_fault(lchannel *ch, lua_State *L) {
  if (ch->err_ref == LUA_NOREF)
    return 0;
  lua_pushnil(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ch->err_ref);
  lua_pushstring(L, ch->err_code);
  unref(L, &ch->err_ref);
  return 3;
}

/* ---- receiving ------------------------------------------------------------ */

/* Tasks waiting in receive() get the messages nobody took, one each,
 * longest-waiting first; a woken task takes more without parking. */
static void wake_receiver(lchannel *ch) {
  lipc_runtime *rt = ch->h.rt;
  int r;
  while (lipc__waitq_waiting(&ch->receivers) && queue_len(ch) > 0 &&
         !rt->exiting) {
    r = take_next(ch, rt->L);
    if (r < 0) { /* the receiver gets the fault */
      fault(ch, "ERR_IPC_BAD_MESSAGE", 0);
      return;
    }
    lipc__waitq_wake(rt, &ch->receivers, 2);
  }
  update_ref(ch);
}

/* A task waits in receive() and nothing is queued before a new message. */
static int for_waiter(lchannel *ch) {
  return queue_len(ch) == 0 && lipc__waitq_waiting(&ch->receivers);
}

/* Hands msg, handle (on top of rt->L; popped) to the 'message'
 * listeners (and a task in receive()), or to the queue. */
static void deliver(lchannel *ch) {
  lipc_runtime *rt = ch->h.rt;
  lua_State *L = rt->L;
  if (!has_message_listeners(ch)) {
    if (for_waiter(ch))
      lipc__waitq_wake(rt, &ch->receivers, 2);
    else
      queue_push(ch, L);
    return;
  }
  if (lipc__waitq_waiting(&ch->receivers)) {
    lua_pushvalue(L, -2);
    lua_pushvalue(L, -2);
    lipc__waitq_wake(rt, &ch->receivers, 2);
  }
  emit(ch, "message", 2);
}

/* Hands every message nobody took yet to the 'message' listeners, in
 * order, while there are listeners; with none, lazy frames that must be
 * decoded now (lazy_too) go to the queue. Returns -1 after a fault. */
static int deliver_pending(lchannel *ch, int lazy_too) {
  lipc_runtime *rt = ch->h.rt;
  lua_State *L = rt->L;
  int r = 0;
  while (!rt->exiting) {
    if (has_message_listeners(ch)) {
      if ((r = take_next(ch, L)) <= 0)
        break;
      deliver(ch);
    } else if (lazy_too && ch->nlazy > 0) {
      if ((r = take_lazy(ch, L)) < 0)
        break;
      queue_push(ch, L);
    } else {
      break;
    }
  }
  if (r < 0) {
    fault(ch, "ERR_IPC_BAD_MESSAGE", 0);
    return -1;
  }
  update_ref(ch);
  return 0;
}

/* The peer broke the protocol: the channel closes with an 'error' saying
 * why (the message, on top of rt->L, is popped); the process lives on.
 * Messages before the fault stay to be taken. A task in receive() gets
 * nil, msg, code (if it gets a message first, its next receive() after
 * the queue does); 'error' listeners get msg, code; with nobody at all
 * (and not taken: the caller of receive() has it) it is uncaught. */
static void fault(lchannel *ch, const char *code, int taken) {
  lipc_runtime *rt = ch->h.rt;
  lua_State *L = rt->L;
  int handled = taken, listeners = 0;
  if (ch->gone) {
    lua_pop(L, 1);
    return;
  }
  set_connected(ch, 0); /* a woken task or a listener sees it closed */
  if (ch->s)
    lipc__handle_close(lipc__stream_handle(ch->s));
  if (lipc__waitq_waiting(&ch->receivers)) {
    handled = 1;
    lua_pushvalue(L, -1); /* for the first receive() after the messages */
    ch->err_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    ch->err_code = code;
    wake_receiver(ch); /* the messages before the fault first */
    if (ch->gone) {
      lua_pop(L, 1);
      return;
    }
    if (lipc__waitq_waiting(&ch->receivers) && take_fault(ch, L))
      lipc__waitq_wake(rt, &ch->receivers, 3);
  }
  if (push_target(ch))
    listeners = lipc__has_listeners(L, -1, "error");
  lua_pop(L, 1);
  if (!handled || listeners) {
    lua_pushvalue(L, -1);
    lua_pushstring(L, code);
    emit(ch, "error", 2);
  }
  lua_pop(L, 1);
  peer_gone(ch);
}

static void protocol_error(lchannel *ch, const char *code, const char *fmt,
                           ...) {
  va_list ap;
  if (ch->gone)
    return;
  va_start(ap, fmt);
  lua_pushvfstring(ch->h.rt->L, fmt, ap);
  va_end(ap);
  fault(ch, code, 0);
}

/* A handle came with this frame: it was queued by libuv when the bytes
 * carrying it arrived; take it and wrap it as a net/pipe object. Returns
 * 0 or an error; the caller pushes nil on error. */
static int take_handle(lchannel *ch, int kind) {
  lua_State *L = ch->h.rt->L;
  uv_pipe_t *pipe = (uv_pipe_t *)lipc__stream_uv(ch->s);
  uv_stream_t *h = NULL;
  uv_handle_type t;
  int err;
  if (pipe == NULL || pipe->type != UV_NAMED_PIPE || !pipe->ipc ||
      uv_pipe_pending_count(pipe) == 0)
    return UV_EINVAL;
  t = uv_pipe_pending_type(pipe);
  if (t == UV_TCP) {
    h = malloc(sizeof(uv_tcp_t));
    if (h)
      uv_tcp_init(ch->h.rt->loop, (uv_tcp_t *)h);
  } else if (t == UV_NAMED_PIPE) {
    h = malloc(sizeof(uv_pipe_t));
    if (h)
      uv_pipe_init(ch->h.rt->loop, (uv_pipe_t *)h, 0);
  } else {
    return UV_EINVAL;
  }
  if (h == NULL)
    return UV_ENOMEM;
  if ((err = uv_accept((uv_stream_t *)pipe, h)) != 0) {
    lipc__close_free((uv_handle_t *)h);
    return err;
  }
  if (kind < 1 || kind > 4) {
    lipc__close_free((uv_handle_t *)h);
    return UV_EINVAL;
  }
  lipc__net_import(L, h, kind);
  return 0;
}

static int has_marker(const char *p, size_t n) {
  return n >= MARKER_LEN && (unsigned char)p[0] == 0xd4 && p[1] == 0x01;
}

/* A frame left lazy is checked now: a bad one faults the channel when it
 * arrives, not when somebody takes it. Returns 0 or -1. */
static int check_frame(lchannel *ch, const char *p, size_t n) {
  const char *err = NULL;
  ptrdiff_t used = lipc__codec_check(p, n, &err);
  if (used > 0 && (size_t)used == n)
    return 0;
  protocol_error(ch, "ERR_IPC_BAD_MESSAGE",
                 "channel: bad message from peer: %s", bad_reason(used, err));
  return -1;
}

/* One native frame body: [marker] value. Returns 0, or -1 after a
 * protocol error. */
static int native_frame(lchannel *ch, const char *p, size_t n) {
  lua_State *L = ch->h.rt->L;
  const char *err = NULL;
  ptrdiff_t used;
  int kind = 0, herr = 0;
  if (has_marker(p, n)) {
    kind = (unsigned char)p[2];
    p += MARKER_LEN;
    n -= MARKER_LEN;
  }
  luaL_checkstack(L, 8, "channel");
  used = lipc__codec_decode(L, p, n, &err);
  if (used <= 0 || (size_t)used != n) {
    if (used > 0)
      lua_pop(L, 1);
    protocol_error(ch, "ERR_IPC_BAD_MESSAGE",
                   "channel: bad message from peer: %s", bad_reason(used, err));
    return -1;
  }
  if (kind) {
    int top = lua_gettop(L);
    herr = take_handle(ch, kind); /* pushes the object */
    if (herr < 0 || lua_gettop(L) != top + 1) {
      lua_settop(L, top);
      lua_pushnil(L);
    }
  } else {
    lua_pushnil(L);
  }
  deliver(ch);
  return 0;
}

/* cjson decodes every number as a float; JSON has one number type, so
 * integral values come back as integers, as the peer most likely meant. */
static void json_ints(lua_State *L, int idx, int depth) {
  idx = lua_absindex(L, idx);
  if (depth > LIPC_CODEC_MAX_DEPTH || !lua_checkstack(L, 4))
    return;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -1) == LUA_TNUMBER && !lua_isinteger(L, -1)) {
      lua_Number x = lua_tonumber(L, -1);
      /* range first: casting inf/NaN/1e300 to an integer is undefined */
      if (x >= -9007199254740992.0 && x <= 9007199254740992.0 &&
          x == (lua_Number)(lua_Integer)x) {
        lua_pushvalue(L, -2);
        lua_pushinteger(L, (lua_Integer)x);
        lua_rawset(L, idx);
      }
    } else if (lua_type(L, -1) == LUA_TTABLE) {
      json_ints(L, -1, depth + 1);
    }
    lua_pop(L, 1);
  }
}

/* A decoded JSON value on top of rt->L as Lua sees it: Node's null is
 * nil at the top, integral numbers are integers. */
static void json_value(lua_State *L) {
  if (lua_type(L, -1) == LUA_TLIGHTUSERDATA &&
      lua_touserdata(L, -1) == NULL) { /* cjson.null */
    lua_pop(L, 1);
    lua_pushnil(L);
  } else if (lua_istable(L, -1)) {
    json_ints(L, -1, 0);
  } else if (lua_type(L, -1) == LUA_TNUMBER) {
    lua_Number x = lua_tonumber(L, -1);
    if (x >= -9007199254740992.0 && x <= 9007199254740992.0 &&
        x == (lua_Number)(lua_Integer)x) {
      lua_pop(L, 1);
      lua_pushinteger(L, (lua_Integer)x);
    }
  }
}

/* Appends the C string s to b: 0, or -1 out of memory. */
static int put_text(lipc__buf *b, const char *s) {
  size_t n = strlen(s);
  if (lipc__buf_reserve(b, n) != 0)
    return -1;
  memcpy(b->data + b->len, s, n);
  b->len += n;
  return 0;
}

/* Queues one of Node's control lines ({"cmd": "NODE_HANDLE_ACK"}). */
static void json_control(lchannel *ch, const char *cmd) {
  size_t start = ch->out.len;
  if (put_text(&ch->out, "{\"cmd\":\"") || put_text(&ch->out, cmd) ||
      put_text(&ch->out, "\"}\n")) {
    ch->out.len = start; /* Node then waits for it, as for a slow peer */
    return;
  }
  schedule_flush(ch);
}

/* Takes a pending handle lipc has no object for (a UDP socket) from the
 * IPC pipe and closes it, so the next one is not taken in its place.
 * Returns -1: the message goes on without it. */
static int drop_pending(lchannel *ch, uv_pipe_t *pipe) {
  uv_udp_t *u = malloc(sizeof(*u));
  if (u == NULL || uv_udp_init(ch->h.rt->loop, u) != 0) {
    free(u);
    return -1;
  }
  uv_accept((uv_stream_t *)pipe, (uv_stream_t *)u);
  lipc__close_free((uv_handle_t *)u);
  return -1;
}

/* Node's handle message (the table on top of rt->L; popped):
 * {"cmd": "NODE_HANDLE", "type": "net.Server" | "net.Socket", "msg": v},
 * the fd sent with its bytes. v is delivered with the handle. Node holds
 * back all it sends until our ACK; a NACK (the fd did not come) makes it
 * send again. */
static void json_handle(lchannel *ch) {
  lua_State *L = ch->h.rt->L;
  uv_pipe_t *pipe = (uv_pipe_t *)lipc__stream_uv(ch->s);
  int server, kind = 0, top;
  lua_getfield(L, -1, "type");
  server = lua_type(L, -1) == LUA_TSTRING &&
           strcmp(lua_tostring(L, -1), "net.Server") == 0;
  lua_pop(L, 1);
  if (pipe && pipe->type == UV_NAMED_PIPE && pipe->ipc &&
      uv_pipe_pending_count(pipe) > 0) {
    uv_handle_type t = uv_pipe_pending_type(pipe);
    if (t == UV_TCP || t == UV_NAMED_PIPE)
      kind = server ? (t == UV_TCP ? 1 : 3) : (t == UV_TCP ? 2 : 4);
    else
      kind = drop_pending(ch, pipe); /* a UDP socket: no dgram module */
  }
  if (kind == 0) {
    json_control(ch, "NODE_HANDLE_NACK");
    lua_pop(L, 1);
    return;
  }
  lua_getfield(L, -1, "msg");
  json_value(L);
  lua_remove(L, -2);
  top = lua_gettop(L);
  if (kind < 0 || take_handle(ch, kind) != 0 || lua_gettop(L) != top + 1) {
    lua_settop(L, top);
    lua_pushnil(L);
  }
  json_control(ch, "NODE_HANDLE_ACK");
  deliver(ch);
}

static int json_line(lchannel *ch, const char *p, size_t n) {
  lua_State *L = ch->h.rt->L;
  if (n > 0 && p[n - 1] == '\r')
    n--;
  if (n == 0)
    return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ch->dec_ref);
  lua_pushlstring(L, p, n);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    lua_pushfstring(L, "%s", msg ? msg : "?");
    lua_remove(L, -2);
    protocol_error(ch, "ERR_IPC_BAD_MESSAGE",
                   "channel: bad JSON message "
                   "from peer: %s",
                   lua_tostring(L, -1));
    lua_pop(L, 1);
    return -1;
  }
  if (lua_istable(L, -1)) {
    /* Node's own messages ({"cmd": "NODE_..."}) are not for us, but for
     * the one that carries a handle */
    int t = lua_getfield(L, -1, "cmd");
    const char *cmd = t == LUA_TSTRING ? lua_tostring(L, -1) : "";
    int handle = strcmp(cmd, "NODE_HANDLE") == 0;
    int internal = strncmp(cmd, "NODE_", 5) == 0;
    lua_pop(L, 1);
    if (handle) {
      json_handle(ch);
      return 0;
    }
    if (internal) {
      lua_pop(L, 1);
      return 0;
    }
  }
  json_value(L);
  lua_pushnil(L);
  deliver(ch);
  return 0;
}

/* The n bytes at p, after a frame, hold no complete frame. */
static int last_frame(const char *p, size_t n) {
  return n < 4 || n - 4 < get_be32(p);
}

/*
** Takes every complete frame (or line) out of `in`. A frame nobody
** listens for waits lazily, checked now and decoded when taken, unless
** it is the last one in and a task waits for it (a request, a reply):
** then it is decoded and handed over at once (deliver), which checks it
** too, where the lazy way would walk it twice. A task woken with the
** first frame of a batch would take the rest of it without parking, so
** a batch's frames stay lazy.
*/
static void parse(lchannel *ch) {
  while (!ch->gone && ch->s) {
    const char *p = ch->in.data + ch->ipos;
    size_t avail = ch->in.len - ch->ipos, flen;
    if (ch->json) {
      const char *nl = memchr(p, '\n', avail);
      if (nl == NULL) {
        if (avail > ch->max)
          protocol_error(ch, "ERR_IPC_MESSAGE_TOO_LARGE",
                         "channel: incoming"
                         " message over max_message (%I bytes)",
                         (lua_Integer)ch->max);
        break;
      }
      flen = (size_t)(nl - p);
      ch->ipos += flen + 1;
      ch->dpos = ch->ipos;
      count_in(ch, flen + 1);
      if (flen > ch->max) {
        protocol_error(ch, "ERR_IPC_MESSAGE_TOO_LARGE",
                       "channel: incoming "
                       "message of %I bytes is over max_message (%I bytes)",
                       (lua_Integer)flen, (lua_Integer)ch->max);
        break;
      }
      if (json_line(ch, p, flen) < 0)
        break;
      continue;
    }
    if (avail < 4)
      break;
    flen = get_be32(p);
    if (flen > ch->max + MARKER_LEN) {
      protocol_error(ch, "ERR_IPC_MESSAGE_TOO_LARGE",
                     "channel: incoming "
                     "frame of %I bytes is over max_message (%I bytes)",
                     (lua_Integer)flen, (lua_Integer)ch->max);
      break;
    }
    if (avail - 4 < flen)
      break;
    count_in(ch, 4 + flen);
    if (!has_message_listeners(ch) && !has_marker(p + 4, flen) &&
        !(for_waiter(ch) && last_frame(p + 4 + flen, avail - 4 - flen))) {
      if (check_frame(ch, p + 4, flen) < 0)
        break;
      ch->ipos += 4 + flen; /* lazy: decoded when taken */
      ch->nlazy++;
      continue;
    }
    /* what came before goes first (usually nothing: no call per frame) */
    if (queue_len(ch) > 0 && deliver_pending(ch, 1) < 0)
      break;
    ch->ipos += 4 + flen;
    ch->dpos = ch->ipos;
    if (native_frame(ch, p + 4, flen) < 0)
      break;
  }
  if (ch->nlazy == 0 && ch->ipos == ch->in.len)
    ch->dpos = ch->ipos = ch->in.len = 0;
  wake_receiver(ch);
}

/* Reads go straight to the end of the assembly buffer; when the length of
 * the frame being assembled is known, room for all of it is made at once
 * so that a large message is read in place. */
static void on_alloc(lipc__stream *s, size_t suggested, uv_buf_t *buf) {
  lchannel *ch = lipc__stream_hook_ctx(s);
  size_t want = READ_CHUNK, avail;
  (void)suggested;
  /* Keep the lazy frames and the unread part. Moving them costs what they
   * weigh, so it waits until as much is dead in front of them or room
   * runs out: a receiver far behind does not make every read quadratic. */
  if (ch->dpos > 0 &&
      (ch->dpos >= ch->in.len - ch->dpos || ch->in.cap - ch->in.len < want)) {
    memmove(ch->in.data, ch->in.data + ch->dpos, ch->in.len - ch->dpos);
    ch->in.len -= ch->dpos;
    ch->ipos -= ch->dpos;
    ch->dpos = 0;
  }
  avail = ch->in.len - ch->ipos;
  if (!ch->json && avail >= 4) {
    /* Room for the rest of the frame, but never more than doubling what
     * has arrived: a peer's 4-byte claim alone must not make us allocate
     * max_message (found by fuzz_frame: 2^32-1 claimed, 8 GiB malloc). */
    size_t flen = get_be32(ch->in.data + ch->ipos), rest;
    if (flen <= ch->max + MARKER_LEN && 4 + flen > avail) {
      rest = 4 + flen - avail;
      if (rest > want)
        want = rest < avail ? rest : (avail > want ? avail : want);
    }
  }
  if (lipc__buf_reserve(&ch->in, want) != 0) {
    buf->base = NULL;
    buf->len = 0; /* libuv reports ENOBUFS */
    return;
  }
  buf->base = ch->in.data + ch->in.len;
  buf->len = ch->in.cap - ch->in.len;
}

static void on_read(lipc__stream *s, ssize_t n, const char *base) {
  lchannel *ch = lipc__stream_hook_ctx(s);
  (void)base;
  if (ch == NULL)
    return;
  if (n < 0) { /* EOF, reset, or closing */
    if (ch->s)
      lipc__handle_close(lipc__stream_handle(ch->s));
    peer_gone(ch);
    return;
  }
  if (ch->gone)
    return;
  ch->in.len += (size_t)n;
  parse(ch);
}

/* Feeds bytes to the channel at idx exactly as reads from its stream
 * would arrive: through on_alloc's buffer sizing and on_read's parse, one
 * buffer-full at a time. Lets fuzz/fuzz_frame.c drive the frame and
 * JSON-lines readers with chosen splits and no syscalls. Returns the
 * number of bytes taken (fewer once the channel is gone). */
size_t lipc__channel_feed(lua_State *L, int idx, const char *p, size_t n) {
  lchannel *ch = check_channel(L, idx, "channel.feed");
  size_t done = 0;
  while (done < n && ch->s && !ch->gone) {
    uv_buf_t b;
    size_t k;
    on_alloc(ch->s, READ_CHUNK, &b);
    if (b.base == NULL || b.len == 0)
      break;
    k = n - done < b.len ? n - done : b.len;
    memcpy(b.base, p + done, k);
    on_read(ch->s, (ssize_t)k, b.base);
    done += k;
  }
  return done;
}

/* ---- the end ---------------------------------------------------------------- */

/* The channel is over (peer went, error, disconnect or close): waiting
 * tasks get nil, 'disconnect' is emitted once, and the flush handle closes
 * once our writes are done. */
static void peer_gone(lchannel *ch) {
  lipc_runtime *rt = ch->h.rt;
  lua_State *L = rt->L;
  int was_receiving, listeners = 0;
  if (ch->gone)
    return;
  ch->gone = 1;
  if (ch->connected)
    set_connected(ch, 0);
  wake_receiver(ch);
  was_receiving = lipc__waitq_waiting(&ch->receivers);
  lua_pushnil(L);
  lipc__waitq_wake_all(rt, &ch->receivers, 1);
  lua_pushboolean(L, 0);
  lipc__waitq_wake_all(rt, &ch->drainers, 1);
  update_ref(ch);
  if (push_target(ch))
    listeners = lipc__has_listeners(L, -1, "disconnect");
  lua_pop(L, 1);
  if (ch->own_disconnect) { /* fork orders it after exit */
    if (!rt->exiting) {
      if (lipc__handle_push(&ch->h))
        lipc__emit(rt, -1, "disconnect", 0);
      lua_pop(L, 1);
    }
  } else {
    emit(ch, "disconnect", 0);
  }
  if (ch->writes == NULL)
    lipc__handle_close(&ch->h);
  /* A forked child whose parent went away ends (no orphans), unless it
   * listens for 'disconnect', was itself waiting in receive() (it sees
   * nil and decides), or set parent.exit_on_disconnect = false. */
  if (ch->exit_on_gone && !ch->local_end && !listeners && !was_receiving &&
      !rt->exiting) {
    int top = lua_gettop(L), keep = 0;
    if (push_target(ch) &&
        lua_getfield(L, -1, "exit_on_disconnect") == LUA_TBOOLEAN)
      keep = !lua_toboolean(L, -1);
    lua_settop(L, top);
    if (!keep)
      lipc__exit_now(rt, 0);
  }
}

/* ---- sending ------------------------------------------------------------------ */

static void call_cbs(lipc_runtime *rt, int cbs, int status) {
  lua_State *L = rt->L;
  lua_Integer i, n;
  lua_rawgeti(L, LUA_REGISTRYINDEX, cbs);
  luaL_unref(L, LUA_REGISTRYINDEX, cbs);
  n = (lua_Integer)lua_rawlen(L, -1);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    if (status < 0) {
      lipc__push_errpair(L, status, "channel.send");
      lipc__task_start(rt, L, 2);
    } else {
      lipc__task_start(rt, L, 0);
    }
  }
  lua_pop(L, 1);
}

static void unlink_write(lchannel *ch, wnode *w) {
  if (w->prev)
    w->prev->next = w->next;
  else if (ch && ch->writes == w)
    ch->writes = w->next;
  if (w->next)
    w->next->prev = w->prev;
  w->next = w->prev = NULL;
}

static void on_written(void *ctx, int status) {
  wnode *w = ctx;
  lchannel *ch = w->ch;
  lipc_runtime *rt = w->rt;
  int regular = w->handle_ref == LUA_NOREF;
  unref(rt->L, &w->strs_ref); /* the kernel has the bytes now */
  w->str_bytes = 0;
  if (ch == NULL) { /* the channel went first */
    lipc__buf_free(&w->buf);
    free(w);
    return;
  }
  unlink_write(ch, w);
  if (regular)
    ch->nregular--;
  unref(rt->L, &w->handle_ref);
  if (w->cbs != LUA_NOREF) {
    call_cbs(rt, w->cbs, status);
    w->cbs = LUA_NOREF;
  }
  if (ch->spare == NULL && w->buf.cap <= KEEP_BUF_MAX) {
    w->buf.len = 0;
    ch->spare = w;
  } else {
    lipc__buf_free(&w->buf);
    free(w);
  }
  if (ch->h.uv == NULL || ch->h.closing)
    return;
  if (ch->connected || ch->close_after)
    channel_flush(ch, ch->close_after);
  if (ch->writes == NULL && unsent(ch) == 0 && (ch->close_after || ch->gone)) {
    if (ch->s)
      lipc__handle_close(lipc__stream_handle(ch->s));
    lipc__handle_close(&ch->h);
  }
}

static wnode *take_node(lchannel *ch) {
  wnode *w = ch->spare;
  if (w) {
    ch->spare = NULL;
    return w;
  }
  w = calloc(1, sizeof(*w));
  if (w) {
    w->cbs = w->handle_ref = w->strs_ref = LUA_NOREF;
    w->rt = ch->h.rt;
  }
  return w;
}

/* The encoder's hook for a big string (lipc__codec_encode_ref): no copy,
 * the string itself is written, kept alive until then. */
static int ref_string(void *ctx, lua_State *L, int sidx, const char *p,
                      size_t n) {
  lchannel *ch = ctx;
  if (ch->nsegs == ch->segcap) {
    int cap = ch->segcap ? 2 * ch->segcap : 8;
    strseg *g = realloc(ch->segs, (size_t)cap * sizeof(*g));
    if (g == NULL)
      return -1;
    ch->segs = g;
    ch->segcap = cap;
  }
  if (ch->strs_ref == LUA_NOREF) {
    lua_newtable(L);
    ch->strs_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, ch->strs_ref);
  lua_pushvalue(L, sidx);
  lua_rawseti(L, -2, ch->nsegs + 1);
  lua_pop(L, 1);
  ch->segs[ch->nsegs].at = ch->out.len;
  ch->segs[ch->nsegs].p = p;
  ch->segs[ch->nsegs].n = n;
  ch->nsegs++;
  ch->str_bytes += n;
  return 0;
}

/* The encoder wrote a table again: its last k strings are not sent. */
static void drop_strings(void *ctx, size_t k) {
  lchannel *ch = ctx;
  for (; k > 0; k--)
    ch->str_bytes -= ch->segs[--ch->nsegs].n;
}

/* A send that failed: the strings it gave by reference are not sent
 * (the table keeps them until the batch goes; later ones overwrite). */
static void forget_strings(lchannel *ch, int nsegs0, size_t strs0) {
  ch->nsegs = nsegs0;
  ch->str_bytes = strs0;
}

/* The batch as buffers: `out` cut where its big strings go. Returns how
 * many (at most 2 * nsegs + 1). */
static unsigned batch_bufs(lchannel *ch, const lipc__buf *out, uv_buf_t *b) {
  unsigned n = 0;
  size_t pos = 0;
  int i;
  for (i = 0; i < ch->nsegs; i++) {
    const strseg *g = &ch->segs[i];
    if (g->at > pos)
      b[n++] = uv_buf_init(out->data + pos, (unsigned)(g->at - pos));
    b[n++] = uv_buf_init((char *)g->p, (unsigned)g->n);
    pos = g->at;
  }
  if (out->len > pos)
    b[n++] = uv_buf_init(out->data + pos, (unsigned)(out->len - pos));
  return n;
}

/* Hands the buffered frames to the stream in one write. A batch waits
 * while another is in flight (unless forced: exit, handle frames), so a
 * busy sender makes few large writes. */
static void channel_flush(lchannel *ch, int force) {
  lipc_runtime *rt = ch->h.rt;
  wnode *w;
  lipc__buf tmp;
  uv_buf_t b, small[9], *bufs = small;
  unsigned nbufs = 1;
  int err, k = 0;
  if (ch->out.len == 0 || ch->s == NULL || (ch->nregular > 0 && !force))
    goto done;
  /* Nothing in flight: the kernel usually takes the batch at once. No
   * request then, so no write callback, no extra loop turn to run it and
   * no POLLOUT toggling (ipc_pingpong: one epoll_ctl and one epoll_wait
   * less per message). */
  if (ch->writes == NULL && ch->out_cbs == LUA_NOREF && ch->nsegs == 0) {
    b = uv_buf_init(ch->out.data, (unsigned)ch->out.len);
    k = lipc__stream_try_write(ch->s, &b);
    if (k == (int)ch->out.len) {
      ch->out.len = 0;
      goto done;
    }
    if (k < 0)
      k = 0; /* uv_write reports errors */
  }
  if (ch->nsegs > 0 &&
      (size_t)ch->nsegs * 2 + 1 > sizeof(small) / sizeof(*small) &&
      (bufs = malloc(((size_t)ch->nsegs * 2 + 1) * sizeof(*bufs))) == NULL)
    goto done;
  if ((w = take_node(ch)) == NULL)
    goto done;
  tmp = w->buf; /* swap: out gets the spare */
  w->buf = ch->out;
  ch->out = tmp;
  ch->out.len = 0;
  w->ch = ch;
  w->cbs = ch->out_cbs;
  ch->out_cbs = LUA_NOREF;
  w->strs_ref = ch->strs_ref;
  w->str_bytes = ch->str_bytes;
  ch->strs_ref = LUA_NOREF;
  ch->str_bytes = 0;
  if (ch->nsegs > 0)
    nbufs = batch_bufs(ch, &w->buf, bufs);
  else
    bufs[0] = uv_buf_init(w->buf.data + k, (unsigned)(w->buf.len - (size_t)k));
  ch->nsegs = 0;
  err = lipc__stream_write_raw(ch->s, bufs, nbufs, NULL, on_written, w);
  if (bufs != small)
    free(bufs);
  if (err) { /* the peer is gone */
    if (w->cbs != LUA_NOREF)
      call_cbs(rt, w->cbs, err);
    w->cbs = LUA_NOREF;
    unref(rt->L, &w->strs_ref);
    w->str_bytes = 0;
    w->buf.len = 0;
    if (ch->spare == NULL)
      ch->spare = w;
    else {
      lipc__buf_free(&w->buf);
      free(w);
    }
    goto done;
  }
  w->next = ch->writes;
  w->prev = NULL;
  if (ch->writes)
    ch->writes->prev = w;
  ch->writes = w;
  ch->nregular++;
done:
  if (ch->h.uv)
    uv_idle_stop((uv_idle_t *)ch->h.uv);
  if (ch->need_drain && unsent(ch) < ch->hwm) {
    ch->need_drain = 0;
    /* the drain()ers, while they stay under the mark: one that sends
     * over it again sets need_drain, and the others wait for that drain */
    while (lipc__waitq_waiting(&ch->drainers) && unsent(ch) < ch->hwm &&
           !rt->exiting) {
      lua_pushboolean(rt->L, 1);
      lipc__waitq_wake(rt, &ch->drainers, 1);
    }
    if (ch->connected)
      emit(ch, "drain", 0);
  }
}

/* An idle handle, not a prepare: a flush that completes at once (try
 * write) can wake a drain()er who sends the next batch and schedules the
 * next flush from inside this callback. A prepare started there would run
 * only after a poll that nothing may ever end; an active idle handle makes
 * that poll return at once. */
static void on_idle(uv_idle_t *p) {
  lchannel *ch = p->data;
  channel_flush(ch, 0);
}

static void schedule_flush(lchannel *ch) {
  if (ch->h.uv && !uv_is_active(ch->h.uv) && ch->nregular == 0)
    uv_idle_start((uv_idle_t *)ch->h.uv, on_idle);
}

/* A handle travels alone, in its own uv_write2: SCM_RIGHTS arrive with
 * the first byte of a write, so that byte must start its frame. */
static int send_with_handle(lchannel *ch, lua_State *L, int hidx,
                            uv_stream_t *hs, size_t start) {
  lipc__buf frame = {0};
  wnode *w;
  uv_buf_t b;
  int err;
  size_t n = ch->out.len - start;
  if (lipc__buf_reserve(&frame, n) != 0)
    return UV_ENOMEM;
  memcpy(frame.data, ch->out.data + start, n);
  frame.len = n;
  ch->out.len = start;
  channel_flush(ch, 1); /* what came before goes first */
  w = calloc(1, sizeof(*w));
  if (w == NULL) {
    lipc__buf_free(&frame);
    return UV_ENOMEM;
  }
  w->buf = frame;
  w->ch = ch;
  w->rt = ch->h.rt;
  w->cbs = w->strs_ref = LUA_NOREF;
  lua_pushvalue(L, hidx);
  w->handle_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  b = uv_buf_init(frame.data, (unsigned)frame.len);
  err = lipc__stream_write_raw(ch->s, &b, 1, hs, on_written, w);
  if (err) {
    luaL_unref(L, LUA_REGISTRYINDEX, w->handle_ref);
    lipc__buf_free(&w->buf);
    free(w);
    return err;
  }
  w->next = ch->writes;
  if (ch->writes)
    ch->writes->prev = w;
  ch->writes = w;
  return 0;
}

/* One JSON line into `out`; with a handle of the given kind (net.c's
 * wire kinds), wrapped as Node wraps it: {"cmd": "NODE_HANDLE", "type":
 * "net.Server" or "net.Socket", "msg": value}. On failure: -1, `out` as
 * it was, and the message (naming the key path) on top of L. */
static int encode_json(lchannel *ch, lua_State *L, int idx, int kind) {
  size_t start = ch->out.len;
  const char *type = kind == 1 || kind == 3 ? "net.Server" : "net.Socket";
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

/* Reports a send on a closed channel: to cb, else as an 'error' event. */
static int send_closed(lchannel *ch, lua_State *L, int cb) {
  lipc_runtime *rt = ch->h.rt;
  const char *msg = "channel.send: channel closed";
  if (cb) {
    lua_pushvalue(L, cb);
    lua_pushstring(L, msg);
    lua_pushstring(L, CLOSED_CODE);
    lipc__task_start(rt, L, 2);
  } else {
    lua_pushstring(rt->L, msg);
    lua_pushstring(rt->L, CLOSED_CODE);
    emit(ch, "error", 2);
  }
  lua_pushboolean(L, 0);
  return 1;
}

/* send(value[, handle][, cb]) -> true, or false over the high-water mark
 * ('drain' follows). A value that cannot be sent raises, naming its key
 * path; nothing is sent. */
static int l_send(lua_State *L) {
  lchannel *ch = check_channel(L, 1, "channel.send");
  int hidx = 0, cb = 0, kind = 0;
  uv_stream_t *hs = NULL;
  size_t start, body, strs0 = ch->str_bytes;
  int nsegs0 = ch->nsegs;
  luaL_checkany(L, 2);
  if (lua_isfunction(L, 3)) {
    cb = 3;
  } else if (!lua_isnoneornil(L, 3)) {
    hidx = 3;
    if (!lua_isnoneornil(L, 4)) {
      luaL_checktype(L, 4, LUA_TFUNCTION);
      cb = 4;
    }
  }
  if (!ch->connected || ch->s == NULL)
    return send_closed(ch, L, cb);
  if (hidx) {
    hs = lipc__net_export(L, hidx, &kind);
    if (hs == NULL || kind <= 0 || kind > 255)
      return luaL_argerror(L, hidx,
                           "channel.send: a net or pipe server or "
                           "socket expected");
  }
  start = ch->out.len;
  if (ch->json) {
    if (encode_json(ch, L, 2, kind) != 0)
      return luaL_error(L, "channel.send: %s", lua_tostring(L, -1));
  } else {
    if (lipc__buf_reserve(&ch->out, 4 + MARKER_LEN) != 0)
      return luaL_error(L, "channel.send: out of memory");
    ch->out.len += 4;
    if (hs) {
      ch->out.data[ch->out.len++] = (char)0xd4;
      ch->out.data[ch->out.len++] = 0x01;
      ch->out.data[ch->out.len++] = (char)kind;
    }
    /* a frame with a handle is written on its own, copied */
    lipc__codec_refs refs = {ref_string, drop_strings, ch};
    if (lipc__codec_encode_ref(L, 2, &ch->out, hs ? NULL : &refs) != 0) {
      forget_strings(ch, nsegs0, strs0);
      ch->out.len = start;
      return luaL_error(L, "channel.send: %s", lua_tostring(L, -1));
    }
  }
  body = ch->out.len - start - (ch->json ? 1 : 4 + (hs ? MARKER_LEN : 0)) +
         (ch->str_bytes - strs0);
  if (body > ch->max) {
    forget_strings(ch, nsegs0, strs0);
    ch->out.len = start;
    return luaL_error(L,
                      "channel.send: message of %I bytes is over "
                      "max_message (%I bytes)",
                      (lua_Integer)body, (lua_Integer)ch->max);
  }
  if (!ch->json)
    put_be32(ch->out.data + start,
             ch->out.len - start - 4 + (ch->str_bytes - strs0));
  ch->msgs_out++;
  ch->bytes_out += ch->out.len - start + (ch->str_bytes - strs0);
  if (ch->h.rt->trace & LIPC_TRACE_IPC)
    lipc__trace(ch->h.rt, "ipc", "send message %zu bytes fd %d%s",
                ch->out.len - start + (ch->str_bytes - strs0), chan_fd(ch),
                hs ? " with a handle" : "");
  if (cb) {
    if (ch->out_cbs == LUA_NOREF) {
      lua_newtable(L);
      ch->out_cbs = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, ch->out_cbs);
    lua_pushvalue(L, cb);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    lua_pop(L, 1);
  }
  if (hs) {
    int err = send_with_handle(ch, L, hidx, hs, start);
    if (err)
      return lipc__push_error(L, err, "channel.send");
  } else {
    schedule_flush(ch);
  }
  if (unsent(ch) >= ch->hwm) {
    ch->need_drain = 1;
    ch->hwm_hits++;
    lua_pushboolean(L, 0);
  } else {
    lua_pushboolean(L, 1);
  }
  return 1;
}

/* receive() in a task -> msg, handle; nil once disconnected. */
static int l_receive(lua_State *L) {
  lchannel *ch = check_channel(L, 1, "channel.receive");
  int r;
  lipc__task_check(L, "channel.receive");
  if ((r = take_next(ch, L)) > 0)
    return 2;
  if (r < 0) { /* this caller gets the fault: nil, msg, code */
    lua_pushnil(L);
    lua_insert(L, -2);
    lua_pushstring(ch->h.rt->L, lua_tostring(L, -1));
    lua_pushliteral(L, "ERR_IPC_BAD_MESSAGE");
    fault(ch, "ERR_IPC_BAD_MESSAGE", 1);
    return 3;
  }
  if ((r = take_fault(ch, L)) != 0) /* after the messages before it */
    return r;
  if (!ch->connected)
    return 0;
  if (ch->auto_ref && lipc__stream_uv(ch->s)) /* somebody waits now */
    uv_ref((uv_handle_t *)lipc__stream_uv(ch->s));
  return lipc__waitq_park(L, &ch->receivers);
}

/* drain() in a task -> true once the send buffer is under the high-water
 * mark; false when the channel closed meanwhile. */
static int l_drain(lua_State *L) {
  lchannel *ch = check_channel(L, 1, "channel.drain");
  lipc__task_check(L, "channel.drain");
  if (!ch->connected || unsent(ch) < ch->hwm) {
    lua_pushboolean(L, ch->connected);
    return 1;
  }
  ch->need_drain = 1;
  schedule_flush(ch);
  return lipc__waitq_park(L, &ch->drainers);
}

/* disconnect(): what was sent goes out, then the channel closes; the
 * peer sees the end. 'disconnect' is emitted here too. */
static int l_disconnect(lua_State *L) {
  lchannel *ch = check_channel(L, 1, "channel.disconnect");
  if (!ch->connected)
    return 0;
  ch->close_after = 1;
  ch->local_end = 1;
  channel_flush(ch, 1);
  if (ch->s) /* no more reading */
    lipc__stream_set_hooks(ch->s, NULL, NULL, NULL);
  if (ch->writes == NULL && ch->s)
    lipc__handle_close(lipc__stream_handle(ch->s));
  peer_gone(ch);
  return 0;
}

/* on(name, fn): a 'message' listener first gets the queued messages. */
static int l_on(lua_State *L) {
  lchannel *ch = check_channel(L, 1, "channel.on");
  const char *ev = luaL_checkstring(L, 2);
  lipc__emitter_on(L);
  if (strcmp(ev, "message") == 0)
    deliver_pending(ch, 0);
  lua_settop(L, 1);
  return 1;
}

/* off(...): the emitter's off (upvalue 1), then the ref follows. */
static int l_off(lua_State *L) {
  lchannel *ch = check_channel(L, 1, "channel.off");
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, 1);
  update_ref(ch);
  return 1;
}

/* The closures ch:bound() returns: ch (upvalue 1) in the place of the
 * caller's self, then the method itself. */
static int with_channel(lua_State *L, lua_CFunction method) {
  if (lua_gettop(L) == 0)
    lua_pushnil(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_replace(L, 1);
  return method(L);
}

static int l_bound_send(lua_State *L) {
  return with_channel(L, l_send);
}

static int l_bound_receive(lua_State *L) {
  return with_channel(L, l_receive);
}

/* bound() -> send, receive: the channel's send and receive as closures
 * over it that ignore their first argument, to be the methods of an
 * object that owns the channel (fork's child). worker:send(msg) is then
 * one C call: a Lua wrapper taking '...' cost ~10% of a small send. */
static int l_bound(lua_State *L) {
  check_channel(L, 1, "channel.bound");
  lua_settop(L, 1);
  lua_pushvalue(L, 1);
  lua_pushcclosure(L, l_bound_send, 1);
  lua_pushvalue(L, 1);
  lua_pushcclosure(L, l_bound_receive, 1);
  return 2;
}

/* deliver_queued(): hands queued messages to the target's 'message'
 * listeners (fork's child objects call it when one is added). */
static int l_deliver_queued(lua_State *L) {
  lchannel *ch = check_channel(L, 1, "channel.deliver_queued");
  deliver_pending(ch, 0);
  return 0;
}

/* pending() -> number of messages received that nobody took yet */
static int l_pending(lua_State *L) {
  lchannel *ch = check_channel(L, 1, "channel.pending");
  lua_pushinteger(L, queue_len(ch));
  return 1;
}

/* stats() -> {messages_sent, messages_received, bytes_sent, bytes_received,
 * queued, pending, high_water_hits}: bytes are whole frames (or lines). */
static int l_stats(lua_State *L) {
  lchannel *ch = check_channel(L, 1, "channel.stats");
  size_t queued = unsent(ch);
  wnode *w;
  for (w = ch->writes; w; w = w->next)
    queued += w->buf.len + w->str_bytes;
  lua_createtable(L, 0, 7);
  lua_pushinteger(L, (lua_Integer)ch->msgs_out);
  lua_setfield(L, -2, "messages_sent");
  lua_pushinteger(L, (lua_Integer)ch->msgs_in);
  lua_setfield(L, -2, "messages_received");
  lua_pushinteger(L, (lua_Integer)ch->bytes_out);
  lua_setfield(L, -2, "bytes_sent");
  lua_pushinteger(L, (lua_Integer)ch->bytes_in);
  lua_setfield(L, -2, "bytes_received");
  lua_pushinteger(L, (lua_Integer)queued);
  lua_setfield(L, -2, "queued");
  lua_pushinteger(L, queue_len(ch));
  lua_setfield(L, -2, "pending");
  lua_pushinteger(L, (lua_Integer)ch->hwm_hits);
  lua_setfield(L, -2, "high_water_hits");
  return 1;
}

/* ref()/unref(): whether the channel keeps the process alive. */
static int l_ref(lua_State *L) {
  lchannel *ch = check_channel(L, 1, "channel.ref");
  ch->auto_ref = 0;
  if (ch->s && lipc__stream_uv(ch->s))
    uv_ref((uv_handle_t *)lipc__stream_uv(ch->s));
  lua_settop(L, 1);
  return 1;
}

static int l_unref(lua_State *L) {
  lchannel *ch = check_channel(L, 1, "channel.unref");
  ch->auto_ref = 0;
  if (ch->s && lipc__stream_uv(ch->s))
    uv_unref((uv_handle_t *)lipc__stream_uv(ch->s));
  lua_settop(L, 1);
  return 1;
}

/* stream() -> the stream under the channel */
static int l_stream(lua_State *L) {
  lchannel *ch = check_channel(L, 1, "channel.stream");
  if (ch->stream_ref == LUA_NOREF)
    return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ch->stream_ref);
  return 1;
}

/* ---- lifetime ------------------------------------------------------------------ */

/* At exit: what is buffered goes out before the stream closes (the stream
 * is older, so its own flush_close runs after this and waits for it). */
static void flush_close(lipc__handle *h) {
  lchannel *ch = (lchannel *)h;
  ch->close_after = 1;
  if (unsent(ch) > 0 && ch->s)
    channel_flush(ch, 1);
  if (ch->writes == NULL)
    lipc__handle_close(h); /* else when they are done */
}

static void on_close(lipc__handle *h) {
  lchannel *ch = (lchannel *)h;
  lua_State *L = h->rt->L;
  wnode *w;
  peer_gone(ch);
  for (w = ch->writes; w; w = w->next) {
    w->ch = NULL; /* freed by its callback, which also lets its strings go
                     (the kernel may still read them until then) */
    unref(L, &w->handle_ref);
    unref(L, &w->cbs);
  }
  free(ch->segs);
  ch->segs = NULL;
  ch->nsegs = ch->segcap = 0;
  ch->str_bytes = 0;
  unref(L, &ch->strs_ref);
  ch->writes = NULL;
  if (ch->s) {
    lipc__stream_set_hooks(ch->s, NULL, NULL, NULL);
    lipc__handle_close(lipc__stream_handle(ch->s));
    ch->s = NULL;
  }
  if (ch->spare) {
    lipc__buf_free(&ch->spare->buf);
    free(ch->spare);
    ch->spare = NULL;
  }
  if (ch->nlazy == 0)
    lipc__buf_free(&ch->in);
  lipc__buf_free(&ch->out);
  lipc__waitq_free(h->rt, &ch->receivers);
  lipc__waitq_free(h->rt, &ch->drainers);
  unref(L, &ch->out_cbs);
  unref(L, &ch->stream_ref);
  unref(L, &ch->owner_ref);
  unref(L, &ch->dec_ref);
}

/* Messages that arrived before the end stay to be taken (a parent that
 * receives after its child exited gets them all) until the object goes. */
static void on_gc(lipc__handle *h) {
  lchannel *ch = (lchannel *)h;
  lipc__buf_free(&ch->in);
  ch->nlazy = 0;
  unref(h->rt->L, &ch->queue_ref);
  unref(h->rt->L, &ch->err_ref);
}

/* Errors of the stream under a channel are the channel's end, reported
 * as 'disconnect' (a peer that dies makes EPIPE/ECONNRESET). */
static int stream_error(lua_State *L) {
  (void)L;
  return 0;
}

static size_t opt_size(lua_State *L, int opts, const char *name, size_t dflt,
                       size_t max) {
  lua_Integer n;
  if (lua_getfield(L, opts, name) == LUA_TNIL) {
    lua_pop(L, 1);
    return dflt;
  }
  n = lua_tointeger(L, -1);
  if (!lua_isinteger(L, -1) || n <= 0 || (lua_Unsigned)n > max)
    luaL_error(L, "channel: opts.%s must be an integer in 1..%I", name,
               (lua_Integer)max);
  lua_pop(L, 1);
  return (size_t)n;
}

static void load_cjson(lchannel *ch, lua_State *L) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "cjson");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "new");
  lua_call(L, 0, 1); /* a private instance */
  lua_getfield(L, -1, "decode_max_depth");
  lua_pushinteger(L, LIPC_CODEC_MAX_DEPTH);
  lua_call(L, 1, 0);
  lua_getfield(L, -1, "decode");
  ch->dec_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pop(L, 2);
}

/* Makes a channel over the stream at sidx with the options table at
 * opts (0: none). Pushes it. */
static lchannel *new_channel(lua_State *L, int sidx, int opts, int json,
                             int auto_ref) {
  lipc_runtime *rt = lipc__rt(L);
  lipc__stream *s = lipc__stream_check(L, sidx, "stream.channel");
  uv_idle_t *prep;
  lchannel *ch;
  size_t max = DEFAULT_MAX, hwm = DEFAULT_HWM;
  int err;
  sidx = lua_absindex(L, sidx);
  if (lipc__stream_uv(s) == NULL || !lipc__stream_handle(s)->uv ||
      lipc__stream_handle(s)->closing)
    luaL_error(L, "stream.channel: the stream is closed or not a pipe, "
                  "socket or tty");
  if (lipc__stream_hook_ctx(s) != NULL)
    luaL_error(L, "stream.channel: the stream already has a channel");
  if (opts) {
    opts = lua_absindex(L, opts);
    max = opt_size(L, opts, "max_message", max, 0xffffffffu - MARKER_LEN);
    hwm = opt_size(L, opts, "high_water", hwm, (size_t)1 << 40);
    if (lua_getfield(L, opts, "serialization") == LUA_TSTRING) {
      const char *m = lua_tostring(L, -1);
      if (strcmp(m, "json") == 0)
        json = 1;
      else if (strcmp(m, "lipc") != 0)
        luaL_error(L, "stream.channel: opts.serialization must be 'lipc' "
                      "or 'json'");
    }
    lua_pop(L, 1);
  }
  prep = malloc(sizeof(*prep));
  if (prep == NULL)
    luaL_error(L, "stream.channel: out of memory");
  uv_idle_init(rt->loop, prep);
  ch =
      lipc__handle_new(L, sizeof(*ch), CHANNEL, (uv_handle_t *)prep, "channel");
  ch->h.internal = 1; /* the stream is what shows */
  ch->h.on_close = on_close;
  ch->h.on_gc = on_gc;
  ch->h.flush_close = flush_close;
  ch->stream_ref = ch->owner_ref = ch->queue_ref = LUA_NOREF;
  ch->out_cbs = ch->dec_ref = ch->strs_ref = LUA_NOREF;
  ch->err_ref = LUA_NOREF;
  ch->max = max;
  ch->hwm = hwm;
  ch->json = json;
  ch->auto_ref = auto_ref;
  ch->s = s;
  lua_pushvalue(L, sidx);
  ch->stream_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (opts && lua_getfield(L, opts, "owner") != LUA_TNIL)
    ch->owner_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  else if (opts)
    lua_pop(L, 1);
  if (opts && lua_getfield(L, opts, "own_disconnect") != LUA_TNIL)
    ch->own_disconnect = lua_toboolean(L, -1);
  if (opts)
    lua_pop(L, 1);
  if (json)
    load_cjson(ch, L);
  set_connected(ch, 1);
  /* stream:on("error", noop): its errors are our disconnect. */
  lua_pushcfunction(L, lipc__emitter_on);
  lua_pushvalue(L, sidx);
  lua_pushliteral(L, "error");
  lua_pushcfunction(L, stream_error);
  lua_call(L, 3, 0);
  lipc__stream_set_hooks(s, on_alloc, on_read, ch);
  err = lipc__stream_read_start(s);
  if (err < 0) {
    lipc__handle_close(&ch->h);
    luaL_error(L, "stream.channel: %s", uv_strerror(err));
  }
  update_ref(ch);
  return ch;
}

/* stream:channel([opts]) -> channel. opts: serialization ("lipc" or
 * "json"), max_message, high_water, owner (object events go to). */
static int l_channel(lua_State *L) {
  int opts = 0;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    opts = 2;
  }
  new_channel(L, 1, opts, 0, 0);
  return 1;
}

int lipc__channel_from_fd(lua_State *L, int fd, int json, int auto_ref) {
  lipc_runtime *rt = lipc__rt(L);
  uv_pipe_t *p = malloc(sizeof(*p));
  lchannel *ch;
  if (p == NULL)
    return 0;
  uv_pipe_init(rt->loop, p, 1);
  if (uv_pipe_open(p, fd) != 0) {
    lipc__close_free((uv_handle_t *)p);
    return 0;
  }
  lipc__stream_new(L, (uv_stream_t *)p, LIPC_STREAM, "pipe");
  ch = new_channel(L, -1, 0, json, auto_ref);
  ch->exit_on_gone = auto_ref;
  lua_remove(L, -2);
  return 1;
}

void lipc__channel_open(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"send", l_send},
      {"receive", l_receive},
      {"drain", l_drain},
      {"disconnect", l_disconnect},
      {"on", l_on},
      {"pending", l_pending},
      {"deliver_queued", l_deliver_queued},
      {"bound", l_bound},
      {"ref", l_ref},
      {"unref", l_unref},
      {"stream", l_stream},
      {"stats", l_stats},
      {NULL, NULL},
  };
  if (luaL_getmetatable(L, CHANNEL) != LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  lua_pop(L, 1);
  lipc__class(L, CHANNEL, NULL); /* methods */
  luaL_setfuncs(L, methods, 0);
  lua_getfield(L, -1, "off"); /* the emitter's */
  lua_pushcclosure(L, l_off, 1);
  lua_setfield(L, -2, "off");
  lua_pop(L, 1);
  luaopen_lipc_stream(L); /* stream methods */
  lua_pushcfunction(L, l_channel);
  lua_setfield(L, -2, "channel");
  lua_pop(L, 1);
}
