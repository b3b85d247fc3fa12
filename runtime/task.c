/*
 * task.c - tasks: Lua coroutines driven by the event loop.
 *
 * Every listener, timer callback and lipc.go body runs in a task. A task
 * that needs to wait (sleep, read, receive...) parks itself in a lipc__wait
 * and yields back to the loop; whoever completes the wait resumes it.
 * Finished coroutines go back to a pool: starting a task is then a
 * lua_resume on an existing thread, not an allocation.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define POOL_MAX 64

static lua_State *pool_get(lipc_runtime *rt, lua_State *L) {
  lua_State *co;
  if (rt->pool_n == 0)
    return lua_newthread(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->pool_ref);
  lua_rawgeti(L, -1, rt->pool_n);
  co = lua_tothread(L, -1);
  lua_pushnil(L);
  lua_rawseti(L, -3, rt->pool_n--);
  lua_remove(L, -2); /* leaves the thread */
  return co;
}

static void pool_put(lipc_runtime *rt, lua_State *co) {
  lua_State *L = rt->L;
  if (rt->pool_n >= POOL_MAX)
    return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->pool_ref);
  lua_pushthread(co);
  lua_xmove(co, L, 1);
  lua_rawseti(L, -2, ++rt->pool_n);
  lua_pop(L, 1);
}

/* Resumes co (the task of object t, or NULL) with nargs values already on
 * its stack, and deals with how it stopped: parked, finished (back to the
 * pool) or failed (uncaught, unless its object's waiter or scope takes
 * the error). */
static void resume(lipc_runtime *rt, lua_State *from, lua_State *co, int nargs,
                   lipc__task *t) {
  lua_State *prev = rt->current;
  lipc__task *prev_t = rt->current_task;
  int nres, status, handled = 0;

  rt->current = co;
  rt->current_task = t;
  status = lua_resume(co, from, nargs, &nres);
  t = rt->current_task; /* a scope may have made one */
  rt->current = prev;
  rt->current_task = prev_t;
  if (status == LUA_YIELD) {
    lua_pop(co, nres);
    return;
  }
  if (t != NULL)
    handled = lipc__task_ended(rt, t, co, status, nres);
  if (status == LUA_OK) {
    rt->last_fail[0] = '\0'; /* whatever failed was dealt with */
    lua_settop(co, 0);
    pool_put(rt, co);
    return;
  }
  if (!handled)
    lipc__uncaught(rt, co, -1);
}

void lipc__task_start(lipc_runtime *rt, lua_State *L, int nargs) {
  lipc__task_start_obj(rt, L, nargs, NULL);
}

void lipc__task_start_obj(lipc_runtime *rt, lua_State *L, int nargs,
                          lipc__task *t) {
  lua_State *co;
  if (rt->exiting) {
    lua_pop(L, nargs + 1);
    return;
  }
  co = pool_get(rt, L);        /* fn args... co */
  lua_insert(L, -(nargs + 2)); /* co fn args... */
  lua_xmove(L, co, nargs + 1);
  resume(rt, L, co, nargs, t);
  lua_pop(L, 1); /* co: referenced by a wait
                    or the pool if it lives */
}

void lipc__task_check(lua_State *L, const char *fname) {
  lipc_runtime *rt = lipc__rt(L);
  if (L != rt->current || !lua_isyieldable(L))
    lipc__task_error(L, fname);
}

/* A parked task is kept alive by parked[w] (w as a lightuserdata key):
 * the same wait parks again and again (a receive loop), so its key is
 * reused, where luaL_ref + luaL_unref cost ~530 instructions a park. */
static void anchor(lipc_runtime *rt, lua_State *L, lipc__wait *w, int set) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->parked_ref);
  if (set)
    lua_pushthread(L);
  else
    lua_pushnil(L);
  lua_rawsetp(L, -2, w);
  lua_pop(L, 1);
}

/* A cancelled task does not park: the owner undoes its side and the
 * call returns nil, "ECANCELED: ...", "ECANCELED" now. */
