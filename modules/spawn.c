/*
 * spawn.c - the `spawn` module: child processes.
 *
 * Owns starting programs, wiring their stdio, reaping them, and the child
 * object's events (spawn, exit, close). The Lua half (spawn.lua) adds the
 * callable module table, the shell and input options, run() and exec().
 *
 * Programs start through posix_spawn: glibc implements it with
 * clone(CLONE_VM|CLONE_VFORK), several times cheaper than the plain fork()
 * of libuv 1.44's uv_spawn, and it reports the exec errno (ENOENT,
 * EACCES) synchronously. uv_spawn is used only when uid/gid are asked for.
 * Children are reaped through one SIGCHLD watcher per runtime that calls
 * waitpid(pid, WNOHANG) on our own children only: libuv's watcher does the
 * same for the pids it spawned, so both coexist and nobody steals a child.
 *
 * A "pipe" stdio entry is a real pipe(2) (a child may open /dev/stdin and
 * bulk output moves at pipe speed); "ipc" entries are socketpairs, wrapped
 * in the parent as a uv_pipe_t opened with ipc=1. Every fd made here is
 * O_CLOEXEC and the child gets exactly the fds it was given (closefrom).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "channel.h"
#include "modules.h"

extern char **environ;

#define CHILD "lipc.child"
#define CHILD_STDIO "lipc.child_stdio"
#define MAX_STDIO 64
#define FOREVER ((uint64_t)1 << 40) /* ms: a timer that keeps the loop up */
#define DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin"

#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 34)
#define HAVE_CLOSEFROM 1
#endif

typedef struct lchild lchild;

/* A process to reap; outlives its child object when that is closed
 * first, so that the zombie is still collected. */
typedef struct lproc {
  pid_t pid;
  int status;    /* waitpid's, -1 when unknown */
  lchild *child; /* NULL once the object let go */
  struct lproc *next, *prev;
} lproc;

typedef struct sigwatch sigwatch;

/* Per runtime, in a registry userdata (lives as long as the Lua state). */
typedef struct sstate {
  sigwatch *sig; /* NULL until the first spawn */
  lproc *procs;
} sstate;

struct sigwatch { /* bare handle: closed by the runtime */
  lipc__handle h;
  uv_signal_t sig;
  sstate *st;
};

typedef struct uvproc { /* the uv_spawn path (uid/gid) */
  lipc__handle h;
  uv_process_t p;
  lchild *child;
} uvproc;

typedef struct waiter {
  lipc__wait w;
  struct waiter *next;
} waiter;

struct lchild {
  lipc__handle h; /* uv: a uv_timer_t (see on_tick) */
  lproc *proc;
  uvproc *uvp;
  int pid;
  int err;  /* spawn failure, a UV_E* code */
  int code; /* exit status, -1 when signalled */
  int termsig;
  int kill_sig;         /* for the timeout */
  uint64_t deadline;    /* loop time of the timeout, 0: none */
  unsigned started : 1; /* 'spawn' or 'error' emitted */
  unsigned exited : 1;
  unsigned ending : 1; /* close condition met: not early */
  unsigned done : 1;   /* 'close' emitted */
  waiter *waiters;
};

enum { IO_PIPE, IO_IPC, IO_FD, IO_STREAM, IO_NULL, IO_CLOSE };

typedef struct sio {
  int kind;
  int src;        /* fd dup'd into place in the child */
  int parent_end; /* pipes: our end, wrapped after */
  int tmp;        /* a dup made for the spawn only */
  int sidx;       /* IO_STREAM: its stack index */
} sio;

typedef struct spec {
  const char *file; /* as given */
  const char *path; /* what is executed */
  char **argv, **envp;
  const char *cwd;
  const char *pathvar; /* PATH used for the search */
  int n;               /* stdio entries */
  sio io[MAX_STDIO];
  int detached;
  int uid, gid;     /* -1: unchanged */
  uint64_t timeout; /* ms, 0: none */
  int kill_sig;
  const char *detail; /* for a spawn error */
} spec;

static const char USED_KEY = 'U';
static const char STATE_KEY = 'S';

/* ---- errors in arguments ---------------------------------------------- */

static int argfail(lua_State *L, int arg, const char *what) {
  return luaL_error(L, "spawn: bad argument #%d (%s)", arg, what);
}

static int typefail(lua_State *L, int arg, const char *field,
                    const char *expected, int idx) {
  return luaL_error(L, "spawn: bad argument #%d (%s%s%s expected, got %s)", arg,
                    field ? field : "", field ? ": " : "", expected,
                    luaL_typename(L, idx));
}

/* opts[name] on top of the stack, type-checked; returns its type. */
static int opt_field(lua_State *L, int opts, const char *name, int type1,
                     int type2, const char *expected) {
  int t;
  if (opts == 0) {
    lua_pushnil(L);
    return LUA_TNIL;
  }
  t = lua_getfield(L, opts, name);
  if (t != LUA_TNIL && t != type1 && t != type2) {
    lua_pushfstring(L, "opts.%s", name);
    typefail(L, 3, lua_tostring(L, -1), expected, -2);
  }
  return t;
}

/* ---- reaping --------------------------------------------------------- */

static void child_exit(lchild *c, int code, int termsig);

static void proc_unlink(sstate *st, lproc *p) {
  if (p->prev)
    p->prev->next = p->next;
  else if (st->procs == p)
    st->procs = p->next;
  if (p->next)
    p->next->prev = p->prev;
  p->next = p->prev = NULL;
}

/* One SIGCHLD may stand for several exits: every child of ours is asked.
 * The exited ones are unlinked first and reported after, because a
 * listener may spawn (and so change the list) while we report. */
static void on_sigchld(uv_signal_t *uv, int signum) {
  sigwatch *sw = (sigwatch *)uv->data;
  sstate *st = sw->st;
  lproc *p, *next, *done = NULL;
  int status;
  pid_t r;
  (void)signum;
  for (p = st->procs; p; p = next) {
    next = p->next;
    do
      r = waitpid(p->pid, &status, WNOHANG);
    while (r < 0 && errno == EINTR);
    if (r == 0)
      continue;
    proc_unlink(st, p);
    p->status = r < 0 ? -1 : status; /* -1: reaped by someone else */
    p->next = done;
    done = p;
  }
  while (done) {
    p = done;
    done = p->next;
    if (p->child) {
      lchild *c = p->child;
      status = p->status;
      c->proc = NULL;
      if (status == -1)
        child_exit(c, -1, 0);
      else if (WIFSIGNALED(status))
        child_exit(c, -1, WTERMSIG(status));
      else
        child_exit(c, WEXITSTATUS(status), 0);
    }
    free(p);
  }
}

