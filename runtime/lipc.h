/*
 * lipc.h - the public embedding API of lipc.
 *
 * A lipc_runtime owns one lua_State with the lipc modules loaded and runs
 * its tasks on a libuv loop: either its own loop or one the embedder owns.
 *
 *   lipc_runtime *rt = lipc_new(NULL);          // NULL: own loop
 *   lipc_run_file(rt, "topology.lua", argc, argv);
 *   lipc_run(rt);                               // until nothing is pending
 *   int status = lipc_exit_status(rt);
 *   lipc_free(rt);
 *
 * Functions returning int return 0 on success or a negative error code
 * (libuv's UV_E* values); a Lua error is reported on stderr as an uncaught
 * error and makes lipc_exit_status() return 1.
 *
 * What a runtime does to the whole process, beyond its loop and state:
 *   - SIGPIPE is ignored (lipc_new, and luaopen_lipc in stock lua): a
 *     write to a closed pipe or socket is an EPIPE error, not a death.
 *     Children get every signal disposition back to its default.
 *   - The first spawn installs a SIGCHLD watcher (through libuv) that
 *     reaps lipc's own children only, by pid.
 *   - A state lipc_new creates runs Lua's generational collector, and
 *     os.exit is lipc.exit (queued writes are flushed first).
 *   - Environment variables: LIPC_TRACE (read by lipc_new: trace lines on
 *     stderr) and LIPC_ALLOC=malloc (plain malloc for a state lipc_new
 *     creates) are read, not changed. LIPC_CHANNEL_FD, LIPC_CHANNEL_REMOTE,
 *     LIPC_WORKER_ERRORS (the parent reads why a script failed: the first
 *     line goes to it before the exit, as a control frame),
 *     NODE_CHANNEL_FD and NODE_CHANNEL_SERIALIZATION_MODE are read and
 *     removed from the environment as the runtime starts (lipc_new),
 *     whether or not the script uses fork.parent, and the channel fd is
 *     made close-on-exec, so that the processes the script starts
 *     (os.execute's included) inherit neither. A value that names no
 *     Unix stream socket is left alone; fork.parent then raises an error
 *     that says why. LIPC_WORKER is read by lipc_run_file and
 *     lipc_run_string, and read and removed by lipc_worker_main (see
 *     there).
 */
#ifndef LIPC_H
#define LIPC_H

#include <uv.h>
#include <lua.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LIPC_VERSION_MAJOR 0
#define LIPC_VERSION_MINOR 1
#define LIPC_VERSION_PATCH 0
#define LIPC_VERSION_STRING "0.1.0"

/* What liblipc.so exports: the functions of this header and nothing else
 * (lipc is built with -fvisibility=hidden). */
#if defined(__GNUC__)
#define LIPC_API __attribute__((visibility("default")))
#else
#define LIPC_API
#endif

typedef struct lipc_runtime lipc_runtime;

/* Creates a runtime on loop (NULL: the runtime creates and owns a loop).
 * Returns NULL when out of memory. */
LIPC_API lipc_runtime *lipc_new(uv_loop_t *loop);

/* The runtime's Lua state, with `lipc`, `spawn`, `fork`, `pipe`, `net`
 * requirable. Valid until lipc_free. */
LIPC_API lua_State *lipc_state(lipc_runtime *rt);
LIPC_API uv_loop_t *lipc_loop(lipc_runtime *rt);

/* Loads a script and starts it as a task; `arg` is set as by lua(1):
 * arg[0] = path, arg[1..argc] = argv[0..argc-1], and the chunk gets
 * argv as its `...`. path "-" reads stdin. It runs until its first wait;
 * lipc_run drives it from there. Returns
 *   0            started (it may have finished already);
 *   UV_ENOENT, UV_EACCES, UV_EISDIR... the file could not be read: the
 *                errno of opening or reading it (UV_EIO when the system
 *                gave none); the message is on stderr;
 *   UV_EINVAL    a syntax error (the message is on stderr);
 *   UV_ECANCELED the script ended the run before its first wait: it
 *                called lipc.exit() or raised an uncaught error;
 *   UV_EPERM     this process is a fork worker that did not go through
 *                lipc_worker_main (below): nothing runs.
 * After an error, lipc_exit_status() is 1 (or lipc.exit's code) and
 * lipc_run returns at once. */
LIPC_API int lipc_run_file(lipc_runtime *rt, const char *path, int argc,
                           char **argv);

/* Same, with the chunk given as a string; name is used in tracebacks.
 * `arg` is left as it is. Returns 0, UV_EINVAL, UV_ECANCELED or UV_EPERM. */
LIPC_API int lipc_run_string(lipc_runtime *rt, const char *code,
                             const char *name);

/* Runs the loop until nothing is pending or lipc.exit() is called.
 * Returns the exit status (also lipc_exit_status). */
LIPC_API int lipc_run(lipc_runtime *rt);

/* The status the process should exit with: the code given to lipc.exit,
 * 1 after an uncaught error, 0 otherwise. */
LIPC_API int lipc_exit_status(lipc_runtime *rt);

/* Closes every handle, flushes pending writes, closes the Lua state and,
 * when the runtime owns it, the loop. */
LIPC_API void lipc_free(lipc_runtime *rt);

/* Workers of an embedder. fork("w.lua") starts a worker process; which
 * program runs it depends on whether main() called lipc_worker_main:
 *
 *   - Not called (the shape above): the `lipc` executable that comes
 *     with the library runs the worker: the one next to liblipc.so, or
 *     in the bin/ of its prefix, or else `lipc` on PATH. The worker has
 *     lipc's modules, not the embedder's C functions.
 *   - Called: this program runs its own workers, so that they can have
 *     its C functions:
 *
 *       static void setup(lipc_runtime *rt, void *ud) {
 *         lua_register(lipc_state(rt), "checksum", l_checksum);
 *       }
 *       int main(int argc, char **argv) {
 *         int status = lipc_worker_main(argc, argv, setup, NULL);
 *         if (status >= 0)
 *           return status;               // this process was a worker
 *         lipc_runtime *rt = lipc_new(NULL);
 *         setup(rt, NULL);               // the same functions here
 *         ...
 *
 *     In a process fork started (LIPC_WORKER set in its environment),
 *     lipc_worker_main makes a runtime, calls setup(rt, ud) (setup may be
 *     NULL), runs the worker's script argv[1] with the arguments after
 *     it until nothing is pending, and returns its exit status. In any
 *     other process it returns -1 at once, and from then on fork runs
 *     this program (with LIPC_WORKER set) for its workers.
 *
 * A fork never runs the parent's topology again: a process started as a
 * worker that reaches lipc_run_file or lipc_run_string without going
 * through lipc_worker_main (called too late, or only on some paths) runs
 * nothing: a message on stderr, UV_EPERM, exit status 1. opts.exec_path
 * still picks any program. */
typedef void (*lipc_setup_fn)(lipc_runtime *rt, void *ud);
LIPC_API int lipc_worker_main(int argc, char **argv, lipc_setup_fn setup,
                              void *ud);

/* The `lipc` Lua module, for stock lua5.4: require "lipc" from lipc.so.
 * In that mode call lipc.run() to drive the loop (a state closed with
 * timers, tasks or I/O set up and no lipc.run() gets a warning on
 * stderr); fork's workers run the lipc executable, as an embedder's
 * that does not call lipc_worker_main. */
LIPC_API int luaopen_lipc(lua_State *L);

#ifdef __cplusplus
}
#endif
#endif
