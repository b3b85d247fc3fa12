/*
 * lua_equal.h - deep equality of two Lua values for the codec's tests and
 * fuzz targets: integer and float subtypes must match, floats compare by
 * their bits (so -0.0 differs from 0.0; every NaN equals every NaN),
 * strings by their bytes, tables by their keys and values, recursively.
 */
#ifndef LIPC_LUA_EQUAL_H
#define LIPC_LUA_EQUAL_H

#include <string.h>
#include <lua.h>

static int lua_equal_at(lua_State *L, int a, int b, int depth, int max) {
  a = lua_absindex(L, a);
  b = lua_absindex(L, b);
  if (lua_type(L, a) != lua_type(L, b))
    return 0;
  switch (lua_type(L, a)) {
    case LUA_TNIL: return 1;
    case LUA_TBOOLEAN: return lua_toboolean(L, a) == lua_toboolean(L, b);
    case LUA_TNUMBER: {
      lua_Number x, y;
      if (lua_isinteger(L, a) != lua_isinteger(L, b))
        return 0;
      if (lua_isinteger(L, a))
        return lua_tointeger(L, a) == lua_tointeger(L, b);
      x = lua_tonumber(L, a);
      y = lua_tonumber(L, b);
      return memcmp(&x, &y, sizeof x) == 0 || (x != x && y != y);
    }
    case LUA_TSTRING: {
      size_t la, lb;
      const char *sa = lua_tolstring(L, a, &la), *sb = lua_tolstring(L, b, &lb);
      return la == lb && memcmp(sa, sb, la) == 0;
    }
    case LUA_TLIGHTUSERDATA:
      return lua_touserdata(L, a) == lua_touserdata(L, b);
    case LUA_TTABLE: {
      size_t na = 0, nb = 0;
      if (depth > max || !lua_checkstack(L, 4))
        return 0;
      lua_pushnil(L);
      while (lua_next(L, b)) {
        nb++;
        lua_pop(L, 1);
      }
      lua_pushnil(L);
      while (lua_next(L, a)) {
        na++;
        lua_pushvalue(L, -2);
        lua_rawget(L, b);
        if (!lua_equal_at(L, -2, -1, depth + 1, max)) {
          lua_pop(L, 3);
          return 0;
        }
        lua_pop(L, 2);
      }
      return na == nb;
    }
    default: return lua_rawequal(L, a, b);
  }
}

#endif
