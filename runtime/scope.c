/*
 * scope.c - task objects, cancellation and scopes.
 *
 * lipc.go returns a task object: wait() for its results, cancel() it,
 * status(). Cancelling a task wakes the wait it is parked in (task.c's
 * lipc__task_interrupt) with nil, "ECANCELED: ...", "ECANCELED", and every
 * later wait of that task returns the same at once: cancellation sticks,
 * so a loop of waits ends. Nothing is raised, so pcall sees nothing new.
 *
 * lipc.scope(fn[, opts]) runs fn(scope) in the calling task; scope:go
 * starts tasks inside it. The scope ends when fn and all of its tasks
 * have ended: the first error cancels the rest and is raised again by
 * lipc.scope; a timeout, scope:cancel() or the cancellation of the task
 * that opened it cancels them all. Nothing started in a scope outlives it.
 *
 * The body of a scope is the task that called lipc.scope: a scope at
 * depth d cancels its waits from depth d on (cancel_at), and once the
 * scope is left the task's waits work again; cancel() on the task itself
 * is depth 0, for good. The body waits for the scope's tasks in a
 * shielded wait that cancellation does not end.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define TASK "lipc.task"
#define SCOPE "lipc.scope"
#define NOT_CANCELLED 0x7fffffff

typedef struct lipc__scope scope;

enum { RUNNING, DONE, FAILED };

struct lipc__task {
  lipc_runtime *rt;
  lipc__wait *parked; /* the wait it is parked in */
  int state;
  int cancel_at; /* waits are cancelled while depth >= cancel_at */
  int depth;     /* how many scopes' bodies it is running */
  scope *owner;  /* started by owner:go(), until it ends */
  scope *inner;  /* the innermost scope whose body it runs */
  lipc__task *snext, *sprev;
  lipc__waitq waiters;    /* tasks in wait() */
  unsigned cancelled : 1; /* cancel() (or its scope's) reached it */
  unsigned observed : 1;  /* somebody asked for its results */
  unsigned lazy : 1;      /* made for a scope in a task lipc.go did not start */
  unsigned starting : 1;  /* lipc.go has not returned it yet */
  int shielded;           /* inside lipc.shield: waits are not cancelled */
  int slot;               /* in rt->tasks_ref while it runs, else 0 */
  char reason[64];
};

struct lipc__scope {
  lipc_runtime *rt;
  lipc__task *body;
  scope *outer;
  lipc__task *head, *tail; /* its tasks still running */
  int live, depth;
  unsigned cancelled : 1, timed_out : 1, ended : 1, failed : 1;
  struct stimer *timer;
  uint64_t timeout;
  lipc__wait join;
  char reason[64];
};

typedef struct stimer { /* a scope's timeout */
  lipc__handle h;
  uv_timer_t timer;
  scope *sc;
} stimer;

/* Objects are anchored in the runtime's parked table, keyed by their
 * address, while they run: cancel() and the end of a task reach them from
 * C. (The keys of waits are other addresses.) */
static void anchor(lua_State *L, const void *p, int idx) {
  lipc_runtime *rt = lipc__rt(L);
  idx = lua_absindex(L, idx);
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->parked_ref);
  lua_pushvalue(L, idx);
  lua_rawsetp(L, -2, p);
  lua_pop(L, 1);
}

static void unanchor(lipc_runtime *rt, const void *p) {
  lua_State *L = rt->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->parked_ref);
  lua_pushnil(L);
  lua_rawsetp(L, -2, p);
  lua_pop(L, 1);
}

/* Pushes the object at p on rt->L (nil when it is no longer anchored). */
static int push_obj(lipc_runtime *rt, const void *p) {
  lua_State *L = rt->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->parked_ref);
  lua_rawgetp(L, -1, p);
  lua_remove(L, -2);
  return !lua_isnil(L, -1);
}

