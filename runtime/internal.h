/*
 * internal.h - the runtime's interface to the layers above it (the
 * message channel and the modules), and to nobody else.
 *
 * The runtime (runtime.c), tasks (task.c), the emitter (emitter.c), handle
 * lifetime (handle.c), errors (errors.c), tracing (trace.c) and streams
 * (stream.c) are used by every module; their internal interfaces live
 * here, as libuv's uv-common.h does. Functions return 0 or a negative
 * UV_E* code unless said otherwise.
 */
#ifndef LIPC_INTERNAL_H
#define LIPC_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include <lua.h>
#include <lauxlib.h>

#include "lipc.h"

typedef struct lipc__handle lipc__handle;
typedef struct lipc__reaper lipc__reaper;
typedef struct lipc__poll lipc__poll;
typedef struct lipc__task lipc__task;

/* How a module wraps a handle that came with a message (channel.h). */
typedef void (*lipc__wrap_fn)(lua_State *L, uv_stream_t *h, int kind);

struct lipc_runtime {
  uv_loop_t *loop;
  uv_loop_t own_loop;
  int owns_loop;
  int owns_state;           /* 0 when loaded as a module into stock lua */
  lua_State *L;             /* the main thread: scratch stack for callbacks */
  lua_State *current;       /* the task running now, NULL between tasks */
  lipc__task *current_task; /* its task object (lipc.go, scopes), or NULL */
  int pool_ref;             /* registry ref: idle coroutines, an array */
  int pool_n;
  int task_mt_ref; /* registry ref: the metatable of task objects */
  int tasks_ref;   /* registry ref: running task objects, by slot */
  int *task_slots; /* free slots of that table (scope.c) */
  int task_nfree, task_cap, task_top;
  int parked_ref; /* registry ref: parked tasks, keyed by their
                     lipc__wait (lightuserdata) */
  int exit_code;
  int exiting;             /* lipc.exit or an uncaught error: no more Lua */
  int running;             /* inside uv_run */
  int ran;                 /* lipc_run was called (stock lua: lipc.run) */
  int unran;               /* a handle collected active before any run */
  lipc__handle *handles;   /* every open handle object, newest first */
  char *rbuf;              /* stream.c's read buffer, consumed at once */
  unsigned trace;          /* LIPC_TRACE_* bits from LIPC_TRACE / --trace */
  void *wfree;             /* stream.c's free list of write requests */
  const char *mtc_name[8]; /* lipc__testobj: the metatable last found for */
  const void *mtc_mt[8];   /* a type name (by pointer), by name hash */
  unsigned listener_gen;   /* bumped whenever any listener is added or
                              removed: lets hot paths cache a lookup */
  struct trimmer *trimmer; /* unmaps the allocator's kept blocks (runtime.c) */
  lipc__poll *poll;        /* the adaptive poll (poll.c), NULL: none */
  unsigned io_seen;        /* bumped by every stream read: poll.c's signal */
  unsigned io_written;     /* bumped by every stream write: poll.c's too */
  /* What the layers above keep per runtime, all of it here (zero until
   * they set it). */
  lipc__wrap_fn wrap[8]; /* channel/handoff.c: by wire kind */
  lipc__reaper *reaper;  /* modules/spawn_reap.c: SIGCHLD, our children */
  int parent_ref;        /* modules/fork.c: the channel to our parent (0:
                            not looked for yet, LUA_REFNIL: none) */
  int parent_env;        /* modules/fork.c: 1 once the environment's
                            channel variables were read (and removed) */
  int parent_fd;         /* that channel's fd, or -1 */
  int parent_json;       /* 1: it came as NODE_CHANNEL_FD */
  int parent_remote;     /* 1: over a launcher (LIPC_CHANNEL_REMOTE) */
  char parent_err[160];  /* why the variable is unusable ("" if it is) */
  char last_fail[160];   /* the last nil, msg, code a call returned, until
                            a task ends well: named when a nil is then
                            indexed (Node-shaped `net.connect(...):on`) */
  int uncaught_ref;      /* modules/core.c: lipc.on_uncaught's handler
                            (a registry ref; 0 or LUA_REFNIL: none) */
  void *yields;          /* modules/core.c: the tasks in lipc.sleep(0) */
  /* modules/fork.c: called with the report when the script fails (an
   * uncaught error, or it cannot be loaded), before the exit; NULL: none */
  void (*on_fatal)(lipc_runtime *rt, const char *report);
};

