/*
 * core.c - the `lipc` module: timers, sleep, signals, process info,
 * stdio streams, exit, and the door to the other modules. luaopen_lipc
 * is also lipc.so's entry point for stock lua5.4.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "channel.h"
#include "modules.h"

extern char **environ;

#define TIMER "lipc.timer"
#define SIGNAL "lipc.signal"

/* ---- timers ---------------------------------------------------------- */

typedef struct {
  lipc__handle h;
  int fn; /* registry ref */
  int repeat;
} ltimer;

static void timer_release(lipc__handle *h) {
  ltimer *t = (ltimer *)h;
  luaL_unref(h->rt->L, LUA_REGISTRYINDEX, t->fn);
  t->fn = LUA_NOREF;
}

static void on_timer(uv_timer_t *uv) {
  ltimer *t = uv->data;
  lipc_runtime *rt = t->h.rt;
  lua_rawgeti(rt->L, LUA_REGISTRYINDEX, t->fn);
  if (!t->repeat)
    lipc__handle_close(&t->h); /* before the call: a
                                 one-shot is done */
  lipc__task_start(rt, rt->L, 0);
}

static lua_Integer check_ms(lua_State *L, int idx, const char *fname) {
  lua_Number ms = lipc__checknumber(L, idx, fname);
  if (!(ms >= 0 && ms <= 1e15))
    lipc__argerror(L, idx, fname,
                   "delay must be a number of milliseconds >= 0");
  return (lua_Integer)ms;
}

static int start_timer(lua_State *L, int repeat, const char *fname) {
  lipc_runtime *rt = lipc__rt(L);
  lua_Integer ms = check_ms(L, 1, fname);
  uv_timer_t *uv;
  ltimer *t;
  lipc__checktype(L, 2, LUA_TFUNCTION, fname);
  uv = malloc(sizeof(*uv));
  if (uv == NULL)
    return luaL_error(L, "%s: out of memory", fname);
  uv_timer_init(rt->loop, uv);
  t = lipc__handle_new(L, sizeof(*t), TIMER, (uv_handle_t *)uv, "timer");
  t->h.on_close = timer_release;
  t->repeat = repeat;
  lua_pushvalue(L, 2);
  t->fn = luaL_ref(L, LUA_REGISTRYINDEX);
  /* An interval of 0 would spin the loop, so it repeats every 1 ms. */
  lipc__timer_start(uv, on_timer, (uint64_t)ms,
                    repeat ? (uint64_t)(ms ? ms : 1) : 0);
  return 1;
}

static int l_set_timeout(lua_State *L) {
  return start_timer(L, 0, "lipc.set_timeout");
}

static int l_set_interval(lua_State *L) {
  return start_timer(L, 1, "lipc.set_interval");
}

static int timer_stop(lua_State *L) {
  ltimer *t = lipc__checkobj(L, 1, TIMER, "timer.stop");
  lipc__handle_close(&t->h);
  return 0;
}

static int timer_active(lua_State *L) {
  ltimer *t = lipc__checkobj(L, 1, TIMER, "timer.active");
  lua_pushboolean(L, t->h.uv && uv_is_active(t->h.uv));
  return 1;
}

/* ---- sleep ----------------------------------------------------------- */

/* sleep(0) is a yield to the loop, and must let it poll for I/O: a 0 ms
 * timer started in libuv's timer phase runs again in that same phase, so
 * a task looping on it would starve every peer. The tasks in sleep(0)
 * wait in a queue that one idle handle resumes, in the order they came
 * (it lives while tasks wait): an active idle handle makes the turn's poll
 * non-blocking,
 * and the queue is taken whole before any task resumes, so one that
 * yields again waits for the next turn, after a poll for I/O. */
typedef struct lsleep {
  lipc__handle h;
  uv_timer_t timer;
  lipc__wait wait;
} lsleep;

typedef struct ynode {
  lipc__wait wait;
  struct ynode *next;
} ynode;