static void set_reason(char *dst, const char *reason) {
  snprintf(dst, 64, "%s", reason);
}

/* A running task object is kept in a table by slot (an array index; the
 * free slots are a C stack): cheaper than a hash key a task. */
static int task_anchor(lua_State *L, lipc__task *t, int idx) {
  lipc_runtime *rt = t->rt;
  int slot;
  idx = lua_absindex(L, idx);
  if (rt->task_nfree > 0) {
    slot = rt->task_slots[--rt->task_nfree];
  } else {
    if (rt->task_top == rt->task_cap) { /* room to give every slot back */
      int cap = rt->task_cap ? rt->task_cap * 2 : 64;
      int *p = realloc(rt->task_slots, (size_t)cap * sizeof(*p));
      if (p == NULL)
        return luaL_error(L, "lipc.go: out of memory");
      rt->task_slots = p;
      rt->task_cap = cap;
    }
    slot = ++rt->task_top;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->tasks_ref);
  lua_pushvalue(L, idx);
  lua_rawseti(L, -2, slot);
  lua_pop(L, 1);
  t->slot = slot;
  return 0;
}

static void task_unanchor(lipc__task *t) {
  lipc_runtime *rt = t->rt;
  lua_State *L = rt->L;
  if (t->slot == 0)
    return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->tasks_ref);
  lua_pushnil(L);
  lua_rawseti(L, -2, t->slot);
  lua_pop(L, 1);
  rt->task_slots[rt->task_nfree++] = t->slot;
  t->slot = 0;
}

/* Pushes the task object on rt->L (nil once it no longer runs). */
static int push_task(lipc__task *t) {
  lua_State *L = t->rt->L;
  if (t->slot == 0) {
    lua_pushnil(L);
    return 0;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->rt->tasks_ref);
  lua_rawgeti(L, -1, t->slot);
  lua_remove(L, -2);
  return 1;
}

void lipc__tasks_free(lipc_runtime *rt) {
  lua_State *L = rt->L;
  int i;
  if (rt->tasks_ref != LUA_NOREF && L != NULL) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->tasks_ref);
    for (i = 1; i <= rt->task_top; i++) {
      lipc__task *t;
      lua_rawgeti(L, -1, i);
      if ((t = lua_touserdata(L, -1)) != NULL)
        lipc__waitq_free(rt, &t->waiters);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  free(rt->task_slots);
  rt->task_slots = NULL;
  rt->task_nfree = rt->task_cap = rt->task_top = 0;
}

int lipc__task_cancelled(const lipc__task *t) {
  return t->cancel_at <= t->depth && t->shielded == 0;
}

const char *lipc__task_reason(const lipc__task *t) {
  return t ? t->reason : "cancelled";
}

void lipc__task_set_parked(lipc__task *t, lipc__wait *w) {
  t->parked = w;
}

lipc__wait *lipc__task_parked(const lipc__task *t) {
  return t->parked;
}

/* An error that cancellation caused: "ECANCELED: ..." raised by a task
 * that was cancelled (assert(sock:read()) in a cancelled task). */
static int is_cancel_error(lua_State *L, int idx) {
  return lua_type(L, idx) == LUA_TSTRING &&
         strstr(lua_tostring(L, idx), "ECANCELED") != NULL;
}

/* ---- cancel ------------------------------------------------------------ */

static void scope_cancel(scope *sc, const char *reason);

/* Emits 'cancel'(reason) on the object on top of rt->L (popped), for
 * opts.cancel users. */
static void emit_cancel(lipc_runtime *rt, const char *reason) {
  lua_State *L = rt->L;
  if (!lua_isnil(L, -1)) {
    lua_pushstring(L, reason);
    lipc__emit(rt, -2, "cancel", 1);
  }
  lua_pop(L, 1);
}

