/*
 * handle.c - lifetime of every object that wraps a uv handle.
 *
 * The rules (DESIGN.md §4): the uv handle is malloc'd apart from the
 * userdata; while open the object holds a registry reference to itself so
 * the collector cannot take it while callbacks may arrive; close() calls
 * uv_close once; the close callback emits 'close', frees the handle and
 * drops the self reference. __gc of an object whose handle is still open
 * (only possible for objects that released their self reference, or at
 * lua_close) detaches it and lets the close callback free the memory.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static void link_handle(lipc_runtime *rt, lipc__handle *h) {
  h->prev = NULL;
  h->next = rt->handles;
  if (rt->handles)
    rt->handles->prev = h;
  rt->handles = h;
}

static void unlink_handle(lipc__handle *h) {
  lipc_runtime *rt = h->rt;
  if (h->prev)
    h->prev->next = h->next;
  else if (rt->handles == h)
    rt->handles = h->next;
  if (h->next)
    h->next->prev = h->prev;
  h->next = h->prev = NULL;
}

void *lipc__handle_new(lua_State *L, size_t size, const char *tname,
                       uv_handle_t *uv, const char *kind) {
  lipc__handle *h = lua_newuserdatauv(L, size, 2);
  memset(h, 0, size);
  h->rt = lipc__rt(L);
  h->uv = uv;
  h->kind = kind;
  h->ref = LUA_NOREF;
  if (uv)
    uv->data = h;
  lua_newtable(L);
  lua_setiuservalue(L, -2, 1); /* the listeners (2) come with the first */
  luaL_setmetatable(L, tname);
  if (uv) {
    lua_pushvalue(L, -1);
    h->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    link_handle(h->rt, h);
  }
  return h;
}

void lipc__handle_bare(lipc_runtime *rt, lipc__handle *h, uv_handle_t *uv,
                       const char *kind, void (*on_close)(lipc__handle *)) {
  memset(h, 0, sizeof(*h));
  h->rt = rt;
  h->uv = uv;
  h->kind = kind;
  h->ref = LUA_NOREF;
  h->bare = 1;
  h->internal = 1;
  h->on_close = on_close;
  uv->data = h;
  link_handle(rt, h);
}

int lipc__handle_push(lipc__handle *h) {
  lua_State *L = h->rt->L;
  if (h->ref == LUA_NOREF || h->ref == LUA_REFNIL) {
    lua_pushnil(L);
    return 0;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->ref);
  return 1;
}

void lipc__handle_unref_self(lipc__handle *h) {
  if (h->ref == LUA_NOREF)
    return;
  luaL_unref(h->rt->L, LUA_REGISTRYINDEX, h->ref);
  h->ref = LUA_NOREF;
}

static void free_on_close(uv_handle_t *uv) {
  free(uv);
}

void lipc__close_free(uv_handle_t *uv) {
  uv_close(uv, free_on_close);
}

static void on_closed(uv_handle_t *uv) {
  lipc__handle *h = uv->data;
  lipc_runtime *rt;
  if (h && h->bare) { /* uv lives inside h's owner */
    h->uv = NULL;
    unlink_handle(h);
    h->on_close(h);
    return;
  }
  free(uv);
  if (h == NULL) /* collected meanwhile */
    return;
  rt = h->rt;
  h->uv = NULL;
  unlink_handle(h);
  if (h->on_close)
    h->on_close(h);
  if (!rt->exiting) {
    if (lipc__handle_push(h)) /* else it pushed nil */
      lipc__emit(rt, -1, "close", 0);
    lua_pop(rt->L, 1);
  }
  lipc__handle_unref_self(h);
}

void lipc__handle_close(lipc__handle *h) {
  if (h->uv == NULL || h->closing)
    return;
  if (h->rt->trace & LIPC_TRACE_NET)
    lipc__trace_close(h);
  h->closing = 1;
  uv_close(h->uv, on_closed);
}

static int l_gc(lua_State *L) {
  lipc__handle *h = lua_touserdata(L, 1);
  if (h->uv != NULL) {
    /* stock lua, lua_close: work that never ran (runtime.c warns) */
    if (!h->rt->ran && uv_is_active(h->uv) && uv_has_ref(h->uv) &&
        !uv_is_closing(h->uv))
      h->rt->unran = 1;
    h->uv->data = NULL;
    unlink_handle(h);
    if (h->on_close)
      h->on_close(h);
    if (!h->closing)
      lipc__close_free(h->uv);
    h->uv = NULL;
  }
  if (h->on_gc)
    h->on_gc(h);
  return 0;
}

/* Every class made by lipc__class marks its metatable with this key, so
 * the methods all classes share can tell their objects from any other
 * userdata (a FILE*, another library's object). */
static const char HANDLE_KEY = 'H';

static lipc__handle *check_handle(lua_State *L, const char *fname) {
  lipc__handle *h = lua_touserdata(L, 1);
  int ok = 0;
  if (h && lua_getmetatable(L, 1)) {
    ok = lua_rawgetp(L, -1, &HANDLE_KEY) == LUA_TBOOLEAN;
    lua_pop(L, 2);
  }
  if (!ok)
    lipc__typeerror(L, 1, fname, "lipc object");
  return h;
}

static int l_close(lua_State *L) {
  lipc__handle_close(check_handle(L, "close"));
  return 0;
}

/* ref()/unref() -> self: whether the object keeps the process alive. */
static int l_ref(lua_State *L) {
  lipc__handle *h = check_handle(L, "ref");
  if (h->uv)
    uv_ref(h->uv);
  lua_settop(L, 1);
  return 1;
}