/* At exit the runtime closes the watcher: the children still running are
 * left to init, their records freed. */
static void sigwatch_closed(lipc__handle *h) {
  sigwatch *sw = (sigwatch *)h;
  sstate *st = sw->st;
  while (st->procs) {
    lproc *p = st->procs;
    proc_unlink(st, p);
    if (p->child)
      p->child->proc = NULL;
    free(p);
  }
  st->sig = NULL;
  free(sw);
}

static int sigwatch_start(lipc_runtime *rt, sstate *st) {
  sigwatch *sw;
  int err;
  if (st->sig)
    return 0;
  sw = calloc(1, sizeof(*sw));
  if (sw == NULL)
    return UV_ENOMEM;
  sw->st = st;
  uv_signal_init(rt->loop, &sw->sig);
  lipc__handle_bare(rt, &sw->h, (uv_handle_t *)&sw->sig, "sigchld",
                    sigwatch_closed);
  err = uv_signal_start(&sw->sig, on_sigchld, SIGCHLD);
  if (err) {
    lipc__handle_close(&sw->h);
    return err;
  }
  uv_unref((uv_handle_t *)&sw->sig); /* children keep us up */
  st->sig = sw;
  return 0;
}

/* ---- child stdio streams ---------------------------------------------- */

/* A stdio stream counts as consumed once somebody read it or listened to
 * its data: 'close' then waits for its end (Node's rule). The methods
 * that consume are wrapped to set a mark in the stream's env table. */
static int used_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  return lua_gettop(L);
}

static int used_call(lua_State *L) {
  int mark = lua_toboolean(L, lua_upvalueindex(2));
  if (!mark && lua_type(L, 2) == LUA_TSTRING)
    mark = strcmp(lua_tostring(L, 2), "data") == 0;
  if (mark && lua_type(L, 1) == LUA_TUSERDATA) {
    if (lua_getiuservalue(L, 1, 1) == LUA_TTABLE) {
      lua_pushboolean(L, 1);
      lua_rawsetp(L, -2, &USED_KEY);
    }
    lua_pop(L, 1);
  }
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  /* read() parks its task: the call must be able to yield through us. */
  lua_callk(L, lua_gettop(L) - 1, LUA_MULTRET, 0, used_k);
  return used_k(L, LUA_OK, 0);
}

static void stdio_class(lua_State *L) {
  static const struct {
    const char *name;
    int always;
  } wrapped[] = {{"read", 1}, {"resume", 1}, {"on", 0}, {"once", 0}, {NULL, 0}};
  int i;
  lipc__stream_class(L, CHILD_STDIO, NULL); /* methods */
  luaL_getmetatable(L, LIPC_STREAM);
  lua_getfield(L, -1, "methods"); /* methods mt base */
  for (i = 0; wrapped[i].name; i++) {
    lua_getfield(L, -1, wrapped[i].name);
    lua_pushboolean(L, wrapped[i].always);
    lua_pushcclosure(L, used_call, 2);
    lua_setfield(L, -4, wrapped[i].name);
  }
  lua_pop(L, 3);
}

static int stream_used(lua_State *L, int idx) {
  int used;
  if (lua_getiuservalue(L, idx, 1) != LUA_TTABLE) {
    lua_pop(L, 1);
    return 0;
  }
  lua_rawgetp(L, -1, &USED_KEY);
  used = lua_toboolean(L, -1);
  lua_pop(L, 2);
  return used;
}

static int stream_open(lipc__stream *s) {
  lipc__handle *h = lipc__stream_handle(s);
  return h->uv != NULL && !h->closing;
}

/* Wraps our end of a pipe or socketpair as a stream; pushes it (or
 * false when that fails, after closing fd). */
static void wrap_end(lua_State *L, int fd, int ipc) {
  lipc_runtime *rt = lipc__rt(L);
  uv_pipe_t *p = malloc(sizeof(*p));
  if (p == NULL) {
    close(fd);
    lua_pushboolean(L, 0);
    return;
  }
  uv_pipe_init(rt->loop, p, ipc);
  if (uv_pipe_open(p, fd) != 0) {
    close(fd);
    lipc__close_free((uv_handle_t *)p);
    lua_pushboolean(L, 0);
    return;
  }
  lipc__stream_new(L, (uv_stream_t *)p, CHILD_STDIO, "pipe");
}

/* ---- the close condition ----------------------------------------------- */

static int stdio_close_listener(lua_State *L);

/* Bytes waiting in the kernel for us to read. */
static int unread(uv_stream_t *uv) {
  uv_os_fd_t fd;
  int avail = 0;
  if (uv_fileno((uv_handle_t *)uv, &fd) == 0)
    ioctl(fd, FIONREAD, &avail);
  return avail;
}

/* 'close' comes once the child is gone and every output stream being
 * read (or consumed before, with bytes still unread) has ended. What is
 * left is tidied: stdin is ended, an idle output stream is closed when
 * nothing waits in it (otherwise it stays open so the rest can still be
 * read), so a finished child leaves no fd behind. */
static void check_close(lchild *c) {
  lipc_runtime *rt = c->h.rt;
  lua_State *L = rt->L;
  int top = lua_gettop(L), i, n;
  if (!c->exited || c->ending || c->h.uv == NULL || c->h.closing)
    return;
  if (!lipc__handle_push(&c->h) || lua_getiuservalue(L, -1, 1) != LUA_TTABLE ||
      lua_getfield(L, -1, "stdio") != LUA_TTABLE) {
    lua_settop(L, top);
    return;
  }
  n = (int)lua_rawlen(L, -1);
  for (i = 1; i <= n; i++) { /* anything still flowing? */
    lipc__stream *s;
    uv_stream_t *uv;
    lua_rawgeti(L, -1, i);
    s = lipc__stream_test(L, -1);
    uv = s ? lipc__stream_uv(s) : NULL;
    if (uv && stream_open(s) && uv_is_readable(uv) &&
        (uv_is_active((uv_handle_t *)uv) ||
         (stream_used(L, -1) && unread(uv) > 0))) {
      lua_settop(L, top);
      return; /* its 'close' comes back */
    }
    lua_pop(L, 1);
  }
  c->ending = 1;
  for (i = 1; i <= n; i++) {
    lipc__stream *s;
    uv_stream_t *uv;
    lua_rawgeti(L, -1, i);
    s = lipc__stream_test(L, -1);
    uv = s ? lipc__stream_uv(s) : NULL;
    if (uv && stream_open(s)) {
      if (uv_is_readable(uv)) {
        if (unread(uv) == 0)
          lipc__handle_close(lipc__stream_handle(s));
      } else {
        lua_getfield(L, -1, "shutdown"); /* flush, then close */
        lua_pushvalue(L, -2);
        lua_call(L, 1, 0);
      }
    }
    lua_pop(L, 1);
  }
  lua_settop(L, top);
  lipc__handle_close(&c->h);
}