typedef struct lyields {
  lipc__handle h;
  uv_idle_t idle;
  ynode *head, *tail;
} lyields;

static void sleep_free(lipc__handle *h) {
  lsleep *s = (lsleep *)h;
  lipc__wait_cancel(h->rt, &s->wait);
  free(s);
}

static void on_sleep(uv_timer_t *uv) {
  lsleep *s = (lsleep *)uv->data;
  lipc_runtime *rt = s->h.rt;
  lipc__handle_close(&s->h);
  lipc__wake(rt, &s->wait, 0);
}

static void free_ynodes(lipc_runtime *rt, ynode *n) {
  while (n != NULL) {
    ynode *next = n->next;
    lipc__wait_cancel(rt, &n->wait);
    free(n);
    n = next;
  }
}

static void yields_free(lipc__handle *h) {
  lyields *y = (lyields *)h;
  free_ynodes(h->rt, y->head);
  if (h->rt->yields == y)
    h->rt->yields = NULL;
  free(y);
}

static void on_yield(uv_idle_t *uv) {
  lyields *y = (lyields *)uv->data;
  lipc_runtime *rt = y->h.rt;
  ynode *n = y->head;
  y->head = y->tail = NULL; /* who yields from here waits a turn more */
  while (n != NULL) {
    ynode *next = n->next;
    lipc__wake(rt, &n->wait, 0);
    lipc__wait_cancel(rt, &n->wait); /* when exiting, it was not resumed */
    free(n);
    n = next;
  }
  if (y->head == NULL && !y->h.closing) { /* nobody yields: no handle */
    rt->yields = NULL;
    lipc__handle_close(&y->h);
  }
}

/* A cancelled sleep stops its timer at once. A cancelled sleep(0) needs
 * nothing: its node stays queued and is dropped at the next idle phase,
 * where waking a wait nobody parks in does nothing. */
static void sleep_cancel(lipc_runtime *rt, lipc__wait *w) {
  lsleep *s = (lsleep *)((char *)w - offsetof(lsleep, wait));
  (void)rt;
  lipc__handle_close(&s->h);
}

/* Parks the task in L until the next turn's idle phase. */
static int yield_park(lua_State *L, lipc_runtime *rt) {
  lyields *y = rt->yields;
  ynode *n;
  if (y == NULL) {
    if ((y = calloc(1, sizeof(*y))) == NULL)
      return luaL_error(L, "lipc.sleep: out of memory");
    uv_idle_init(rt->loop, &y->idle);
    lipc__handle_bare(rt, &y->h, (uv_handle_t *)&y->idle, "sleep", yields_free);
    rt->yields = y;
  }
  if ((n = calloc(1, sizeof(*n))) == NULL)
    return luaL_error(L, "lipc.sleep: out of memory");
  n->wait.ref = LUA_NOREF;
  if (y->tail)
    y->tail->next = n;
  else
    y->head = n;
  y->tail = n;
  uv_idle_start(&y->idle, on_yield);
  return lipc__task_park(L, &n->wait);
}

static int l_sleep(lua_State *L) {
  lipc_runtime *rt = lipc__rt(L);
  lua_Integer ms = check_ms(L, 1, "lipc.sleep");
  lsleep *s;
  lipc__task_check(L, "lipc.sleep");
  if (ms == 0)
    return yield_park(L, rt);
  s = calloc(1, sizeof(*s));
  if (s == NULL)
    return luaL_error(L, "lipc.sleep: out of memory");
  uv_timer_init(rt->loop, &s->timer);
  lipc__handle_bare(rt, &s->h, (uv_handle_t *)&s->timer, "sleep", sleep_free);
  lipc__timer_start(&s->timer, on_sleep, (uint64_t)ms, 0);
  return lipc__task_park_c(L, &s->wait, sleep_cancel);
}

/* ---- cond: park tasks until somebody signals ------------------------- */

