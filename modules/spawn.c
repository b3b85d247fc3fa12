/*
 * spawn.c - the `spawn` module: child processes, as the child object sees
 * them. spawn() reads its arguments (spawn_opts.c), makes the stdio fds
 * and starts the program (spawn_start.c), and the child is reaped
 * (spawn_reap.c); this file owns the object: its stdio streams, its
 * events (spawn, exit, close, in that order) and its methods. The Lua
 * half (spawn.lua) adds the callable module table, the shell and input
 * options, run() and exec().
 */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <fcntl.h>
#include <unistd.h>

#include "spawn_int.h"
#include "channel.h"
#include "modules.h"

#define FOREVER ((uint64_t)1 << 40) /* ms: a timer that keeps the loop up */

static const char USED_KEY = 'U';

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
  lipc_runtime *rt = lipc__rt(L);
  int mark = (int)lua_tointeger(L, lua_upvalueindex(2));
  if (mark == 2) /* read(): it raises outside a task, and reads nothing */
    mark = L == rt->current && lua_isyieldable(L);
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
    int always; /* 1: marks the stream used; 2: in a task; 0: 'data' */
  } wrapped[] = {{"read", 2}, {"resume", 1}, {"on", 0}, {"once", 0}, {NULL, 0}};
  int i;
  lipc__stream_class(L, CHILD_STDIO, NULL); /* methods */
  luaL_getmetatable(L, LIPC_STREAM);
  lua_getfield(L, -1, "methods"); /* methods mt base */
  for (i = 0; wrapped[i].name; i++) {
    lua_getfield(L, -1, wrapped[i].name);
    lua_pushinteger(L, wrapped[i].always);
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

/* Wraps our end of a pipe or socketpair as a stream; pushes it (or
 * false when that fails, after closing fd). */
static void wrap_end(lua_State *L, int fd, int ipc, int pty) {
  lipc_runtime *rt = lipc__rt(L);
  uv_pipe_t *p = malloc(sizeof(*p));
  lipc__stream *s;
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
  s = lipc__stream_new(L, (uv_stream_t *)p, CHILD_STDIO, pty ? "pty" : "pipe");
  if (pty) { /* EIO: the child and its own have all closed the terminal */
    lipc__stream_eio_end(s);
    /* Closing the master hangs the terminal up: the child, if it still
     * runs, gets SIGHUP. A child may close its terminal and then exit
     * (cat closes stdin, stdout and stderr first): the end is read at
     * once, the master closed once the child has exited (check_close). */
    lipc__stream_keep(s, 1);
  }
}

/* Bytes waiting in the kernel for us to read. */
static int unread(uv_stream_t *uv) {
  uv_os_fd_t fd;
  int avail = 0;
  if (uv_fileno((uv_handle_t *)uv, &fd) == 0)
    ioctl(fd, FIONREAD, &avail);
  return avail;
}

/* A stream nobody reads but someone waits to see end (an 'end' listener
 * alone) is read to its end once the child is gone, its bytes dropped, as
 * Node drains the stdio nobody reads: 'end' fires, then the child's
 * 'close'. The stream on top of L is then marked used. */
static void drain_for_end(lua_State *L, uv_stream_t *uv) {
  if (uv_is_active((uv_handle_t *)uv) || stream_used(L, -1) ||
      !lipc__has_listeners(L, -1, "end"))
    return;
  lua_getfield(L, -1, "resume"); /* marks it used */
  lua_pushvalue(L, -2);
  lua_call(L, 1, 0);
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
    if (s && lipc__stream_open(s)) /* the child is gone: a pty may close */
      lipc__stream_keep(s, 0);
    uv = s ? lipc__stream_uv(s) : NULL;
    if (uv && lipc__stream_open(s) && uv_is_readable(uv)) {
      /* a channel holding reads off (its receiver is behind) reads what
       * the child left: bounded now, and its end comes after it */
      lipc__stream_release(s);
      drain_for_end(L, uv);
    }
    if (uv && lipc__stream_open(s) && uv_is_readable(uv) &&
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
    if (uv && lipc__stream_open(s)) {
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
    uv_update_time(t->loop); /* what is left of the deadline now */
    now = uv_now(t->loop);
    ms = c->deadline > now ? c->deadline - now : 0;
  }
  lipc__timer_start(t, on_tick, ms, 0);
}

/* A terminal whose child never started was never opened, and reading its
 * master would wait for ever: opening and closing it once makes the
 * master read EIO, the pty stream's end, as after a child that exited. */
static void pty_hang_up(const char *slave) {
  int fd = open(slave, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (fd >= 0)
    close(fd);
}

static void emit_started(lchild *c) {
  lipc_runtime *rt = c->h.rt;
  lua_State *L = rt->L;
  c->started = 1;
  if (!lipc__handle_push(&c->h)) {
    lua_pop(L, 1);
    return;
  }
  if (c->err == 0) {
    lipc__emit(rt, -1, "spawn", 0);
    lua_pop(L, 1);
    return;
  }
  /* A failed spawn: 'error' goes to listeners. Without any it is kept,
   * not uncaught: wait() gives nil, msg, code, now or later (a script may
   * read the child's output before it waits), as the docs say. The
   * failure is traced ("spawn" category) when it happens. */
  push_spawn_error(c); /* obj msg code */
  if (lipc__has_listeners(L, -3, "error"))
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
    if (c->pid > 0 && (c->kill_tree ? lipc__kill_tree(c, c->kill_sig)
                                    : uv_kill(c->pid, c->kill_sig)) == 0) {
      lua_pushboolean(rt->L, 1);
      set_field(rt, c, "killed");
    }
    lua_pushboolean(rt->L, 1);
    set_field(rt, c, "timed_out");
  }
  restart_timer(c);
}

void lipc__child_exit(lchild *c, int code, int termsig) {
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
  if (!lipc__handle_push(&c->h)) {
    lua_pop(L, 1);
    return;
  }
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
  lua_pushboolean(L, 0); /* false until kill() or the timeout, as Node */
  lua_setfield(L, -2, "killed");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "timed_out");
  if (sp->detail) {
    lua_pushstring(L, sp->detail);
    lua_setfield(L, -2, "spawn_detail");
  }
  lua_createtable(L, sp->n, 0); /* env stdio */
  for (i = 0; i < sp->n; i++) {
    sio *io = &sp->io[i];
    if (io->parent_end >= 0) {
      wrap_end(L, io->parent_end, io->kind == IO_IPC, io->kind == IO_PTY);
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
      lua_setfield(L, -4, io->kind == IO_PTY ? "pty" : names[i]);
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
  lipc_runtime *rt = lipc__rt(L);
  spec *sp;
  lchild *c;
  uv_timer_t *t;
  int at, na = 0, obj, err;

  lipc__spawn_check(L);
  lua_settop(L, 3);
  lua_newtable(L); /* anchors strings, arrays */
  at = lua_gettop(L);
  sp = lua_newuserdatauv(L, sizeof(*sp), 0);
  lua_rawseti(L, at, ++na);
  memset(sp, 0, sizeof(*sp));
  sp->file = lua_tostring(L, 1);
  /* Every check that may raise comes before anything is opened. */
  lipc__spawn_parse(L, sp, at, &na);

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
  err = lipc__spawn_fds(L, sp);
  if (err == 0)
    err = lipc__spawn_resolve(L, sp, at, &na);
  if (err == 0)
    err = lipc__spawn_start(rt, c, sp);
  lipc__spawn_release(sp, 0); /* the child's ends */
  if (err != 0 && sp->pty.on && sp->pty.slave[0] != '\0')
    pty_hang_up(sp->pty.slave);
  if (sp->pty.failed) {
    lua_pushfstring(L, "%s: no pseudo-terminal from /dev/ptmx", sp->file);
    sp->detail = lipc__spawn_anchor(L, at, &na);
  } else if (err == UV_ENOENT && sp->cwd && access(sp->cwd, F_OK) != 0) {
    lua_pushfstring(L, "%s, cwd %s", sp->file, sp->cwd);
    sp->detail = lipc__spawn_anchor(L, at, &na);
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
  lipc__spawn_release(sp, 1);
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

/* ---- process trees ------------------------------------------------------- */

#define MAX_TREE 4096 /* pids found under one child, at most */

/* Appends the children of pid (every thread's, from /proc) to pids. */
static int add_children(pid_t pid, pid_t *pids, int n) {
  char path[64], buf[4096];
  DIR *d;
  struct dirent *e;
  snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
  if ((d = opendir(path)) == NULL)
    return n;
  while ((e = readdir(d)) != NULL && n < MAX_TREE) {
    FILE *f;
    long child;
    if (e->d_name[0] == '.')
      continue;
    snprintf(buf, sizeof(buf), "%s/%s/children", path, e->d_name);
    if ((f = fopen(buf, "re")) == NULL)
      continue;
    while (n < MAX_TREE && fscanf(f, "%ld", &child) == 1)
      pids[n++] = (pid_t)child;
    fclose(f);
  }
  closedir(d);
  return n;
}

/* The child and its descendants, breadth first: each is stopped before
 * its children are read, so none starts another behind our back; all
 * get sig, then SIGCONT. */
static int kill_walk(pid_t root, int sig) {
  pid_t *pids = malloc(MAX_TREE * sizeof(*pids));
  int n = 1, i, err = 0;
  if (pids == NULL)
    return UV_ENOMEM;
  pids[0] = root;
  for (i = 0; i < n; i++) {
    if (kill(pids[i], SIGSTOP) != 0 && i == 0) {
      err = -errno;
      break;
    }
    n = add_children(pids[i], pids, n);
  }
  for (i = 0; err == 0 && i < n; i++) {
    kill(pids[i], sig);
    kill(pids[i], SIGCONT);
  }
  free(pids);
  return err;
}

int lipc__kill_tree(lchild *c, int sig) {
  if (c->pid <= 0)
    return UV_ESRCH;
  if (c->group) /* the group outlives its leader: never a reused pid */
    return kill(-c->pid, sig) == 0 ? 0 : -errno;
  if (c->exited) /* its children went to init: out of reach */
    return UV_ESRCH;
  return kill_walk(c->pid, sig);
}

/* kill([signal][, {tree = true}]) -> true | nil, msg, code. The pid is
 * ours until we reap it, so it cannot have been reused by then; after,
 * ESRCH (but a tree's group still gets the signal). */
static int child_kill(lua_State *L) {
  lchild *c = check_child(L, "child.kill");
  int sig = lua_isnoneornil(L, 2) ? SIGTERM : lipc__signum(L, 2), err;
  int tree = c->kill_tree;
  if (sig < 0)
    return lipc__argerror(L, 2, "child.kill", "unknown signal '%s'",
                          luaL_tolstring(L, 2, NULL));
  if (!lua_isnoneornil(L, 3)) {
    lipc__checktype(L, 3, LUA_TTABLE, "child.kill");
    if (lua_getfield(L, 3, "tree") != LUA_TNIL)
      tree = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  if (tree && c->pid > 0 && (!c->exited || c->group)) {
    if ((err = lipc__kill_tree(c, sig)) != 0)
      return lipc__push_error(L, err, "child.kill");
  } else if (c->pid <= 0 || c->exited) {
    return lipc__push_error(L, UV_ESRCH, "child.kill");
  } else if ((err = uv_kill(c->pid, sig)) != 0) {
    return lipc__push_error(L, err, "child.kill");
  }
  if (sig != 0) {
    lua_getiuservalue(L, 1, 1);
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "killed");
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* A cancelled wait() leaves the child's list (the child runs on). */
static void waiter_cancel(lipc_runtime *rt, lipc__wait *wait) {
  waiter *w = (waiter *)wait, **pp;
  (void)rt;
  for (pp = &w->child->waiters; *pp != NULL; pp = &(*pp)->next) {
    if (*pp == w) {
      *pp = w->next;
      break;
    }
  }
  free(w);
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
  w->child = c;
  w->next = c->waiters;
  c->waiters = w;
  return lipc__task_park_c(L, &w->w, waiter_cancel);
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

/* clang-format off */
static const luaL_Reg child_methods[] = {
    {"kill", child_kill},
    {"wait", child_wait},
    {"close", child_close},
    {"resize", lipc__pty_resize},
    {NULL, NULL},
};
/* clang-format on */

int luaopen_spawn(lua_State *L) {
  static const luaL_Reg fns[] = {{"spawn", l_spawn}, {NULL, NULL}};
  lipc__channel_open(L);                /* streams, with `channel` */
  lipc__class(L, CHILD, child_methods); /* methods */
  stdio_class(L);
  lipc__load_embedded(L, "spawn"); /* methods chunk */
  luaL_newlib(L, fns);             /* methods chunk C */
  lua_pushvalue(L, -3);
  lua_call(L, 2, 1); /* methods module */
  return 1;
}