static int stdio_close_listener(lua_State *L) {
  lchild *c = lua_touserdata(L, lua_upvalueindex(1));
  check_close(c);
  return 0;
}

/* ---- events ------------------------------------------------------------- */

/* child[k] = the value on top of rt->L (popped). */
static void set_field(lipc_runtime *rt, lchild *c, const char *k) {
  lua_State *L = rt->L;
  int top = lua_gettop(L);
  if (lipc__handle_push(&c->h) && lua_getiuservalue(L, -1, 1) == LUA_TTABLE) {
    lua_pushvalue(L, top);
    lua_setfield(L, -2, k);
  }
  lua_settop(L, top - 1);
}

/* Pushes the spawn error as msg, code on rt->L. */
static void push_spawn_error(lchild *c) {
  lua_State *L = c->h.rt->L;
  int top = lua_gettop(L);
  const char *detail = NULL;
  if (lipc__handle_push(&c->h) && lua_getiuservalue(L, -1, 1) == LUA_TTABLE)
    if (lua_getfield(L, -1, "spawn_detail") == LUA_TSTRING ||
        lua_getfield(L, -2, "spawnfile") == LUA_TSTRING)
      detail = lua_pushfstring(L, "spawn %s", lua_tostring(L, -1));
  lipc__push_errpair(L, c->err, detail);
  lua_rotate(L, top + 1, 2); /* msg code ... */
  lua_settop(L, top + 2);
}

static void push_status(lua_State *L, lchild *c) {
  const char *name;
  if (c->exited && c->code >= 0)
    lua_pushinteger(L, c->code);
  else
    lua_pushnil(L);
  if (c->exited && c->termsig > 0) {
    name = lipc__signame(c->termsig);
    if (name)
      lua_pushstring(L, name);
    else
      lua_pushfstring(L, "SIG%d", c->termsig);
  } else {
    lua_pushnil(L);
  }
}

/* Resumes every task in wait() with the nargs values on top of rt->L. */
static void wake_waiters(lchild *c, int nargs) {
  lipc_runtime *rt = c->h.rt;
  lua_State *L = rt->L;
  int base = lua_gettop(L) - nargs, i;
  while (c->waiters) {
    waiter *w = c->waiters;
    c->waiters = w->next;
    for (i = 1; i <= nargs; i++)
      lua_pushvalue(L, base + i);
    if (rt->exiting) {
      lua_pop(L, nargs);
      lipc__wait_cancel(rt, &w->w);
    } else {
      lipc__wake(rt, &w->w, nargs);
    }
    free(w);
  }
  lua_pop(L, nargs);
}

static void on_tick(uv_timer_t *t);

static void restart_timer(lchild *c) {
  uv_timer_t *t = (uv_timer_t *)c->h.uv;
  uint64_t now, ms = FOREVER;
  if (t == NULL || c->h.closing)
    return;
  if (c->exited) { /* streams keep us up now */
    uv_timer_stop(t);
    return;
  }
  if (c->deadline) {
    now = uv_now(t->loop);
    ms = c->deadline > now ? c->deadline - now : 0;
  }
  uv_timer_start(t, on_tick, ms, 0);
}

static void emit_started(lchild *c) {
  lipc_runtime *rt = c->h.rt;
  lua_State *L = rt->L;
  c->started = 1;
  if (!lipc__handle_push(&c->h))
    return lua_pop(L, 1);
  if (c->err == 0) {
    lipc__emit(rt, -1, "spawn", 0);
    lua_pop(L, 1);
    return;
  }
  /* A failed spawn: 'error' goes to listeners; a task in wait() handles
   * it too (it gets nil, msg, code after 'close'), so it is uncaught only
   * when nobody handles it at all. */
  push_spawn_error(c); /* obj msg code */
  if (!c->waiters || lipc__has_listeners(L, -3, "error"))
    lipc__emit(rt, -3, "error", 2); /* pops msg code */
  else
    lua_pop(L, 2);
  lua_pop(L, 1);
}

/* The child's timer: first the 'spawn' (or 'error') tick of the next loop
 * turn, then the timeout, then a keep-alive until the child is reaped. */
static void on_tick(uv_timer_t *t) {
  lchild *c = t->data;
  lipc_runtime *rt = c->h.rt;
  if (!c->started) {
    emit_started(c);
    if (c->err) {
      c->exited = 1; /* nothing to wait for */
      check_close(c);
    }
    restart_timer(c);
    return;
  }
  if (!c->exited && c->deadline && uv_now(t->loop) >= c->deadline) {
    c->deadline = 0;
    if (c->pid > 0 && uv_kill(c->pid, c->kill_sig) == 0) {
      lua_pushboolean(rt->L, 1);
      set_field(rt, c, "killed");
    }
    lua_pushboolean(rt->L, 1);
    set_field(rt, c, "timed_out");
  }
  restart_timer(c);
}

static void child_exit(lchild *c, int code, int termsig) {
  lipc_runtime *rt = c->h.rt;
  lua_State *L = rt->L;
  if (c->exited || c->h.uv == NULL)
    return;
  if (!c->started) /* 'spawn' always first */
    emit_started(c);
  c->exited = 1;
  c->code = code;
  c->termsig = termsig;
  if (rt->trace & LIPC_TRACE_SPAWN) {
    if (termsig)
      lipc__trace(rt, "spawn", "exit pid %d signal %s", (int)c->pid,
                  lipc__signame(termsig));
    else
      lipc__trace(rt, "spawn", "exit pid %d code %d", (int)c->pid, code);
  }
  restart_timer(c);
  if (!lipc__handle_push(&c->h))
    return lua_pop(L, 1);
  push_status(L, c);
  lua_pushvalue(L, -2);
  set_field(rt, c, "exit_code");
  lua_pushvalue(L, -1);
  set_field(rt, c, "signal_code");
  lipc__emit(rt, -3, "exit", 2);
  lua_pop(L, 1);
  check_close(c);
}

