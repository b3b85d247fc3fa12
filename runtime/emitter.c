/*
 * emitter.c - the one event mechanism every object uses.
 *
 * on/once/off/emit/listeners work on userdata objects (listeners live in
 * the object's second user value) and on plain tables (listeners live
 * under a private key), so objects written in Lua get the same API.
 * Each listener runs in its own task, so it may wait. lipc__emit_soon
 * emits on the next loop turn (Node's nextTick).
 *
 * listeners[name] is the function itself while an event has one plain
 * listener (a socket's 'data' and 'error': two tables less a connection),
 * else an array of entries, each a function or {fn} for a once listener.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const char LISTENERS_KEY = 'L';

/* Pushes the listeners table of the object at idx (creating it when
 * create is set); pushes nil when it has none. A handle's table is made
 * with its first listener: most sockets of a big server never get one of
 * their own (a table less, 64 bytes, a connection). */
static int push_listeners(lua_State *L, int idx, int create) {
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) == LUA_TUSERDATA) {
    int t = lua_getiuservalue(L, idx, 2);
    if (t == LUA_TTABLE)
      return 1;
    lua_pop(L, 1);
    if (t != LUA_TNIL || !create) { /* LUA_TNONE: not an object of ours */
      lua_pushnil(L);
      return 0;
    }
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, idx, 2);
    return 1;
  }
  if (lua_type(L, idx) != LUA_TTABLE) {
    lua_pushnil(L);
    return 0;
  }
  if (lua_rawgetp(L, idx, &LISTENERS_KEY) == LUA_TTABLE || !create)
    return lua_istable(L, -1);
  lua_pop(L, 1);
  lua_newtable(L);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, idx, &LISTENERS_KEY);
  return 1;
}

static void check_object(lua_State *L, const char *fname) {
  int t = lua_type(L, 1);
  if (t != LUA_TUSERDATA && t != LUA_TTABLE)
    lipc__typeerror(L, 1, fname, "object");
}

/* Pushes the entries of name (the table at lst) as an array, made of a
 * lone function (and stored in its place when store is set; made empty
 * when there is nothing, then too). Returns 0 (nothing pushed) when there
 * are none and store is not set. */
static int push_entries(lua_State *L, int lst, const char *name, int store) {
  int t = lua_getfield(L, lst, name);
  if (t == LUA_TTABLE)
    return 1;
  if (t != LUA_TFUNCTION && !store) {
    lua_pop(L, 1);
    return 0;
  }
  lua_createtable(L, 2, 0); /* fn? arr */
  if (t == LUA_TFUNCTION) {
    lua_insert(L, -2);
    lua_rawseti(L, -2, 1);
  } else {
    lua_remove(L, -2);
  }
  if (store) {
    lua_pushvalue(L, -1);
    lua_setfield(L, lst, name);
  }
  return 1;
}

static int add(lua_State *L, int once, const char *fname) {
  const char *name;
  check_object(L, fname);
  name = lipc__checkstring(L, 2, fname);
  lipc__checktype(L, 3, LUA_TFUNCTION, fname);
  if (!push_listeners(L, 1, 1))
    return lipc__argerror(L, 1, fname, "object cannot have listeners");
  lipc__rt(L)->listener_gen++;
  if (!once && lua_getfield(L, -1, name) == LUA_TNIL) { /* a lone one */
    lua_pushvalue(L, 3);
    lua_setfield(L, -3, name);
    lua_settop(L, 1);
    return 1;
  }
  lua_settop(L, 4);
  push_entries(L, 4, name, 1);
  if (once) { /* a once entry is {fn} */
    lua_createtable(L, 1, 0);
    lua_pushvalue(L, 3);
    lua_rawseti(L, -2, 1);
  } else {
    lua_pushvalue(L, 3);
  }
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  lua_settop(L, 1);
  return 1; /* self, for chaining */
}

int lipc__emitter_on(lua_State *L) {
  return add(L, 0, "on");
}

static int l_once(lua_State *L) {
  return add(L, 1, "once");
}

/* Pushes the function of the listener entry at idx. */
static void entry_fn(lua_State *L, int idx) {
  if (lua_istable(L, idx))
    lua_rawgeti(L, idx, 1);
  else
    lua_pushvalue(L, idx);
}

static void remove_at(lua_State *L, int arr, lua_Integer i) {
  lua_Integer n = (lua_Integer)lua_rawlen(L, arr);
  for (; i < n; i++) {
    lua_rawgeti(L, arr, i + 1);
    lua_rawseti(L, arr, i);
  }
  lua_pushnil(L);
  lua_rawseti(L, arr, n);
}