static int l_unref(lua_State *L) {
  lipc__handle *h = check_handle(L, "unref");
  if (h->uv)
    uv_unref(h->uv);
  lua_settop(L, 1);
  return 1;
}

static int l_tostring(lua_State *L) {
  lipc__handle *h = lua_touserdata(L, 1);
  const char *name =
      luaL_getmetafield(L, 1, "__name") ? lua_tostring(L, -1) : "lipc.handle";
  lua_pushfstring(L, "%s (%s%s): %p", name, h->kind ? h->kind : "?",
                  h->uv ? "" : ", closed", (void *)h);
  return 1;
}

/* __index: methods first (upvalue 1), then the object's env table. */
static int l_index(lua_State *L) {
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL)
    return 1;
  lua_getiuservalue(L, 1, 1);
  lua_pushvalue(L, 2);
  lua_rawget(L, -2);
  return 1;
}

static int l_newindex(lua_State *L) {
  lua_getiuservalue(L, 1, 1);
  lua_insert(L, 2);
  lua_rawset(L, 2);
  return 0;
}

void lipc__class(lua_State *L, const char *tname, const luaL_Reg *methods) {
  luaL_newmetatable(L, tname); /* mt */
  lua_pushboolean(L, 1);       /* lipc__testobj's fast path */
  lua_rawsetp(L, -2, tname);
  lua_pushboolean(L, 1);
  lua_rawsetp(L, -2, &HANDLE_KEY);
  lua_newtable(L); /* mt methods */
  lipc__emitter_methods(L);
  lua_pushcfunction(L, l_close);
  lua_setfield(L, -2, "close");
  lua_pushcfunction(L, l_ref);
  lua_setfield(L, -2, "ref");
  lua_pushcfunction(L, l_unref);
  lua_setfield(L, -2, "unref");
  if (methods)
    luaL_setfuncs(L, methods, 0);
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, l_index, 1);
  lua_setfield(L, -3, "__index");
  lua_pushcfunction(L, l_newindex);
  lua_setfield(L, -3, "__newindex");
  lua_pushcfunction(L, l_gc);
  lua_setfield(L, -3, "__gc");
  lua_getfield(L, -1, "close");
  lua_setfield(L, -3, "__close");
  lua_pushcfunction(L, l_tostring);
  lua_setfield(L, -3, "__tostring");
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "methods");
  lua_remove(L, -2); /* methods */
}

void *lipc__testobj(lua_State *L, int idx, const char *tname) {
  void *p = lua_touserdata(L, idx);
  lipc_runtime *rt;
  const void *mt;
  unsigned slot;
  int ok;
  if (p == NULL || !lua_getmetatable(L, idx))
    return NULL;
  /* Every method call checks its self. Fastest: the metatable last found
   * for this tname pointer (metatables of classes live as long as the
   * state). Then lipc__class's key: the tname pointer as a lightuserdata
   * (one hash lookup, no string compare). Another pointer to an equal
   * name falls through to __name. */
  rt = lipc__rt(L);
  mt = lua_topointer(L, -1);
  slot = (unsigned)((uintptr_t)tname >> 4) & 7;
  if (rt->mtc_name[slot] == tname && rt->mtc_mt[slot] == mt) {
    lua_pop(L, 1);
    return p;
  }
  if (lua_rawgetp(L, -1, tname) == LUA_TBOOLEAN) {
    lua_pop(L, 2);
    rt->mtc_name[slot] = tname;
    rt->mtc_mt[slot] = mt;
    return p;
  }
  lua_pop(L, 1);
  lua_getfield(L, -1, "__name");
  ok = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), tname) == 0;
  lua_pop(L, 1);
  if (!ok) { /* a derived type? */
    lua_pushfstring(L, "__is_%s", tname);
    ok = lua_rawget(L, -2) != LUA_TNIL;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return ok ? p : NULL;
}

void *lipc__checkobj(lua_State *L, int idx, const char *tname,
                     const char *fname) {
  void *p = lipc__testobj(L, idx, tname);
  if (p == NULL)
    lipc__typeerror(L, idx, fname, tname);
  return p;
}

void lipc__close_all(lipc_runtime *rt, int graceful) {
  lipc__handle *h, *next;
  for (h = rt->handles; h; h = next) {
    next = h->next;
    if (graceful && h->flush_close)
      h->flush_close(h);
    else
      lipc__handle_close(h);
  }
}

/* lipc.handles() -> array of {kind=, active=, id=, object=} of open
 * handles. Bare handles (the timer of a task in lipc.sleep, say) have no
 * object: id (a light userdata) tells them apart. */
int lipc__push_handles(lua_State *L) {
  lipc_runtime *rt = lipc__rt(L);
  lipc__handle *h;
  int i = 0;
  lua_newtable(L);
  for (h = rt->handles; h; h = h->next) {
    if ((h->internal && !h->bare) || h->closing)
      continue;
    lua_createtable(L, 0, 4);
    lua_pushstring(L, h->kind ? h->kind : "?");
    lua_setfield(L, -2, "kind");
    lua_pushlightuserdata(L, h);
    lua_setfield(L, -2, "id");
    lua_pushboolean(L, h->uv && uv_is_active(h->uv));
    lua_setfield(L, -2, "active");
    if (h->ref != LUA_NOREF) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, h->ref);
      lua_setfield(L, -2, "object");
    }
    lua_rawseti(L, -2, ++i);
  }
  return 1;
}