static int task_cancel(lipc__task *t, const char *reason) {
  lipc_runtime *rt = t->rt;
  int top = lua_gettop(rt->L);
  scope *s;
  if (t->state != RUNNING || t->cancelled || rt->exiting)
    return 0;
  push_task(t); /* kept while what follows may end it */
  t->cancelled = 1;
  t->cancel_at = 0;
  set_reason(t->reason, reason);
  for (s = t->inner; s != NULL; s = s->outer)
    scope_cancel(s, reason);
  lua_pushvalue(rt->L, top + 1);
  emit_cancel(rt, reason);
  if (t->state == RUNNING)
    lipc__task_interrupt(rt, t);
  lua_settop(rt->L, top);
  return 1;
}

/* Moves t to the end of its scope's list (the cancelled ones gather
 * there) or takes it out (gone). */
static void scope_unlink(scope *sc, lipc__task *t) {
  if (t->sprev)
    t->sprev->snext = t->snext;
  else
    sc->head = t->snext;
  if (t->snext)
    t->snext->sprev = t->sprev;
  else
    sc->tail = t->sprev;
  t->snext = t->sprev = NULL;
}

static void scope_link(scope *sc, lipc__task *t) {
  t->sprev = sc->tail;
  t->snext = NULL;
  if (sc->tail)
    sc->tail->snext = t;
  else
    sc->head = t;
  sc->tail = t;
}

static void scope_cancel(scope *sc, const char *reason) {
  lipc__task *body = sc->body, *t;
  lua_State *L = sc->rt->L;
  int top = lua_gettop(L);
  scope *s;
  if (sc->cancelled || sc->ended || sc->rt->exiting)
    return;
  push_obj(sc->rt, sc); /* kept while what follows may end it */
  sc->cancelled = 1;
  set_reason(sc->reason, reason);
  for (s = body->inner; s != NULL && s != sc; s = s->outer)
    scope_cancel(s, reason); /* the scopes opened inside this one */
  if (body->cancel_at > sc->depth) {
    body->cancel_at = sc->depth;
    set_reason(body->reason, reason);
  }
  lua_pushvalue(L, top + 1);
  emit_cancel(sc->rt, reason);
  /* Each task goes to the tail before it is cancelled (which may end it,
   * or others): the head is then always one still to cancel. */
  while ((t = sc->head) != NULL && !t->cancelled) {
    scope_unlink(sc, t);
    scope_link(sc, t);
    task_cancel(t, reason);
  }
  /* The body's own wait, unless the scope ended meanwhile (its tasks
   * did, and the body went on to other waits). */
  if (!sc->ended && lipc__task_cancelled(body))
    lipc__task_interrupt(sc->rt, body);
  lua_settop(L, top);
}

/* ---- task objects ------------------------------------------------------ */

static lipc__task *task_push_new(lua_State *L) {
  lipc_runtime *rt = lipc__rt(L);
  lipc__task *t = lua_newuserdatauv(L, sizeof(*t), 2);
  memset(t, 0, sizeof(*t));
  t->rt = rt;
  t->cancel_at = NOT_CANCELLED;
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->task_mt_ref);
  lua_setmetatable(L, -2);
  return t;
}

lipc__task *lipc__task_current(lua_State *L) {
  lipc_runtime *rt = lipc__rt(L);
  lipc__task *t = rt->current_task;
  if (t != NULL)
    return t;
  t = task_push_new(L);
  t->lazy = 1;
  task_anchor(L, t, -1);
  lua_pop(L, 1);
  rt->current_task = t;
  return t;
}

/* Starts fn(...) (from index first of L up) as a task of scope sc (or
 * none); leaves the task object in their place. */