/* off(name, fn) removes one registration of fn; off(name) all of name;
 * off() every listener. */
static int l_off(lua_State *L) {
  lua_Integer i, n;
  check_object(L, "off");
  lua_settop(L, 3); /* self name fn: the listeners go at 4 */
  if (!push_listeners(L, 1, 0))
    return 1;
  lipc__rt(L)->listener_gen++;
  if (lua_isnoneornil(L, 2)) {
    lua_settop(L, 1);
    if (lua_type(L, 1) == LUA_TUSERDATA) {
      lua_pushnil(L);
      lua_setiuservalue(L, 1, 2);
    } else {
      lua_pushnil(L);
      lua_rawsetp(L, 1, &LISTENERS_KEY);
    }
    return 1;
  }
  lipc__checkstring(L, 2, "off");
  if (lua_isnoneornil(L, 3)) {
    lua_pushnil(L);
    lua_setfield(L, -2, lua_tostring(L, 2));
    lua_settop(L, 1);
    return 1;
  }
  lipc__checktype(L, 3, LUA_TFUNCTION, "off");
  if (lua_getfield(L, -1, lua_tostring(L, 2)) == LUA_TFUNCTION) {
    if (lua_rawequal(L, -1, 3)) {
      lua_pushnil(L);
      lua_setfield(L, -3, lua_tostring(L, 2));
    }
    lua_settop(L, 1);
    return 1;
  }
  if (!lua_istable(L, -1)) {
    lua_settop(L, 1);
    return 1;
  }
  n = (lua_Integer)lua_rawlen(L, -1);
  for (i = n; i >= 1; i--) { /* the newest one first */
    lua_rawgeti(L, -1, i);
    entry_fn(L, -1);
    if (lua_rawequal(L, -1, 3)) {
      lua_pop(L, 2);
      remove_at(L, lua_gettop(L), i);
      break;
    }
    lua_pop(L, 2);
  }
  lua_settop(L, 1);
  return 1;
}

int lipc__has_listeners(lua_State *L, int obj, const char *ev) {
  int n = 0;
  if (push_listeners(L, obj, 0)) {
    int t = lua_getfield(L, -1, ev);
    n = t == LUA_TTABLE ? (int)lua_rawlen(L, -1) : t == LUA_TFUNCTION;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return n;
}

/* listeners(name) -> array of functions */
static int l_listeners(lua_State *L) {
  lua_Integer i, n;
  check_object(L, "listeners");
  lipc__checkstring(L, 2, "listeners");
  lua_newtable(L);
  if (!push_listeners(L, 1, 0) || !push_entries(L, 4, lua_tostring(L, 2), 0)) {
    lua_settop(L, 3);
    return 1;
  }
  n = (lua_Integer)lua_rawlen(L, -1);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    entry_fn(L, -1);
    lua_rawseti(L, 3, i);
    lua_pop(L, 1);
  }
  lua_settop(L, 3);
  return 1;
}

static void unhandled_error(lipc_runtime *rt, lua_State *L, int nargs) {
  const char *msg = nargs > 0 ? luaL_tolstring(L, -nargs, NULL) : "error";
  lua_pushfstring(L, "unhandled 'error' event: %s", msg);
  lipc__uncaught(rt, L, -1);
  lua_pop(L, nargs + (nargs > 0 ? 2 : 1));
}

/* Calls the listeners of ev on the object at obj of L with the nargs
 * values on top; pops them. The functions are copied to the stack first:
 * listeners added or removed by a listener take effect from the next
 * emit, as in Node, and an emit allocates nothing. */
