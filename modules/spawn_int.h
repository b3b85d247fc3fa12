/*
 * spawn_int.h - what the files of the `spawn` module share, and nobody
 * else (named apart from the system's <spawn.h>):
 *
 *   spawn.c        the child object: its stdio streams, its events
 *                  (spawn, exit, close) and methods, and spawn() itself
 *   spawn_opts.c   spawn()'s arguments: every check that may raise, made
 *                  before anything is opened (fuzz_spawn_opts' target)
 *   spawn_start.c  the stdio fds, and starting the program (posix_spawn,
 *                  or uv_spawn when uid/gid are asked for)
 *   spawn_reap.c   reaping: one SIGCHLD watcher per runtime
 *   spawn_pty.c    opts.pty: a terminal for the child, child:resize()
 *
 * The Lua half (spawn.lua) adds the callable module table, the shell and
 * input options, run() and exec().
 */
#ifndef LIPC_SPAWN_INT_H
#define LIPC_SPAWN_INT_H

#include <stdint.h>
#include <sys/types.h>

#include "internal.h"

#define CHILD "lipc.child"
#define CHILD_STDIO "lipc.child_stdio"
#define MAX_STDIO 64

typedef struct lchild lchild;

/* A process to reap; outlives its child object when that is closed
 * first, so that the zombie is still collected. */
typedef struct lproc {
  pid_t pid;
  int status;    /* waitpid's, -1 when unknown */
  lchild *child; /* NULL once the object let go */
  struct lproc *next, *prev;
} lproc;

/* The runtime's reaper (lipc_runtime.reaper), made by the first spawn: a
 * bare handle, closed by the runtime at exit. */
struct lipc__reaper {
  lipc__handle h;
  uv_signal_t sig;
  lproc *procs;            /* our children still running */
  int init;                /* we are PID 1: orphans come to us */
  struct termfwd *termfwd; /* PID 1: SIGTERM passed on */
};

typedef struct uvproc { /* the uv_spawn path (uid/gid) */
  lipc__handle h;
  uv_process_t p;
  lchild *child;
} uvproc;

typedef struct waiter {
  lipc__wait w;
  struct waiter *next;
  lchild *child;
} waiter;

struct lchild {
  lipc__handle h; /* uv: a uv_timer_t (see on_tick) */
  lproc *proc;
  uvproc *uvp;
  int pid;
  int err;  /* spawn failure, a UV_E* code */
  int code; /* exit status, -1 when signalled */
  int termsig;
  int kill_sig;         /* for the timeout */
  uint64_t deadline;    /* loop time of the timeout, 0: none */
  unsigned started : 1; /* 'spawn' or 'error' emitted */
  unsigned exited : 1;
  unsigned ending : 1; /* close condition met: not early */
  unsigned done : 1;   /* 'close' emitted */
  unsigned group : 1;  /* leads its own process group (pgid = pid) */
  unsigned kill_tree : 1;
  waiter *waiters;
};

/* IO_STDOUT: whatever the child's fd 1 is ("stdout": 2>&1). IO_PTY:
 * the terminal of opts.pty (entries 1-3; our end is io[0].parent_end). */
enum {
  IO_PIPE,
  IO_IPC,
  IO_FD,
  IO_STREAM,
  IO_NULL,
  IO_CLOSE,
  IO_STDOUT,
  IO_PTY
};

typedef struct sio {
  int kind;
  int src;        /* fd dup'd into place in the child */
  int parent_end; /* pipes: our end, wrapped after */
  int tmp;        /* a dup made for the spawn only */
  int sidx;       /* IO_STREAM: its stack index */
} sio;

/* opts.pty, as spawn_pty.c reads and opens it. */
typedef struct ptyspec {
  int on;
  int cols, rows;
  int failed;     /* no terminal could be had: the error names /dev/ptmx */
  char slave[64]; /* the terminal's path (/dev/pts/N) */
} ptyspec;

/* One spawn() call, as its arguments say it. Strings and arrays are kept
 * alive by an anchor table on the Lua stack (lipc__spawn_anchor). */
typedef struct spec {
  const char *file; /* as given */
  const char *path; /* what is executed */
  char **argv, **envp;
  const char *cwd;
  const char *pathvar; /* PATH used for the search */
  int n;               /* stdio entries */
  sio io[MAX_STDIO];
  int detached;
  int process_group; /* the child leads a new process group */
  int kill_tree;     /* kill() and the timeout signal the whole tree */
  int pdeathsig;     /* die_with_parent: the signal, 0: none */
  int uid, gid;      /* -1: unchanged */
  uint64_t timeout;  /* ms, 0: none */
  int kill_sig;
  const char *detail; /* for a spawn error */
  ptyspec pty;
} spec;

static inline int lipc__stream_open(lipc__stream *s) {
  lipc__handle *h = lipc__stream_handle(s);
  return h->uv != NULL && !h->closing;
}

/* spawn.c */
/* The child ended (code, or termsig when a signal ended it). */
void lipc__child_exit(lchild *c, int code, int termsig);

/* spawn_opts.c */
/* Checks spawn(file[, args][, opts])'s file and opts; raises. */
void lipc__spawn_check(lua_State *L);
/* Reads the arguments into sp, strings kept in the anchor table at `at`
 * (*na entries so far); raises on a bad one. Stream stdio entries stay
 * on the stack (sio.sidx). */
void lipc__spawn_parse(lua_State *L, spec *sp, int at, int *na);
/* The path to execute: a PATH search in the parent, with the PATH the
 * child will have (execvp's rules); 0, UV_ENOENT or UV_EACCES. */
int lipc__spawn_resolve(lua_State *L, spec *sp, int at, int *na);
/* Keeps the string on top (popped) alive in the anchor table; returns it. */
const char *lipc__spawn_anchor(lua_State *L, int at, int *na);

/* spawn_start.c */
/* Makes the pipes and socketpairs and finds the fds of streams. */
int lipc__spawn_fds(lua_State *L, spec *sp);
/* Closes the fds made for the spawn (parent_ends: our ends too). */
void lipc__spawn_release(spec *sp, int parent_ends);
/* Starts the program for the child object c; 0 or a UV_E* error. */
int lipc__spawn_start(lipc_runtime *rt, lchild *c, spec *sp);

/* Signals the child's tree: its process group when it leads one (also
 * once the leader has exited), else the child and its descendants found
 * in /proc. 0 or a UV_E* error (UV_ESRCH: nobody left). */
int lipc__kill_tree(lchild *c, int sig);

/* spawn_pty.c */
/* Reads opts.pty (raises on a bad one); the stdio entries 1-3 become
 * IO_PTY. */
void lipc__pty_parse(lua_State *L, spec *sp);
/* Opens the terminal: the master in io[0].parent_end; 0 or a UV_E* error. */
int lipc__pty_open(spec *sp);
/* child:resize(cols, rows), a child method. */
int lipc__pty_resize(lua_State *L);

/* spawn_reap.c */
/* Starts the runtime's SIGCHLD watcher (once); 0 or a UV_E* error. */
int lipc__reap_start(lipc_runtime *rt);
/* Reaps pid for c when it exits; 0, or UV_ENOMEM (pid is then killed and
 * waited for: no zombie is left behind). */
int lipc__reap_track(lipc_runtime *rt, lchild *c, pid_t pid);

#endif