static lipc__task *start(lua_State *L, int first, scope *sc) {
  lipc_runtime *rt = lipc__rt(L);
  int nargs = lua_gettop(L) - first;
  lipc__task *t = task_push_new(L); /* fn args... t */
  lua_insert(L, first);             /* t fn args... */
  if (rt->exiting) {
    lua_settop(L, first);
    t->state = DONE;
    return t;
  }
  task_anchor(L, t, first);
  if (sc != NULL) {
    t->owner = sc;
    sc->live++;
    scope_link(sc, t);
    if (sc->cancelled) { /* starts cancelled: its first wait says so */
      t->cancelled = 1;
      t->cancel_at = 0;
      set_reason(t->reason, sc->reason);
    }
  }
  t->starting = 1;
  lipc__task_start_obj(rt, L, nargs, t);
  t->starting = 0;
  return t;
}

/* lipc.go(fn, ...) -> task; fn runs now, until it first waits. */
static int l_go(lua_State *L) {
  lipc__checktype(L, 1, LUA_TFUNCTION, "lipc.go");
  start(L, 1, NULL);
  return 1;
}

/* Pushes what wait() gives for an ended task: its results, or nil, the
 * error, "ECANCELED" (an error cancellation caused) or "ERROR". */
static int push_outcome(lua_State *L, int obj, lipc__task *t) {
  int n, i;
  if (lua_getiuservalue(L, obj, 1) != LUA_TTABLE) {
    lua_pop(L, 1);
    return 0;
  }
  if (t->state == FAILED) {
    lua_pushnil(L);
    lua_getfield(L, -2, "err");
    lua_getfield(L, -3, "code");
    lua_remove(L, -4);
    return 3;
  }
  lua_getfield(L, -1, "n");
  n = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  luaL_checkstack(L, n, "task.wait");
  for (i = 1; i <= n; i++)
    lua_rawgeti(L, -i, i);
  lua_remove(L, -(n + 1));
  return n;
}

/* ---- a failure nobody took -------------------------------------------- */

/* An error in a task nobody waits for is uncaught. One raised before
 * lipc.go returned is reported a loop turn later: the code that started
 * the task may call wait() right after lipc.go returns. */
typedef struct late {
  lipc__handle h;
  uv_timer_t timer;
  int ref;
} late;

static void late_closed(lipc__handle *h) {
  late *l = (late *)h;
  luaL_unref(h->rt->L, LUA_REGISTRYINDEX, l->ref);
  free(l);
}

static void on_late(uv_timer_t *tm) {
  late *l = (late *)tm->data;
  lipc_runtime *rt = l->h.rt;
  lua_State *L = rt->L;
  int top = lua_gettop(L);
  lipc__task *t;
  lua_rawgeti(L, LUA_REGISTRYINDEX, l->ref);
  t = lua_touserdata(L, -1);
  lipc__handle_close(&l->h);
  if (t != NULL && !t->observed &&
      lua_getiuservalue(L, top + 1, 1) == LUA_TTABLE &&
      lua_getfield(L, -1, "trace") == LUA_TSTRING)
    lipc__uncaught(rt, L, -1);
  lua_settop(L, top);
}

static void check_later(lipc_runtime *rt, int obj) {
  late *l = calloc(1, sizeof(*l));
  if (l == NULL)
    return;
  uv_timer_init(rt->loop, &l->timer);
  lipc__handle_bare(rt, &l->h, (uv_handle_t *)&l->timer, "task", late_closed);
  lua_pushvalue(rt->L, obj);
  l->ref = luaL_ref(rt->L, LUA_REGISTRYINDEX);
  lipc__timer_start(&l->timer, on_late, 0, 0);
}

/* ---- the end of a task ------------------------------------------------- */

static void scope_failed(lua_State *L, scope *sc, int err_idx, int cancelled);

