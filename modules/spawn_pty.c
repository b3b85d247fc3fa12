/*
 * spawn_pty.c - a terminal for a child: spawn(file, args, {pty = true |
 * {cols =, rows =}}) gives the child a pseudo-terminal as its stdin,
 * stdout and stderr, and as its controlling terminal; child.pty is a
 * stream over our end (the master), child:resize(cols, rows) sets the
 * window size (the kernel sends the child SIGWINCH).
 *
 * How the child gets its controlling terminal: libc only, and still
 * through posix_spawn (no fork of the whole process, no helper program).
 * The master comes from posix_openpt, grantpt, unlockpt and ptsname_r.
 * The child is started with POSIX_SPAWN_SETSID and a file action that
 * opens the slave by its path on fd 0 (then dup2 onto 1 and 2). glibc
 * (and musl) make the new session before they run the file actions, and
 * on Linux a session leader with no controlling terminal that opens a
 * terminal without O_NOCTTY gets it as its controlling terminal: the
 * effect of setsid(); open(slave); ioctl(TIOCSCTTY) in a forked child,
 * without the async-signal-safety constraints of a hand-made fork, and
 * with posix_spawn's synchronous exec errors. (Re-executing lipc with a
 * hidden flag would need the lipc executable, which a stock lua5.4 with
 * spawn.so does not have.) The `pty` spec checks that /dev/tty opens in
 * the child, i.e. the terminal is its controlling one.
 *
 * The parent never holds the slave open: once the child and whatever it
 * started have closed it, reading the master fails with EIO, which the
 * stream takes as its end of file (lipc__stream_eio_end). It is closed
 * only once the child has exited too (lipc__stream_keep): its close
 * hangs the terminal up, and a child that closed the terminal before it
 * exits would get SIGHUP. The master is close-on-exec, so no other child
 * inherits it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "spawn_int.h"

#define DEFAULT_COLS 80
#define DEFAULT_ROWS 24
#define MAX_DIM 65535

/* A window size: an integer from 1 to MAX_DIM, or raises (fname's
 * argument arg; what names it there). */
static int check_dim(lua_State *L, int idx, int arg, const char *fname,
                     const char *what) {
  lua_Integer v;
  if (lua_type(L, idx) != LUA_TNUMBER)
    return lipc__argerror(L, arg, fname, "%s: integer expected, got %s", what,
                          luaL_typename(L, idx));
  if (!lua_isinteger(L, idx) || (v = lua_tointeger(L, idx)) < 1 || v > MAX_DIM)
    return lipc__argerror(L, arg, fname, "%s must be an integer from 1 to %d",
                          what, MAX_DIM);
  return (int)v;
}

