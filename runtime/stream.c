/*
 * stream.c - the stream object over uv_stream_t (pipe, tcp, tty) and over
 * plain fds written synchronously (stdout, stderr, files).
 *
 * One implementation for spawn's stdio, pipe and net sockets: writes with a
 * high-water mark and 'drain', shutdown, close, flowing ('data' events) and
 * pulled (read() in a task) reading, and hooks that let a message channel
 * take the bytes instead. Reading is on only while somebody wants bytes:
 * a task in read(), a flowing stream, or a channel; otherwise the kernel
 * buffers and the writer on the other side feels the backpressure.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

/* Reads of up to 256 KiB: on loopback TCP one read then takes several
 * segments. Every chunk becomes a Lua string; the lipc executable raises
 * glibc's mmap and trim thresholds (main.c) so that such strings do not
 * fault their pages in again each time (with glibc's defaults 64 KiB
 * reads were faster: unix_bulk 2.1 vs 3.9 GB/s). */
#define RBUF_SIZE (256 * 1024)
#define DEFAULT_HWM (1024 * 1024)
#define WFREE_MAX 64
#define SMALL_BUFS 8

enum {
  F_READING = 1 << 0, /* uv_read_start is on */
  F_FLOWING = 1 << 1, /* 'data' listener or resume(), not paused */
  F_EOF = 1 << 2,     /* the peer ended its side */
  F_SHUT = 1 << 3,    /* shutdown() called: no more writes */
  F_SHUT_DONE = 1 << 4,
  F_ERRORED = 1 << 5,
  F_CLOSE_AFTER_WRITES = 1 << 6,
  F_SOCKET = 1 << 7,    /* shutdown(2) works; otherwise end = close */
  F_HALF_OPEN = 1 << 8, /* stay open for writing after the peer's end */
  F_NEED_DRAIN = 1 << 9,
  F_SYNC = 1 << 10,       /* a plain fd written with blocking write(2) */
  F_CONNECTING = 1 << 11, /* net.connect outside a task: writes wait */
  F_SHUT_WAIT = 1 << 12,  /* shutdown() while connecting: after writes */
  F_HELD = 1 << 13,       /* the read hook's owner holds reads off */
  F_EIO_END = 1 << 14,    /* a pty's master: EIO is the end of file */
  F_UNHELD = 1 << 15,     /* the writer is gone: holds no longer apply */
  F_KEEP = 1 << 16        /* open past the end until lipc__stream_keep(0) */
};

struct lipc__stream {
  lipc__handle h;
  unsigned flags;
  int fd; /* F_SYNC streams only */
  size_t hwm;
  size_t queued; /* bytes handed to libuv, not yet written */
  unsigned nwrites;
  lipc__wait reader;
  lipc__waitq drainers; /* tasks in drain() */
  int chunks;           /* registry ref: chunks nobody took yet */
  lua_Integer chead, ctail;
  size_t cbytes; /* bytes in those chunks */
  int shut_cb;   /* registry ref of shutdown's callback */
  int err_ref;   /* registry ref: {msg, code} of the first error */
  int sink_ref;  /* registry ref: where unhandled errors go (a server) */
  lipc__alloc_hook alloc_hook;
  lipc__read_hook read_hook;
  uint64_t active; /* loop time of the last read or write, for idle
                      timeouts (net's set_timeout) */
  struct wreq *waiting, *waiting_tail; /* writes made while connecting */
  void *hook_ctx;
  /* counters for stats() */
  uint64_t bytes_read, bytes_written, reads, writes, hwm_hits;
};

typedef struct wreq {
  uv_write_t req;
  lipc__stream *s;
  size_t len;
  int data_ref; /* keeps the Lua string(s) alive: zero copy */
  int cb_ref;
  lipc__write_done done;
  void *ctx;
  uv_buf_t small[SMALL_BUFS];
  uv_buf_t *bufs;
  unsigned nbufs;
  struct wreq *next;
} wreq;

static void update_reading(lipc__stream *s);
static void on_error(lipc__stream *s, int err, const char *what);
static void fail(lipc__stream *s, int err, const char *what, int returned);

/* ---- small helpers ----------------------------------------------------- */

static int is_open(lipc__stream *s) {
  return s->h.uv != NULL && !s->h.closing;
}

lipc__stream *lipc__stream_test(lua_State *L, int idx) {
  return lipc__testobj(L, idx, LIPC_STREAM);
}

lipc__stream *lipc__stream_check(lua_State *L, int idx, const char *fname) {
  return lipc__checkobj(L, idx, LIPC_STREAM, fname);
}

uv_stream_t *lipc__stream_uv(lipc__stream *s) {
  return (s->flags & F_SYNC) ? NULL : (uv_stream_t *)s->h.uv;
}

lipc__handle *lipc__stream_handle(lipc__stream *s) {
  return &s->h;
}

uint64_t lipc__stream_active(lipc__stream *s) {
  return s->active;
}

void *lipc__stream_hook_ctx(lipc__stream *s) {
  return s->hook_ctx;
}

static int can_read(lipc__stream *s) {
  if (s->flags & F_SYNC)
    return 1;
  return s->h.uv && uv_is_readable((uv_stream_t *)s->h.uv);
}

static int can_write(lipc__stream *s) {
  if (s->flags & F_SYNC)
    return 1;
  return s->h.uv && uv_is_writable((uv_stream_t *)s->h.uv);
}

/* Pushes the first error as msg, code (2 values) or returns 0. */
static int push_stored_error(lua_State *L, lipc__stream *s) {
  if (s->err_ref == LUA_NOREF)
    return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->err_ref);
  lua_rawgeti(L, -1, 1);
  lua_rawgeti(L, -2, 2);
  lua_remove(L, -3);
  return 2;
}

/* ---- chunks nobody has taken yet ----------------------------------------- */

static void chunk_push(lipc__stream *s, lua_State *L) { /* pops the chunk */
  s->cbytes += lua_rawlen(L, -1);
  if (s->chunks == LUA_NOREF) {
    lua_newtable(L);
    s->chunks = luaL_ref(L, LUA_REGISTRYINDEX);
    s->chead = s->ctail = 1;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->chunks);
  lua_insert(L, -2);
  lua_rawseti(L, -2, s->ctail++);
  lua_pop(L, 1);
}

static int chunk_shift(lipc__stream *s, lua_State *L) { /* pushes one */
  if (s->chunks == LUA_NOREF || s->chead == s->ctail)
    return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->chunks);
  lua_rawgeti(L, -1, s->chead);
  lua_pushnil(L);
  lua_rawseti(L, -3, s->chead++);
  lua_remove(L, -2);
  s->cbytes -= lua_rawlen(L, -1);
  return 1;
}

static int has_chunks(lipc__stream *s) {
  return s->chunks != LUA_NOREF && s->chead != s->ctail;
}

/* ---- reading ------------------------------------------------------------- */