int lipc__task_ended(lipc_runtime *rt, lipc__task *t, lua_State *co, int status,
                     int nres) {
  lua_State *L = rt->L;
  int top = lua_gettop(L), obj, n, cancel_error = 0, handled = 1;
  scope *sc = t->owner;
  t->state = status == LUA_OK ? DONE : FAILED;
  t->parked = NULL;
  if (t->lazy || rt->exiting) {
    if (t->lazy)
      task_unanchor(t);
    return 0;
  }
  if (status == LUA_OK && nres == 0 && sc == NULL &&
      !lipc__waitq_waiting(&t->waiters)) {
    lipc__waitq_free(rt, &t->waiters); /* cancelled waiters' nodes */
    task_unanchor(t);                  /* nothing to keep, nobody to tell */
    return 1;
  }
  luaL_checkstack(L, nres + 8, "task");
  push_task(t);
  obj = lua_gettop(L);
  if (status == LUA_OK && nres == 0) {
    lua_pushnil(L); /* nothing to keep */
  } else if (status == LUA_OK) {
    lua_createtable(L, nres, 1);
    lua_xmove(co, L, nres);
    for (n = nres; n >= 1; n--)
      lua_rawseti(L, obj + 1, n);
    lua_pushinteger(L, nres);
    lua_setfield(L, -2, "n");
  } else {
    cancel_error = t->cancelled && is_cancel_error(co, -1);
    lua_createtable(L, 0, 3);
    lua_pushvalue(co, -1);
    lua_xmove(co, L, 1);
    lua_setfield(L, -2, "err");
    lua_pushstring(L, cancel_error ? "ECANCELED" : "ERROR");
    lua_setfield(L, -2, "code");
    handled = sc != NULL || lipc__waitq_waiting(&t->waiters) || cancel_error;
    if (!handled && t->starting) {
      luaL_traceback(L, co, luaL_tolstring(co, -1, NULL), 0);
      lua_pop(co, 1);
      lua_setfield(L, -2, "trace");
    }
  }
  if (lua_isnil(L, -1))
    lua_pop(L, 1);
  else
    lua_setiuservalue(L, obj, 1);
  if (!handled && t->starting) {
    check_later(rt, obj);
    handled = 1;
  }
  if (lipc__waitq_waiting(&t->waiters)) {
    t->observed = 1;
    n = push_outcome(L, obj, t);
    lipc__waitq_wake_all(rt, &t->waiters, n);
  }
  lipc__waitq_free(rt, &t->waiters); /* ended: nobody parks there again */
  if (sc != NULL) {
    t->owner = NULL;
    scope_unlink(sc, t);
    sc->live--;
    if (status != LUA_OK) {
      lua_getiuservalue(L, obj, 1);
      lua_getfield(L, -1, "err");
      scope_failed(L, sc, lua_gettop(L), cancel_error || t->cancelled);
    }
    if (sc->live == 0 && push_obj(rt, sc)) /* alive past the wake, */
      lipc__wake(rt, &sc->join, 0);        /* where the body leaves it */
  }
  task_unanchor(t);
  lua_settop(L, top);
  return handled;
}

/* ---- task methods ------------------------------------------------------ */

static lipc__task *check_task(lua_State *L, const char *fname) {
  return lipc__checkobj(L, 1, TASK, fname);
}

/* task:wait() in a task -> its results | nil, err, code */
static int task_wait(lua_State *L) {
  lipc__task *t = check_task(L, "task.wait");
  lipc_runtime *rt = lipc__rt(L);
  lipc__task_check(L, "task.wait");
  t->observed = 1;
  if (t->state != RUNNING)
    return push_outcome(L, 1, t);
  if (t == rt->current_task)
    return luaL_error(L, "task.wait: a task cannot wait for itself");
  return lipc__waitq_park(L, &t->waiters);
}

static const char *opt_reason(lua_State *L, const char *fname) {
  if (lua_isnoneornil(L, 2))
    return "cancelled";
  return lipc__checkstring(L, 2, fname);
}

/* task:cancel([reason]) -> true, or false when it had ended or was
 * cancelled already */
static int task_cancel_m(lua_State *L) {
  lipc__task *t = check_task(L, "task.cancel");
  lua_pushboolean(L, task_cancel(t, opt_reason(L, "task.cancel")));
  return 1;
}