/* A cond is the primitive behind "wait for this to happen": tasks wait
 * (optionally with a timeout) and signal/broadcast resumes them with the
 * values given. Waiters are served in arrival order. Only a wait with a
 * timeout has a timer (and so a handle, closed a loop turn after): a
 * pool's callers wait and are woken once a call each. */
typedef struct cwaiter {
  lipc__handle h; /* bare handle of the timeout timer (timed only) */
  uv_timer_t timer;
  lipc__wait wait;
  struct cwaiter *next, *prev;
  struct lcond *cond;
  int timed;
} cwaiter;

typedef struct lcond {
  cwaiter *head, *tail;
} lcond;

#define COND "lipc.cond"

static void cw_unlink(cwaiter *w) {
  lcond *c = w->cond;
  if (c == NULL)
    return;
  if (w->prev)
    w->prev->next = w->next;
  else
    c->head = w->next;
  if (w->next)
    w->next->prev = w->prev;
  else
    c->tail = w->prev;
  w->next = w->prev = NULL;
  w->cond = NULL;
}

static void cw_free(lipc__handle *h) {
  cwaiter *w = (cwaiter *)h;
  cw_unlink(w);
  lipc__wait_cancel(h->rt, &w->wait);
  free(w);
}

static void cw_timeout(uv_timer_t *t) {
  cwaiter *w = t->data ? (cwaiter *)t->data : NULL;
  lipc_runtime *rt = w->h.rt;
  cw_unlink(w);
  lua_pushnil(rt->L);
  lua_pushstring(rt->L, "timeout");
  lipc__wake(rt, &w->wait, 2);
  lipc__handle_close(&w->h);
}

/* A cancelled waiter leaves the cond: a signal goes to the next one. */
static void cw_cancel(lipc_runtime *rt, lipc__wait *wait) {
  cwaiter *w = (cwaiter *)((char *)wait - offsetof(cwaiter, wait));
  (void)rt;
  cw_unlink(w);
  if (w->timed)
    lipc__handle_close(&w->h);
  else
    free(w);
}

/* cond:wait([timeout_ms]) in a task -> the values given to signal, or
 * nil, "timeout". */
static int cond_wait(lua_State *L) {
  lcond *c = lipc__checkobj(L, 1, COND, "cond.wait");
  lipc_runtime *rt = lipc__rt(L);
  cwaiter *w;
  int timed = !lua_isnoneornil(L, 2);
  uint64_t ms = 0;
  lipc__task_check(L, "cond.wait");
  if (timed) /* before w is linked: a bad timeout raises */
    ms = (uint64_t)check_ms(L, 2, "cond.wait");
  w = calloc(1, sizeof(*w));
  if (w == NULL)
    return luaL_error(L, "cond.wait: out of memory");
  w->cond = c;
  w->prev = c->tail;
  if (c->tail)
    c->tail->next = w;
  else
    c->head = w;
  c->tail = w;
  if (timed) {
    w->timed = 1;
    uv_timer_init(rt->loop, &w->timer);
    lipc__handle_bare(rt, &w->h, (uv_handle_t *)&w->timer, "cond", cw_free);
    lipc__timer_start(&w->timer, cw_timeout, ms, 0);
  }
  return lipc__task_park_c(L, &w->wait, cw_cancel);
}

/* Wakes the oldest waiter, or (all) every waiter present now: a woken
 * task that waits again at once is served by the next signal, not by
 * this one. */
static int cond_wake(lua_State *L, int all) {
  lcond *c = lipc__checkobj(L, 1, COND, all ? "cond.broadcast" : "cond.signal");
  lipc_runtime *rt = lipc__rt(L);
  int nargs = lua_gettop(L) - 1, n = 0, i;
  cwaiter *last = c->tail;
  while (c->head) {
    cwaiter *w = c->head;
    int was_last = w == last;
    cw_unlink(w);
    if (w->timed)
      uv_timer_stop(&w->timer);
    for (i = 2; i <= nargs + 1; i++)
      lua_pushvalue(L, i);
    lua_xmove(L, rt->L, nargs);
    lipc__wake(rt, &w->wait, nargs);
    if (w->timed)
      lipc__handle_close(&w->h);
    else
      free(w);
    n++;
    if (!all || was_last)
      break;
  }
  lua_pushinteger(L, n);
  return 1;
}