/* runtime.c */
/* A runtime with its own Lua state (standard libraries open, generational
 * GC) on loop (NULL: its own); lipc_new adds the modules. NULL when out
 * of memory. */
lipc_runtime *lipc__runtime_new(uv_loop_t *loop);
/* The runtime of L, made on first use in a state lipc did not make (stock
 * lua's require "lipc"); *created says whether it was made now. */
lipc_runtime *lipc__runtime_attach(lua_State *L, int *created);
lipc_runtime *lipc__rt(lua_State *L);
/* Sets the global `arg` as lua(1) does: arg[0] = script, arg[1..argc] =
 * argv[0..argc-1] (lipc_run_file, and the command line's -e and test). */
void lipc__set_arg(lua_State *L, const char *script, int argc, char **argv);
void lipc__uncaught(lipc_runtime *rt, lua_State *co, int idx);
void lipc__exit_now(lipc_runtime *rt, int code);

/* poll.c: after a loop turn that read something, the loop polls without
 * blocking for a while before it sleeps (LIPC_POLL, lipc.poll). */
void lipc__poll_init(lipc_runtime *rt);  /* from LIPC_POLL; may fail: none */
void lipc__poll_close(lipc_runtime *rt); /* closes its handles */
int lipc__poll_l(lua_State *L);          /* lipc.poll([setting]) */

/* What fork runs by default, for the whole process (fork.c reads it):
 * LIPC__EXEC_FIND, the lipc executable that comes with the library (an
 * embedder, or stock lua); LIPC__EXEC_SELF, this program (the lipc
 * command line); LIPC__EXEC_ENTRY, this program with LIPC_WORKER set in
 * the worker's environment (an embedder that calls lipc_worker_main). */
enum { LIPC__EXEC_FIND, LIPC__EXEC_SELF, LIPC__EXEC_ENTRY };
extern int lipc__worker_exec;
/* The environment variable that tells a program started by fork that it
 * is a worker: lipc_worker_main runs the worker and removes it; a script
 * run without that refuses to start (lipc_run_file, lipc_run_string),
 * so that a fork never runs the parent's topology again. */
#define LIPC__WORKER_ENV "LIPC_WORKER"

/* alloc.c: a state with lipc's allocator, panic and warn functions */
lua_State *lipc__state_new(void);
void lipc__state_close(lua_State *L);
/* The allocator keeps freed big blocks for reuse: fn(arg) is told when it
 * starts keeping some; lipc__state_trim unmaps them unless one was reused
 * since its last call, and returns how many are still kept. */
void lipc__state_on_keep(lua_State *L, void (*fn)(void *), void *arg);
int lipc__state_trim(lua_State *L);
/* Makes a block of n bytes ready for the allocation of that size that
 * comes next, its fresh pages touched step bytes a call: 1 once it is (at
 * once when n is no big block, or the state uses malloc), 0 while pages
 * remain. n = 0 lets go of one that was not taken. */
int lipc__state_warm(lua_State *L, size_t n, size_t step);

/* task.c: coroutines. A task runs a function; when it waits it is parked
 * in a lipc__wait and resumed by whoever completes the wait. */
typedef struct lipc__wait lipc__wait;
/* Called when the task parked in w is cancelled (task:cancel, a scope):
 * the owner lets go of w and of what it holds for it (a timer, a place in
 * a list, a socket being connected) and must not wake w afterwards; w->co
 * is already NULL. It may free w. */
typedef void (*lipc__cancel_fn)(lipc_runtime *rt, lipc__wait *w);
struct lipc__wait {
  lua_State *co;             /* NULL when nobody waits */
  int ref;                   /* keeps co alive while parked */
  lipc__cancel_fn on_cancel; /* set by the park; NULL: nothing to undo */
  int shield;                /* a scope's join: not cancelled */
  lipc__task *task;          /* the parked task's object, or NULL */
};

/* Starts fn (at -nargs-1 of L) with nargs arguments as a new task.
 * Pops them. Runs it until it first waits or ends. */
