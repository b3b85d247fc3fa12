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

typedef struct lipc_runtime lipc_runtime;

/* Creates a runtime on loop (NULL: the runtime creates and owns a loop).
 * Returns NULL when out of memory. */
lipc_runtime *lipc_new(uv_loop_t *loop);

/* The runtime's Lua state, with `lipc`, `spawn`, `fork`, `pipe`, `net`
 * requirable. Valid until lipc_free. */
lua_State *lipc_state(lipc_runtime *rt);
uv_loop_t *lipc_loop(lipc_runtime *rt);

/* Loads a script and starts it as a task; `arg` is set as by lua(1):
 * arg[0] = path, arg[1..argc] = argv[0..argc-1]. path "-" reads stdin.
 * It runs until its first wait; lipc_run drives it from there.
 * Returns 0, or UV_ENOENT/UV_EACCES... when the file can't be loaded
 * (the message is on stderr) or UV_EINVAL on a syntax error. */
int lipc_run_file(lipc_runtime *rt, const char *path, int argc, char **argv);

/* Same, with the chunk given as a string; name is used in tracebacks. */
int lipc_run_string(lipc_runtime *rt, const char *code, const char *name);

/* Runs the loop until nothing is pending or lipc.exit() is called.
 * Returns the exit status (also lipc_exit_status). */
int lipc_run(lipc_runtime *rt);

/* The status the process should exit with: the code given to lipc.exit,
 * 1 after an uncaught error, 0 otherwise. */
int lipc_exit_status(lipc_runtime *rt);

/* Closes every handle, flushes pending writes, closes the Lua state and,
 * when the runtime owns it, the loop. */
void lipc_free(lipc_runtime *rt);

/* The `lipc` Lua module, for stock lua5.4: require "lipc" from lipc.so.
 * In that mode call lipc.run() to drive the loop. */
int luaopen_lipc(lua_State *L);

#ifdef __cplusplus
}
#endif
#endif