/* Closes the stdio streams of the child object at idx of L. */
static void close_stdio(lua_State *L, int idx) {
  int i, n;
  if (lua_getiuservalue(L, idx, 1) == LUA_TTABLE &&
      lua_getfield(L, -1, "stdio") == LUA_TTABLE) {
    n = (int)lua_rawlen(L, -1);
    for (i = 1; i <= n; i++) {
      lipc__stream *s;
      lua_rawgeti(L, -1, i);
      if ((s = lipc__stream_test(L, -1)) != NULL)
        lipc__handle_close(lipc__stream_handle(s));
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

/* on_close of the child object: 'close' carries (code, signal), so it is
 * emitted here, and the self reference dropped, leaving the runtime's
 * bare 'close' nothing to do. An early close (close() or the runtime
 * exiting) orphans the process: it is still reaped, silently. */
static void child_closed(lipc__handle *h) {
  lchild *c = (lchild *)h;
  lipc_runtime *rt = h->rt;
  lua_State *L = rt->L;
  int top = lua_gettop(L);
  c->done = 1;
  if (c->proc) {
    c->proc->child = NULL;
    c->proc = NULL;
  }
  if (c->uvp) {
    c->uvp->child = NULL;
    c->uvp = NULL;
  }
  if (!lipc__handle_push(h)) { /* collected: nobody to tell */
    lua_settop(L, top);
    wake_waiters(c, 0);
    return;
  }
  if (!c->ending) /* early: close our ends */
    close_stdio(L, -1);
  lua_settop(L, top + 1);
  push_status(L, c); /* obj code signal */
  if (!rt->exiting) {
    lua_pushvalue(L, -2);
    lua_pushvalue(L, -2);
    lipc__emit(rt, -5, "close", 2);
  }
  if (c->err) { /* wait() -> nil, msg, code */
    lua_settop(L, top + 1);
    lua_pushnil(L);
    push_spawn_error(c);
  }
  wake_waiters(c, lua_gettop(L) - top - 1); /* after the listeners */
  lua_settop(L, top);
  lipc__handle_unref_self(h);
}

/* ---- argument parsing ------------------------------------------------- */

/* Pushes s into the anchor table at idx (keeps it alive); returns it. */
static const char *anchor(lua_State *L, int at, int *n) {
  const char *s = lua_tostring(L, -1);
  lua_rawseti(L, at, ++*n);
  return s;
}

static void parse_argv(lua_State *L, spec *sp, int at, int *na) {
  int t = lua_type(L, 2), i, n = 0;
  const char *argv0 = NULL;
  if (t != LUA_TNONE && t != LUA_TNIL && t != LUA_TTABLE)
    typefail(L, 2, NULL, "table", 2);
  if (t == LUA_TTABLE)
    n = (int)lua_rawlen(L, 2);
  if (opt_field(L, lua_istable(L, 3) ? 3 : 0, "argv0", LUA_TSTRING, LUA_TSTRING,
                "string") == LUA_TSTRING)
    argv0 = anchor(L, at, na);
  else
    lua_pop(L, 1);
  sp->argv = lua_newuserdatauv(L, ((size_t)n + 2) * sizeof(char *), 0);
  lua_rawseti(L, at, ++*na);
  sp->argv[0] = (char *)(argv0 ? argv0 : sp->file);
  for (i = 1; i <= n; i++) {
    int et = lua_rawgeti(L, 2, i);
    size_t len;
    const char *a;
    if (et != LUA_TSTRING && et != LUA_TNUMBER) {
      lua_pushfstring(L, "args[%d]", i);
      typefail(L, 2, lua_tostring(L, -1), "string", -2);
    }
    a = lua_tolstring(L, -1, &len); /* numbers: strings */
    if (strlen(a) != len) {
      lua_pushfstring(L, "args[%d] contains a zero byte", i);
      argfail(L, 2, lua_tostring(L, -1));
    }
    sp->argv[i] = (char *)anchor(L, at, na);
  }
  sp->argv[n + 1] = NULL;
}

/* 1 when the string (or number) at idx has a zero byte in it: C would
 * silently cut it there ("A=x\0y" reaching the child as "A=x"). */
static int has_zero(lua_State *L, int idx) {
  size_t len;
  const char *s = lua_tolstring(L, idx, &len);
  return s != NULL && strlen(s) != len;
}

static int var_named(const char *entry, const char *name) {
  size_t n = strlen(name);
  return strncmp(entry, name, n) == 0 && entry[n] == '=';
}

/* env merged over environ (clear_env: replaces it); false unsets. */
static void parse_env(lua_State *L, spec *sp, int at, int *na) {
  int opts = lua_istable(L, 3) ? 3 : 0, t, clear, e, k = 0;
  size_t count = 0;
  char **p;
  t = opt_field(L, opts, "env", LUA_TTABLE, LUA_TTABLE, "table");
  e = lua_gettop(L);
  opt_field(L, opts, "clear_env", LUA_TBOOLEAN, LUA_TBOOLEAN, "boolean");
  clear = lua_toboolean(L, -1);
  lua_pop(L, 1);
  sp->pathvar = getenv("PATH");
  if (t == LUA_TNIL && !clear) {
    sp->envp = environ;
    lua_pop(L, 1);
    return;
  }
  for (p = environ; *p; p++)
    count++;
  if (t == LUA_TTABLE)
    for (lua_pushnil(L); lua_next(L, e); lua_pop(L, 1))
      count++;
  sp->envp = lua_newuserdatauv(L, (count + 1) * sizeof(char *), 0);
  lua_rawseti(L, at, ++*na);
  if (clear)
    sp->pathvar = NULL;
  for (p = environ; *p && !clear; p++) {
    const char *eq = strchr(*p, '=');
    int over = 0;
    if (eq && t == LUA_TTABLE) {
      lua_pushlstring(L, *p, (size_t)(eq - *p));
      over = lua_rawget(L, e) != LUA_TNIL;
      lua_pop(L, 1);
    }
    if (!over)
      sp->envp[k++] = *p;
  }
  if (t == LUA_TTABLE) {
    for (lua_pushnil(L); lua_next(L, e); lua_pop(L, 1)) {
      int vt = lua_type(L, -1);
      if (lua_type(L, -2) != LUA_TSTRING || strchr(lua_tostring(L, -2), '=') ||
          has_zero(L, -2) || lua_rawlen(L, -2) == 0)
        argfail(L, 3, "opts.env keys must be variable names");
      if (vt == LUA_TBOOLEAN && !lua_toboolean(L, -1))
        continue; /* env = {X = false}: unset */
      if (vt != LUA_TSTRING && vt != LUA_TNUMBER) {
        lua_pushfstring(L, "opts.env.%s", lua_tostring(L, -2));
        typefail(L, 3, lua_tostring(L, -1), "string", -2);
      }
      if (has_zero(L, -1)) {
        lua_pushfstring(L, "opts.env.%s contains a zero byte",
                        lua_tostring(L, -2));
        argfail(L, 3, lua_tostring(L, -1));
      }
      lua_pushfstring(L, "%s=%s", lua_tostring(L, -2), lua_tostring(L, -1));
      sp->envp[k] = (char *)anchor(L, at, na);
      if (var_named(sp->envp[k], "PATH"))
        sp->pathvar = sp->envp[k] + 5;
      k++;
    }
  }
  sp->envp[k] = NULL;
  if (!clear && t == LUA_TTABLE) { /* PATH given as false */
    lua_getfield(L, e, "PATH");
    if (lua_type(L, -1) == LUA_TBOOLEAN)
      sp->pathvar = NULL;
    lua_pop(L, 1);
  }
  lua_pop(L, 1); /* env */
}

static int stdio_word(const char *w, int i, sio *io) {
  if (strcmp(w, "pipe") == 0)
    io->kind = IO_PIPE;
  else if (strcmp(w, "ipc") == 0)
    io->kind = IO_IPC;
  else if (strcmp(w, "inherit") == 0) {
    io->kind = IO_FD;
    io->src = i;
  } else if (strcmp(w, "ignore") == 0)
    io->kind = i < 3 ? IO_NULL : IO_CLOSE;
  else
    return 0;
  return 1;
}

/* One stdio entry (at the top of the stack; a stream stays there). */
static void stdio_entry(lua_State *L, int i, sio *io) {
  int t = lua_type(L, -1);
  io->src = io->parent_end = io->tmp = -1;
  io->sidx = 0;
  if (t == LUA_TNIL) { /* missing: Node's defaults */
    io->kind = i < 3 ? IO_PIPE : IO_CLOSE;
  } else if (t == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
    io->kind = i < 3 ? IO_NULL : IO_CLOSE;
  } else if (t == LUA_TSTRING) {
    if (!stdio_word(lua_tostring(L, -1), i, io)) {
      lua_pushfstring(L,
                      "opts.stdio[%d]: unknown value '%s' (pipe, inherit,"
                      " ignore, ipc, an fd or a stream)",
                      i + 1, lua_tostring(L, -1));
      argfail(L, 3, lua_tostring(L, -1));
    }
  } else if (t == LUA_TNUMBER && lua_isinteger(L, -1) &&
             lua_tointeger(L, -1) >= 0 && lua_tointeger(L, -1) < 1 << 20) {
    io->kind = IO_FD;
    io->src = (int)lua_tointeger(L, -1);
  } else if (lipc__stream_test(L, -1)) {
    io->kind = IO_STREAM;
    io->sidx = lua_gettop(L);
    return; /* keep it on the stack */
  } else {
    lua_pushfstring(L, "opts.stdio[%d]", i + 1);
    typefail(L, 3, lua_tostring(L, -1), "a word, an fd or a stream", -2);
  }
  lua_pop(L, 1);
}

static void parse_stdio(lua_State *L, spec *sp) {
  int opts = lua_istable(L, 3) ? 3 : 0, t, i, n, tbl;
  t = opt_field(L, opts, "stdio", LUA_TTABLE, LUA_TSTRING, "table");
  tbl = lua_gettop(L);
  sp->n = 3;
  if (t == LUA_TTABLE && (n = (int)lua_rawlen(L, tbl)) > 3)
    sp->n = n;
  if (sp->n > MAX_STDIO)
    argfail(L, 3, "opts.stdio: too many entries");
  luaL_checkstack(L, sp->n + 8, "spawn");
  for (i = 0; i < sp->n; i++) {
    if (t == LUA_TTABLE)
      lua_rawgeti(L, tbl, i + 1);
    else if (t == LUA_TSTRING)
      lua_pushvalue(L, tbl);
    else
      lua_pushnil(L);
    stdio_entry(L, i, &sp->io[i]);
  }
}

/* PATH search in the parent, with the PATH the child will have; execvp's
 * rules: the first executable regular file wins, EACCES when only
 * non-executable ones were found. */
static int resolve(lua_State *L, spec *sp, int at, int *na) {
  const char *dirs = sp->pathvar ? sp->pathvar : DEFAULT_PATH, *end;
  size_t flen = strlen(sp->file);
  int eacces = 0;
  struct stat st;
  if (strchr(sp->file, '/')) {
    sp->path = sp->file;
    return 0;
  }
  for (;; dirs = end + 1) {
    size_t dlen;
    char buf[4096];
    end = strchr(dirs, ':');
    dlen = end ? (size_t)(end - dirs) : strlen(dirs);
    if (dlen + flen + 2 <= sizeof(buf)) {
      memcpy(buf, dirs, dlen);
      if (dlen == 0)
        buf[dlen++] = '.';
      buf[dlen] = '/';
      memcpy(buf + dlen + 1, sp->file, flen + 1);
      if (stat(buf, &st) == 0 && S_ISREG(st.st_mode)) {
        if (access(buf, X_OK) == 0) {
          lua_pushstring(L, buf);
          sp->path = anchor(L, at, na);
          return 0;
        }
        eacces = 1;
      }
    }
    if (end == NULL)
      break;
  }
  sp->path = sp->file;
  return eacces ? UV_EACCES : UV_ENOENT;
}

/* ---- starting ----------------------------------------------------------- */

static int stream_fd(lua_State *L, int idx) {
  int fd = -1;
  lua_getfield(L, idx, "fileno");
  lua_pushvalue(L, idx);
  lua_call(L, 1, 1);
  if (lua_isinteger(L, -1))
    fd = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  return fd;
}

static void close_fd(int *fd) {
  if (*fd >= 0)
    close(*fd);
  *fd = -1;
}

static void release_fds(spec *sp, int parent_ends) {
  int i;
  for (i = 0; i < sp->n; i++) {
    sio *io = &sp->io[i];
    if (io->kind == IO_PIPE || io->kind == IO_IPC)
      close_fd(&io->src);
    close_fd(&io->tmp);
    if (parent_ends)
      close_fd(&io->parent_end);
  }
}

/* A new fd must not land on 0-2 (lipc started with one closed): libuv
 * refuses to close those, and they are the child's places. */
static int lift(int *fds) {
  int i, nfd;
  for (i = 0; i < 2; i++) {
    if (fds[i] >= 3)
      continue;
    nfd = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
    close(fds[i]);
    fds[i] = nfd;
  }
  if (fds[0] >= 0 && fds[1] >= 0)
    return 0;
  nfd = -errno;
  close_fd(&fds[0]);
  close_fd(&fds[1]);
  return nfd;
}

/* Makes the pipes and finds the fds of streams; sources below n that are
 * not in their own place are moved up, so that no dup2 in the child
 * overwrites a source still needed. */
static int make_fds(lua_State *L, spec *sp) {
  int i, fds[2], err;
  for (i = 0; i < sp->n; i++) {
    sio *io = &sp->io[i];
    switch (io->kind) {
      case IO_PIPE:
        if (pipe2(fds, O_CLOEXEC) != 0)
          return -errno;
        if ((err = lift(fds)) != 0)
          return err;
        io->src = fds[i == 0 ? 0 : 1];
        io->parent_end = fds[i == 0 ? 1 : 0];
        break;
      case IO_IPC:
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
          return -errno;
        if ((err = lift(fds)) != 0)
          return err;
        io->parent_end = fds[0];
        io->src = fds[1];
        break;
      case IO_FD: /* "inherit" of a closed fd */
        if (io->src == i && i < 3 && fcntl(i, F_GETFD) < 0)
          io->kind = IO_NULL;
        break;
      case IO_STREAM: {
        lipc__stream *s = lipc__stream_test(L, io->sidx);
        io->src = stream_fd(L, io->sidx);
        if (io->src < 0 || !stream_open(s))
          return UV_EBADF;
        /* The child shares the open file description: it must not get it
       * non-blocking. The parent is about to give its copy up. */
        if (!lipc__stream_handle(s)->internal) {
          int fl = fcntl(io->src, F_GETFL);
          if (fl >= 0 && (fl & O_NONBLOCK))
            fcntl(io->src, F_SETFL, fl & ~O_NONBLOCK);
        }
        break;
      }
      default: break;
    }
  }
  for (i = 0; i < sp->n; i++) {
    sio *io = &sp->io[i];
    if (io->src >= 0 && io->src < sp->n && io->src != i) {
      io->tmp = fcntl(io->src, F_DUPFD_CLOEXEC, sp->n);
      if (io->tmp < 0)
        return -errno;
    }
  }
  return 0;
}

static int src_of(const sio *io) {
  return io->tmp >= 0 ? io->tmp : io->src;
}

/* A file exec refuses as ENOEXEC (a script with no #! line) runs under
 * /bin/sh, as execvp does it and so as Node's spawn does. */
static int spawn_sh(spec *sp, pid_t *pid, const posix_spawn_file_actions_t *fa,
                    const posix_spawnattr_t *at) {
  size_t n = 0, i;
  char **av;
  int e;
  while (sp->argv[n])
    n++;
  if ((av = malloc((n + 2) * sizeof(*av))) == NULL)
    return ENOMEM;
  av[0] = "/bin/sh";
  av[1] = (char *)sp->path;
  for (i = 1; i <= n; i++) /* argv[1..n-1] and the NULL */
    av[i + 1] = sp->argv[i];
  e = posix_spawn(pid, "/bin/sh", fa, at, av, sp->envp);
  free(av);
  return e;
}

static int do_posix_spawn(spec *sp, pid_t *pid) {
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  sigset_t none, all;
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  int i, e = 0;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&at);
  for (i = 0; i < sp->n && e == 0; i++) {
    const sio *io = &sp->io[i];
    if (io->kind == IO_NULL)
      e = posix_spawn_file_actions_addopen(&fa, i, "/dev/null", O_RDWR, 0);
    else if (io->kind == IO_CLOSE)
      e = posix_spawn_file_actions_addclose(&fa, i);
    else
      e = posix_spawn_file_actions_adddup2(&fa, src_of(io), i);
  }
  if (e == 0 && sp->cwd)
    e = posix_spawn_file_actions_addchdir_np(&fa, sp->cwd);
#ifdef HAVE_CLOSEFROM
  if (e == 0)
    e = posix_spawn_file_actions_addclosefrom_np(&fa, sp->n);
#endif
  /* Signals: nothing blocked, every disposition back to default (the
   * parent ignores SIGPIPE, and ignored signals survive exec). */
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&at, &none);
  posix_spawnattr_setsigdefault(&at, &all);
  if (sp->detached)
    flags |= POSIX_SPAWN_SETSID;
  posix_spawnattr_setflags(&at, flags);
  if (e == 0)
    e = posix_spawn(pid, sp->path, &fa, &at, sp->argv, sp->envp);
  if (e == ENOEXEC)
    e = spawn_sh(sp, pid, &fa, &at);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  return -e;
}

static void uvproc_closed(lipc__handle *h) {
  free(h);
}

static void on_uv_exit(uv_process_t *p, int64_t status, int termsig) {
  uvproc *u = (uvproc *)p->data;
  lchild *c = u->child;
  u->child = NULL;
  if (c) {
    c->uvp = NULL;
    child_exit(c, termsig ? -1 : (int)status, termsig);
  }
  lipc__handle_close(&u->h);
}

static int do_uv_spawn(lipc_runtime *rt, lchild *c, spec *sp) {
  uv_stdio_container_t io[MAX_STDIO];
  uv_process_options_t o;
  uvproc *u = calloc(1, sizeof(*u));
  int i, err;
  if (u == NULL)
    return UV_ENOMEM;
  memset(&o, 0, sizeof(o));
  for (i = 0; i < sp->n; i++) {
    if (sp->io[i].kind == IO_NULL || sp->io[i].kind == IO_CLOSE) {
      io[i].flags = UV_IGNORE;
    } else {
      io[i].flags = UV_INHERIT_FD;
      io[i].data.fd = src_of(&sp->io[i]);
    }
  }
  o.exit_cb = on_uv_exit;
  o.file = sp->path;
  o.args = sp->argv;
  o.env = sp->envp;
  o.cwd = sp->cwd;
  o.stdio = io;
  o.stdio_count = sp->n;
  if (sp->detached)
    o.flags |= UV_PROCESS_DETACHED;
  if (sp->uid >= 0) {
    o.flags |= UV_PROCESS_SETUID;
    o.uid = (uv_uid_t)sp->uid;
  }
  if (sp->gid >= 0) {
    o.flags |= UV_PROCESS_SETGID;
    o.gid = (uv_gid_t)sp->gid;
  }
  err = uv_spawn(rt->loop, &u->p, &o);
  lipc__handle_bare(rt, &u->h, (uv_handle_t *)&u->p, "process", uvproc_closed);
  if (err) {
    lipc__handle_close(&u->h);
    return err;
  }
  uv_unref((uv_handle_t *)&u->p); /* the child's timer counts */
  u->child = c;
  c->uvp = u;
  c->pid = u->p.pid;
  return 0;
}

static int track(sstate *st, lchild *c, pid_t pid) {
  lproc *p = calloc(1, sizeof(*p));
  if (p == NULL) {      /* cannot be tracked: no */
    kill(pid, SIGKILL); /* zombie left behind */
    waitpid(pid, NULL, 0);
    return UV_ENOMEM;
  }
  p->pid = pid;
  p->child = c;
  p->next = st->procs;
  if (st->procs)
    st->procs->prev = p;
  st->procs = p;
  c->proc = p;
  c->pid = pid;
  return 0;
}

static int opt_id(lua_State *L, const char *name) {
  int id = -1;
  if (opt_field(L, lua_istable(L, 3) ? 3 : 0, name, LUA_TNUMBER, LUA_TNUMBER,
                "integer") == LUA_TNUMBER) {
    if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0 ||
        lua_tointeger(L, -1) > INT32_MAX) {
      lua_pushfstring(L, "opts.%s must be an integer >= 0", name);
      argfail(L, 3, lua_tostring(L, -1));
    }
    id = (int)lua_tointeger(L, -1);
  }
  lua_pop(L, 1);
  return id;
}