void lipc__task_start(lipc_runtime *rt, lua_State *L, int nargs);
/* Raises "fname: must be called inside a task" unless L is a task. */
void lipc__task_check(lua_State *L, const char *fname);
/* Raises that error: at the user's line, naming what the user called
 * (stream.read_all where the check is stream.read's). */
int lipc__task_error(lua_State *L, const char *fname);
/* Parks the running task L in w; returns what the C function must return
 * (lua_yield). Values given to lipc__wake become its results. A
 * cancelled task (lipc.go's task:cancel, a scope) does not park: the
 * call returns nil, "ECANCELED: ...", "ECANCELED" at once (3 values
 * pushed), and later, when it is cancelled while parked, the wait is
 * resumed with those; on_cancel (may be NULL) undoes the owner's side
 * in both cases. */
int lipc__task_park(lua_State *L, lipc__wait *w);
int lipc__task_park_c(lua_State *L, lipc__wait *w, lipc__cancel_fn on_cancel);
/* As lipc__task_park_c with a continuation, for a C function that loops
 * over waits (lua_yieldk). */
int lipc__task_park_k(lua_State *L, lipc__wait *w, lipc__cancel_fn on_cancel,
                      lua_KContext ctx, lua_KFunction k);
/* Resumes the task parked in w with the nargs values on top of rt->L
 * (popped). No-op (values popped) when nobody waits. */
void lipc__wake(lipc_runtime *rt, lipc__wait *w, int nargs);
int lipc__waiting(const lipc__wait *w);
void lipc__wait_cancel(lipc_runtime *rt, lipc__wait *w);

/* A queue of tasks waiting for the same thing (several tasks in one
 * channel's receive()), woken longest-waiting first. Zero-initialise. */
typedef struct lipc__wnode lipc__wnode;
typedef struct lipc__waitq {
  lipc__wnode *head, *tail, *spare; /* spare: nodes to reuse */
} lipc__waitq;
int lipc__waitq_park(lua_State *L, lipc__waitq *q); /* as lipc__task_park */
int lipc__waitq_waiting(const lipc__waitq *q);
/* Wakes the first waiter with the nargs values on top of rt->L (popped;
 * also when nobody waits). */
void lipc__waitq_wake(lipc_runtime *rt, lipc__waitq *q, int nargs);
/* Wakes every waiter, each with copies of the nargs values on top of
 * rt->L (popped). Returns how many there were. */
int lipc__waitq_wake_all(lipc_runtime *rt, lipc__waitq *q, int nargs);
void lipc__waitq_free(lipc_runtime *rt, lipc__waitq *q); /* waiters dropped */

/* Every lipc timer starts here: its delay counts from the call, not from
 * the start of the loop turn (the loop's clock is cached per turn, and
 * Lua may have run for seconds since). */
void lipc__timer_start(uv_timer_t *t, uv_timer_cb cb, uint64_t ms,
                       uint64_t repeat);
/* Adds go and in_task to the table on top (the `lipc` module). */
void lipc__task_open(lua_State *L);
/* Starts fn (at -nargs-1 of L) as a new task for the task object t. */
void lipc__task_start_obj(lipc_runtime *rt, lua_State *L, int nargs,
                          lipc__task *t);

/* scope.c: task objects (lipc.go's result), cancellation, scopes. */
/* The running task's object, made now for a task without one (a
 * listener's, the main chunk's): scopes need it. */
lipc__task *lipc__task_current(lua_State *L);
/* The coroutine of t stopped with status (LUA_OK: nres results on top of
 * co; else the error on top): keeps its results, wakes whoever waits.
 * Returns 1 when an error was handled (a waiter or a scope takes it). */
int lipc__task_ended(lipc_runtime *rt, lipc__task *t, lua_State *co, int status,
                     int nres);
/* Whether the task's waits are cancelled now; its cancellation message. */
int lipc__task_cancelled(const lipc__task *t);
const char *lipc__task_reason(const lipc__task *t);
/* t parks in / leaves w (task.c tells scope.c, for cancel). */
void lipc__task_set_parked(lipc__task *t, lipc__wait *w);
lipc__wait *lipc__task_parked(const lipc__task *t);
/* Wakes the task parked in w with nil, "ECANCELED: ...", "ECANCELED",
 * after w's on_cancel (task.c). */
