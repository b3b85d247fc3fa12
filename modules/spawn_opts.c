/*
 * spawn_opts.c - spawn()'s arguments, read into a spec: file, args and
 * argv0, the environment (merged over ours, or replacing it), stdio
 * entries, cwd, detached, uid/gid, timeout and kill_signal. Every check
 * that may raise is made here, before anything is opened, and names the
 * argument and the key; fuzz_spawn_opts throws every type and value at it.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "spawn_int.h"

#define DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin"

extern char **environ;

static int argfail(lua_State *L, int arg, const char *what) {
  return lipc__argerror(L, arg, "spawn", "%s", what);
}

/* The value at idx, in argument arg (field: where in it, or NULL), is not
 * of the expected type. */
static int typefail(lua_State *L, int arg, const char *field,
                    const char *expected, int idx) {
  return lipc__argerror(L, arg, "spawn", "%s%s%s expected, got %s",
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

const char *lipc__spawn_anchor(lua_State *L, int at, int *n) {
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
    argv0 = lipc__spawn_anchor(L, at, na);
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
    sp->argv[i] = (char *)lipc__spawn_anchor(L, at, na);
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
      sp->envp[k] = (char *)lipc__spawn_anchor(L, at, na);
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
  else if (strcmp(w, "stdout") == 0 && i >= 2)
    io->kind = IO_STDOUT; /* 2>&1: one pipe, the child's order kept */
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
      lua_pushfstring(
          L,
          "opts.stdio[%d]: unknown value '%s' (pipe, inherit,"
          " ignore, ipc, an fd or a stream; \"stdout\" from entry 3)",
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

/* execvp's rules: the first executable regular file wins, EACCES when
 * only non-executable ones were found. */
int lipc__spawn_resolve(lua_State *L, spec *sp, int at, int *na) {
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
          sp->path = lipc__spawn_anchor(L, at, na);
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
    sp->cwd = lipc__spawn_anchor(L, at, na);
  } else
    lua_pop(L, 1);
  opt_field(L, opts, "detached", LUA_TBOOLEAN, LUA_TBOOLEAN, "boolean");
  sp->detached = lua_toboolean(L, -1);
  lua_pop(L, 1);
  opt_field(L, opts, "process_group", LUA_TBOOLEAN, LUA_TBOOLEAN, "boolean");
  sp->process_group = lua_toboolean(L, -1);
  lua_pop(L, 1);
  opt_field(L, opts, "kill_tree", LUA_TBOOLEAN, LUA_TBOOLEAN, "boolean");
  sp->kill_tree = lua_toboolean(L, -1);
  lua_pop(L, 1);
  sp->pdeathsig = 0;
  switch (opt_field(L, opts, "die_with_parent", LUA_TBOOLEAN, LUA_TSTRING,
                    "boolean or a signal name")) {
    case LUA_TBOOLEAN:
      sp->pdeathsig = lua_toboolean(L, -1) ? SIGKILL : 0;
      break;
    case LUA_TSTRING:
      if ((sp->pdeathsig = lipc__signum(L, -1)) <= 0)
        argfail(L, 3, "opts.die_with_parent: unknown signal");
      break;
    default: break;
  }
  lua_pop(L, 1);
  sp->uid = opt_id(L, "uid");
  sp->gid = opt_id(L, "gid");
  if (sp->pdeathsig && (sp->uid >= 0 || sp->gid >= 0))
    argfail(L, 3, "opts.die_with_parent cannot be combined with uid or gid");
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

void lipc__spawn_check(lua_State *L) {
  if (lua_type(L, 1) != LUA_TSTRING)
    typefail(L, 1, NULL, "string", 1);
  if (lua_rawlen(L, 1) == 0 || strlen(lua_tostring(L, 1)) != lua_rawlen(L, 1))
    argfail(L, 1, "file must be a non-empty string without zero bytes");
  if (!lua_isnoneornil(L, 3) && !lua_istable(L, 3))
    typefail(L, 3, NULL, "table", 3);
}

void lipc__spawn_parse(lua_State *L, spec *sp, int at, int *na) {
  parse_opts(L, sp, at, na);
  parse_argv(L, sp, at, na);
  parse_env(L, sp, at, na);
  parse_stdio(L, sp);
  lipc__pty_parse(L, sp);
}