/* The scalar options: cwd, detached, uid, gid, timeout, kill_signal. */
static void parse_opts(lua_State *L, spec *sp, int at, int *na) {
  int opts = lua_istable(L, 3) ? 3 : 0;
  if (opt_field(L, opts, "cwd", LUA_TSTRING, LUA_TSTRING, "string") ==
      LUA_TSTRING) {
    if (has_zero(L, -1))
      argfail(L, 3, "opts.cwd contains a zero byte");
    sp->cwd = anchor(L, at, na);
  } else
    lua_pop(L, 1);
  opt_field(L, opts, "detached", LUA_TBOOLEAN, LUA_TBOOLEAN, "boolean");
  sp->detached = lua_toboolean(L, -1);
  lua_pop(L, 1);
  sp->uid = opt_id(L, "uid");
  sp->gid = opt_id(L, "gid");
  if (opt_field(L, opts, "timeout", LUA_TNUMBER, LUA_TNUMBER, "number") ==
      LUA_TNUMBER) {
    lua_Number ms = lua_tonumber(L, -1);
    if (!(ms >= 0 && ms < 1e12))
      argfail(L, 3, "opts.timeout must be a number of milliseconds >= 0");
    sp->timeout = (uint64_t)ms;
  }
  lua_pop(L, 1);
  sp->kill_sig = SIGTERM;
  if (opt_field(L, opts, "kill_signal", LUA_TSTRING, LUA_TNUMBER, "string") !=
          LUA_TNIL &&
      (sp->kill_sig = lipc__signum(L, -1)) <= 0)
    argfail(L, 3, "opts.kill_signal: unknown signal");
  lua_pop(L, 1);
}

