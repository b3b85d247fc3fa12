/*
 * errors.c - how lipc reports what went wrong: error values (nil, msg,
 * code), argument errors, the names of errno values and of signals.
 */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* libuv names only the errors it maps; the others (ENOEXEC from an
 * exec, say) would read "Unknown system error -8". */
static int uv_knows(int err) {
  return strncmp(uv_err_name(err), "Unknown", 7) != 0;
}

const char *lipc__err_name(int err) {
  const char *name;
  if (uv_knows(err) || err >= 0)
    return uv_err_name(err);
  name = strerrorname_np(-err);
  return name ? name : uv_err_name(err);
}

static const char *err_text(int err) {
  return uv_knows(err) || err >= 0 ? uv_strerror(err) : strerror(-err);
}

int lipc__push_errpair(lua_State *L, int err, const char *detail) {
  const char *name = lipc__err_name(err);
  if (detail && *detail)
    lua_pushfstring(L, "%s: %s (%s)", name, err_text(err), detail);
  else
    lua_pushfstring(L, "%s: %s", name, err_text(err));
  lua_pushstring(L, name);
  return 2;
}

int lipc__push_error(lua_State *L, int err, const char *detail) {
  lipc_runtime *rt = lipc__rt(L);
  lua_pushnil(L);
  lipc__push_errpair(L, err, detail);
  snprintf(rt->last_fail, sizeof(rt->last_fail), "%s", lua_tostring(L, -2));
  return 3;
}

static const struct {
  const char *name;
  int num;
} signals[] =
    {{"SIGHUP", SIGHUP},       {"SIGINT", SIGINT},   {"SIGQUIT", SIGQUIT},
     {"SIGILL", SIGILL},       {"SIGTRAP", SIGTRAP}, {"SIGABRT", SIGABRT},
     {"SIGBUS", SIGBUS},       {"SIGFPE", SIGFPE},   {"SIGKILL", SIGKILL},
     {"SIGUSR1", SIGUSR1},     {"SIGSEGV", SIGSEGV}, {"SIGUSR2", SIGUSR2},
     {"SIGPIPE", SIGPIPE},     {"SIGALRM", SIGALRM}, {"SIGTERM", SIGTERM},
     {"SIGCHLD", SIGCHLD},     {"SIGCONT", SIGCONT}, {"SIGSTOP", SIGSTOP},
     {"SIGTSTP", SIGTSTP},     {"SIGTTIN", SIGTTIN}, {"SIGTTOU", SIGTTOU},
     {"SIGURG", SIGURG},       {"SIGXCPU", SIGXCPU}, {"SIGXFSZ", SIGXFSZ},
     {"SIGVTALRM", SIGVTALRM}, {"SIGPROF", SIGPROF}, {"SIGWINCH", SIGWINCH},
     {"SIGIO", SIGIO},         {"SIGSYS", SIGSYS},   {NULL, 0}};

int lipc__signum(lua_State *L, int idx) {
  int i;
  if (lua_type(L, idx) == LUA_TNUMBER) {
    lua_Integer n = lua_tointeger(L, idx);
    return n >= 0 && n < 65 ? (int)n : -1;
  }
  if (lua_type(L, idx) != LUA_TSTRING)
    return -1;
  for (i = 0; signals[i].name; i++) {
    const char *s = lua_tostring(L, idx);
    if (strcmp(s, signals[i].name) == 0 || strcmp(s, signals[i].name + 3) == 0)
      return signals[i].num;
  }
  return -1;
}

const char *lipc__signame(int signum) {
  int i;
  for (i = 0; signals[i].name; i++)
    if (signals[i].num == signum)
      return signals[i].name;
  return NULL;
}

/* ---- argument errors ---------------------------------------------------- */

/* Pushes "file:line: " of the innermost Lua code that called into lipc,
 * past lipc's own Lua helpers (spawn.lua's spawn calling the C one):
 * the error is the caller's. Pushes "" under a C caller, as luaL_where. */
static void push_where(lua_State *L) {
  lua_Debug ar;
  int level;
  for (level = 1; lua_getstack(L, level, &ar); level++) {
    lua_getinfo(L, "Sl", &ar);
    if (ar.currentline <= 0)
      break;
    if (!lipc__is_embedded(ar.source)) {
      lua_pushfstring(L, "%s:%d: ", ar.short_src, ar.currentline);
      return;
    }
  }
  lua_pushliteral(L, "");
}

/* "fname: must be called inside a task (lipc.go)" at the user's line,
 * past lipc's own Lua helpers and C frames (pcall, wrappers), and naming
 * what the user called: through
 * read_all (stream.lua) the check is read's, but the user called
 * stream.read_all. */
