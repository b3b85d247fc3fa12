/*
 * receive.c - frames in: the channel takes over its stream's bytes
 * through the stream hooks. Reads land straight in the frame-assembly
 * buffer (no copy); frames are decoded into Lua values and handed to a
 * task in receive() or to 'message' listeners; while nobody waits or
 * listens they are checked and stay encoded in that buffer until somebody
 * takes them. A frame that breaks the protocol closes the channel with
 * an 'error' (a fault); the messages before it stay to be taken.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "channel_int.h"

#define READ_CHUNK (64 * 1024)

/* Counts one incoming message of n bytes (frame or line) and traces it. */
static void count_in(lchannel *ch, size_t n) {
  ch->msgs_in++;
  ch->bytes_in += n;
  if (ch->h.rt->trace & LIPC_TRACE_IPC)
    lipc__trace(ch->h.rt, "ipc", "recv message %zu bytes fd %d", n,
                lipc__chan_fd(ch));
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

/* Each entry is msg, handle and the size of the frame (or line) it came
 * in, which counts against receive_high_water while it waits (qbytes). */
static void queue_push(lchannel *ch, lua_State *L) { /* pops msg, handle */
  if (ch->queue_ref == LUA_NOREF) {
    lua_newtable(L);
    ch->queue_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    ch->qhead = ch->qtail = 0;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, ch->queue_ref);
  lua_pushvalue(L, -3);
  lua_rawseti(L, -2, 3 * ch->qtail + 1);
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, 3 * ch->qtail + 2);
  lua_pushinteger(L, (lua_Integer)ch->deliver_len);
  lua_rawseti(L, -2, 3 * ch->qtail + 3);
  ch->qbytes += ch->deliver_len;
  ch->qtail++;
  lua_pop(L, 3);
}

static int queue_shift(lchannel *ch, lua_State *L) { /* pushes msg, handle */
  lua_Integer i;
  if (ch->queue_ref == LUA_NOREF || ch->qhead == ch->qtail)
    return 0;
  i = 3 * ch->qhead;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ch->queue_ref);
  lua_rawgeti(L, -1, i + 3);
  ch->qbytes -= (size_t)lua_tointeger(L, -1);
  lua_pop(L, 1);
  lua_rawgeti(L, -1, i + 1);
  lua_rawgeti(L, -2, i + 2);
  lua_pushnil(L);
  lua_rawseti(L, -4, i + 1);
  lua_pushnil(L);
  lua_rawseti(L, -4, i + 2);
  lua_pushnil(L);
  lua_rawseti(L, -4, i + 3);
  lua_remove(L, -3);
  if (++ch->qhead == ch->qtail) {
    ch->qhead = ch->qtail = 0;
    ch->qbytes = 0;
  }
  return 1;
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
  ch->deliver_len = 4 + n;
  luaL_checkstack(L, 8, "channel");
  used = lipc__codec_decode_checked(L, p + 4, n, &err);
  if (used > 0 && (size_t)used == n) {
    nil_as_null(L);
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
  int r;
  if (queue_values(ch) > 0)
    r = queue_shift(ch, L);
  else if (ch->nlazy == 0)
    return 0;
  else
    r = take_lazy(ch, L) < 0 ? -1 : 1;
  if (ch->held && r > 0) /* under the mark again: read on */
    lipc__chan_update_hold(ch);
  return r;
}

/* The fault kept for the first receive() after the messages before it:
 * pushes nil, msg, code on L and forgets it. Returns 3, or 0 when there
 * is none. */
static int take_fault(lchannel *ch, lua_State *L) {
  if (ch->err_ref == LUA_NOREF)
    return 0;
  lua_pushnil(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ch->err_ref);
  lua_pushstring(L, ch->err_code);
  chan_unref(L, &ch->err_ref);
  return 3;
}

/* ---- receiving ------------------------------------------------------------ */

/* Tasks waiting in receive() get the messages nobody took, one each,
 * longest-waiting first; a woken task takes more without parking once
 * nobody else waits (lipc__chan_receive). */