/* Fills the child's env table: pid, stdio, stdin/stdout/stderr. */
static void publish(lua_State *L, spec *sp, lchild *c, int obj) {
  int i;
  lua_getiuservalue(L, obj, 1); /* env */
  if (c->pid > 0) {
    lua_pushinteger(L, c->pid);
    lua_setfield(L, -2, "pid");
  }
  lua_pushstring(L, sp->file);
  lua_setfield(L, -2, "spawnfile");
  if (sp->detail) {
    lua_pushstring(L, sp->detail);
    lua_setfield(L, -2, "spawn_detail");
  }
  lua_createtable(L, sp->n, 0); /* env stdio */
  for (i = 0; i < sp->n; i++) {
    sio *io = &sp->io[i];
    if (io->parent_end >= 0) {
      wrap_end(L, io->parent_end, io->kind == IO_IPC);
      io->parent_end = -1;
      if (lua_type(L, -1) == LUA_TUSERDATA) {
        lua_pushcfunction(L, lipc__emitter_on); /* s:on("close", fn) */
        lua_pushvalue(L, -2);
        lua_pushliteral(L, "close");
        lua_pushvalue(L, obj);
        lua_pushcclosure(L, stdio_close_listener, 1);
        lua_call(L, 3, 0);
      }
    } else {
      lua_pushboolean(L, 0);
    }
    if (i < 3 && lua_toboolean(L, -1)) {
      static const char *const names[] = {"stdin", "stdout", "stderr"};
      lua_pushvalue(L, -1);
      lua_setfield(L, -4, names[i]);
    }
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "stdio");
  lua_pop(L, 1);
}