/* opts.pty (argument 3 of spawn): true, or a table of cols and rows. */
void lipc__pty_parse(lua_State *L, spec *sp) {
  int t, i;
  if (!lua_istable(L, 3))
    return;
  t = lua_getfield(L, 3, "pty");
  if (t == LUA_TNIL || (t == LUA_TBOOLEAN && !lua_toboolean(L, -1))) {
    lua_pop(L, 1);
    return;
  }
  if (t != LUA_TBOOLEAN && t != LUA_TTABLE)
    lipc__argerror(L, 3, "spawn", "opts.pty: boolean or table expected, got %s",
                   luaL_typename(L, -1));
  sp->pty.on = 1;
  sp->pty.cols = DEFAULT_COLS;
  sp->pty.rows = DEFAULT_ROWS;
  if (t == LUA_TTABLE) {
    if (lua_getfield(L, -1, "cols") != LUA_TNIL)
      sp->pty.cols = check_dim(L, -1, 3, "spawn", "opts.pty.cols");
    if (lua_getfield(L, -2, "rows") != LUA_TNIL)
      sp->pty.rows = check_dim(L, -1, 3, "spawn", "opts.pty.rows");
    lua_pop(L, 2);
  }
  lua_pop(L, 1);
  /* uid/gid start through uv_spawn, which cannot open the terminal in
   * the child's new session */
  lua_getfield(L, 3, "uid");
  lua_getfield(L, 3, "gid");
  if (!lua_isnil(L, -1) || !lua_isnil(L, -2))
    lipc__argerror(L, 3, "spawn",
                   "opts.pty cannot be combined with uid or gid");
  lua_pop(L, 2);
  /* The terminal is the child's stdin, stdout and stderr: an entry
   * there too would be silently overridden. */
  t = lua_getfield(L, 3, "stdio");
  for (i = 1; i <= 3 && t == LUA_TTABLE; i++) {
    if (lua_rawgeti(L, -1, i) != LUA_TNIL)
      lipc__argerror(L, 3, "spawn",
                     "opts.stdio[%d] must be nil with opts.pty (the terminal"
                     " is stdin, stdout and stderr)",
                     i);
    lua_pop(L, 1);
  }
  if (t == LUA_TSTRING)
    lipc__argerror(L, 3, "spawn",
                   "opts.stdio must be a table with opts.pty (the terminal"
                   " is stdin, stdout and stderr)");
  lua_pop(L, 1);
  for (i = 0; i < 3; i++) {
    sp->io[i].kind = IO_PTY;
    sp->io[i].src = sp->io[i].parent_end = sp->io[i].tmp = -1;
  }
}

/* The master end, in io[0].parent_end; the slave's path in pty.slave.
 * 0 or a UV_E* error (pty.failed set: there is no terminal to give). */
int lipc__pty_open(spec *sp) {
  struct winsize ws = {0};
  int m, e;
  /* glibc passes O_CLOEXEC on to the open of /dev/ptmx */
  m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (m >= 0 && m < 3) { /* 0-2 are the child's places (see lift) */
    int up = fcntl(m, F_DUPFD_CLOEXEC, 3);
    e = errno;
    close(m);
    m = up;
    errno = e;
  }
  if (m < 0) {
    sp->pty.failed = 1;
    return -errno;
  }
  ws.ws_col = (unsigned short)sp->pty.cols;
  ws.ws_row = (unsigned short)sp->pty.rows;
  e = 0;
  if (grantpt(m) != 0 || unlockpt(m) != 0)
    e = errno;
  else if ((e = ptsname_r(m, sp->pty.slave, sizeof(sp->pty.slave))) == 0 &&
           ioctl(m, TIOCSWINSZ, &ws) != 0)
    e = errno;
  if (e != 0) {
    close(m);
    sp->pty.failed = 1;
    return -e;
  }
  sp->io[0].parent_end = m;
  return 0;
}

/* child:resize(cols, rows) -> true | nil, msg, code */
int lipc__pty_resize(lua_State *L) {
  struct winsize ws = {0};
  lipc__stream *s;
  uv_os_fd_t fd;
  lipc__checkobj(L, 1, CHILD, "child.resize");
  ws.ws_col = (unsigned short)check_dim(L, 2, 2, "child.resize", "cols");
  ws.ws_row = (unsigned short)check_dim(L, 3, 3, "child.resize", "rows");
  lua_settop(L, 3);
  lua_getiuservalue(L, 1, 1);
  lua_getfield(L, -1, "pty");
  if ((s = lipc__stream_test(L, -1)) == NULL)
    return luaL_error(L, "child.resize: the child has no pty (spawn it with"
                         " opts.pty)");
  if (!lipc__stream_open(s) ||
      uv_fileno((uv_handle_t *)lipc__stream_uv(s), &fd) != 0)
    return lipc__push_error(L, UV_EBADF, "child.resize: pty closed");
  if (ioctl(fd, TIOCSWINSZ, &ws) != 0)
    return lipc__push_error(L, -errno, "child.resize");
  lua_pushboolean(L, 1);
  return 1;
}