static int cond_signal(lua_State *L) {
  return cond_wake(L, 0);
}

static int cond_broadcast(lua_State *L) {
  return cond_wake(L, 1);
}

static int cond_waiting(lua_State *L) {
  lcond *c = lipc__checkobj(L, 1, COND, "cond.waiting");
  int n = 0;
  cwaiter *w;
  for (w = c->head; w; w = w->next)
    n++;
  lua_pushinteger(L, n);
  return 1;
}

/* A cond goes only with the tasks waiting in it (they hold it), so at
 * the state's close: a timed waiter is freed with its handle, the others
 * here. */
static int cond_gc(lua_State *L) {
  lcond *c = lua_touserdata(L, 1); /* only ever called on a cond */
  while (c->head) {
    cwaiter *w = c->head;
    cw_unlink(w);
    if (!w->timed)
      free(w);
  }
  return 0;
}

static int l_cond(lua_State *L) {
  lcond *c = lua_newuserdatauv(L, sizeof(*c), 0);
  c->head = c->tail = NULL;
  luaL_setmetatable(L, COND);
  return 1;
}

static void cond_class(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"wait", cond_wait},
      {"signal", cond_signal},
      {"broadcast", cond_broadcast},
      {"waiting", cond_waiting},
      {NULL, NULL},
  };
  luaL_newmetatable(L, COND);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, cond_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
}

/* mkdtemp(prefix) -> path: a fresh private directory (specs, scripts). */
static int l_mkdtemp(lua_State *L) {
  const char *prefix = lipc__optstring(L, 1, "/tmp/lipc-", "lipc.mkdtemp");
  uv_fs_t req;
  int err;
  lua_pushfstring(L, "%sXXXXXX", prefix);
  err = uv_fs_mkdtemp(NULL, &req, lua_tostring(L, -1), NULL);
  if (err < 0) {
    uv_fs_req_cleanup(&req);
    return lipc__push_error(L, err, prefix);
  }
  lua_pushstring(L, req.path);
  uv_fs_req_cleanup(&req);
  return 1;
}

/* ---- signals --------------------------------------------------------- */

typedef struct {
  lipc__handle h;
} lsignal;

static void on_signal(uv_signal_t *uv, int signum) {
  lsignal *s = uv->data;
  lipc_runtime *rt = s->h.rt;
  const char *name = lipc__signame(signum);
  if (!lipc__handle_push(&s->h)) {
    lua_pop(rt->L, 1);
    return;
  }
  lua_pushstring(rt->L, name ? name : "?");
  lipc__emit(rt, -2, "signal", 1);
  lua_pop(rt->L, 1);
}

/* on_signal(name, fn) -> watcher; the watcher does not keep the process
 * alive (as in Node): it is unref'd. */
static int l_on_signal(lua_State *L) {
  lipc_runtime *rt = lipc__rt(L);
  int signum = lipc__signum(L, 1);
  uv_signal_t *uv;
  lsignal *s;
  int err;
  if (signum <= 0)
    return lipc__argerror(L, 1, "lipc.on_signal", "unknown signal name");
  lipc__checktype(L, 2, LUA_TFUNCTION, "lipc.on_signal");
  if (signum == SIGKILL || signum == SIGSTOP)
    return lipc__argerror(L, 1, "lipc.on_signal",
                          "SIGKILL and SIGSTOP cannot be caught");
  uv = malloc(sizeof(*uv));
  if (uv == NULL)
    return luaL_error(L, "lipc.on_signal: out of memory");
  uv_signal_init(rt->loop, uv);
  s = lipc__handle_new(L, sizeof(*s), SIGNAL, (uv_handle_t *)uv, "signal");
  err = uv_signal_start(uv, on_signal, signum);
  if (err) {
    lipc__handle_close(&s->h);
    return lipc__push_error(L, err, "lipc.on_signal");
  }
  uv_unref((uv_handle_t *)uv);
  lua_pushcfunction(L, lipc__emitter_on);
  lua_pushvalue(L, -2);
  lua_pushstring(L, "signal");
  lua_pushvalue(L, 2);
  lua_call(L, 3, 0);
  return 1;
}

