/*
 * channel.c - the message channel object: a Lua value in, the same value
 * out, in order, over any stream (pipe, socket, tty). This file makes the
 * object (options, the stream it takes over) and ends it; receive.c,
 * send.c, json.c and handoff.c move the messages (see channel_int.h).
 *
 * Lifetime: the channel is a lipc__handle over its idle handle, so the
 * runtime's exit path (flush_close) flushes what is still buffered. The
 * channel owns its stream: when either goes, both go.
 */
#include <stdlib.h>
#include <string.h>

#include "channel_int.h"

#define DEFAULT_MAX ((size_t)64 << 20)
/* The high-water mark also bounds what a busy sender encodes between two
 * loop turns. The kernel's socket buffer is ~208 KiB (wmem_default), so a
 * larger batch leaves the reader idle while the sender fills it: 64 KiB
 * (the read size, and the C baseline's write size) keeps the pipe fed and
 * the batch in cache. ipc_stream 0.88M -> 1.58M msg/s, ipc_bulk ~2.6 ->
 * ~3.3 GB/s against 1 MiB. */
#define DEFAULT_HWM ((size_t)64 << 10)
/* What a channel keeps of the messages nobody took yet before it stops
 * reading from its peer (whose sends then return false): enough for a
 * receiver's bursts, small against the memory of the process. */
#define DEFAULT_RHWM ((size_t)1 << 20)
/* max_decoded's floor when it follows max_message */
#define DEFAULT_MIN_DECODED ((uint64_t)16 << 20)

int lipc__chan_fd(lchannel *ch) {
  uv_os_fd_t fd = -1;
  if (ch->s && lipc__stream_uv(ch->s))
    uv_fileno((uv_handle_t *)lipc__stream_uv(ch->s), &fd);
  return (int)fd;
}

static const char OWNER_KEY = 0;

void lipc__chan_push_target(lchannel *ch, lua_State *L, int idx) {
  int top;
  idx = lua_absindex(L, idx);
  if (push_target(ch)) { /* on rt->L */
    if (L != ch->h.rt->L)
      lua_xmove(ch->h.rt->L, L, 1);
    return;
  }
  lua_pop(ch->h.rt->L, 1);
  top = lua_gettop(L);
  if (lua_getiuservalue(L, idx, 1) == LUA_TTABLE &&
      lua_rawgetp(L, -1, &OWNER_KEY) != LUA_TNIL) {
    lua_remove(L, -2);
    return;
  }
  lua_settop(L, top);
  lua_pushvalue(L, idx);
}