static int emit_on(lipc_runtime *rt, lua_State *L, int obj, const char *ev,
                   int nargs) {
  int arr, fns, base, i, n = 0, a, t = LUA_TNIL;
  obj = lua_absindex(L, obj);
  base = lua_gettop(L) - nargs; /* args at base+1..base+nargs */
  luaL_checkstack(L, nargs + 8, "emit");
  if (push_listeners(L, obj, 0))
    t = lua_getfield(L, -1, ev);
  if (t == LUA_TFUNCTION) {
    n = 1;
  } else if (t == LUA_TTABLE) {
    arr = lua_gettop(L);
    n = (int)lua_rawlen(L, arr);
    luaL_checkstack(L, n + nargs + 4, "emit");
    for (i = 1; i <= n; i++) {
      lua_rawgeti(L, arr, i);
      if (lua_istable(L, -1)) { /* a once entry: its function */
        lua_rawgeti(L, -1, 1);
        lua_remove(L, -2);
      }
    }
    for (i = n; i >= 1; i--) { /* drop once entries */
      if (lua_rawgeti(L, arr, i) == LUA_TTABLE) {
        remove_at(L, arr, i);
        rt->listener_gen++;
      }
      lua_pop(L, 1);
    }
  }
  if (n == 0) {
    lua_settop(L, base + nargs);
    if (strcmp(ev, "error") == 0 && !rt->exiting) {
      unhandled_error(rt, L, nargs);
      return 0;
    }
    lua_pop(L, nargs);
    return 0;
  }
  fns = lua_gettop(L) - n; /* the functions at fns+1..fns+n */
  for (i = 1; i <= n; i++) {
    lua_pushvalue(L, fns + i);
    for (a = 1; a <= nargs; a++)
      lua_pushvalue(L, base + a);
    lipc__task_start(rt, L, nargs);
    if (rt->exiting)
      break;
  }
  lua_settop(L, base);
  return n;
}

int lipc__emit(lipc_runtime *rt, int obj, const char *ev, int nargs) {
  return emit_on(rt, rt->L, obj, ev, nargs);
}

/* emit(name, ...) -> number of listeners called */
static int l_emit(lua_State *L) {
  int n;
  check_object(L, "emit");
  lipc__checkstring(L, 2, "emit");
  n = emit_on(lipc__rt(L), L, 1, lua_tostring(L, 2), lua_gettop(L) - 2);
  lua_pushinteger(L, n);
  return 1;
}

void lipc__emitter_methods(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"on", lipc__emitter_on}, {"once", l_once},           {"off", l_off},
      {"emit", l_emit},         {"listeners", l_listeners}, {NULL, NULL},
  };
  luaL_setfuncs(L, fns, 0);
}

/* ---- events on the next loop turn ------------------------------------- */

typedef struct {
  lipc__handle h; /* bare handle of the timer */
  uv_timer_t timer;
  int ref; /* {object, args...} */
  int nargs;
  int close_after;
  char ev[24];
} soon;

static void soon_free(lipc__handle *h) {
  soon *d = (soon *)h;
  luaL_unref(h->rt->L, LUA_REGISTRYINDEX, d->ref);
  free(d);
}

static void on_soon(uv_timer_t *t) {
  soon *d = t->data;
  lipc_runtime *rt = d->h.rt;
  lua_State *L = rt->L;
  int i, top = lua_gettop(L);
  lipc__handle *obj;
  lua_rawgeti(L, LUA_REGISTRYINDEX, d->ref); /* tbl */
  lua_rawgeti(L, top + 1, 1);                /* tbl obj */
  obj = lua_touserdata(L, -1);
  if (obj && obj->uv && !obj->closing) { /* closed meanwhile: quiet */
    if (!(d->close_after & LIPC_SOON_IF_LISTENED) ||
        lipc__has_listeners(L, top + 2, d->ev)) {
      for (i = 0; i < d->nargs; i++)
        lua_rawgeti(L, top + 1, i + 2);
      lipc__emit(rt, top + 2, d->ev, d->nargs);
    }
    if (d->close_after & 1)
      lipc__handle_close(obj);
  }
  lua_settop(L, top);
  lipc__handle_close(&d->h);
}

void lipc__emit_soon(lua_State *L, const char *ev, int nargs, int close_after) {
  lipc_runtime *rt = lipc__rt(L);
  int i;
  soon *d = calloc(1, sizeof(*d));
  if (d == NULL) {
    luaL_error(L, "out of memory");
    return;
  }
  lua_createtable(L, nargs + 1, 0); /* obj args... tbl */
  lua_insert(L, -(nargs + 2));      /* tbl obj args... */
  for (i = nargs + 1; i >= 1; i--)  /* fills from the top down */
    lua_rawseti(L, -(i + 1), i);
  d->nargs = nargs;
  d->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  d->close_after = close_after;
  snprintf(d->ev, sizeof(d->ev), "%s", ev);
  uv_timer_init(rt->loop, &d->timer);
  lipc__handle_bare(rt, &d->h, (uv_handle_t *)&d->timer, "soon", soon_free);
  uv_timer_start(&d->timer, on_soon, 0, 0);
}