static int cancelled_now(lipc_runtime *rt, lua_State *L, lipc__wait *w) {
  lipc__task *t = w->task;
  w->co = NULL;
  if (w->on_cancel)
    w->on_cancel(rt, w);
  lua_pushnil(L);
  lipc__push_errpair(L, UV_ECANCELED, lipc__task_reason(t));
  return 3;
}

int lipc__task_park_k(lua_State *L, lipc__wait *w, lipc__cancel_fn on_cancel,
                      lua_KContext ctx, lua_KFunction k) {
  lipc_runtime *rt = lipc__rt(L);
  lipc__task *t = rt->current_task;
  w->on_cancel = on_cancel;
  w->task = t;
  if (t != NULL) {
    if (!w->shield && lipc__task_cancelled(t))
      return cancelled_now(rt, L, w);
    lipc__task_set_parked(t, w);
  }
  w->co = L;
  anchor(rt, L, w, 1);
  return lua_yieldk(L, 0, ctx, k);
}

int lipc__task_park_c(lua_State *L, lipc__wait *w, lipc__cancel_fn on_cancel) {
  return lipc__task_park_k(L, w, on_cancel, 0, NULL);
}

int lipc__task_park(lua_State *L, lipc__wait *w) {
  return lipc__task_park_k(L, w, NULL, 0, NULL);
}

/* The task no longer waits in w (woken, or its owner let go). */
static void unparked(lipc__wait *w) {
  if (w->task != NULL && lipc__task_parked(w->task) == w)
    lipc__task_set_parked(w->task, NULL);
}

void lipc__task_interrupt(lipc_runtime *rt, lipc__task *t) {
  lipc__wait *w = lipc__task_parked(t);
  lua_State *L = rt->L, *co;
  int top = lua_gettop(L);
  if (w == NULL || w->shield || w->co == NULL || rt->exiting ||
      !lipc__task_cancelled(t))
    return;
  lipc__task_set_parked(t, NULL);
  co = w->co;
  w->co = NULL;
  luaL_checkstack(L, 4, "cancel");
  lua_pushthread(co); /* kept alive while it runs, as in lipc__wake */
  lua_xmove(co, L, 1);
  anchor(rt, L, w, 0);
  if (w->on_cancel) /* may free w */
    w->on_cancel(rt, w);
  lua_pushnil(L);
  lipc__push_errpair(L, UV_ECANCELED, lipc__task_reason(t));
  lua_xmove(L, co, 3);
  resume(rt, L, co, 3, t);
  lua_settop(L, top);
}

int lipc__waiting(const lipc__wait *w) {
  return w->co != NULL;
}

void lipc__wake(lipc_runtime *rt, lipc__wait *w, int nargs) {
  lua_State *co = w->co;
  int top;
  if (co == NULL || rt->exiting) {
    lua_pop(rt->L, nargs);
    return;
  }
  w->co = NULL;
  unparked(w);
  lua_xmove(rt->L, co, nargs);
  /* While it runs, the thread stays on rt->L's stack. Its anchor cannot
   * keep it: a task that parks in w meanwhile takes that anchor (a wait
   * queue gives w's node to the next task that parks), and the collector
   * marks only the thread running now, not one that resumed another
   * (a cond:signal, then a collection in the task it woke). */
  top = lua_gettop(rt->L);
  if (lua_checkstack(rt->L, 1)) {
    lua_pushthread(co);
    lua_xmove(co, rt->L, 1);
  }
  resume(rt, rt->L, co, nargs, w->task);
  lua_settop(rt->L, top);
  /* Dropped after the resume, unless the task (or another) parked in w
   * again meanwhile: then the anchor is that one's. */
  if (w->co == NULL)
    anchor(rt, rt->L, w, 0);
}

void lipc__wait_cancel(lipc_runtime *rt, lipc__wait *w) {
  if (w->co == NULL)
    return;
  w->co = NULL;
  unparked(w);
  anchor(rt, rt->L, w, 0);
}

/* ---- wait queues ------------------------------------------------------ */