/* Streams given as stdio are handed to the child: the parent closes its
 * copy (a pipe's write end left open here would keep the reader from
 * ever seeing its end). lipc's own stdio streams are kept. */
static void hand_off(lua_State *L, spec *sp) {
  int i;
  for (i = 0; i < sp->n; i++) {
    lipc__stream *s;
    if (sp->io[i].kind != IO_STREAM)
      continue;
    s = lipc__stream_test(L, sp->io[i].sidx);
    if (s && !lipc__stream_handle(s)->internal)
      lipc__handle_close(lipc__stream_handle(s));
  }
}

/* spawn(file[, args][, opts]) -> child (errors come as its 'error') */
static int l_spawn(lua_State *L) {
  sstate *st = lua_touserdata(L, lua_upvalueindex(1));
  lipc_runtime *rt = lipc__rt(L);
  spec *sp;
  lchild *c;
  uv_timer_t *t;
  int at, na = 0, obj, err;
  pid_t pid = -1;

  if (lua_type(L, 1) != LUA_TSTRING)
    typefail(L, 1, NULL, "string", 1);
  if (lua_rawlen(L, 1) == 0 || strlen(lua_tostring(L, 1)) != lua_rawlen(L, 1))
    argfail(L, 1, "file must be a non-empty string without zero bytes");
  if (!lua_isnoneornil(L, 3) && !lua_istable(L, 3))
    typefail(L, 3, NULL, "table", 3);
  lua_settop(L, 3);
  lua_newtable(L); /* anchors strings, arrays */
  at = lua_gettop(L);
  sp = lua_newuserdatauv(L, sizeof(*sp), 0);
  lua_rawseti(L, at, ++na);
  memset(sp, 0, sizeof(*sp));
  sp->file = lua_tostring(L, 1);
  /* Every check that may raise comes before anything is opened. */
  parse_opts(L, sp, at, &na);
  parse_argv(L, sp, at, &na);
  parse_env(L, sp, at, &na);
  parse_stdio(L, sp);

  t = malloc(sizeof(*t));
  if (t == NULL)
    return luaL_error(L, "spawn: out of memory");
  uv_timer_init(rt->loop, t);
  c = lipc__handle_new(L, sizeof(*c), CHILD, (uv_handle_t *)t, "process");
  obj = lua_gettop(L);
  c->h.on_close = child_closed;
  c->code = -1;
  c->kill_sig = sp->kill_sig;
  if (sp->timeout) {
    uv_update_time(rt->loop); /* from now, not from this turn's start */
    c->deadline = uv_now(rt->loop) + sp->timeout;
  }

  /* The pipes are made even when the program is missing: the streams
   * exist and simply end, so code written for success does not trip. */
  err = make_fds(L, sp);
  if (err == 0)
    err = resolve(L, sp, at, &na);
  if (err == 0)
    err = sigwatch_start(rt, st);
  if (err == 0) {
    if (sp->uid >= 0 || sp->gid >= 0)
      err = do_uv_spawn(rt, c, sp);
    else if ((err = do_posix_spawn(sp, &pid)) == 0)
      err = track(st, c, pid);
  }
  release_fds(sp, 0); /* the child's ends */
  if (err == UV_ENOENT && sp->cwd && access(sp->cwd, F_OK) != 0) {
    lua_pushfstring(L, "%s, cwd %s", sp->file, sp->cwd);
    sp->detail = anchor(L, at, &na);
  }
  c->err = err;
  if (rt->trace & LIPC_TRACE_SPAWN) {
    if (err == 0)
      lipc__trace(rt, "spawn", "start pid %d %s", (int)c->pid, sp->file);
    else
      lipc__trace(rt, "spawn", "start %s failed: %s", sp->file,
                  lipc__err_name(err));
  }
  publish(L, sp, c, obj);
  release_fds(sp, 1);
  if (err == 0)
    hand_off(L, sp);
  uv_timer_start(t, on_tick, 0, 0); /* 'spawn' on the next turn */
  lua_pushvalue(L, obj);
  return 1;
}