void lipc__chan_wake_receivers(lchannel *ch) {
  lipc_runtime *rt = ch->h.rt;
  int r;
  while (lipc__waitq_waiting(&ch->receivers) && queue_len(ch) > 0 &&
         !rt->exiting) {
    r = take_next(ch, rt->L);
    if (r < 0) { /* the receiver gets the fault */
      lipc__chan_fault(ch, "ERR_IPC_BAD_MESSAGE", 0);
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
void lipc__chan_deliver(lchannel *ch) {
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
  chan_emit(ch, "message", 2);
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
      lipc__chan_deliver(ch);
    } else if (lazy_too && ch->nlazy > 0) {
      if ((r = take_lazy(ch, L)) < 0)
        break;
      queue_push(ch, L);
    } else {
      break;
    }
  }
  if (r < 0) {
    lipc__chan_fault(ch, "ERR_IPC_BAD_MESSAGE", 0);
    return -1;
  }
  update_ref(ch);
  return 0;
}

/* A fault nobody handles on a channel over an accepted socket goes to
 * the socket's server as 'client_error' (lipc__stream_to_sink): a peer
 * cannot end the process. The message is on top of rt->L (kept). */
static int to_sink(lchannel *ch, const char *code) {
  lua_State *L = ch->h.rt->L;
  int sent;
  if (ch->s == NULL)
    return 0;
  lua_pushvalue(L, -1);
  lua_pushstring(L, code);
  lipc__handle_push(lipc__stream_handle(ch->s));
  sent = lipc__stream_to_sink(ch->s, -3);
  lua_pop(L, 3);
  return sent;
}

/* The peer broke the protocol: the channel closes with an 'error' saying
 * why (the message, on top of rt->L, is popped); the process lives on.
 * Messages before the fault stay to be taken. A task in receive() gets
 * nil, msg, code (if it gets a message first, its next receive() after
 * the queue does); 'error' listeners get msg, code; with nobody at all
 * (and not taken: the caller of receive() has it) it goes to the server
 * that accepted the socket (to_sink), or else is uncaught. */
void lipc__chan_fault(lchannel *ch, const char *code, int taken) {
  lipc_runtime *rt = ch->h.rt;
  lua_State *L = rt->L;
  int handled = taken, listeners = 0;
  if (ch->gone) {
    lua_pop(L, 1);
    return;
  }
  lipc__chan_set_connected(ch,
                           0); /* a woken task or a listener sees it closed */
  if (ch->s)
    lipc__handle_close(lipc__stream_handle(ch->s));
  if (lipc__waitq_waiting(&ch->receivers)) {
    handled = 1;
    lua_pushvalue(L, -1); /* for the first receive() after the messages */
    ch->err_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    ch->err_code = code;
    lipc__chan_wake_receivers(ch); /* the messages before the fault first */
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
  if (!handled && !listeners && to_sink(ch, code))
    ; /* reported on the server that accepted its socket */
  else if (!handled || listeners) {
    lua_pushvalue(L, -1);
    lua_pushstring(L, code);
    chan_emit(ch, "error", 2);
  }
  lua_pop(L, 1);
  lipc__chan_gone(ch);
}

void lipc__chan_protocol_error(lchannel *ch, const char *code, const char *fmt,
                               ...) {
  va_list ap;
  if (ch->gone)
    return;
  va_start(ap, fmt);
  lua_pushvfstring(ch->h.rt->L, fmt, ap);
  va_end(ap);
  lipc__chan_fault(ch, code, 0);
}

static int has_marker(const char *p, size_t n) {
  return n >= MARKER_LEN && (unsigned char)p[0] == 0xd4 && p[1] == 0x01;
}

static int has_control(const char *p, size_t n) {
  return n >= MARKER_LEN && (unsigned char)p[0] == 0xd4 && p[1] == CONTROL_EXT;
}

/* A peer's frame (or line) of n bytes would take more than max_decoded. */
static void too_costly(lchannel *ch, const char *what, size_t n) {
  lipc__chan_protocol_error(
      ch, "ERR_IPC_MESSAGE_TOO_LARGE",
      "channel: incoming %s of %I bytes would take more than max_decoded "
      "(%I bytes) as Lua values",
      what, (lua_Integer)n, (lua_Integer)ch->max_decoded);
}

/* A frame left lazy is checked now, its decoded size too: a bad one
 * faults the channel when it arrives, not when somebody takes it, and
 * one over max_decoded before anything is built. Returns 0 or -1. */
static int check_frame(lchannel *ch, const char *p, size_t n) {
  const char *err = NULL;
  ptrdiff_t used = lipc__codec_check_budget(p, n, ch->max_decoded, &err);
  if (used > 0 && (size_t)used == n)
    return 0;
  if (used < 0 && err == lipc__codec_over_budget) {
    too_costly(ch, "frame", n);
    return -1;
  }
  lipc__chan_protocol_error(ch, "ERR_IPC_BAD_MESSAGE",
                            "channel: bad message from peer: %s",
                            bad_reason(used, err));
  return -1;
}

/* A value costs at most COST_TABLE + COST_SLOT (80) bytes of Lua objects a
 * byte (an empty map in an array): a frame under this could not exceed
 * max_decoded, and is decoded without the check walk first. */
#define MAX_COST_PER_BYTE 80

static int may_cost_too_much(lchannel *ch, size_t n) {
  return (uint64_t)n * MAX_COST_PER_BYTE > ch->max_decoded;
}

/*
** What a JSON line's Lua values would take, estimated as for MessagePack
** (lipc__codec_check_budget): 64 + 32 an object or array, 32 a further
** element, 40 + its length a string. Strings are skipped whole, escapes
** included.
*/
static uint64_t json_cost(const char *p, size_t n) {
  uint64_t cost = 0;
  size_t i;
  for (i = 0; i < n; i++) {
    switch (p[i]) {
      case '{':
      case '[': cost += 64 + 32; break;
      case ',': cost += 32; break;
      case '"': {
        size_t start = i;
        for (i++; i < n && p[i] != '"'; i++)
          if (p[i] == '\\')
            i++;
        cost += 40 + (i - start);
        break;
      }
      default: break;
    }
  }
  return cost;
}

static int frame_value(lchannel *ch, lipc__handoff_kind kind, int control);

/* One native frame body: [marker] value. Returns 0, or -1 after a
 * protocol error. */
static int native_frame(lchannel *ch, const char *p, size_t n) {
  lua_State *L = ch->h.rt->L;
  const char *err = NULL;
  ptrdiff_t used;
  lipc__handoff_kind kind = LIPC_HANDOFF_NONE;
  int control = has_control(p, n);
  ch->deliver_len = 4 + n;
  if (has_marker(p, n) || control) {
    kind = (lipc__handoff_kind)(unsigned char)p[2];
    p += MARKER_LEN;
    n -= MARKER_LEN;
  }
  if (may_cost_too_much(ch, n) && check_frame(ch, p, n) < 0)
    return -1; /* refused before anything is built */
  luaL_checkstack(L, 8, "channel");
  used = lipc__codec_decode(L, p, n, &err);
  if (used <= 0 || (size_t)used != n) {
    if (used > 0)
      lua_pop(L, 1);
    lipc__chan_protocol_error(ch, "ERR_IPC_BAD_MESSAGE",
                              "channel: bad message from peer: %s",
                              bad_reason(used, err));
    return -1;
  }
  return frame_value(ch, kind, control);
}

/* The value of a frame (on top of rt->L; popped) with the handle of
 * this kind, or a control frame's: delivered, or emitted as 'control'.
 * Returns 0, or -1 after a protocol error. */
static int frame_value(lchannel *ch, lipc__handoff_kind kind, int control) {
  lua_State *L = ch->h.rt->L;
  int herr;
  if (control) { /* not a message: 'control' (kind, value) */
    lua_pushinteger(L, (lua_Integer)kind);
    lua_insert(L, -2);
    chan_emit(ch, "control", 2);
    return 0;
  }
  nil_as_null(L);
  if (kind) {
    int top = lua_gettop(L), real;
    /* pushes the object */
    herr = lipc__handoff_take(L, lipc__stream_uv(ch->s), kind, &real);
    if (herr == UV_EPROTO) { /* a lie about the fd: not to be wrapped */
      lua_settop(L, top - 1);
      lipc__chan_protocol_error(ch, "ERR_IPC_BAD_HANDLE",
                                "channel: the peer sent %s as %s",
                                lipc__handoff_name(real),
                                lipc__handoff_name(kind));
      return -1;
    }
    if (herr < 0 || lua_gettop(L) != top + 1) {
      lua_settop(L, top);
      lua_pushnil(L);
    }
  } else {
    lua_pushnil(L);
  }
  lipc__chan_deliver(ch);
  return 0;
}

/* ---- large frames, built in steps -------------------------------------- */

/* Building a frame's values costs up to ~100 ns a value: an 8 MB frame
 * of small integers held the loop for a second, and every other peer
 * with it. So a frame of STEP_MIN bytes or more is built (after the
 * budget check walk, where max_decoded asks for one) STEP_VALUES values
 * per loop turn, on a Lua thread of its own, from an idle handle: each
 * turn polls for I/O in between. The frame stays in `in` at ipos, and
 * reads are held off, until its value is delivered like any other; the
 * frames behind it wait. The first slice runs at once, so a frame that
 * is large only in bytes (a big string) takes no extra turn. */
#define STEP_MIN (64 * 1024)
#define STEP_VALUES 16384
#define CHECK_VALUES (8 * STEP_VALUES) /* the check walk builds nothing */
#define WARM_STEP ((size_t)1 << 20)    /* fresh pages touched a turn */

struct lipc__chan_job {
  lipc__handle h;
  uv_idle_t idle;
  lchannel *ch; /* NULL once the channel let it go */
  lipc__codec_steps *st;
  lipc__json_steps *js; /* a JSON line's instead */
  size_t line;          /* a JSON line's length, without its "\n" */
  lua_State *T;         /* the value is built on this thread */
  int thread_ref;       /* which the registry keeps */
  size_t off, n;        /* the value: n bytes at in.data + ipos + off */
  lipc__handoff_kind kind;
  int control, checking;
};

static void job_closed(lipc__handle *h) {
  lipc__chan_job *j = (lipc__chan_job *)h;
  if (j->ch != NULL) /* closed at exit before its channel */
    j->ch->job = NULL;
  lipc__codec_steps_free(j->st);
  lipc__json_steps_free(j->js);
  free(j);
}

/* Ends the channel's job, if any, with what it built so far. */
void lipc__chan_job_drop(lchannel *ch) {
  lipc__chan_job *j = ch->job;
  if (j == NULL)
    return;
  ch->job = NULL;
  j->ch = NULL;
  lipc__codec_steps_free(j->st);
  j->st = NULL;
  lipc__json_steps_free(j->js);
  j->js = NULL;
  chan_unref(ch->h.rt->L, &j->thread_ref);
  lipc__state_warm(ch->h.rt->L, 0, 0); /* a block made ready and not taken */
  lipc__handle_close(&j->h);
}

/* A big table or string's block is made ready a slice at a time before
 * it is created: its fresh pages would fault all at once (a 128 MiB
 * array: a quarter of a second on a VM). */
static int job_ready(void *ctx, size_t bytes) {
  lchannel *ch = ctx;
  return lipc__state_warm(ch->h.rt->L, bytes, WARM_STEP);
}

/* The job's frame failed a check: the channel closes with the reason. */
static void job_failed(lchannel *ch, ptrdiff_t used, const char *err) {
  size_t n = ch->job->n;
  if (ch->job->js) {
    char why[128];
    snprintf(why, sizeof why, "%s", err);
    lipc__chan_job_drop(ch);
    lipc__chan_json_bad(ch, why);
    return;
  }
  lipc__chan_job_drop(ch);
  if (used < 0 && err == lipc__codec_over_budget) {
    too_costly(ch, "frame", n);
    return;
  }
  lipc__chan_protocol_error(ch, "ERR_IPC_BAD_MESSAGE",
                            "channel: bad message from peer: %s",
                            bad_reason(used, err));
}

/* The value is built (on top of j->T): it goes where native_frame's
 * would, after the messages before it. */
static void job_done(lchannel *ch) {
  lipc__chan_job *j = ch->job;
  lua_State *L = ch->h.rt->L;
  size_t len = j->js ? j->line + 1 : 4 + get_be32(ch->in.data + ch->ipos);
  int json = j->js != NULL;
  if (queue_len(ch) > 0 && deliver_pending(ch, 1) < 0)
    return; /* a fault: the channel dropped the job */
  if (ch->job != j || ch->gone || ch->h.rt->exiting) {
    lipc__chan_job_drop(ch);
    return;
  }
  ch->ipos += len;
  ch->dpos = ch->ipos;
  ch->deliver_len = len;
  luaL_checkstack(L, 8, "channel");
  lua_xmove(j->T, L, 1);
  lipc__chan_job_drop(ch);
  if (json)
    lipc__chan_json_value(ch);
  else
    frame_value(ch, j->kind, j->control);
}

/* One slice of the job: 1 when it is over (delivered or failed), 0
 * when more turns are needed. */
static int job_slice(lchannel *ch) {
  lipc__chan_job *j = ch->job;
  const char *p = ch->in.data + ch->ipos + j->off, *err = NULL;
  ptrdiff_t used;
  if (j->js) {
    int r = lipc__json_steps_run(j->js, j->T, p, j->n, STEP_VALUES);
    if (r == LIPC_CODEC_MORE)
      return 0;
    if (r < 0)
      job_failed(ch, -1, lipc__json_steps_error(j->js));
    else
      job_done(ch);
    return 1;
  }
  if (j->checking) {
    used = lipc__codec_steps_run(j->st, NULL, p, j->n, CHECK_VALUES, &err);
    if (used == LIPC_CODEC_MORE)
      return 0;
    if (used <= 0 || (size_t)used != j->n) {
      job_failed(ch, used, err);
      return 1;
    }
    lipc__codec_steps_free(j->st); /* checked: now built */
    j->checking = 0;
    if ((j->st = lipc__codec_steps_new(UINT64_MAX, 1)) == NULL) {
      job_failed(ch, -1, "not enough memory");
      return 1;
    }
    lipc__codec_steps_ready(j->st, job_ready, ch);
    return 0;
  }
  used = lipc__codec_steps_run(j->st, j->T, p, j->n, STEP_VALUES, &err);
  if (used == LIPC_CODEC_MORE)
    return 0;
  if (used <= 0 || (size_t)used != j->n) {
    if (used > 0)
      lua_pop(j->T, 1);
    job_failed(ch, used, err);
    return 1;
  }
  job_done(ch);
  return 1;
}

static void parse(lchannel *ch);
static void drop_unclaimed(lchannel *ch);

/* A fork child's channel keeps its process alive for a job only while
 * somebody waits for the message (update_ref). */
static void job_ref(lchannel *ch) {
  uv_handle_t *idle = (uv_handle_t *)&ch->job->idle;
  if (!ch->auto_ref || lipc__waitq_waiting(&ch->receivers) ||
      has_message_listeners(ch))
    uv_ref(idle);
  else
    uv_unref(idle);
}

static void on_job_idle(uv_idle_t *idle) {
  lipc__chan_job *j = idle->data;
  lchannel *ch = j->ch;
  if (ch == NULL || ch->h.rt->exiting) {
    if (ch)
      lipc__chan_job_drop(ch);
    return;
  }
  if (!job_slice(ch)) {
    job_ref(ch);
    return;
  }
  if (!ch->gone && ch->s) { /* the frames behind it */
    parse(ch);
    drop_unclaimed(ch);
  }
}

/* Starts building the frame (or JSON line) of flen bytes at ipos in
 * steps, and runs the first slice. Returns 0 (ch->job is NULL again when
 * that slice finished it), or -1 after a protocol error. A line's cost
 * was estimated before (json_cost), so it has no check walk. */
static int job_start(lchannel *ch, size_t flen) {
  lua_State *L = ch->h.rt->L;
  const char *p = ch->in.data + ch->ipos + (ch->json ? 0 : 4);
  lipc__chan_job *j = calloc(1, sizeof(*j));
  if (j == NULL) {
    lipc__chan_protocol_error(ch, "ERR_IPC_BAD_MESSAGE",
                              "channel: not enough memory for a message");
    return -1;
  }
  if (ch->json) {
    j->line = flen;
    j->n = lipc__chan_json_text(p, flen);
    j->js = lipc__json_steps_new();
  } else {
    j->control = has_control(p, flen);
    j->off = 4;
    j->n = flen;
    if (has_marker(p, flen) || j->control) {
      j->kind = (lipc__handoff_kind)(unsigned char)p[2];
      j->off += MARKER_LEN;
      j->n -= MARKER_LEN;
    }
    j->checking = may_cost_too_much(ch, j->n);
    j->st = j->checking ? lipc__codec_steps_new(ch->max_decoded, 0)
                        : lipc__codec_steps_new(UINT64_MAX, 0);
  }
  uv_idle_init(ch->h.rt->loop, &j->idle);
  lipc__handle_bare(ch->h.rt, &j->h, (uv_handle_t *)&j->idle, "channel",
                    job_closed);
  j->T = lua_newthread(L);
  j->thread_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  j->ch = ch;
  ch->job = j;
  if (j->st == NULL && j->js == NULL) {
    job_failed(ch, -1, "not enough memory");
    return -1;
  }
  if (j->st && !j->checking)
    lipc__codec_steps_ready(j->st, job_ready, ch);
  if (job_slice(ch))
    return ch->gone ? -1 : 0;
  job_ref(ch);
  uv_idle_start(&j->idle, on_job_idle);
  return 0;
}

/* The n bytes at p, after a frame, hold no complete frame. */
static int last_frame(const char *p, size_t n) {
  return n < 4 || n - 4 < get_be32(p);
}

/* A peer's frame (or line) of n bytes is over max_message. */
static void too_large(lchannel *ch, const char *what, size_t n) {
  lipc__chan_protocol_error(
      ch, "ERR_IPC_MESSAGE_TOO_LARGE",
      "channel: incoming %s of %I bytes is over max_message (%I bytes)", what,
      (lua_Integer)n, (lua_Integer)ch->max);
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
  while (!ch->gone && ch->s && ch->job == NULL) {
    const char *p = ch->in.data + ch->ipos;
    size_t avail = ch->in.len - ch->ipos, flen;
    if (ch->json) {
      const char *nl = memchr(p, '\n', avail);
      if (nl == NULL) {
        if (avail > ch->max)
          lipc__chan_protocol_error(ch, "ERR_IPC_MESSAGE_TOO_LARGE",
                                    "channel: incoming"
                                    " message over max_message (%I bytes)",
                                    (lua_Integer)ch->max);
        break;
      }
      flen = (size_t)(nl - p);
      count_in(ch, flen + 1);
      if (flen > ch->max) {
        too_large(ch, "message", flen);
        break;
      }
      if (may_cost_too_much(ch, flen) && json_cost(p, flen) > ch->max_decoded) {
        too_costly(ch, "line", flen);
        break;
      }
      if (flen >= STEP_MIN) { /* built in steps, delivered in its turn */
        if (job_start(ch, flen) < 0 || ch->job)
          break;
        continue;
      }
      ch->ipos += flen + 1;
      ch->dpos = ch->ipos;
      if (lipc__chan_json_line(ch, p, flen) < 0)
        break;
      continue;
    }
    if (avail < 4)
      break;
    flen = get_be32(p);
    if (flen > ch->max) {
      /* The 3 bytes of slack are the handle marker's alone: a value over
       * max_message is refused here as send() refuses it. Which it is
       * shows once the payload's first 3 bytes are in. */
      if (flen <= ch->max + MARKER_LEN && avail - 4 < MARKER_LEN)
        break;
      if (flen > ch->max + MARKER_LEN || !has_marker(p + 4, avail - 4)) {
        too_large(ch, "frame", flen);
        break;
      }
    }
    if (avail - 4 < flen)
      break;
    count_in(ch, 4 + flen);
    if (flen >= STEP_MIN) { /* built in steps, delivered in its turn */
      if (job_start(ch, flen) < 0 || ch->job)
        break;
      continue;
    }
    if (!has_message_listeners(ch) && !has_marker(p + 4, flen) &&
        !has_control(p + 4, flen) &&
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
  lipc__chan_wake_receivers(ch);
  lipc__chan_update_hold(ch);
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
  /* One read takes no more than asked for, however much room the buffer
   * kept: a hold (receive_high_water) acts between reads, so a read the
   * size of a grown buffer would overshoot the mark by that much. */
  buf->base = ch->in.data + ch->in.len;
  buf->len = ch->in.cap - ch->in.len < want ? ch->in.cap - ch->in.len : want;
}

/* The stream ended with part of a frame (or line) unread: the peer died
 * or closed in the middle of a write. The messages before it go first; a
 * receive() after them gets nil, msg, ERR_IPC_TRUNCATED, and 'error'
 * listeners hear it. Nobody listening is no uncaught error: a peer that
 * died is not a fault of ours, and its 'disconnect' follows as usual. */
static void cut_short(lchannel *ch) {
  lua_State *L = ch->h.rt->L;
  const char *p = ch->in.data + ch->ipos;
  size_t have = ch->in.len - ch->ipos;
  if (ch->json)
    lua_pushfstring(L,
                    "channel: the peer's stream ended inside a line "
                    "(%I bytes)",
                    (lua_Integer)have);
  else if (have < 4)
    lua_pushfstring(L,
                    "channel: the peer's stream ended inside a frame "
                    "(%I of its 4 length bytes)",
                    (lua_Integer)have);
  else
    lua_pushfstring(L,
                    "channel: the peer's stream ended inside a frame "
                    "(%I of %I bytes)",
                    (lua_Integer)have, (lua_Integer)(4 + get_be32(p)));
  if (!lipc__waitq_waiting(&ch->receivers) && ch->err_ref == LUA_NOREF) {
    lua_pushvalue(L, -1); /* for a receive() to come, after the messages */
    ch->err_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    ch->err_code = "ERR_IPC_TRUNCATED";
  }
  lipc__chan_fault(ch, "ERR_IPC_TRUNCATED", 1);
}

/* fds from the peer that no marker claimed are closed at once, or a peer
 * sending them with plain frames would fill our fd table (EMFILE). An
 * fd arrives with the first byte of its frame, and frames with a marker
 * take theirs as they are parsed: only the frame still being assembled
 * may claim one, and only when it starts with a marker (or too little of
 * it is in to tell). That one is the newest; the older ones go. */
static void drop_unclaimed(lchannel *ch) {
  uv_pipe_t *pipe;
  const char *p;
  size_t avail;
  int keep;
  if (ch->s == NULL || (pipe = (uv_pipe_t *)lipc__stream_uv(ch->s)) == NULL ||
      pipe->type != UV_NAMED_PIPE || !pipe->ipc)
    return;
  if (ch->job) /* the frames behind it are not parsed yet */
    return;
  p = ch->in.data + ch->ipos;
  avail = ch->in.len - ch->ipos;
  if (ch->json)
    keep = avail > 0; /* a NODE_HANDLE line, maybe */
  else
    keep =
        avail > 0 && (avail < 4 + MARKER_LEN || has_marker(p + 4, avail - 4));
  while (uv_pipe_pending_count(pipe) > keep) {
    if (ch->h.rt->trace & LIPC_TRACE_IPC)
      lipc__trace(ch->h.rt, "ipc", "closed an fd no marker claimed fd %d",
                  lipc__chan_fd(ch));
    lipc__handoff_drop((uv_stream_t *)pipe);
  }
}

static void on_read(lipc__stream *s, ssize_t n, const char *base) {
  lchannel *ch = lipc__stream_hook_ctx(s);
  (void)base;
  /* close() was called: its callback ends the channel in the loop's
   * close phase, and what the stream reads before that (the peer's end
   * after half a frame, more bytes) is no longer anybody's */
  if (ch == NULL || ch->h.closing)
    return;
  if (n < 0) {                  /* EOF, reset, or closing */
    int busy = ch->job != NULL; /* reads were held: closing, not cut */
    lipc__chan_job_drop(ch);
    if (!ch->gone && !busy && ch->ipos < ch->in.len) {
      cut_short(ch);
      return;
    }
    if (ch->s)
      lipc__handle_close(lipc__stream_handle(ch->s));
    lipc__chan_gone(ch);
    return;
  }
  if (ch->gone)
    return;
  ch->in.len += (size_t)n;
  ch->in_read = 1;
  ch->read_wrote = 0;
  parse(ch);
  ch->in_read = 0;
  drop_unclaimed(ch);
  /* The rest of the replies to what this read delivered go out now, in
   * one write, not from the flush handle in the next loop turn: a peer
   * waiting for them gets them before this loop runs its other
   * callbacks (the first went out at once, send.c's write_now). */
  if (ch->out.len > 0 && !ch->h.closing)
    lipc__chan_flush(ch, 0);
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

static int park_receiver(lchannel *ch, lua_State *L) {
  if (ch->auto_ref && lipc__stream_uv(ch->s)) /* somebody waits now */
    uv_ref((uv_handle_t *)lipc__stream_uv(ch->s));
  return lipc__waitq_park(L, &ch->receivers);
}

/* receive() in a task -> msg, handle; nil once disconnected. Tasks
 * already waiting come first: one that lipc__chan_wake_receivers woke
 * with a message and that receives again at once (a pool's caller with
 * its next call) parks behind them, or it would take the message of one
 * of them. */
int lipc__chan_receive(lua_State *L) {
  lchannel *ch = check_channel(L, 1, "channel.receive");
  int r;
  lipc__task_check(L, "channel.receive");
  if (lipc__waitq_waiting(&ch->receivers) && ch->connected)
    return park_receiver(ch, L);
  if ((r = take_next(ch, L)) > 0)
    return 2;
  if (r < 0) { /* this caller gets the fault: nil, msg, code */
    lua_pushnil(L);
    lua_insert(L, -2);
    lua_pushstring(ch->h.rt->L, lua_tostring(L, -1));
    lua_pushliteral(L, "ERR_IPC_BAD_MESSAGE");
    lipc__chan_fault(ch, "ERR_IPC_BAD_MESSAGE", 1);
    return 3;
  }
  if ((r = take_fault(ch, L)) != 0) /* after the messages before it */
    return r;
  if (!ch->connected)
    return 0;
  return park_receiver(ch, L);
}

/* on(name, fn): a 'message' listener first gets the queued messages. */
static int l_on(lua_State *L) {
  lchannel *ch = check_channel(L, 1, "channel.on");
  const char *ev = lipc__checkstring(L, 2, "channel.on");
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

void lipc__chan_update_hold(lchannel *ch) {
  int hold;
  if (ch->s == NULL || ch->gone)
    return;
  if (ch->reply_wait && out_queued(ch) < ch->hwm)
    ch->reply_wait = 0;
  hold = ch->reply_wait || untaken(ch) > ch->rhwm || ch->job != NULL;
  if (hold == (int)ch->held)
    return;
  ch->held = (unsigned)hold;
  if (ch->h.rt->trace & LIPC_TRACE_IPC)
    lipc__trace(ch->h.rt, "ipc", "%s reading fd %d",
                hold ? "hold off" : "resume", lipc__chan_fd(ch));
  lipc__stream_hold(ch->s, hold);
}

int lipc__chan_read_start(lchannel *ch) {
  lipc__stream_set_hooks(ch->s, on_alloc, on_read, ch);
  return lipc__stream_read_start(ch->s);
}

void lipc__chan_receive_methods(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"receive", lipc__chan_receive},
      {"on", l_on},
      {"pending", l_pending},
      {"deliver_queued", l_deliver_queued},
      {NULL, NULL},
  };
  luaL_setfuncs(L, methods, 0);
  lua_getfield(L, -1, "off"); /* the emitter's */
  lua_pushcclosure(L, l_off, 1);
  lua_setfield(L, -2, "off");
}
