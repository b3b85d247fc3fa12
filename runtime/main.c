/*
 * main.c - the `lipc` command line: arguments in, exit status out.
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

static const char usage[] =
    "usage: lipc [options] [script [args...]]\n"
    "       lipc test [--timeout MS] [busted options] [paths...]\n"
    "  script      a Lua file to run as the main task ('-' reads stdin)\n"
    "  -e code     run code as the main task (args follow it)\n"
    "  -i          enter the interactive prompt after running the script\n"
    "  --trace K   trace events of kinds K (ipc,spawn,net or all) to stderr\n"
    "              (same as LIPC_TRACE=K; children inherit it)\n"
    "  -v          print the version and exit\n"
    "  -h          print this help and exit\n"
    "`lipc test` runs the busted specs of the project in the current\n"
    "directory (`lipc test --help` for more); `lipc ./test` runs a script\n"
    "named test.\n"
    "With no script on a terminal, lipc starts the interactive prompt.\n"
    "The event loop runs until nothing is pending or lipc.exit() is called.\n";

/* The prompt is an embedded Lua chunk run as a task (runtime/repl.lua). */
static void start_repl(lipc_runtime *rt) {
  lua_State *L = lipc_state(rt);
  lipc__load_embedded(L, "repl");
  lipc__task_start(rt, L, 0);
}

/* `lipc test`: busted under this runtime with the spec harness, both
 * embedded Lua (runtime/test.lua gets the harness chunk as argument). */
static void start_test(lipc_runtime *rt, int argc, char **argv) {
  lua_State *L = lipc_state(rt);
  lipc__set_arg(L, "test", argc, argv);
  lipc__load_embedded(L, "test");
  lipc__load_embedded(L, "test_harness");
  lipc__task_start(rt, L, 1);
}

static void version(void) {
  printf("lipc %s (%s, libuv %s)\n", LIPC_VERSION_STRING, LUA_RELEASE,
         uv_version_string());
}

/* A closed fd 0, 1 or 2 would be reused by the loop's own fds (epoll,
 * signal pipe), which the stdio streams would then close: point them at
 * /dev/null first, as Node does. */
static void guard_stdio(void) {
  int fd;
  for (fd = 0; fd <= 2; fd++) {
    if (fcntl(fd, F_GETFD) != -1 || errno != EBADF)
      continue;
    if (open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY) != fd)
      abort();
  }
}

int main(int argc, char **argv) {
  lipc_runtime *rt;
  int status, i = 1, interactive = 0;
  const char *code = NULL;

  if (i < argc && strcmp(argv[i], "-v") == 0)
    return version(), 0;
  if (i < argc &&
      (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0))
    return fputs(usage, stdout), 0;
  if (i + 1 < argc && strcmp(argv[i], "--trace") == 0) {
    setenv("LIPC_TRACE", argv[i + 1], 1); /* children trace too */
    i += 2;
  }
  if (i < argc && strcmp(argv[i], "-i") == 0) {
    interactive = 1;
    i++;
  }
  if (i < argc && strcmp(argv[i], "-e") == 0) {
    if (i + 1 >= argc) {
      fputs("lipc: '-e' needs an argument\n", stderr);
      return 1;
    }
    code = argv[i + 1];
    i += 2;
  } else if (i < argc && argv[i][0] == '-' && argv[i][1] != '\0') {
    fprintf(stderr, "lipc: unknown option '%s'\n%s", argv[i], usage);
    return 1;
  }
  guard_stdio();
  /* print() reaches a pipe line by line, like console.log. */
  setvbuf(stdout, NULL, _IOLBF, 0);
  /* Read chunks and big messages are Lua strings of 64 KiB to a few MiB,
   * freed in batches by the collector. With glibc's defaults each one
   * past 128 KiB is an mmap, and a batch of frees trims the heap top:
   * either way every page of the next chunk faults again (perf: the
   * reader of tcp_bulk in exc_page_fault/clear_page). The executable owns
   * its process; an embedder's malloc is left alone. */
  mallopt(M_MMAP_THRESHOLD, 4 << 20);
  mallopt(M_TRIM_THRESHOLD, 32 << 20);
  rt = lipc_new(NULL);
  if (rt == NULL) {
    fputs("lipc: cannot create the runtime\n", stderr);
    return 1;
  }
  if (code) {
    lipc__set_arg(lipc_state(rt), "-e", argc - i, argv + i);
    lipc_run_string(rt, code, "=(command line)");
  } else if (i < argc && strcmp(argv[i], "test") == 0) {
    start_test(rt, argc - i - 1, argv + i + 1);
  } else if (i < argc) {
    lipc_run_file(rt, argv[i], argc - i - 1, argv + i + 1);
  } else if (isatty(0)) {
    interactive = 1;
  } else {
    lipc_run_file(rt, "-", 0, NULL);
  }
  if (interactive && lipc_exit_status(rt) == 0)
    start_repl(rt);
  lipc_run(rt);
  status = lipc_exit_status(rt);
  lipc_free(rt);
  return status;
}