/* task:status() -> "running", "done", "failed" or "cancelled" */
static int task_status(lua_State *L) {
  lipc__task *t = check_task(L, "task.status");
  if (t->state == RUNNING)
    lua_pushliteral(L, "running");
  else if (t->cancelled)
    lua_pushliteral(L, "cancelled");
  else
    lua_pushstring(L, t->state == DONE ? "done" : "failed");
  return 1;
}

static int task_cancelled_m(lua_State *L) {
  lipc__task *t = check_task(L, "task.cancelled");
  lua_pushboolean(L, t->cancelled);
  return 1;
}

static int task_tostring(lua_State *L) {
  lua_pushfstring(L, "lipc.task: %p", lua_touserdata(L, 1));
  return 1;
}

/* ---- lipc.shield ------------------------------------------------------- */

static int shield_k(lua_State *L, int status, lua_KContext ctx) {
  lipc__task *t = (lipc__task *)ctx;
  t->shielded--;
  if (status != LUA_OK && status != LUA_YIELD)
    return lua_error(L);
  return lua_gettop(L);
}

/* lipc.shield(fn, ...) in a task -> fn(...)'s results: fn's waits are not
 * cancelled (cleanup that must wait: a child's exit after kill). */
static int l_shield(lua_State *L) {
  lipc__task *t;
  lipc__task_check(L, "lipc.shield");
  lipc__checktype(L, 1, LUA_TFUNCTION, "lipc.shield");
  t = lipc__task_current(L);
  t->shielded++;
  return shield_k(L,
                  lua_pcallk(L, lua_gettop(L) - 1, LUA_MULTRET, 0,
                             (lua_KContext)t, shield_k),
                  (lua_KContext)t);
}

/* ---- opts.cancel -------------------------------------------------------- */

static int close_obj(lua_State *L) {
  lua_getfield(L, lua_upvalueindex(1), "close");
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_call(L, 1, 0);
  return 0;
}

int lipc__cancel_check(lua_State *L, int idx, const char *fname) {
  lipc__task *t;
  scope *sc;
  if (lua_isnil(L, idx))
    return 0;
  if ((t = lipc__testobj(L, idx, TASK)) != NULL)
    return t->cancelled ? 2 : t->state == RUNNING;
  if ((sc = lipc__testobj(L, idx, SCOPE)) != NULL)
    return sc->cancelled ? 2 : !sc->ended;
  return lipc__argerror(L, lua_absindex(L, idx), fname,
                        "opts.cancel: a task or a scope expected, got %s",
                        luaL_typename(L, idx));
}

int lipc__cancel_bind(lua_State *L, int idx, int obj, const char *fname) {
  int st = lipc__cancel_check(L, idx, fname);
  idx = lua_absindex(L, idx);
  obj = lua_absindex(L, obj);
  if (st != 1)
    return st == 2;
  lua_getfield(L, idx, "once");
  lua_pushvalue(L, idx);
  lua_pushliteral(L, "cancel");
  lua_pushvalue(L, obj);
  lua_pushcclosure(L, close_obj, 1);
  lua_call(L, 3, 0);
  return 0;
}

/* ---- scopes ------------------------------------------------------------ */

/* The first error wins; one a cancellation caused (the scope, or the
 * task, was cancelled and it says ECANCELED) is not a failure. */
static void scope_failed(lua_State *L, scope *sc, int err_idx, int cancelled) {
  lua_State *M = sc->rt->L;
  if (sc->failed || sc->ended)
    return;
  if ((sc->cancelled || cancelled) && is_cancel_error(L, err_idx))
    return;
  sc->failed = 1;
  if (push_obj(sc->rt, sc)) {
    lua_pushvalue(L, err_idx);
    if (L != M)
      lua_xmove(L, M, 1);
    lua_setiuservalue(M, -2, 1);
  }
  lua_pop(M, 1);
  scope_cancel(sc, "a task of the scope failed");
}