void lipc__chan_set_connected(lchannel *ch, int on) {
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

/* ---- the end ---------------------------------------------------------------- */

/* The channel is over (peer went, error, disconnect or close): waiting
 * tasks get nil, 'disconnect' is emitted once, and the flush handle closes
 * once our writes are done. */
void lipc__chan_gone(lchannel *ch) {
  lipc_runtime *rt = ch->h.rt;
  lua_State *L = rt->L;
  int was_receiving, listeners = 0;
  if (ch->gone)
    return;
  ch->gone = 1;
  lipc__chan_job_drop(ch); /* a frame half built goes with the channel */
  if (ch->connected)
    lipc__chan_set_connected(ch, 0);
  lipc__chan_wake_receivers(ch);
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
    chan_emit(ch, "disconnect", 0);
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
  return with_channel(L, lipc__chan_send);
}

static int l_bound_receive(lua_State *L) {
  return with_channel(L, lipc__chan_receive);
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

/* stats() -> {messages_sent, messages_received, bytes_sent, bytes_received,
 * queued, pending, high_water_hits, receive_held, pending_bytes}: bytes
 * are whole frames (or lines). */
static int l_stats(lua_State *L) {
  lchannel *ch = check_channel(L, 1, "channel.stats");
  size_t queued = out_queued(ch);
  lua_createtable(L, 0, 9);
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
  lua_pushboolean(L, ch->held);
  lua_setfield(L, -2, "receive_held");
  lua_pushinteger(L, (lua_Integer)untaken(ch));
  lua_setfield(L, -2, "pending_bytes");
  return 1;
}

/* ref()/chan_unref(): whether the channel keeps the process alive. */
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
    lipc__chan_flush(ch, 1);
  if (ch->writes == NULL)
    lipc__handle_close(h); /* else when they are done */
}

static void on_close(lipc__handle *h) {
  lchannel *ch = (lchannel *)h;
  lua_State *L = h->rt->L;
  wnode *w;
  lipc__chan_gone(ch);
  for (w = ch->writes; w; w = w->next) {
    w->ch = NULL; /* freed by its callback, which also lets its strings go
                     (the kernel may still read them until then) */
    chan_unref(L, &w->handle_ref);
    chan_unref(L, &w->cbs);
  }
  free(ch->segs);
  ch->segs = NULL;
  ch->nsegs = ch->segcap = 0;
  ch->str_bytes = 0;
  chan_unref(L, &ch->strs_ref);
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
  chan_unref(L, &ch->out_cbs);
  chan_unref(L, &ch->stream_ref);
  chan_unref(L, &ch->owner_ref);
}

/* Messages that arrived before the end stay to be taken (a parent that
 * receives after its child exited gets them all) until the object goes. */
static void on_gc(lipc__handle *h) {
  lchannel *ch = (lchannel *)h;
  lipc__buf_free(&ch->in);
  ch->nlazy = 0;
  chan_unref(h->rt->L, &ch->queue_ref);
  chan_unref(h->rt->L, &ch->err_ref);
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
    lipc__argerror(L, opts, "stream.channel",
                   "opts.%s must be an integer in 1..%I", name,
                   (lua_Integer)max);
  lua_pop(L, 1);
  return (size_t)n;
}

/* Makes a channel over the stream at sidx with the options table at
 * opts (0: none). Pushes it. */
static lchannel *new_channel(lua_State *L, int sidx, int opts, int json,
                             int auto_ref) {
  lipc_runtime *rt = lipc__rt(L);
  lipc__stream *s = lipc__stream_check(L, sidx, "stream.channel");
  uv_idle_t *prep;
  lchannel *ch;
  size_t max = DEFAULT_MAX, hwm = DEFAULT_HWM, rhwm = DEFAULT_RHWM;
  size_t decoded = 0;
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
    rhwm = opt_size(L, opts, "receive_high_water", rhwm, (size_t)1 << 40);
    decoded = opt_size(L, opts, "max_decoded", 0, (size_t)1 << 50);
    if (lua_getfield(L, opts, "serialization") == LUA_TSTRING) {
      const char *m = lua_tostring(L, -1);
      if (strcmp(m, "json") == 0)
        json = 1;
      else if (strcmp(m, "lipc") != 0)
        lipc__argerror(L, opts, "stream.channel",
                       "opts.serialization must be 'lipc' or 'json'");
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
  ch->out_cbs = ch->strs_ref = LUA_NOREF;
  ch->err_ref = LUA_NOREF;
  ch->max = max;
  /* by default twice max_message (at least 16 MiB): a full-size message
   * of strings fits, 30 MB of empty maps (2.4 GB as tables) does not */
  ch->max_decoded = decoded ? decoded
                    : 2 * (uint64_t)max > DEFAULT_MIN_DECODED
                        ? 2 * (uint64_t)max
                        : DEFAULT_MIN_DECODED;
  ch->hwm = hwm;
  ch->rhwm = rhwm;
  ch->json = json;
  ch->auto_ref = auto_ref;
  ch->s = s;
  lua_pushvalue(L, sidx);
  ch->stream_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (opts && lua_getfield(L, opts, "owner") != LUA_TNIL) {
    /* also in our env: the registry ref goes with the handle, and a send
     * after that still reports to the owner (lipc__chan_push_target) */
    lua_getiuservalue(L, -2, 1);
    lua_pushvalue(L, -2);
    lua_rawsetp(L, -2, &OWNER_KEY);
    lua_pop(L, 1);
    ch->owner_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  } else if (opts) {
    lua_pop(L, 1);
  }
  if (opts && lua_getfield(L, opts, "own_disconnect") != LUA_TNIL)
    ch->own_disconnect = lua_toboolean(L, -1);
  if (opts)
    lua_pop(L, 1);
  if (opts && lua_getfield(L, opts, "handles") != LUA_TNIL)
    ch->no_handles = !lua_toboolean(L, -1);
  if (opts)
    lua_pop(L, 1);
  lipc__chan_set_connected(ch, 1);
  /* stream:on("error", noop): its errors are our disconnect. */
  lua_pushcfunction(L, lipc__emitter_on);
  lua_pushvalue(L, sidx);
  lua_pushliteral(L, "error");
  lua_pushcfunction(L, stream_error);
  lua_call(L, 3, 0);
  err = lipc__chan_read_start(ch);
  if (err < 0) {
    lipc__handle_close(&ch->h);
    luaL_error(L, "stream.channel: %s", uv_strerror(err));
  }
  update_ref(ch);
  return ch;
}

/* stream:channel([opts]) -> channel. opts: serialization ("lipc" or
 * "json"), max_message, high_water, receive_high_water, owner (object
 * events go to),
 * handles (false: send refuses handles; the stream leaves the host). */
static int l_channel(lua_State *L) {
  int opts = 0;
  if (!lua_isnoneornil(L, 2)) {
    lipc__checktype(L, 2, LUA_TTABLE, "stream.channel");
    opts = 2;
  }
  new_channel(L, 1, opts, 0, 0);
  return 1;
}

void lipc__channel_no_handles(lua_State *L, int idx) {
  check_channel(L, idx, "channel")->no_handles = 1;
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
      {"bound", l_bound},   {"ref", l_ref},     {"unref", l_unref},
      {"stream", l_stream}, {"stats", l_stats}, {NULL, NULL},
  };
  if (luaL_getmetatable(L, CHANNEL) != LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  lua_pop(L, 1);
  lipc__class(L, CHANNEL, NULL); /* methods */
  luaL_setfuncs(L, methods, 0);
  lipc__chan_receive_methods(L);
  lipc__chan_send_methods(L);
  lua_pop(L, 1);
  luaopen_lipc_stream(L); /* stream methods */
  lua_pushcfunction(L, l_channel);
  lua_setfield(L, -2, "channel");
  lua_pop(L, 1);
}