static void on_alloc(uv_handle_t *uv, size_t suggested, uv_buf_t *buf) {
  lipc__stream *s = uv->data;
  lipc_runtime *rt = s->h.rt;
  if (s->alloc_hook) {
    s->alloc_hook(s, suggested, buf);
    return;
  }
  if (rt->rbuf == NULL)
    rt->rbuf = malloc(RBUF_SIZE);
  buf->base = rt->rbuf;
  buf->len = rt->rbuf ? RBUF_SIZE : 0;
}

/* Hands one chunk to a task in read(), to 'data' listeners, or keeps it. */
static void deliver(lipc__stream *s, const char *p, size_t n) {
  lipc_runtime *rt = s->h.rt;
  lua_State *L = rt->L;
  int taken = 0;
  if (!lipc__handle_push(&s->h)) {
    lua_pop(L, 1);
    return;
  }
  lua_pushlstring(L, p, n); /* obj chunk */
  if (lipc__waiting(&s->reader)) {
    lua_pushvalue(L, -1);
    lipc__wake(rt, &s->reader, 1);
    taken = 1;
  }
  if (s->flags & F_FLOWING) {
    lua_pushvalue(L, -1);
    lipc__emit(rt, -3, "data", 1);
    taken = 1;
  }
  if (!taken)
    chunk_push(s, L);
  else
    lua_pop(L, 1);
  lua_pop(L, 1);
}

/* The stream is finished with: closes it now, or once queued writes are
 * flushed. */
static void finish(lipc__stream *s) {
  if (!is_open(s))
    return;
  if (s->nwrites == 0)
    lipc__handle_close(&s->h);
  else
    s->flags |= F_CLOSE_AFTER_WRITES;
}

/* The end has come: the stream closes unless it stays open for writing. */
static void after_eof(lipc__stream *s) {
  if (!can_write(s) || (s->flags & (F_SHUT_DONE | F_ERRORED)) ||
      (s->flags & F_SHUT && !(s->flags & F_SOCKET)))
    finish(s);
  else if (!(s->flags & F_HALF_OPEN))
    finish(s);
}

static void on_eof(lipc__stream *s) {
  lipc_runtime *rt = s->h.rt;
  lua_State *L = rt->L;
  s->flags |= F_EOF;
  update_reading(s);
  lua_pushnil(L);
  lipc__wake(rt, &s->reader, 1);
  if (lipc__handle_push(&s->h))
    lipc__emit(rt, -1, "end", 0);
  lua_pop(L, 1);
  if (!(s->flags & F_KEEP))
    after_eof(s);
}

/*
** A bulk flow is read on. After a read of DRAIN_MIN bytes or more, more
** reads go into the same buffer until the fd has nothing left, a read
** comes back short, or DRAIN_MAX bytes are in; they then go on as one
** chunk. libuv reads once per epoll wakeup unless its buffer filled,
** which a pipe never does for a 256 KiB buffer: a reader of a child that
** writes 8 KiB at a time went back to epoll_wait, and through the
** scheduler, for every one or two writes. DRAIN_MAX is half a default
** pipe (64 KiB): the child goes on writing into the other half while we
** copy, where reading on to 128 KiB or more left it waiting on a full
** pipe (stdout_read: 3.6-3.7 GB/s before, 4.5-4.6 at 32 KiB, 3.9-4.1 at
** 64 KiB, 1.6-4.1 at 128 KiB). A small read (a request, a line) is left
** as it is: reading on would only add a read() that says EAGAIN. IPC
** pipes and ttys are left to libuv (see reads_on). The end of the
** stream stops reading on and is left for libuv's next read, which
** meets it again (a pipe with no writer, a socket after FIN), so it
** comes as it always does, after the bytes and not while paused. An
** error is reported only once by the kernel, so *err gets it (else 0).
** Returns the bytes now in base.
*/
#define DRAIN_MIN (4 * 1024)
#define DRAIN_MAX (32 * 1024)
_Static_assert(DRAIN_MAX <= RBUF_SIZE, "reading on stays in the read buffer");

/* Pipes and TCP sockets, which libuv always makes non-blocking; not a
   tty, whose fd libuv leaves blocking when it cannot reopen it, and not
   an IPC pipe. */
static int reads_on(uv_stream_t *uv) {
  if (uv->type == UV_NAMED_PIPE)
    return !((uv_pipe_t *)uv)->ipc;
  return uv->type == UV_TCP;
}

static size_t read_on(lipc__stream *s, char *base, size_t n, int *err) {
  uv_stream_t *uv = (uv_stream_t *)s->h.uv;
  uv_os_fd_t fd;
  ssize_t k = (ssize_t)n;
  *err = 0;
  if (n < DRAIN_MIN || n >= DRAIN_MAX || !reads_on(uv) ||
      uv_fileno((uv_handle_t *)uv, &fd) != 0)
    return n;
  while (n < DRAIN_MAX && k >= DRAIN_MIN) {
    k = read(fd, base + n, DRAIN_MAX - n);
    if (k < 0 && errno == EINTR) {
      k = DRAIN_MIN;
      continue;
    }
    s->reads++;
    if (k > 0)
      n += (size_t)k;
    else if (k < 0 && errno == EIO && (s->flags & F_EIO_END))
      break; /* the end: libuv's next read meets it again */
    else if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
      *err = -errno;
  }
  return n;
}

/* A pty's master at libuv's end: libuv takes POLLHUP after a short read
 * as the end of the stream, but a terminal hangs up as soon as its last
 * process closes it, while what that process wrote last is still to be
 * read (seq 1 50000 lost its last thousand lines). What is left is read
 * here up to the real end, EIO; the kernel's buffers for one terminal
 * bound it. */
static void drain_pty(lipc__stream *s) {
  lipc_runtime *rt = s->h.rt;
  uv_os_fd_t fd;
  ssize_t k;
  if (uv_fileno(s->h.uv, &fd) != 0 ||
      (rt->rbuf == NULL && (rt->rbuf = malloc(RBUF_SIZE)) == NULL))
    return;
  while (is_open(s)) {
    do
      k = read(fd, rt->rbuf, RBUF_SIZE);
    while (k < 0 && errno == EINTR);
    if (k <= 0)
      return;
    s->reads++;
    s->bytes_read += (uint64_t)k;
    deliver(s, rt->rbuf, (size_t)k);
  }
}