void lipc__task_interrupt(lipc_runtime *rt, lipc__task *t);
/* opts.cancel at idx: nil (0), a task or scope that may still be
 * cancelled (1), one cancelled already (2); anything else raises, naming
 * fname. lipc__cancel_bind makes its cancellation call obj:close() and
 * returns 1 when it is cancelled already (nothing bound then). */
int lipc__cancel_check(lua_State *L, int idx, const char *fname);
int lipc__cancel_bind(lua_State *L, int idx, int obj, const char *fname);
/* Frees what running tasks hold in C (lipc_free, before the state goes). */
void lipc__tasks_free(lipc_runtime *rt);
/* Adds the scope API (lipc.scope) to the table on top, once per state. */
void lipc__scope_open(lua_State *L);

/* emitter.c: on/once/off/emit/listeners for userdata and table objects. */
void lipc__emitter_methods(lua_State *L); /* adds them to the table on top */
/* Calls every listener of ev on the object at obj (an index of rt->L) with
 * the nargs values on top of rt->L, each in a task. Pops the values.
 * An 'error' nobody listens to becomes an uncaught error. Returns the
 * number of listeners called. */
int lipc__emit(lipc_runtime *rt, int obj, const char *ev, int nargs);
int lipc__has_listeners(lua_State *L, int obj, const char *ev);
int lipc__emitter_on(lua_State *L); /* the `on` method itself */
/* Emits ev with the nargs values on top of L on the object below them on
 * the next loop turn (Node's nextTick): a listener added right after the
 * call still hears it. Pops object and values. close_after closes the
 * object's handle once emitted. */
void lipc__emit_soon(lua_State *L, const char *ev, int nargs, int close_after);
/* close_after may add LIPC_SOON_IF_LISTENED: emitted only when the event
 * has listeners by then (an 'error' a task was given as nil, msg, code:
 * a listener added after the call hears it, and else it is not
 * uncaught). */
#define LIPC_SOON_IF_LISTENED 2

/* handle.c: every object wrapping a uv handle starts with a lipc__handle.
 * The uv handle is malloc'd apart from the userdata so that it can outlive
 * it until its close callback; while open the object holds a registry
 * reference to itself so that it cannot be collected under a callback. */
struct lipc__handle {
  lipc_runtime *rt;
  uv_handle_t *uv; /* NULL once the close callback ran */
  int ref;         /* self reference, LUA_NOREF when released */
  unsigned closing : 1;
  unsigned internal : 1; /* stdio: not reported by lipc.handles() */
  unsigned bare : 1;     /* no Lua object: on_close frees the memory */
  const char *kind;      /* "timer", "tcp", "pipe", "process", ... */
  void (*on_close)(lipc__handle *h);    /* before 'close' is emitted */
  void (*flush_close)(lipc__handle *h); /* at exit: close once flushed */
  void (*on_gc)(lipc__handle *h);       /* collected: frees what outlived uv */
  lipc__handle *next, *prev;
};

/* Creates the userdata (size bytes, starting with a lipc__handle) with an
 * env table as user value 1 (2, the listeners, comes with the first one)
 * and metatable tname, and links uv (malloc'd by the caller, already
 * initialised) to it. Pushes it. */
void *lipc__handle_new(lua_State *L, size_t size, const char *tname,
                       uv_handle_t *uv, const char *kind);
/* A handle with no Lua object (a sleep's timer): tracked so that exit
 * closes it; on_close must free the memory holding h. */
void lipc__handle_bare(lipc_runtime *rt, lipc__handle *h, uv_handle_t *uv,
                       const char *kind, void (*on_close)(lipc__handle *));
void lipc__handle_close(lipc__handle *h);
/* uv_close with free() as the close callback: for a malloc'd uv handle
 * that no object owns (yet, or any more). */
void lipc__close_free(uv_handle_t *uv);
int lipc__handle_push(lipc__handle *h);        /* pushes the object on rt->L */
void lipc__handle_unref_self(lipc__handle *h); /* let GC take an idle object */
/* Creates metatable tname with __index (methods, then the env table),
 * __newindex (env), __gc, __close, __tostring, the emitter methods and
 * close/ref/unref shared by every handle object; methods (may be NULL)
 * add to or override those. Leaves the methods table on the stack. */
