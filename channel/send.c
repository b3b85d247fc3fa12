/*
 * send.c - frames out. Sends are encoded into an output buffer and every
 * frame of one loop turn goes out in one write, flushed from a uv_idle
 * (after the turn's callbacks, before polling); while that write is in
 * flight the next batch fills the other buffer. Replies to a read of the
 * same channel go sooner: the first at once (write_now), the rest at the
 * end of that read callback (receive.c). Strings of 64 KiB or more
 * are not copied into it: the write gathers them from the Lua strings,
 * kept alive until the kernel has the bytes (ipc_bulk with both ends on
 * one CPU: ~3.9 -> ~4.3 GB/s). A frame with a handle goes alone, in its
 * own write (uv_write2).
 */
#include <stdlib.h>
#include <string.h>

#include "channel_int.h"

#define CLOSED_CODE "ERR_IPC_CHANNEL_CLOSED"
#define KEEP_BUF_MAX ((size_t)4 << 20) /* larger buffers go back to malloc */

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

/* Closes a sent socket's object once its fd has gone (keep_open unset):
 * the peer now owns the connection, as with Node's send. */
static void close_sent(lipc_runtime *rt, int ref) {
  lua_State *L = rt->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  if (lua_getfield(L, -1, "close") == LUA_TFUNCTION) {
    lua_pushvalue(L, -2);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK)
      lua_pop(L, 1); /* a close does not fail; nothing to report */
  } else {
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

static void on_written(void *ctx, int status) {
  wnode *w = ctx;
  lchannel *ch = w->ch;
  lipc_runtime *rt = w->rt;
  int regular = w->handle_ref == LUA_NOREF;
  chan_unref(rt->L, &w->strs_ref); /* the kernel has the bytes now */
  w->str_bytes = 0;
  if (ch == NULL) { /* the channel went first */
    lipc__buf_free(&w->buf);
    free(w);
    return;
  }
  unlink_write(ch, w);
  if (regular)
    ch->nregular--;
  if (w->close_handle && status == 0)
    close_sent(rt, w->handle_ref);
  w->close_handle = 0;
  chan_unref(rt->L, &w->handle_ref);
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
    lipc__chan_flush(ch, ch->close_after);
  if (ch->held)
    lipc__chan_update_hold(ch);
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
void lipc__chan_flush(lchannel *ch, int force) {
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
    chan_unref(rt->L, &w->strs_ref);
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
  if (ch->held) /* replies written: the peer's lines may come again */
    lipc__chan_update_hold(ch);
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
      chan_emit(ch, "drain", 0);
  }
}

/* An idle handle, not a prepare: a flush that completes at once (try
 * write) can wake a drain()er who sends the next batch and schedules the
 * next flush from inside this callback. A prepare started there would run
 * only after a poll that nothing may ever end; an active idle handle makes
 * that poll return at once. */
static void on_idle(uv_idle_t *p) {
  lchannel *ch = p->data;
  lipc__chan_flush(ch, 0);
}

void lipc__chan_schedule(lchannel *ch) {
  if (ch->h.uv && !uv_is_active(ch->h.uv) && ch->nregular == 0)
    uv_idle_start((uv_idle_t *)ch->h.uv, on_idle);
}

/*
** The first frame sent while this channel's read callback runs (a
** request being answered) goes out at once, by the flush the loop would
** run a turn later: the peer waiting for it no longer also waits for the
** rest of the handler, its next receive() and the return to the read
** callback. Later frames of that read batch as always and go out at its
** end. Not while drain()ers or a hold wait for the flush: it would wake
** them inside this send().
*/
static void write_now(lchannel *ch) {
  ch->read_wrote = 1;
  if (ch->need_drain || ch->held)
    lipc__chan_schedule(ch);
  else
    lipc__chan_flush(ch, 0);
}

/* Calls obj:pause() on the object at idx. */
static void pause_handle(lua_State *L, int idx) {
  if (lua_getfield(L, idx, "pause") == LUA_TFUNCTION) {
    lua_pushvalue(L, idx);
    lua_call(L, 1, 0);
  } else {
    lua_pop(L, 1);
  }
}

/* A handle travels alone, in its own uv_write2: SCM_RIGHTS arrive with
 * the first byte of a write, so that byte must start its frame. */
static int send_with_handle(lchannel *ch, lua_State *L, int hidx,
                            uv_stream_t *hs, size_t start, int cb,
                            int close_after) {
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
  lipc__chan_flush(ch, 1); /* what came before goes first */
  w = calloc(1, sizeof(*w));
  if (w == NULL) {
    lipc__buf_free(&frame);
    return UV_ENOMEM;
  }
  w->buf = frame;
  w->ch = ch;
  w->rt = ch->h.rt;
  w->cbs = w->strs_ref = LUA_NOREF;
  w->close_handle = close_after;
  lua_pushvalue(L, hidx);
  w->handle_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (cb) { /* this frame's own: it runs once this write is done */
    lua_createtable(L, 1, 0);
    lua_pushvalue(L, cb);
    lua_rawseti(L, -2, 1);
    w->cbs = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  b = uv_buf_init(frame.data, (unsigned)frame.len);
  err = lipc__stream_write_raw(ch->s, &b, 1, hs, on_written, w);
  if (err) {
    luaL_unref(L, LUA_REGISTRYINDEX, w->handle_ref);
    chan_unref(L, &w->cbs);
    lipc__buf_free(&w->buf);
    free(w);
    return err;
  }
  if (close_after) /* as Node: the parent no longer reads it */
    pause_handle(L, hidx);
  w->next = ch->writes;
  if (ch->writes)
    ch->writes->prev = w;
  ch->writes = w;
  return 0;
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
  } else if (!rt->exiting) {
    /* on the owner or the channel, also once it is closed (its handle
     * no longer leads there): uncaught when nobody listens, as Node */
    lipc__chan_push_target(ch, L, 1);
    if (L != rt->L)
      lua_xmove(L, rt->L, 1);
    lua_pushstring(rt->L, msg);
    lua_pushstring(rt->L, CLOSED_CODE);
    lipc__emit(rt, -3, "error", 2);
    lua_pop(rt->L, 1);
  }
  lua_pushboolean(L, 0);
  return 1;
}

/* send(value[, handle][, cb]) -> true, or false over the high-water mark
 * ('drain' follows). A value that cannot be sent raises, naming its key
 * path; nothing is sent. */
int lipc__chan_send(lua_State *L) {
  lchannel *ch = check_channel(L, 1, "channel.send");
  int hidx = 0, cb = 0, keep_open = 0;
  lipc__handoff_kind kind = LIPC_HANDOFF_NONE;
  uv_stream_t *hs = NULL;
  size_t start, body, strs0 = ch->str_bytes;
  int nsegs0 = ch->nsegs;
  lipc__checkany(L, 2, "channel.send");
  if (lua_isfunction(L, 3)) {
    cb = 3;
  } else {
    int next = 4;
    if (!lua_isnoneornil(L, 3))
      hidx = 3;
    if (lua_istable(L, 4)) { /* send(value, handle, opts[, cb]) */
      next = 5;
      if (lua_getfield(L, 4, "keep_open") != LUA_TNIL && !lua_isboolean(L, -1))
        return lipc__argerror(L, 4, "channel.send",
                              "opts.keep_open: boolean expected, got %s",
                              luaL_typename(L, -1));
      keep_open = lua_toboolean(L, -1);
      lua_pop(L, 1);
    }
    if (!lua_isnoneornil(L, next)) {
      lipc__checktype(L, next, LUA_TFUNCTION, "channel.send");
      cb = next;
    }
  }
  if (!ch->connected || ch->s == NULL)
    return send_closed(ch, L, cb);
  if (hidx && ch->no_handles)
    return lipc__argerror(L, hidx, "channel.send",
                          "handles cannot cross hosts: this channel runs "
                          "over a launcher's stdio");
  if (hidx) {
    hs = lipc__handoff_export(L, hidx, &kind);
    if (hs == NULL)
      return lipc__argerror(L, hidx, "channel.send",
                            "a net or pipe server or socket expected");
  }
  start = ch->out.len;
  if (ch->json) {
    if (lipc__chan_json_encode(ch, L, 2, kind) != 0)
      return lipc__argerror(L, 2, "channel.send", "%s", lua_tostring(L, -1));
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
      return lipc__argerror(L, 2, "channel.send", "%s", lua_tostring(L, -1));
    }
  }
  body = ch->out.len - start - (ch->json ? 1 : 4 + (hs ? MARKER_LEN : 0)) +
         (ch->str_bytes - strs0);
  if (body > ch->max) {
    forget_strings(ch, nsegs0, strs0);
    ch->out.len = start;
    return lipc__argerror(L, 2, "channel.send",
                          "message of %I bytes is over max_message (%I bytes)",
                          (lua_Integer)body, (lua_Integer)ch->max);
  }
  if (!ch->json)
    put_be32(ch->out.data + start,
             ch->out.len - start - 4 + (ch->str_bytes - strs0));
  ch->msgs_out++;
  ch->bytes_out += ch->out.len - start + (ch->str_bytes - strs0);
  if (ch->h.rt->trace & LIPC_TRACE_IPC)
    lipc__trace(ch->h.rt, "ipc", "send message %zu bytes fd %d%s",
                ch->out.len - start + (ch->str_bytes - strs0),
                lipc__chan_fd(ch), hs ? " with a handle" : "");
  if (cb && !hs) {
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
    int socket =
        kind == LIPC_HANDOFF_TCP_SOCKET || kind == LIPC_HANDOFF_PIPE_SOCKET;
    int err =
        send_with_handle(ch, L, hidx, hs, start, cb, socket && !keep_open);
    if (err)
      return lipc__push_error(L, err, "channel.send");
  } else if (ch->in_read && !ch->read_wrote) {
    write_now(ch);
  } else {
    lipc__chan_schedule(ch);
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

/* send_control(kind, value) -> true: a control frame (0xd4 0x02 kind,
 * then the value), queued as send() queues a message; the peer's channel
 * emits 'control' (kind, value) for it. Raises for a value that cannot be
 * sent; false when the channel is closed. */
static int l_send_control(lua_State *L) {
  lchannel *ch = check_channel(L, 1, "channel.send_control");
  lua_Integer kind = lipc__checkinteger(L, 2, "channel.send_control");
  size_t start = ch->out.len;
  lipc__checkany(L, 3, "channel.send_control");
  if (kind < 1 || kind > 255)
    return lipc__argerror(L, 2, "channel.send_control",
                          "kind must be in 1..255");
  if (ch->json)
    return luaL_error(L, "channel.send_control: not in JSON mode");
  if (!ch->connected || ch->s == NULL) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (lipc__buf_reserve(&ch->out, 4 + MARKER_LEN) != 0)
    return luaL_error(L, "channel.send_control: out of memory");
  ch->out.len += 4;
  ch->out.data[ch->out.len++] = (char)0xd4;
  ch->out.data[ch->out.len++] = CONTROL_EXT;
  ch->out.data[ch->out.len++] = (char)kind;
  if (lipc__codec_encode(L, 3, &ch->out) != 0) {
    ch->out.len = start;
    return lipc__argerror(L, 3, "channel.send_control", "%s",
                          lua_tostring(L, -1));
  }
  if (ch->out.len - start - 4 - MARKER_LEN > ch->max) {
    ch->out.len = start;
    return lipc__argerror(L, 3, "channel.send_control",
                          "value is over max_message (%I bytes)",
                          (lua_Integer)ch->max);
  }
  put_be32(ch->out.data + start, ch->out.len - start - 4);
  ch->bytes_out += ch->out.len - start;
  lipc__chan_schedule(ch);
  lua_pushboolean(L, 1);
  return 1;
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
  lipc__chan_schedule(ch);
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
  lipc__chan_flush(ch, 1);
  if (ch->s) /* no more reading */
    lipc__stream_set_hooks(ch->s, NULL, NULL, NULL);
  if (ch->writes == NULL && ch->s)
    lipc__handle_close(lipc__stream_handle(ch->s));
  lipc__chan_gone(ch);
  return 0;
}

void lipc__chan_send_methods(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"send", lipc__chan_send},
      {"send_control", l_send_control},
      {"drain", l_drain},
      {"disconnect", l_disconnect},
      {NULL, NULL},
  };
  luaL_setfuncs(L, methods, 0);
}