/* ---- child methods ---------------------------------------------------- */

static lchild *check_child(lua_State *L, const char *fname) {
  return lipc__checkobj(L, 1, CHILD, fname);
}

/* kill([signal]) -> true | nil, msg, code. The pid is ours until we reap
 * it, so it cannot have been reused by then; after, ESRCH. */
static int child_kill(lua_State *L) {
  lchild *c = check_child(L, "child.kill");
  int sig = lua_isnoneornil(L, 2) ? SIGTERM : lipc__signum(L, 2), err;
  if (sig < 0)
    return luaL_error(L, "child.kill: bad argument #1 (unknown signal '%s')",
                      luaL_tolstring(L, 2, NULL));
  if (c->pid <= 0 || c->exited)
    return lipc__push_error(L, UV_ESRCH, "child.kill");
  if ((err = uv_kill(c->pid, sig)) != 0)
    return lipc__push_error(L, err, "child.kill");
  if (sig != 0) {
    lua_getiuservalue(L, 1, 1);
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "killed");
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* wait() in a task -> code, signal once 'close' has come (the output is
 * drained); nil, msg, code when the program could not be started. */
static int child_wait(lua_State *L) {
  lchild *c = check_child(L, "child.wait");
  waiter *w;
  lipc__task_check(L, "child.wait");
  if (c->err && c->done) {
    push_spawn_error(c); /* on rt->L */
    lua_pushnil(L);
    lua_xmove(c->h.rt->L, L, 2);
    return 3;
  }
  if (c->done) {
    push_status(L, c);
    return 2;
  }
  w = calloc(1, sizeof(*w));
  if (w == NULL)
    return luaL_error(L, "child.wait: out of memory");
  w->w.ref = LUA_NOREF;
  w->next = c->waiters;
  c->waiters = w;
  return lipc__task_park(L, &w->w);
}

/* close(): stop watching the child (it is still reaped) and close our
 * ends of its stdio now; 'close' follows. */
static int child_close(lua_State *L) {
  lchild *c = check_child(L, "child.close");
  /* also after 'close': an output stream left open for its unread bytes
   * would otherwise stay open for good (an fd per child, found by
   * fuzz_spawn_opts: a shell's unread error message) */
  close_stdio(L, 1);
  lipc__handle_close(&c->h);
  return 0;
}

static const luaL_Reg child_methods[] = {
    {"kill", child_kill},
    {"wait", child_wait},
    {"close", child_close},
    {NULL, NULL},
};

int luaopen_spawn(lua_State *L) {
  sstate *st;
  lipc__channel_open(L);                /* streams, with `channel` */
  lipc__class(L, CHILD, child_methods); /* methods */
  stdio_class(L);
  /* One state per Lua state, however often the module is loaded again
   * (busted's insulation unloads it between spec files): the SIGCHLD
   * watcher and the children it reaps point at this state. */
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &STATE_KEY) == LUA_TUSERDATA) {
    st = lua_touserdata(L, -1); /* methods st */
  } else {
    lua_pop(L, 1);
    st = lua_newuserdatauv(L, sizeof(*st), 0); /* methods st */
    memset(st, 0, sizeof(*st));
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &STATE_KEY); /* keep it alive */
  }
  lipc__load_embedded(L, "spawn"); /* methods st chunk */
  lua_createtable(L, 0, 1);
  lua_pushvalue(L, -3);
  lua_pushcclosure(L, l_spawn, 1);
  lua_setfield(L, -2, "spawn"); /* methods st chunk C */
  lua_pushvalue(L, -4);
  lua_call(L, 2, 1); /* methods st module */
  return 1;
}