static void stimer_closed(lipc__handle *h) {
  free(h);
}

static void on_scope_timeout(uv_timer_t *tm) {
  stimer *st = (stimer *)tm->data;
  scope *sc = st->sc;
  char why[64];
  if (sc == NULL || sc->cancelled)
    return;
  sc->timed_out = 1;
  snprintf(why, sizeof(why), "scope timeout, %llu ms",
           (unsigned long long)sc->timeout);
  scope_cancel(sc, why);
}

static int scope_k(lua_State *L, int status, lua_KContext ctx);

/* The scope is over: its tasks have ended. Pushes what lipc.scope
 * returns (or raises the first error). Index 3 is the scope. */
static int scope_leave(lua_State *L, scope *sc) {
  lipc__task *t = sc->body;
  int nres = lua_gettop(L) - 3;
  sc->ended = 1;
  t->inner = sc->outer;
  t->depth--;
  if (t->cancel_at > t->depth)
    t->cancel_at = NOT_CANCELLED;
  if (sc->timer) {
    sc->timer->sc = NULL;
    lipc__handle_close(&sc->timer->h);
    sc->timer = NULL;
  }
  unanchor(sc->rt, sc);
  if (sc->failed) {
    lua_getiuservalue(L, 3, 1);
    return lua_error(L);
  }
  lua_pushnil(L);
  if (sc->timed_out) {
    lua_pushfstring(L, "ETIMEDOUT: scope timed out after %I ms",
                    (lua_Integer)sc->timeout);
    lua_pushliteral(L, "ETIMEDOUT");
    return 3;
  }
  if (sc->cancelled)
    return 1 + lipc__push_errpair(L, UV_ECANCELED, sc->reason);
  lua_pop(L, 1);
  return nres;
}

/* ctx 0: the body returned (status LUA_OK or LUA_YIELD) or raised; ctx 1:
 * woken in the join. Waits (shielded) until the scope's tasks ended. */
static int scope_k(lua_State *L, int status, lua_KContext ctx) {
  scope *sc = lua_touserdata(L, 3);
  if (ctx == 0 && status != LUA_OK && status != LUA_YIELD) {
    scope_failed(L, sc, lua_gettop(L), 0);
    lua_settop(L, 3);
  }
  if (sc->live > 0) /* the body's results stay on the stack */
    return lipc__task_park_k(L, &sc->join, NULL, 1, scope_k);
  return scope_leave(L, sc);
}

/* lipc.scope(fn[, opts]) in a task -> fn's results, once fn and every task
 * started with scope:go have ended; raises the first error; nil, msg,
 * "ETIMEDOUT" after opts.timeout ms, nil, msg, "ECANCELED" when
 * cancelled. */
static int l_scope(lua_State *L) {
  lipc_runtime *rt = lipc__rt(L);
  lua_Number ms = 0;
  lipc__task *t;
  scope *sc;
  lipc__task_check(L, "lipc.scope");
  lipc__checktype(L, 1, LUA_TFUNCTION, "lipc.scope");
  if (!lua_isnoneornil(L, 2)) {
    lipc__checktype(L, 2, LUA_TTABLE, "lipc.scope");
    if (lua_getfield(L, 2, "timeout") != LUA_TNIL) {
      ms = lua_tonumber(L, -1);
      if (!lua_isnumber(L, -1) || !(ms >= 0 && ms < 1e12))
        return lipc__argerror(L, 2, "lipc.scope",
                              "opts.timeout must be a number of ms >= 0");
    }
    lua_pop(L, 1);
  }
  lua_settop(L, 2);
  t = lipc__task_current(L);
  sc = lua_newuserdatauv(L, sizeof(*sc), 2); /* 3 */
  memset(sc, 0, sizeof(*sc));
  luaL_setmetatable(L, SCOPE);
  sc->rt = rt;
  sc->body = t;
  sc->outer = t->inner;
  sc->join.ref = LUA_NOREF;
  sc->join.shield = 1;
  t->inner = sc;
  sc->depth = ++t->depth;
  anchor(L, sc, 3);
  if (lipc__task_cancelled(t)) { /* opened in a cancelled task */
    sc->cancelled = 1;
    set_reason(sc->reason, t->reason);
  }
  if (ms > 0 && (sc->timer = calloc(1, sizeof(*sc->timer))) != NULL) {
    sc->timeout = (uint64_t)ms;
    sc->timer->sc = sc;
    uv_timer_init(rt->loop, &sc->timer->timer);
    lipc__handle_bare(rt, &sc->timer->h, (uv_handle_t *)&sc->timer->timer,
                      "scope", stimer_closed);
    lipc__timer_start(&sc->timer->timer, on_scope_timeout, sc->timeout, 0);
  }
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 3);
  return scope_k(L, lua_pcallk(L, 1, LUA_MULTRET, 0, 0, scope_k), 0);
}