struct lipc__wnode {
  lipc__wait w; /* first: a cancelled wait is its node */
  lipc__wnode *next;
  lipc__waitq *q;
};

/* A cancelled waiter leaves the queue: what comes next goes to the one
 * behind it, nothing is handed to a task that no longer waits. */
static void wnode_cancel(lipc_runtime *rt, lipc__wait *w) {
  lipc__wnode *n = (lipc__wnode *)w, **pp, *prev = NULL;
  lipc__waitq *q = n->q;
  (void)rt;
  for (pp = &q->head; *pp != NULL; prev = *pp, pp = &(*pp)->next) {
    if (*pp != n)
      continue;
    *pp = n->next;
    if (q->tail == n)
      q->tail = prev;
    n->next = q->spare;
    q->spare = n;
    return;
  }
}

/* A woken node goes to the spare list before its task resumes, so a task
 * that waits again at once (a receive loop) parks on the same node: its
 * anchor key is reused, as for a plain lipc__wait. */
int lipc__waitq_park(lua_State *L, lipc__waitq *q) {
  lipc__wnode *n = q->spare;
  if (n != NULL) {
    q->spare = n->next;
  } else {
    if ((n = calloc(1, sizeof(*n))) == NULL)
      return luaL_error(L, "out of memory");
    n->w.ref = LUA_NOREF;
  }
  n->next = NULL;
  n->q = q;
  if (q->tail)
    q->tail->next = n;
  else
    q->head = n;
  q->tail = n;
  return lipc__task_park_c(L, &n->w, wnode_cancel);
}

int lipc__waitq_waiting(const lipc__waitq *q) {
  return q->head != NULL;
}

void lipc__waitq_wake(lipc_runtime *rt, lipc__waitq *q, int nargs) {
  lipc__wnode *n = q->head;
  if (n == NULL) {
    lua_pop(rt->L, nargs);
    return;
  }
  q->head = n->next;
  if (q->head == NULL)
    q->tail = NULL;
  n->next = q->spare;
  q->spare = n;
  lipc__wake(rt, &n->w, nargs);
}

int lipc__waitq_wake_all(lipc_runtime *rt, lipc__waitq *q, int nargs) {
  lua_State *L = rt->L;
  int i, n = 0;
  for (; lipc__waitq_waiting(q); n++) {
    for (i = 0; i < nargs; i++)
      lua_pushvalue(L, -nargs);
    lipc__waitq_wake(rt, q, nargs);
  }
  lua_pop(L, nargs);
  return n;
}

static void free_nodes(lipc_runtime *rt, lipc__wnode *n) {
  while (n != NULL) {
    lipc__wnode *next = n->next;
    lipc__wait_cancel(rt, &n->w);
    free(n);
    n = next;
  }
}

void lipc__waitq_free(lipc_runtime *rt, lipc__waitq *q) {
  free_nodes(rt, q->head);
  free_nodes(rt, q->spare);
  q->head = q->tail = q->spare = NULL;
}

void lipc__timer_start(uv_timer_t *t, uv_timer_cb cb, uint64_t ms,
                       uint64_t repeat) {
  uv_update_time(t->loop);
  uv_timer_start(t, cb, ms, repeat);
}

/* lipc.in_task() -> boolean */
static int l_in_task(lua_State *L) {
  lipc_runtime *rt = lipc__rt(L);
  lua_pushboolean(L, L == rt->current && lua_isyieldable(L));
  return 1;
}

void lipc__task_open(lua_State *L) {
  lipc_runtime *rt = lipc__rt(L);
  static const luaL_Reg fns[] = {
      {"in_task", l_in_task},
      {NULL, NULL},
  };
  /* Once per runtime, however often the module is loaded (busted's
   * insulation reloads it): tasks parked or pooled before stay anchored. */
  if (rt->pool_ref == LUA_NOREF) {
    lua_newtable(L);
    rt->pool_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  if (rt->parked_ref == LUA_NOREF) {
    lua_newtable(L);
    rt->parked_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  luaL_setfuncs(L, fns, 0); /* into the table on top */
  lipc__scope_open(L);
}