static int signal_stop(lua_State *L) {
  lsignal *s = lipc__checkobj(L, 1, SIGNAL, "signal.stop");
  lipc__handle_close(&s->h);
  return 0;
}

/* kill(pid, [signal]) -> true | nil, msg, code */
static int l_kill(lua_State *L) {
  lua_Integer pid = lipc__checkinteger(L, 1, "lipc.kill");
  int signum = lua_isnoneornil(L, 2) ? SIGTERM : lipc__signum(L, 2);
  int err;
  if (signum < 0)
    return lipc__argerror(L, 2, "lipc.kill", "unknown signal");
  err = uv_kill((int)pid, signum);
  if (err)
    return lipc__push_error(L, err, "lipc.kill");
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- process --------------------------------------------------------- */

static int l_getenv(lua_State *L) {
  lua_pushstring(L, getenv(lipc__checkstring(L, 1, "lipc.getenv")));
  return 1;
}

static int l_setenv(lua_State *L) {
  const char *name = lipc__checkstring(L, 1, "lipc.setenv");
  int rc;
  if (*name == '\0' || strchr(name, '='))
    return lipc__argerror(L, 1, "lipc.setenv", "invalid variable name");
  rc = lua_isnoneornil(L, 2)
           ? unsetenv(name)
           : setenv(name, lipc__checkstring(L, 2, "lipc.setenv"), 1);
  if (rc != 0)
    return lipc__push_error(L, -errno, "lipc.setenv");
  lua_pushboolean(L, 1);
  return 1;
}

static int l_env(lua_State *L) {
  char **e;
  lua_newtable(L);
  for (e = environ; *e; e++) {
    const char *eq = strchr(*e, '=');
    if (eq == NULL)
      continue;
    lua_pushlstring(L, *e, (size_t)(eq - *e));
    lua_pushstring(L, eq + 1);
    lua_rawset(L, -3);
  }
  return 1;
}

static int l_cwd(lua_State *L) {
  char buf[4096];
  size_t n = sizeof(buf);
  int err = uv_cwd(buf, &n);
  if (err)
    return lipc__push_error(L, err, "lipc.cwd");
  lua_pushlstring(L, buf, n);
  return 1;
}

static int l_chdir(lua_State *L) {
  const char *dir = lipc__checkstring(L, 1, "lipc.chdir");
  int err = uv_chdir(dir);
  if (err)
    return lipc__push_error(L, err, dir);
  lua_pushboolean(L, 1);
  return 1;
}

/* fds() -> {[fd] = what /proc/self/fd says it is: "socket:[123]",
 * "pipe:[45]", a path...}: lets a test see the descriptors it left open.
 * (scandir's own fd is in the listing, closed by the time it is read.) */
static int l_fds(lua_State *L) {
  uv_fs_t dir, link;
  uv_dirent_t ent;
  char path[64];
  int err = uv_fs_scandir(NULL, &dir, "/proc/self/fd", 0, NULL);
  if (err < 0) {
    uv_fs_req_cleanup(&dir);
    return lipc__push_error(L, err, "/proc/self/fd");
  }
  lua_newtable(L);
  while (uv_fs_scandir_next(&dir, &ent) != UV_EOF) {
    snprintf(path, sizeof(path), "/proc/self/fd/%s", ent.name);
    if (uv_fs_readlink(NULL, &link, path, NULL) == 0) {
      lua_pushstring(L, link.ptr);
      lua_rawseti(L, -2, strtol(ent.name, NULL, 10));
    }
    uv_fs_req_cleanup(&link);
  }
  uv_fs_req_cleanup(&dir);
  return 1;
}

static int l_hrtime(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)uv_hrtime());
  return 1;
}

