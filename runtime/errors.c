/*
 * errors.c - how lipc reports what went wrong: error values (nil, msg,
 * code), the names of errno values and of signals.
 */
#include <signal.h>
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
  lua_pushnil(L);
  return 1 + lipc__push_errpair(L, err, detail);
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