void lipc__class(lua_State *L, const char *tname, const luaL_Reg *methods);
/* 1 when the value at idx has a metatable whose __name is tname or which
 * lists tname as a base (field "__is_<tname>"). */
void *lipc__testobj(lua_State *L, int idx, const char *tname);
void *lipc__checkobj(lua_State *L, int idx, const char *tname,
                     const char *fname);
void lipc__close_all(lipc_runtime *rt, int graceful);
int lipc__push_handles(lua_State *L);

/* errors.c */
/* Errors: pushes nil, "CODE: message (detail)", "CODE"; returns 3. */
int lipc__push_error(lua_State *L, int err, const char *detail);
/* Pushes "CODE: message (detail)" and "CODE" on rt->L; returns 2. */
int lipc__push_errpair(lua_State *L, int err, const char *detail);
/* Argument errors, all in one format, Lua's, naming the function as lipc
 * does ("net.server.listen", "spawn"): "file:line: bad argument #2 to
 * 'fname' (message)", or "calling 'fname' on bad self (...)"; the
 * position is the user's code, past lipc's own Lua helpers. They raise;
 * the check* ones return the value when it is good, as luaL_check* do. */
int lipc__argerror(lua_State *L, int arg, const char *fname, const char *fmt,
                   ...);
int lipc__typeerror(lua_State *L, int arg, const char *fname,
                    const char *expected); /* "T expected, got U" */
void lipc__checktype(lua_State *L, int arg, int t, const char *fname);
void lipc__checkany(lua_State *L, int arg, const char *fname);
lua_Integer lipc__checkinteger(lua_State *L, int arg, const char *fname);
lua_Integer lipc__optinteger(lua_State *L, int arg, lua_Integer def,
                             const char *fname);
lua_Number lipc__checknumber(lua_State *L, int arg, const char *fname);
const char *lipc__checkstring(lua_State *L, int arg, const char *fname);
const char *lipc__optstring(lua_State *L, int arg, const char *def,
                            const char *fname);
/* "SIGTERM" -> 15; accepts numbers; -1 when unknown. */
int lipc__signum(lua_State *L, int idx);
const char *lipc__signame(int signum);
/* "ENOENT": libuv's name of a negative error, or libc's when libuv has none */
const char *lipc__err_name(int err);

/* trace.c: LIPC_TRACE=ipc,spawn,net (or all) writes one line per event to
 * stderr. Callers test the bit first so that a disabled trace costs one
 * branch: if (rt->trace & LIPC_TRACE_NET) lipc__trace(rt, "net", ...). */