static int l_now(lua_State *L) {
  uv_timeval64_t tv;
  uv_gettimeofday(&tv);
  lua_pushinteger(L, (lua_Integer)tv.tv_sec * 1000 + tv.tv_usec / 1000);
  return 1;
}

/* exit([code]) - inside a task: stop running Lua now, flush, exit with
 * code. Elsewhere (a plain coroutine, stock lua) there is no task to
 * park, so the process exits at once after flushing C stdio. */
static int l_exit(lua_State *L) {
  lipc_runtime *rt = lipc__rt(L);
  int code;
  if (lua_isboolean(L, 1))
    code = lua_toboolean(L, 1) ? 0 : 1;
  else
    code = (int)lipc__optinteger(L, 1, 0, "lipc.exit");
  if (L == rt->current && lua_isyieldable(L) && rt->owns_state) {
    lipc__exit_now(rt, code);
    return lua_yield(L, 0);
  }
  fflush(NULL);
  uv_tty_reset_mode(); /* as lipc_free */
  exit(code);
}

static int l_handles(lua_State *L) {
  return lipc__push_handles(L);
}

static int l_emitter(lua_State *L) {
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  }
  lipc__checktype(L, 1, LUA_TTABLE, "lipc.emitter");
  lua_settop(L, 1);
  if (luaL_newmetatable(L, "lipc.emitter")) {
    lua_newtable(L);
    lipc__emitter_methods(L);
    lua_setfield(L, -2, "__index");
  }
  lua_setmetatable(L, 1);
  return 1;
}

static int push_argv(lua_State *L) {
  char exe[4096];
  size_t n = sizeof(exe);
  lua_Integer i;
  lua_newtable(L);
  if (uv_exepath(exe, &n) == 0)
    lua_pushlstring(L, exe, n);
  else
    lua_pushstring(L, "lipc");
  lua_rawseti(L, -2, 1);
  if (lua_getglobal(L, "arg") != LUA_TTABLE) {
    lua_pop(L, 1);
    return 1;
  }
  for (i = 0; lua_rawgeti(L, -1, i) != LUA_TNIL; i++)
    lua_rawseti(L, -3, i + 2);
  lua_pop(L, 2);
  return 1;
}

/* Lazily made fields: pid/ppid stay live, stdio streams and modules are
 * created on first use (a script that never touches stdin never makes
 * fd 0 non-blocking). */
static int l_index(lua_State *L) {
  static const char *const mods[] = {"spawn", "fork", "pipe", "net", NULL};
  const char *k = lua_tostring(L, 2);
  int i;
  if (k == NULL)
    return 0;
  if (strcmp(k, "pid") == 0) {
    lua_pushinteger(L, uv_os_getpid());
    return 1;
  }
  if (strcmp(k, "ppid") == 0) {
    lua_pushinteger(L, uv_os_getppid());
    return 1;
  }
  if (strcmp(k, "argv") == 0)
    return push_argv(L);
  if (strcmp(k, "inspect") == 0) { /* modules/inspect.lua */
    lipc__load_embedded(L, "inspect");
    lua_call(L, 0, 1);
    lua_pushvalue(L, -1);
    lua_setfield(L, 1, k); /* rawset: not in __newindex */
    return 1;
  }
  for (i = 0; mods[i]; i++) {
    if (strcmp(k, mods[i]) == 0) {
      lua_getglobal(L, "require");
      lua_pushstring(L, k);
      lua_call(L, 1, 1);
      lua_pushvalue(L, -1);
      lua_setfield(L, 1, k); /* rawset: not in __newindex */
      return 1;
    }
  }
  for (i = 0; i < 3; i++) {
    static const char *const names[] = {"stdin", "stdout", "stderr"};
    if (strcmp(k, names[i]) == 0) {
      lipc__stream_from_fd(L, i, 1);
      lua_pushvalue(L, 2);
      lua_pushvalue(L, -2);
      lua_rawset(L, 1);
      return 1;
    }
  }
  return 0;
}