static void on_read(uv_stream_t *uv, ssize_t n, const uv_buf_t *buf) {
  lipc__stream *s = uv->data;
  int err = 0;
  s->active = uv_now(uv->loop);
  if (n != 0)
    s->h.rt->io_seen++; /* traffic: poll.c polls on before sleeping */
  if (n == UV_EIO && (s->flags & F_EIO_END))
    n = UV_EOF;
  if (n > 0) {
    s->reads++;
    if (!s->read_hook)
      n = (ssize_t)read_on(s, buf->base, (size_t)n, &err);
    s->bytes_read += (uint64_t)n;
  }
  if (s->read_hook) {
    s->read_hook(s, n, buf->base);
    return;
  }
  if (n > 0)
    deliver(s, buf->base, (size_t)n);
  else if (n == UV_EOF && (s->flags & F_EIO_END)) {
    drain_pty(s);
    if (is_open(s))
      on_eof(s);
  } else if (n == UV_EOF)
    on_eof(s);
  else if (n < 0)
    on_error(s, (int)n, "read");
  /* an error that stopped the reading on comes after its bytes, unless
     taking them closed the stream */
  if (err != 0 && s->h.uv && !(s->flags & F_ERRORED))
    on_error(s, err, "read");
  if (s->h.uv)
    update_reading(s);
}

/* Files (stdin redirected from a file): one read(2) per loop turn from an
 * idle handle, so a large file does not starve the loop. */
static void on_sync_idle(uv_idle_t *idle) {
  lipc__stream *s = idle->data;
  lipc_runtime *rt = s->h.rt;
  ssize_t n;
  if (rt->rbuf == NULL && (rt->rbuf = malloc(RBUF_SIZE)) == NULL)
    return on_error(s, UV_ENOMEM, "read");
  do
    n = read(s->fd, rt->rbuf, RBUF_SIZE);
  while (n < 0 && errno == EINTR);
  if (n > 0) {
    s->bytes_read += (uint64_t)n;
    s->reads++;
    deliver(s, rt->rbuf, (size_t)n);
  } else if (n == 0) {
    on_eof(s);
  } else
    on_error(s, -errno, "read");
  if (s->h.uv)
    update_reading(s);
}

static int want_read(lipc__stream *s) {
  if (!is_open(s) || (s->flags & (F_EOF | F_ERRORED | F_HELD)) || !can_read(s))
    return 0;
  if (lipc__waiting(&s->reader) || (s->flags & F_FLOWING) || s->read_hook)
    return 1;
  /* A socket whose side is shut and whose bytes nobody takes still reads,
   * keeping up to a high-water mark of them, so that it sees the peer's
   * end and closes instead of staying half-open for ever. */
  return (s->flags & F_SHUT_DONE) && (s->flags & F_SOCKET) &&
         s->cbytes < s->hwm;
}

static void update_reading(lipc__stream *s) {
  int want = want_read(s), err;
  if (want == !!(s->flags & F_READING))
    return;
  if (s->flags & F_SYNC) {
    if (want)
      uv_idle_start((uv_idle_t *)s->h.uv, on_sync_idle);
    else if (s->h.uv)
      uv_idle_stop((uv_idle_t *)s->h.uv);
  } else if (want) {
    err = uv_read_start((uv_stream_t *)s->h.uv, on_alloc, on_read);
    if (err) {
      on_error(s, err, "read");
      return;
    }
  } else {
    uv_read_stop((uv_stream_t *)s->h.uv);
  }
  s->flags = want ? s->flags | F_READING : s->flags & ~F_READING;
}

int lipc__stream_read_start(lipc__stream *s) {
  if (!is_open(s))
    return UV_EBADF;
  update_reading(s);
  return (s->flags & F_ERRORED) ? UV_EIO : 0;
}

void lipc__stream_set_hooks(lipc__stream *s, lipc__alloc_hook alloc,
                            lipc__read_hook read, void *ctx) {
  s->alloc_hook = alloc;
  s->read_hook = read;
  s->hook_ctx = ctx;
  if (read == NULL)
    s->flags &= ~F_FLOWING;
  update_reading(s);
}

void lipc__stream_hold(lipc__stream *s, int hold) {
  if (!hold == !(s->flags & F_HELD) || (hold && (s->flags & F_UNHELD)))
    return;
  s->flags = hold ? s->flags | F_HELD : s->flags & ~F_HELD;
  update_reading(s);
}

void lipc__stream_release(lipc__stream *s) {
  s->flags |= F_UNHELD;
  lipc__stream_hold(s, 0);
}

void lipc__stream_keep(lipc__stream *s, int keep) {
  if (keep) {
    s->flags |= F_KEEP;
    return;
  }
  if (!(s->flags & F_KEEP))
    return;
  s->flags &= ~F_KEEP;
  if ((s->flags & F_EOF) && is_open(s))
    after_eof(s);
}

/* An error ends the stream: waiting tasks get nil, msg, code; listeners
 * get 'error'; nobody at all handling it makes it an uncaught error.
 * returned: the caller of a write already got the error as nil, msg,
 * code, which counts as handling it. */
static void on_error(lipc__stream *s, int err, const char *what) {
  fail(s, err, what, 0);
}

/* Keeps the stream's first error for later reads and writes; pushes
 * msg, code. */
static void store_error(lipc__stream *s, int err, const char *what) {
  lua_State *L = s->h.rt->L;
  s->flags |= F_ERRORED;
  lipc__push_errpair(L, err, what); /* msg code */
  lua_createtable(L, 2, 0);
  lua_pushvalue(L, -3);
  lua_rawseti(L, -2, 1);
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, 2);
  s->err_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

static void fail(lipc__stream *s, int err, const char *what, int returned) {
  lipc_runtime *rt = s->h.rt;
  lua_State *L = rt->L;
  int handled = returned, top = lua_gettop(L);
  if (s->flags & F_ERRORED)
    return;
  store_error(s, err, what);
  if (lipc__waiting(&s->reader)) {
    lua_pushnil(L);
    lua_pushvalue(L, top + 1);
    lua_pushvalue(L, top + 2);
    lipc__wake(rt, &s->reader, 3);
    handled = 1;
  }
  lua_pushnil(L);
  lua_pushvalue(L, top + 1);
  lua_pushvalue(L, top + 2);
  if (lipc__waitq_wake_all(rt, &s->drainers, 3) > 0)
    handled = 1;
  if (lipc__handle_push(&s->h)) {
    int listeners = lipc__has_listeners(L, -1, "error");
    if (!handled && !listeners && lipc__stream_to_sink(s, top + 1))
      ; /* reported on its server */
    else if (!handled || listeners) {
      lua_pushvalue(L, top + 1);
      lua_pushvalue(L, top + 2);
      lipc__emit(rt, -3, "error", 2);
    }
  }
  lua_settop(L, top);
  if (s->h.uv)
    lipc__handle_close(&s->h);
}