int lipc__task_error(lua_State *L, const char *fname) {
  lua_Debug ar;
  int level;
  const char *dot = strrchr(fname, '.');
  for (level = 1; lua_getstack(L, level, &ar); level++) {
    lua_getinfo(L, "S", &ar); /* past C wrappers (spawn's child stdio) */
    if (!lipc__is_embedded(ar.source) && strcmp(ar.what, "C") != 0)
      break;
  }
  luaL_where(L, level); /* "" past the bottom */
  if (level > 1 && dot && lua_getstack(L, level - 1, &ar) &&
      lua_getinfo(L, "n", &ar) && ar.name &&
      (strcmp(ar.namewhat, "method") == 0 ||
       strcmp(ar.namewhat, "field") == 0)) {
    lua_pushlstring(L, fname, (size_t)(dot - fname));
    lua_pushfstring(L, ".%s", ar.name);
    lua_concat(L, 2);
  } else {
    lua_pushstring(L, fname);
  }
  lua_pushliteral(L, ": must be called inside a task (lipc.go)");
  lua_concat(L, 3);
  return lua_error(L);
}

/* The level of the function the user called: the C function (0), or the
 * lipc Lua helper that called it (fork's child:kill passes self and the
 * arguments on as they are), so a method call counts as one. */
static int called_level(lua_State *L) {
  lua_Debug ar;
  int level = 0;
  while (lua_getstack(L, level + 1, &ar) && lua_getinfo(L, "S", &ar) &&
         lipc__is_embedded(ar.source))
    level++;
  return level;
}

/* Lua's own format (luaL_argerror's), with lipc's name of the function
 * where Lua would guess one ('?' under pcall(f, ...)); a method call does
 * not count self, as in Lua. */
int lipc__argerror(lua_State *L, int arg, const char *fname, const char *fmt,
                   ...) {
  lua_Debug ar;
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap); /* msg */
  va_end(ap);
  if (lua_getstack(L, called_level(L), &ar) && lua_getinfo(L, "n", &ar) &&
      ar.namewhat != NULL && strcmp(ar.namewhat, "method") == 0 && --arg == 0) {
    push_where(L);
    lua_pushfstring(L, "calling '%s' on bad self (%s)", fname,
                    lua_tostring(L, -2));
  } else {
    push_where(L);
    lua_pushfstring(L, "bad argument #%d to '%s' (%s)", arg, fname,
                    lua_tostring(L, -2));
  }
  lua_concat(L, 2);
  return lua_error(L);
}

int lipc__typeerror(lua_State *L, int arg, const char *fname,
                    const char *expected) {
  const char *got;
  if (luaL_getmetafield(L, arg, "__name") == LUA_TSTRING)
    got = lua_tostring(L, -1);
  else if (lua_type(L, arg) == LUA_TLIGHTUSERDATA)
    got = "light userdata";
  else
    got = luaL_typename(L, arg);
  return lipc__argerror(L, arg, fname, "%s expected, got %s", expected, got);
}

void lipc__checktype(lua_State *L, int arg, int t, const char *fname) {
  if (lua_type(L, arg) != t)
    lipc__typeerror(L, arg, fname, lua_typename(L, t));
}

void lipc__checkany(lua_State *L, int arg, const char *fname) {
  if (lua_type(L, arg) == LUA_TNONE)
    lipc__argerror(L, arg, fname, "value expected");
}

lua_Integer lipc__checkinteger(lua_State *L, int arg, const char *fname) {
  int isnum;
  lua_Integer n = lua_tointegerx(L, arg, &isnum);
  if (isnum)
    return n;
  if (lua_isnumber(L, arg))
    lipc__argerror(L, arg, fname, "number has no integer representation");
  else
    lipc__typeerror(L, arg, fname, "number");
  return 0;
}

lua_Integer lipc__optinteger(lua_State *L, int arg, lua_Integer def,
                             const char *fname) {
  return lua_isnoneornil(L, arg) ? def : lipc__checkinteger(L, arg, fname);
}

lua_Number lipc__checknumber(lua_State *L, int arg, const char *fname) {
  int isnum;
  lua_Number n = lua_tonumberx(L, arg, &isnum);
  if (!isnum)
    lipc__typeerror(L, arg, fname, "number");
  return n;
}

const char *lipc__checkstring(lua_State *L, int arg, const char *fname) {
  const char *s = lua_tostring(L, arg);
  if (s == NULL)
    lipc__typeerror(L, arg, fname, "string");
  return s;
}

const char *lipc__optstring(lua_State *L, int arg, const char *def,
                            const char *fname) {
  return lua_isnoneornil(L, arg) ? def : lipc__checkstring(L, arg, fname);
}