enum {
  LIPC_TRACE_IPC = 1 << 0,
  LIPC_TRACE_SPAWN = 1 << 1,
  LIPC_TRACE_NET = 1 << 2
};
void lipc__trace(lipc_runtime *rt, const char *what, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
unsigned lipc__trace_parse(const char *spec);
/* The local (peer 0) or remote (peer 1) address of a socket handle for a
 * trace line: "127.0.0.1:80", "[::1]:80", a Unix socket path, "@name"
 * (abstract), "unnamed"; NULL when uv is not an open socket. */
const char *lipc__trace_addr(uv_handle_t *uv, int peer, char *buf, size_t n);
/* The "close" line of a socket or server (LIPC_TRACE=net). */
void lipc__trace_close(lipc__handle *h);

/* stream.c: the stream object over uv_stream_t. */
typedef struct lipc__stream lipc__stream;
typedef void (*lipc__read_hook)(lipc__stream *s, ssize_t n, const char *base);
typedef void (*lipc__alloc_hook)(lipc__stream *s, size_t suggested,
                                 uv_buf_t *buf);

#define LIPC_STREAM "lipc.stream"

/* Wraps h (malloc'd and initialised by the caller) as a stream object of
 * type tname (LIPC_STREAM or a type made with lipc__stream_class).
 * Pushes it. */
lipc__stream *lipc__stream_new(lua_State *L, uv_stream_t *h, const char *tname,
                               const char *kind);
/* Wraps fd: a pipe/socket/tty or a regular file; pushes it. */
lipc__stream *lipc__stream_from_fd(lua_State *L, int fd, int internal);
/* A pty's master: EIO from a read is the stream's end, not an error. */
void lipc__stream_eio_end(lipc__stream *s);
int lipc__stream_l_from_fd(lua_State *L); /* lipc.stream_from_fd(fd) */
lipc__stream *lipc__stream_check(lua_State *L, int idx, const char *fname);
lipc__stream *lipc__stream_test(lua_State *L, int idx);
uv_stream_t *lipc__stream_uv(lipc__stream *s);
lipc__handle *lipc__stream_handle(lipc__stream *s);
/* Makes a stream type: the stream methods plus extra (may be NULL). */
void lipc__stream_class(lua_State *L, const char *tname, const luaL_Reg *extra);
/* Lets another layer (a message channel) consume the bytes instead of
 * 'data' events; hook NULL gives them back. */
void lipc__stream_set_hooks(lipc__stream *s, lipc__alloc_hook alloc,
                            lipc__read_hook read, void *ctx);
void *lipc__stream_hook_ctx(lipc__stream *s);
int lipc__stream_read_start(lipc__stream *s);
/* hold: stop reading (uv_read_stop) whatever else wants the bytes, until
 * released with 0: a channel whose peer sends more than is taken. */
void lipc__stream_hold(lipc__stream *s, int hold);
/* The process writing to s has gone: what it left (a kernel buffer's
 * worth) is read to the end whatever holds, so that its end is seen. */
void lipc__stream_release(lipc__stream *s);
/* keep: the stream stays open past its end (its 'end' still comes) until
 * kept with 0, which closes it then if its end came meanwhile: a pty's
 * master, whose close hangs the terminal up (SIGHUP to the child), is
 * closed once the child has exited, not when the child closed its
 * terminal (cat closes stdin, stdout and stderr before it exits). */
void lipc__stream_keep(lipc__stream *s, int keep);
/* net.connect outside a task: writes wait until lipc__stream_connected,
 * which sends them (err 0) or fails them with err (already reported). */
void lipc__stream_connecting(lipc__stream *s);
/* A connect that failed at once: reads and writes give nil, msg, code. */
void lipc__stream_set_error(lipc__stream *s, int err, const char *what);
void lipc__stream_connected(lipc__stream *s, int err);
/* Writes bufs; they must stay valid until cb(ctx, status) runs.
 * Returns 0 or a negative error (then cb is not called). */
typedef void (*lipc__write_done)(void *ctx, int status);
int lipc__stream_write_raw(lipc__stream *s, uv_buf_t *bufs, unsigned nbufs,
                           uv_stream_t *send_handle, lipc__write_done cb,
                           void *ctx);
/* Writes what the kernel takes at once, without a request, when nothing
 * is queued: bytes written (maybe fewer than b->len) or a negative error,
 * UV_EAGAIN when nothing could be. */
int lipc__stream_try_write(lipc__stream *s, const uv_buf_t *b);
/* The streams' shared read buffer and spare write requests (lipc_free). */
void lipc__stream_free_buffers(lipc_runtime *rt);
/* Loop time (uv_now) of the stream's last read or write: idle timeouts. */
uint64_t lipc__stream_active(lipc__stream *s);
/* Errors of s that nobody handles (no task waiting, no 'error' listener)
 * go to the object at idx (a server, for the sockets it accepted) as
 * 'client_error'(msg, code, s) instead of ending the process: a peer
 * must not be able to take its server down. */
void lipc__stream_set_sink(lipc__stream *s, lua_State *L, int idx);
/* With the stream on top of L and msg, code at msg_idx, msg_idx + 1:
 * reports them to s's sink (traced, 'client_error'); 0 when s has no
 * sink. */
int lipc__stream_to_sink(lipc__stream *s, int msg_idx);
int luaopen_lipc_stream(lua_State *L); /* pushes the methods table */

/* Embedded Lua parts of modules (build/gen/embedded.c, from *.lua). */
int lipc__load_embedded(lua_State *L, const char *name);
/* 1 when a chunk's source (lua_Debug.source) is one of those. */
int lipc__is_embedded(const char *source);

#endif