void lipc__stream_set_sink(lipc__stream *s, lua_State *L, int idx) {
  lua_pushvalue(L, idx);
  if (s->sink_ref != LUA_NOREF)
    luaL_unref(L, LUA_REGISTRYINDEX, s->sink_ref);
  s->sink_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

int lipc__stream_to_sink(lipc__stream *s, int msg_idx) {
  lipc_runtime *rt = s->h.rt;
  lua_State *L = rt->L;
  int sidx = lua_gettop(L);
  msg_idx = lua_absindex(L, msg_idx);
  if (s->sink_ref == LUA_NOREF)
    return 0;
  if (rt->trace & LIPC_TRACE_NET) {
    uv_os_fd_t fd = -1;
    if (s->h.uv)
      uv_fileno(s->h.uv, &fd);
    lipc__trace(rt, "net", "client error fd %d: %s (socket closed)", (int)fd,
                lua_tostring(L, msg_idx));
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->sink_ref); /* sink */
  lua_pushvalue(L, msg_idx);
  lua_pushvalue(L, msg_idx + 1);
  lua_pushvalue(L, sidx); /* sink msg code stream */
  lipc__emit(rt, -4, "client_error", 3);
  lua_pop(L, 1);
  if (s->h.uv)
    lipc__handle_close(&s->h);
  return 1;
}

/* ---- writing ------------------------------------------------------------- */

static wreq *wreq_get(lipc_runtime *rt) {
  wreq *w = rt->wfree;
  if (w) {
    rt->wfree = w->next;
    return w;
  }
  return malloc(sizeof(wreq));
}

static void wreq_put(lipc_runtime *rt, wreq *w) {
  unsigned n = 0;
  wreq *p;
  if (w->bufs != w->small)
    free(w->bufs);
  for (p = rt->wfree; p && n < WFREE_MAX; p = p->next)
    n++;
  if (n >= WFREE_MAX) {
    free(w);
    return;
  }
  w->next = rt->wfree;
  rt->wfree = w;
}

void lipc__stream_free_buffers(lipc_runtime *rt) {
  free(rt->rbuf);
  rt->rbuf = NULL;
  while (rt->wfree) {
    wreq *w = rt->wfree;
    rt->wfree = w->next;
    free(w);
  }
}

static void after_write(lipc__stream *s) {
  lipc_runtime *rt = s->h.rt;
  if ((s->flags & F_NEED_DRAIN) && s->queued < s->hwm) {
    s->flags &= ~F_NEED_DRAIN;
    /* the drain()ers, while they stay under the mark: one that writes
     * over it again sets F_NEED_DRAIN, and the others wait for that */
    while (lipc__waitq_waiting(&s->drainers) && s->queued < s->hwm &&
           !rt->exiting) {
      lua_pushboolean(rt->L, 1);
      lipc__waitq_wake(rt, &s->drainers, 1);
    }
    if (lipc__handle_push(&s->h))
      lipc__emit(rt, -1, "drain", 0);
    lua_pop(rt->L, 1);
  }
  if ((s->flags & F_CLOSE_AFTER_WRITES) && s->nwrites == 0)
    lipc__handle_close(&s->h);
}

static void call_write_cb(lipc_runtime *rt, int cb_ref, int status) {
  lua_State *L = rt->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, cb_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, cb_ref);
  if (status < 0) {
    lipc__push_errpair(L, status, "write");
    lipc__task_start(rt, L, 2);
  } else {
    lipc__task_start(rt, L, 0);
  }
}

/* A write is over: its callbacks run, its references go. 'report': a
 * failure is also the stream's error (not when the connect that the
 * write waited for failed: that was reported already). */
static void complete(wreq *w, int status, int report) {
  lipc__stream *s = w->s;
  lipc_runtime *rt = s->h.rt;
  s->queued -= w->len;
  s->nwrites--;
  if (status == 0)
    s->bytes_written += w->len;
  if (w->data_ref != LUA_NOREF)
    luaL_unref(rt->L, LUA_REGISTRYINDEX, w->data_ref);
  if (w->done)
    w->done(w->ctx, status);
  if (w->cb_ref != LUA_NOREF)
    call_write_cb(rt, w->cb_ref, status);
  wreq_put(rt, w);
  if (report && status < 0 && status != UV_ECANCELED)
    on_error(s, status, "write");
  if (s->h.uv)
    after_write(s);
}

static void on_written(uv_write_t *req, int status) {
  wreq *w = (wreq *)req;
  w->s->active = uv_now(req->handle->loop);
  complete(w, status, 1);
}

static int submit(lipc__stream *s, wreq *w, unsigned nbufs,
                  uv_stream_t *send_handle) {
  int err = 0;
  w->s = s;
  w->nbufs = nbufs;
  w->next = NULL;
  if (s->flags & F_CONNECTING) { /* they go once connected, in order */
    if (send_handle)
      return UV_ENOTCONN;
    if (s->waiting_tail)
      s->waiting_tail->next = w;
    else
      s->waiting = w;
    s->waiting_tail = w;
  } else if (send_handle) {
    err = uv_write2(&w->req, (uv_stream_t *)s->h.uv, w->bufs, nbufs,
                    send_handle, on_written);
  } else {
    err = uv_write(&w->req, (uv_stream_t *)s->h.uv, w->bufs, nbufs, on_written);
  }
  if (err)
    return err;
  s->h.rt->io_written++;
  s->queued += w->len;
  s->nwrites++;
  s->writes++;
  if (s->queued >= s->hwm) {
    if (!(s->flags & F_NEED_DRAIN))
      s->hwm_hits++;
    s->flags |= F_NEED_DRAIN;
  }
  return 0;
}

int lipc__stream_write_raw(lipc__stream *s, uv_buf_t *bufs, unsigned nbufs,
                           uv_stream_t *send_handle, lipc__write_done cb,
                           void *ctx) {
  wreq *w;
  unsigned i;
  int err;
  if (!is_open(s) || (s->flags & (F_SHUT | F_ERRORED)))
    return UV_EPIPE;
  if (s->flags & F_SYNC)
    return UV_ENOTSUP;
  w = wreq_get(s->h.rt);
  if (w == NULL)
    return UV_ENOMEM;
  w->bufs = nbufs <= SMALL_BUFS ? w->small : malloc(nbufs * sizeof(uv_buf_t));
  if (w->bufs == NULL) {
    w->bufs = w->small;
    wreq_put(s->h.rt, w);
    return UV_ENOMEM;
  }
  w->len = 0;
  for (i = 0; i < nbufs; i++) {
    w->bufs[i] = bufs[i];
    w->len += bufs[i].len;
  }
  w->data_ref = w->cb_ref = LUA_NOREF;
  w->done = cb;
  w->ctx = ctx;
  err = submit(s, w, nbufs, send_handle);
  if (err)
    wreq_put(s->h.rt, w);
  return err;
}

int lipc__stream_try_write(lipc__stream *s, const uv_buf_t *b) {
  int k;
  if (!is_open(s) ||
      (s->flags & (F_SHUT | F_ERRORED | F_SYNC | F_CONNECTING)) ||
      s->nwrites > 0)
    return UV_EAGAIN;
  k = uv_try_write((uv_stream_t *)s->h.uv, b, 1);
  s->active = uv_now(s->h.rt->loop);
  if (k > 0) {
    s->h.rt->io_written++;
    s->bytes_written += (uint64_t)k;
    s->writes += (size_t)k == b->len;
  }
  return k;
}