/* on_uncaught(fn | nil) -> the handler it replaces, or nil. The runtime
 * hands the errors no task caught to it (lipc__uncaught). */
static int l_on_uncaught(lua_State *L) {
  lipc_runtime *rt = lipc__rt(L);
  if (!lua_isnoneornil(L, 1))
    lipc__checktype(L, 1, LUA_TFUNCTION, "lipc.on_uncaught");
  lua_settop(L, 1);
  if (rt->uncaught_ref > 0) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->uncaught_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, rt->uncaught_ref);
  } else {
    lua_pushnil(L);
  }
  lua_pushvalue(L, 1);
  rt->uncaught_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* nil: LUA_REFNIL */
  return 1;
}

/* lipc.run() for stock lua: drives the loop; returns the exit status. */
static int l_run(lua_State *L) {
  lipc_runtime *rt = lipc__rt(L);
  if (rt->running)
    return luaL_error(L, "lipc.run: the loop is already running");
  lua_pushinteger(L, lipc_run(rt));
  return 1;
}

/* The `lipc` module; in stock lua (lipc.so) also the way in: the first
 * require makes the runtime and preloads the other modules. */
int luaopen_lipc(lua_State *L) {
  int created;
  static const luaL_Reg fns[] = {
      {"sleep", l_sleep},
      {"set_timeout", l_set_timeout},
      {"set_interval", l_set_interval},
      {"on_signal", l_on_signal},
      {"kill", l_kill},
      {"getenv", l_getenv},
      {"setenv", l_setenv},
      {"env", l_env},
      {"cwd", l_cwd},
      {"chdir", l_chdir},
      {"fds", l_fds},
      {"hrtime", l_hrtime},
      {"now", l_now},
      {"exit", l_exit},
      {"handles", l_handles},
      {"emitter", l_emitter},
      {"cond", l_cond},
      {"mkdtemp", l_mkdtemp},
      {"stream_from_fd", lipc__stream_l_from_fd},
      {"run", l_run},
      {"on_uncaught", l_on_uncaught},
      {"poll", lipc__poll_l},
      {NULL, NULL},
  };
  static const luaL_Reg timer_methods[] = {
      {"stop", timer_stop},
      {"active", timer_active},
      {NULL, NULL},
  };
  static const luaL_Reg signal_methods[] = {
      {"stop", signal_stop},
      {NULL, NULL},
  };
  lipc__runtime_attach(L, &created);
  if (created)
    lipc__open_modules(L);
  lipc__class(L, TIMER, timer_methods);
  lipc__class(L, SIGNAL, signal_methods);
  lua_pop(L, 2);
  cond_class(L);
  lipc__channel_open(L); /* streams, with `channel` */
  lua_createtable(L, 0, 32);
  luaL_setfuncs(L, fns, 0);
  lipc__task_open(L);
  lua_pushstring(L, LIPC_VERSION_STRING);
  lua_setfield(L, -2, "version");
  /* A message that is nil arrives as lipc.null, so receive() returns nil
   * only at the end. NULL as light userdata: cjson.null is the same. */
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "null");
  lua_createtable(L, 0, 3);
  lua_pushstring(L, LIPC_VERSION_STRING);
  lua_setfield(L, -2, "lipc");
  lua_pushstring(L, LUA_RELEASE);
  lua_setfield(L, -2, "lua");
  lua_pushstring(L, uv_version_string());
  lua_setfield(L, -2, "libuv");
  lua_setfield(L, -2, "versions");
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, l_index);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
  return 1;
}