static scope *check_scope(lua_State *L, const char *fname) {
  return lipc__checkobj(L, 1, SCOPE, fname);
}

/* scope:go(fn, ...) -> task, a task of the scope */
static int scope_go(lua_State *L) {
  scope *sc = check_scope(L, "scope.go");
  lipc__checktype(L, 2, LUA_TFUNCTION, "scope.go");
  if (sc->ended)
    return luaL_error(L, "scope.go: the scope has ended");
  start(L, 2, sc);
  return 1;
}

/* scope:cancel([reason]) -> true, or false when done or cancelled before */
static int scope_cancel_m(lua_State *L) {
  scope *sc = check_scope(L, "scope.cancel");
  const char *reason = opt_reason(L, "scope.cancel");
  int was = sc->cancelled || sc->ended;
  scope_cancel(sc, reason);
  lua_pushboolean(L, !was);
  return 1;
}

static int scope_cancelled_m(lua_State *L) {
  scope *sc = check_scope(L, "scope.cancelled");
  lua_pushboolean(L, sc->cancelled);
  return 1;
}

static int scope_tostring(lua_State *L) {
  lua_pushfstring(L, "lipc.scope: %p", lua_touserdata(L, 1));
  return 1;
}

static void make_class(lua_State *L, const char *tname, const luaL_Reg *m,
                       lua_CFunction tostr, lua_CFunction gc) {
  luaL_newmetatable(L, tname); /* mt */
  lua_newtable(L);             /* mt methods */
  luaL_setfuncs(L, m, 0);
  lipc__emitter_methods(L);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, tostr);
  lua_setfield(L, -2, "__tostring");
  if (gc) {
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
  }
}

void lipc__scope_open(lua_State *L) {
  lipc_runtime *rt = lipc__rt(L);
  static const luaL_Reg task_m[] = {
      {"wait", task_wait},
      {"cancel", task_cancel_m},
      {"status", task_status},
      {"cancelled", task_cancelled_m},
      {NULL, NULL},
  };
  static const luaL_Reg scope_m[] = {
      {"go", scope_go},
      {"cancel", scope_cancel_m},
      {"cancelled", scope_cancelled_m},
      {NULL, NULL},
  };
  static const luaL_Reg fns[] = {
      {"go", l_go},
      {"scope", l_scope},
      {"shield", l_shield},
      {NULL, NULL},
  };
  make_class(L, TASK, task_m, task_tostring, NULL); /* lib mt */
  if (rt->task_mt_ref == LUA_NOREF)
    rt->task_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  else
    lua_pop(L, 1);
  if (rt->tasks_ref == LUA_NOREF) {
    lua_newtable(L);
    rt->tasks_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  make_class(L, SCOPE, scope_m, scope_tostring, NULL);
  lua_pop(L, 1);
  luaL_setfuncs(L, fns, 0);
}