/* Blocking write of everything, for stdout/stderr/files; waits with
 * poll() when somebody else made the fd non-blocking. */
static int write_all_sync(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t k = write(fd, p, n);
    if (k < 0) {
      struct pollfd pfd = {fd, POLLOUT, 0};
      if (errno == EINTR)
        continue;
      if (errno != EAGAIN)
        return -errno;
      poll(&pfd, 1, -1);
      continue;
    }
    p += k;
    n -= (size_t)k;
  }
  return 0;
}

static int write_error(lua_State *L, const char *msg) {
  lua_pushnil(L);
  lua_pushstring(L, msg);
  lua_pushstring(L, "ERR_STREAM_WRITE_AFTER_END");
  return 3;
}

/* Collects the data argument into bufs: a string or an array of strings
 * (written with one writev). Returns the count; 0 when too many. */
static unsigned collect(lua_State *L, int idx, uv_buf_t *bufs, unsigned max,
                        size_t *total) {
  size_t len;
  unsigned i, n;
  *total = 0;
  if (lua_type(L, idx) == LUA_TSTRING) {
    const char *p = lua_tolstring(L, idx, &len);
    bufs[0] = uv_buf_init((char *)p, (unsigned)len);
    *total = len;
    return 1;
  }
  n = (unsigned)lua_rawlen(L, idx);
  if (n > max)
    return 0;
  for (i = 0; i < n; i++) {
    const char *p;
    lua_rawgeti(L, idx, (lua_Integer)i + 1);
    p = lua_tolstring(L, -1, &len);
    if (p == NULL)
      lipc__argerror(L, idx, "stream.write", "data[%d] is not a string",
                     (int)i + 1);
    bufs[i] = uv_buf_init((char *)p, (unsigned)len); /* kept alive by the
                                                        table */
    *total += len;
    lua_pop(L, 1);
  }
  return n;
}

/* write(data[, cb]) -> true while under the high-water mark, false over
 * it ('drain' follows); nil, msg, code after shutdown/close. */
static int l_write(lua_State *L) {
  lipc__stream *s = lipc__stream_check(L, 1, "stream.write");
  int t = lua_type(L, 2), has_cb = !lua_isnoneornil(L, 3), err;
  uv_buf_t bufs[64];
  unsigned n, i;
  size_t total;
  wreq *w;

  if (t != LUA_TSTRING && t != LUA_TTABLE)
    return lipc__typeerror(L, 2, "stream.write", "string or array of strings");
  if (has_cb)
    lipc__checktype(L, 3, LUA_TFUNCTION, "stream.write");
  if (!is_open(s))
    return write_error(L, "stream.write: write after close");
  if (s->flags & F_SHUT)
    return write_error(L, "stream.write: write after shutdown");
  if (s->flags & F_ERRORED) {
    lua_pushnil(L);
    return 1 + push_stored_error(L, s);
  }
  if (!can_write(s) && !(s->flags & F_CONNECTING))
    return luaL_error(L, "stream.write: the stream is not writable");
  n = collect(L, 2, bufs, 64, &total);
  if (n == 0 && t == LUA_TTABLE && lua_rawlen(L, 2) > 0)
    return lipc__argerror(L, 2, "stream.write", "at most 64 strings at once");

  if (s->flags & F_SYNC) {
    if (s->h.internal)
      fflush(s->fd == 2 ? stderr : stdout); /* print() comes first */
    for (i = 0; i < n; i++)
      if ((err = write_all_sync(s->fd, bufs[i].base, bufs[i].len)) < 0) {
        fail(s, err, "write", 1);
        return lipc__push_error(L, err, "write");
      }
    s->writes++;
    s->bytes_written += total;
    if (has_cb) {
      lua_pushvalue(L, 3);
      lipc__task_start(s->h.rt, L, 0);
    }
    lua_pushboolean(L, 1);
    return 1;
  }

  /* Nothing queued: try the write now; most small writes end here,
   * without a request or a reference. */
  if (s->nwrites == 0 && !has_cb && n == 1 && !(s->flags & F_CONNECTING)) {
    int k = lipc__stream_try_write(s, bufs);
    if (k == (int)total) {
      lua_pushboolean(L, 1);
      return 1;
    }
    if (k > 0) {
      bufs[0].base += k;
      bufs[0].len -= (size_t)k;
      total -= (size_t)k;
    } else if (k != UV_EAGAIN && k != UV_ENOSYS) {
      fail(s, k, "write", 1);
      return lipc__push_error(L, k, "write");
    }
  }
  w = wreq_get(s->h.rt);
  if (w == NULL)
    return luaL_error(L, "stream.write: out of memory");
  w->bufs = w->small;
  if (n > SMALL_BUFS && (w->bufs = malloc(n * sizeof(uv_buf_t))) == NULL) {
    w->bufs = w->small;
    wreq_put(s->h.rt, w);
    return luaL_error(L, "stream.write: out of memory");
  }
  memcpy(w->bufs, bufs, n * sizeof(uv_buf_t));
  w->len = total;
  w->done = NULL;
  lua_pushvalue(L, 2);
  w->data_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  w->cb_ref = LUA_NOREF;
  if (has_cb) {
    lua_pushvalue(L, 3);
    w->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  err = submit(s, w, n, NULL);
  if (err) {
    luaL_unref(L, LUA_REGISTRYINDEX, w->data_ref);
    if (w->cb_ref != LUA_NOREF)
      luaL_unref(L, LUA_REGISTRYINDEX, w->cb_ref);
    wreq_put(s->h.rt, w);
    fail(s, err, "write", 1);
    return lipc__push_error(L, err, "write");
  }
  lua_pushboolean(L, s->queued < s->hwm);
  return 1;
}

/* drain() in a task: returns true once the write queue is under the
 * high-water mark (at once when it already is). */
static int l_drain(lua_State *L) {
  lipc__stream *s = lipc__stream_check(L, 1, "stream.drain");
  lipc__task_check(L, "stream.drain");
  if (s->flags & F_ERRORED) {
    lua_pushnil(L);
    return 1 + push_stored_error(L, s);
  }
  if (!is_open(s) || s->queued < s->hwm) {
    lua_pushboolean(L, is_open(s));
    return 1;
  }
  return lipc__waitq_park(L, &s->drainers);
}

static void call_shut_cb(lipc__stream *s, int status) {
  lipc_runtime *rt = s->h.rt;
  int ref = s->shut_cb;
  if (ref == LUA_NOREF)
    return;
  s->shut_cb = LUA_NOREF;
  call_write_cb(rt, ref, status);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  lipc__stream *s = req->data;
  free(req);
  if (s == NULL)
    return;
  s->flags |= F_SHUT_DONE;
  call_shut_cb(s, status == UV_ECANCELED ? 0 : status);
  if (s->h.uv && ((s->flags & F_EOF) || !can_read(s)))
    lipc__handle_close(&s->h);
  else if (s->h.uv)
    update_reading(s);
}

/* The end of our side once the queued writes are out: shutdown(2) for a
 * socket that reads on, else the stream's end. 0, or UV_ENOMEM. */
static int start_shutdown(lipc__stream *s) {
  uv_shutdown_t *req;
  int err;
  if (!(s->flags & F_SOCKET) || (s->flags & F_SYNC) || !can_read(s)) {
    finish(s);
    return 0;
  }
  if ((req = malloc(sizeof(*req))) == NULL)
    return UV_ENOMEM;
  req->data = s;
  err = uv_shutdown(req, (uv_stream_t *)s->h.uv, on_shutdown);
  if (err) {
    free(req);
    finish(s);
    return 0; /* as the stream's end, not the caller's error */
  }
  return 0;
}

/* shutdown([cb]): flush queued writes, then end our side (Node's end()).
 * Sockets half-close; pipes and ttys have no half-close, so they close. */
static int l_shutdown(lua_State *L) {
  lipc__stream *s = lipc__stream_check(L, 1, "stream.shutdown");
  int err;
  if (!lua_isnoneornil(L, 2)) {
    lipc__checktype(L, 2, LUA_TFUNCTION, "stream.shutdown");
    lua_pushvalue(L, 2);
    s->shut_cb = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  if (!is_open(s) || (s->flags & F_SHUT)) {
    lua_pushboolean(L, 0);
    return 1;
  }
  s->flags |= F_SHUT;
  if (s->flags & F_CONNECTING) { /* after the writes that wait */
    s->flags |= F_SHUT_WAIT;
    lua_pushboolean(L, 1);
    return 1;
  }
  if ((err = start_shutdown(s)) != 0)
    return luaL_error(L, "stream.shutdown: %s", uv_strerror(err));
  lua_pushboolean(L, 1);
  return 1;
}

/* A stream whose connect failed before anybody could listen: reads and
 * writes give nil, msg, code; the caller emits 'error' and closes it. */
void lipc__stream_set_error(lipc__stream *s, int err, const char *what) {
  if (s->flags & F_ERRORED)
    return;
  store_error(s, err, what);
  lua_pop(s->h.rt->L, 2);
}

/* net.connect outside a task: the socket exists before it is connected,
 * and what is written meanwhile waits, as in Node. */
void lipc__stream_connecting(lipc__stream *s) {
  s->flags |= F_CONNECTING;
}

/* The connect is over: the writes that waited go out in order (or fail
 * with err, which the caller reported), then a shutdown() that waited. */
void lipc__stream_connected(lipc__stream *s, int err) {
  wreq *w = s->waiting, *next;
  s->waiting = s->waiting_tail = NULL;
  s->flags &= ~F_CONNECTING;
  for (; w != NULL; w = next) {
    int e = err;
    next = w->next;
    if (e == 0 && is_open(s))
      e = uv_write(&w->req, (uv_stream_t *)s->h.uv, w->bufs, w->nbufs,
                   on_written);
    else if (e == 0)
      e = UV_ECANCELED;
    if (e != 0)
      complete(w, e, err == 0);
  }
  if (err == 0 && (s->flags & F_SHUT_WAIT) && is_open(s)) {
    s->flags &= ~F_SHUT_WAIT;
    if (start_shutdown(s) != 0)
      finish(s);
  }
}

static int l_close(lua_State *L) {
  lipc__stream *s = lipc__stream_check(L, 1, "stream.close");
  lipc__handle_close(&s->h);
  return 0;
}

/* At exit: pending writes go out first (bounded by the runtime). */
static void flush_close(lipc__handle *h) {
  lipc__stream *s = (lipc__stream *)h;
  if (s->nwrites > 0 && !h->closing) {
    s->flags |= F_CLOSE_AFTER_WRITES;
    s->flags &= ~F_FLOWING;
    s->read_hook = NULL;
    update_reading(s);
    return;
  }
  lipc__handle_close(h);
}

/* Runs before 'close' is emitted: tasks still waiting get their answer,
 * references are dropped exactly once. */
static void on_closing(lipc__handle *h) {
  lipc__stream *s = (lipc__stream *)h;
  lipc_runtime *rt = h->rt;
  lua_State *L = rt->L;
  s->flags &= ~F_READING;
  if (s->flags & F_CONNECTING) /* closed before it connected */
    lipc__stream_connected(s, UV_ECANCELED);
  if (s->read_hook) /* the channel sees the end */
    s->read_hook(s, UV_EOF, NULL);
  lua_pushnil(L);
  lipc__wake(rt, &s->reader, 1);
  lua_pushnil(L);
  lua_pushstring(L, "stream.drain: stream closed");
  lua_pushstring(L, "EPIPE");
  lipc__waitq_wake_all(rt, &s->drainers, 3);
  lipc__waitq_free(rt, &s->drainers);
  call_shut_cb(s, 0);
  if (s->chunks != LUA_NOREF)
    luaL_unref(L, LUA_REGISTRYINDEX, s->chunks);
  s->chunks = LUA_NOREF;
  if (s->err_ref != LUA_NOREF)
    luaL_unref(L, LUA_REGISTRYINDEX, s->err_ref);
  s->err_ref = LUA_NOREF;
  if (s->sink_ref != LUA_NOREF)
    luaL_unref(L, LUA_REGISTRYINDEX, s->sink_ref);
  s->sink_ref = LUA_NOREF;
  if ((s->flags & F_SYNC) && !h->internal && s->fd > 2)
    close(s->fd);
}

/* Starts reading for a task about to wait in read(); an error is
 * returned rather than raised as an event, since the task gets it. */
static int start_for_reader(lipc__stream *s) {
  int err = 0;
  if (s->flags & F_READING)
    return 0;
  if (s->flags & F_SYNC)
    uv_idle_start((uv_idle_t *)s->h.uv, on_sync_idle);
  else
    err = uv_read_start((uv_stream_t *)s->h.uv, on_alloc, on_read);
  if (err == 0)
    s->flags |= F_READING;
  return err;
}

/* A cancelled read: what arrives later is kept for the next read, and
 * reading stops when nothing else wants it. */
static void reader_cancel(lipc_runtime *rt, lipc__wait *w) {
  lipc__stream *s =
      (lipc__stream *)((char *)w - offsetof(lipc__stream, reader));
  (void)rt;
  if (is_open(s))
    update_reading(s);
}

/* read() in a task: the next chunk; nil at the end; nil, msg, code on
 * error. */
static int l_read(lua_State *L) {
  lipc__stream *s = lipc__stream_check(L, 1, "stream.read");
  int err;
  lipc__task_check(L, "stream.read");
  if (chunk_shift(s, L))
    return 1;
  if (s->flags & F_ERRORED) {
    lua_pushnil(L);
    return 1 + push_stored_error(L, s);
  }
  if (!is_open(s) || (s->flags & F_EOF))
    return 0;
  if (!can_read(s))
    return luaL_error(L, "stream.read: the stream is not readable");
  if (s->read_hook)
    return luaL_error(L, "stream.read: a message channel owns this stream");
  if (lipc__waiting(&s->reader))
    return luaL_error(L, "stream.read: another task is already reading");
  if ((err = start_for_reader(s)) < 0)
    return lipc__push_error(L, err, "read");
  return lipc__task_park_c(L, &s->reader, reader_cancel);
}

/* on(name, fn): a 'data' listener makes the stream flow, as in Node;
 * chunks that arrived before it are delivered first. */
static int l_on(lua_State *L) {
  lipc__stream *s = lipc__stream_check(L, 1, "stream.on");
  const char *ev = lipc__checkstring(L, 2, "stream.on");
  lipc__emitter_on(L);
  if (strcmp(ev, "data") == 0 && !(s->flags & F_FLOWING)) {
    lipc_runtime *rt = s->h.rt;
    lua_State *M = rt->L;
    s->flags |= F_FLOWING;
    while (has_chunks(s) && lipc__handle_push(&s->h)) {
      chunk_shift(s, M);
      lipc__emit(rt, -2, "data", 1);
      lua_pop(M, 1);
    }
    update_reading(s);
  }
  lua_settop(L, 1);
  return 1;
}

static int l_pause(lua_State *L) {
  lipc__stream *s = lipc__stream_check(L, 1, "stream.pause");
  s->flags &= ~F_FLOWING;
  update_reading(s);
  lua_settop(L, 1);
  return 1;
}

static int l_resume(lua_State *L) {
  lipc__stream *s = lipc__stream_check(L, 1, "stream.resume");
  s->flags |= F_FLOWING;
  update_reading(s);
  lua_settop(L, 1);
  return 1;
}

/* set_raw_mode(on) -> true | nil, msg, code: a terminal's raw mode (no
 * line editing, no echo, ^C a byte), as Node's setRawMode; the mode the
 * process found comes back when it ends (lipc_free). */
static int l_set_raw_mode(lua_State *L) {
  lipc__stream *s = lipc__stream_check(L, 1, "stream.set_raw_mode");
  int err;
  luaL_checkany(L, 2);
  if (!is_open(s) || s->h.uv->type != UV_TTY)
    return lipc__push_error(L, UV_ENOTTY, "stream.set_raw_mode");
  err = uv_tty_set_mode((uv_tty_t *)s->h.uv, lua_toboolean(L, 2)
                                                 ? UV_TTY_MODE_RAW
                                                 : UV_TTY_MODE_NORMAL);
  if (err)
    return lipc__push_error(L, err, "stream.set_raw_mode");
  lua_pushboolean(L, 1);
  return 1;
}

static int l_fileno(lua_State *L) {
  lipc__stream *s = lipc__stream_check(L, 1, "stream.fileno");
  uv_os_fd_t fd = -1;
  if (s->flags & F_SYNC)
    fd = s->fd;
  else if (s->h.uv)
    uv_fileno(s->h.uv, &fd);
  if (fd < 0)
    return 0;
  lua_pushinteger(L, fd);
  return 1;
}

/* set_high_water(bytes) -> self */
static int l_set_high_water(lua_State *L) {
  lipc__stream *s = lipc__stream_check(L, 1, "stream.set_high_water");
  lua_Integer n = lipc__checkinteger(L, 2, "stream.set_high_water");
  if (n <= 0)
    lipc__argerror(L, 2, "stream.set_high_water", "must be > 0");
  s->hwm = (size_t)n;
  lua_settop(L, 1);
  return 1;
}

/* set_half_open(bool) -> self: keep writing after the peer's end. */
static int l_set_half_open(lua_State *L) {
  lipc__stream *s = lipc__stream_check(L, 1, "stream.set_half_open");
  if (lua_toboolean(L, 2))
    s->flags |= F_HALF_OPEN;
  else
    s->flags &= ~F_HALF_OPEN;
  lua_settop(L, 1);
  return 1;
}

/* Fields that describe the state; Lua code (lines, pipe) needs them. */
static int l_state(lua_State *L) {
  lipc__stream *s = lipc__stream_check(L, 1, "stream.state");
  lua_createtable(L, 0, 8);
  lua_pushboolean(L, is_open(s));
  lua_setfield(L, -2, "open");
  lua_pushboolean(L, (s->flags & F_EOF) != 0);
  lua_setfield(L, -2, "ended");
  lua_pushboolean(L, (s->flags & F_SHUT) != 0);
  lua_setfield(L, -2, "shut");
  lua_pushboolean(L, is_open(s) && can_read(s));
  lua_setfield(L, -2, "readable");
  lua_pushboolean(L, is_open(s) && can_write(s) && !(s->flags & F_SHUT));
  lua_setfield(L, -2, "writable");
  lua_pushboolean(L, (s->flags & F_FLOWING) != 0);
  lua_setfield(L, -2, "flowing");
  lua_pushinteger(L, (lua_Integer)s->queued);
  lua_setfield(L, -2, "queued");
  lua_pushinteger(L, (lua_Integer)s->hwm);
  lua_setfield(L, -2, "high_water");
  return 1;
}

/* stats() -> counters: what went through, and how often the writer ran
 * into the high-water mark. */
static int l_stats(lua_State *L) {
  lipc__stream *s = lipc__stream_check(L, 1, "stream.stats");
  lua_createtable(L, 0, 7);
  lua_pushinteger(L, (lua_Integer)s->bytes_read);
  lua_setfield(L, -2, "bytes_read");
  lua_pushinteger(L, (lua_Integer)s->bytes_written);
  lua_setfield(L, -2, "bytes_written");
  lua_pushinteger(L, (lua_Integer)s->reads);
  lua_setfield(L, -2, "reads");
  lua_pushinteger(L, (lua_Integer)s->writes);
  lua_setfield(L, -2, "writes");
  lua_pushinteger(L, (lua_Integer)s->queued);
  lua_setfield(L, -2, "queued");
  lua_pushinteger(L, (lua_Integer)s->nwrites);
  lua_setfield(L, -2, "pending_writes");
  lua_pushinteger(L, (lua_Integer)s->hwm_hits);
  lua_setfield(L, -2, "high_water_hits");
  return 1;
}

static void init_stream(lipc__stream *s) {
  s->hwm = DEFAULT_HWM;
  s->fd = -1;
  s->chunks = s->shut_cb = s->err_ref = s->sink_ref = LUA_NOREF;
  s->reader.ref = LUA_NOREF;
  s->h.on_close = on_closing;
  s->h.flush_close = flush_close;
}

static int fd_is_socket(int fd) {
  int type;
  socklen_t len = sizeof(type);
  return fd >= 0 && getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0;
}

/* The master of a pseudo-terminal reads EIO once every process has closed
 * the terminal (Linux): that is its end of file, not an error. */
void lipc__stream_eio_end(lipc__stream *s) {
  s->flags |= F_EIO_END;
}

lipc__stream *lipc__stream_new(lua_State *L, uv_stream_t *h, const char *tname,
                               const char *kind) {
  lipc__stream *s =
      lipc__handle_new(L, sizeof(*s), tname, (uv_handle_t *)h, kind);
  uv_os_fd_t fd = -1;
  init_stream(s);
  if (h->type == UV_TCP)
    s->flags |= F_SOCKET;
  else if (h->type == UV_NAMED_PIPE && uv_fileno((uv_handle_t *)h, &fd) == 0)
    s->flags |= fd_is_socket(fd) ? F_SOCKET : 0;
  return s;
}

static lipc__stream *new_sync(lua_State *L, int fd, int internal) {
  lipc_runtime *rt = lipc__rt(L);
  uv_idle_t *idle = malloc(sizeof(*idle));
  lipc__stream *s;
  if (idle == NULL)
    luaL_error(L, "stream: out of memory");
  uv_idle_init(rt->loop, idle);
  s = lipc__handle_new(L, sizeof(*s), LIPC_STREAM, (uv_handle_t *)idle, "file");
  init_stream(s);
  s->flags |= F_SYNC;
  s->fd = fd;
  s->h.internal = internal;
  return s;
}

/* stdin from a pipe is reopened through /proc: a new open file
 * description, so making it non-blocking does not reach the processes
 * that share the original (a child spawned with stdio "inherit"). */
static int reopen_fd(int fd) {
  char path[64];
  int flags = fcntl(fd, F_GETFL), nfd;
  if (flags < 0)
    return -1;
  snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
  nfd = open(path, (flags & O_ACCMODE) | O_CLOEXEC);
  if (nfd < 0)
    nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  return nfd;
}

/* The stream owns an fd it was given (closing it closes the fd), but
 * works on its own copy when the fd was reopened (a pipe through /proc,
 * a tty by libuv): the original goes now, or it would outlive the stream
 * and keep the peer from seeing EOF. Our own stdio keeps fds 0-2. */
static void drop_original(void *uv, int fd, int internal) {
  uv_os_fd_t now = -1;
  if (internal || fd <= 2)
    return;
  if (uv_fileno((uv_handle_t *)uv, &now) == 0 && now != fd)
    close(fd);
}

lipc__stream *lipc__stream_from_fd(lua_State *L, int fd, int internal) {
  lipc_runtime *rt = lipc__rt(L);
  uv_handle_type t = uv_guess_handle(fd);
  lipc__stream *s;
  int nfd;
  /* Writers to stdout/stderr write synchronously, as Node does on Linux:
   * the fd stays blocking for the processes that share it, and output is
   * never lost at exit. */
  if (fd == 1 || fd == 2 || t == UV_FILE || t == UV_UNKNOWN_HANDLE)
    return new_sync(L, fd, internal);
  if (t == UV_TTY) {
    uv_tty_t *tty = malloc(sizeof(*tty));
    if (tty == NULL || uv_tty_init(rt->loop, tty, fd, 1) != 0) {
      free(tty);
      return new_sync(L, fd, internal);
    }
    s = lipc__stream_new(L, (uv_stream_t *)tty, LIPC_STREAM, "tty");
    s->h.internal = internal;
    drop_original(tty, fd, internal);
    return s;
  }
  nfd = reopen_fd(fd);
  if (nfd >= 0) {
    uv_pipe_t *p = malloc(sizeof(*p));
    if (p && uv_pipe_init(rt->loop, p, 0) == 0 && uv_pipe_open(p, nfd) == 0) {
      s = lipc__stream_new(L, (uv_stream_t *)p, LIPC_STREAM, "pipe");
      s->h.internal = internal;
      drop_original(p, fd, internal);
      return s;
    }
    free(p);
    close(nfd);
  }
  return new_sync(L, fd, internal);
}

/* lipc.stream_from_fd(fd) -> stream (for fds a parent handed down) */
int lipc__stream_l_from_fd(lua_State *L) {
  lua_Integer fd = lipc__checkinteger(L, 1, "lipc.stream_from_fd");
  if (fd < 0 || fd >= 1 << 20)
    lipc__argerror(L, 1, "lipc.stream_from_fd", "bad fd");
  lipc__stream_from_fd(L, (int)fd, 0);
  return 1;
}

static const luaL_Reg stream_methods[] = {
    {"write", l_write},
    {"shutdown", l_shutdown},
    {"close", l_close},
    {"read", l_read},
    {"drain", l_drain},
    {"on", l_on},
    {"pause", l_pause},
    {"resume", l_resume},
    {"fileno", l_fileno},
    {"set_raw_mode", l_set_raw_mode},
    {"set_high_water", l_set_high_water},
    {"set_half_open", l_set_half_open},
    {"state", l_state},
    {"stats", l_stats},
    {NULL, NULL},
};

void lipc__stream_class(lua_State *L, const char *tname,
                        const luaL_Reg *extra) {
  lipc__class(L, tname, NULL); /* methods */
  luaL_getmetatable(L, LIPC_STREAM);
  lua_getfield(L, -1, "methods");
  lua_pushnil(L);
  while (lua_next(L, -2)) { /* copy the base methods */
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, -6);
  }
  lua_pop(L, 2);
  if (extra)
    luaL_setfuncs(L, extra, 0);
  luaL_getmetatable(L, tname);
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "__is_" LIPC_STREAM);
  lua_pushboolean(L, 1); /* lipc__testobj's fast path */
  lua_rawsetp(L, -2, LIPC_STREAM);
  lua_getfield(L, -2, "close");
  lua_setfield(L, -2, "__close");
  lua_pop(L, 1);
}

/* task_check(fname): stream.lua's lipc__task_check (lines() raises
 * when called outside a task, not at its first iteration). */
static int l_task_check(lua_State *L) {
  lipc__task_check(L, luaL_checkstring(L, 1));
  return 0;
}

/* Makes the "lipc.stream" type (once per state); returns its methods
 * table, to which other layers add (channel.c adds `channel`). */
int luaopen_lipc_stream(lua_State *L) {
  if (luaL_getmetatable(L, LIPC_STREAM) != LUA_TNIL) {
    lua_getfield(L, -1, "methods");
    lua_remove(L, -2);
    return 1;
  }
  lua_pop(L, 1);
  lipc__class(L, LIPC_STREAM, stream_methods); /* methods */
  lipc__load_embedded(L, "stream");            /* methods fn */
  lua_pushvalue(L, -2);
  lua_pushcfunction(L, l_task_check);
  lua_call(L, 2, 0); /* adds lines, read_all... */
  return 1;
}
