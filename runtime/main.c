/*
 * main.c - the `lipc` command line: arguments in, exit status out.
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
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
    "  --stdio-channel  be a worker reached through a launcher (ssh...):\n"
    "              the channel is stdin and stdout, the script comes over\n"
    "              it (fork's `via` option starts lipc this way)\n"
    "  -v          print the version and exit\n"
    "  -h          print this help and exit\n"
    "  --          stop handling options\n"
    "Options come before the script (or -e), in any order. `lipc test` runs\n"
    "the busted specs of the project in the current directory (`lipc test\n"
    "--help` for more); `lipc ./test` runs a script named test. With no\n"
    "script on a terminal, lipc starts the interactive prompt. The event\n"
    "loop runs until nothing is pending or lipc.exit() is called.\n";

/* What the command line asks for. */
typedef struct options {
  int version, help, interactive;
  int stdio_channel; /* --stdio-channel */
  int literal;       /* "--": the next argument is a script, even "test" */
  const char *code;  /* -e */
  const char *trace; /* --trace */
  int script;        /* argv index of the script, or of -e's first arg */
} options;

static int bad_usage(const char *opt, const char *why) {
  fprintf(stderr, "lipc: %s '%s'\n%s", why, opt, usage);
  return -1;
}

/* Reads the options before the script, in any order, as lua.c's
 * collectargs does. The script (a name, or "-" for stdin), "-e code" or
 * "--" ends them: what follows is the script's. Returns 0, or -1 after
 * saying what is wrong. */
static int collect(int argc, char **argv, options *o) {
  int i;
  memset(o, 0, sizeof(*o));
  for (i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (a[0] != '-' || a[1] == '\0') /* the script, or "-" */
      break;
    if (strcmp(a, "--") == 0) {
      o->literal = 1;
      i++;
      break;
    }
    if (strcmp(a, "-e") == 0 || strcmp(a, "--trace") == 0) {
      if (i + 1 >= argc) {
        fprintf(stderr, "lipc: '%s' needs an argument\n", a);
        return -1;
      }
      if (strcmp(a, "--trace") == 0) {
        o->trace = argv[++i];
        continue;
      }
      o->code = argv[++i];
      i++; /* the code's arguments follow it */
      break;
    }
    if (strcmp(a, "-i") == 0)
      o->interactive = 1;
    else if (strcmp(a, "--stdio-channel") == 0)
      o->stdio_channel = 1;
    else if (strcmp(a, "-v") == 0)
      o->version = 1;
    else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
      o->help = 1;
    else
      return bad_usage(a, "unknown option");
  }
  o->script = i;
  return 0;
}

/* The prompt is an embedded Lua chunk run as a task (runtime/repl.lua). */
static void start_repl(lipc_runtime *rt) {
  lua_State *L = lipc_state(rt);
  lipc__load_embedded(L, "repl");
  lua_pushboolean(L, isatty(1)); /* redraw the prompt under output */
  lipc__task_start(rt, L, 1);
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

/* ---- --stdio-channel: a worker reached through a launcher ------------
 * The launcher (ssh, kubectl exec, srun...) gives us its stdin and stdout,
 * usually two pipes. The channel wants one socket, so two threads relay
 * between those pipes and a socketpair whose other end is fork.parent
 * (LIPC_CHANNEL_FD, as for a local fork); a launcher that passed one
 * Unix socket as both gives the channel that socket itself. fds 0 and 1 then become
 * /dev/null and stderr: print() cannot corrupt the channel. When the
 * runtime ends, the rest of what it sent is relayed, then the bye frame
 * (docs/wire-format.md section 8) says the worker ended in order. */

typedef struct relay {
  int from, to;
  int shut; /* at the end of `from`, shut `to` down for writing */
  pthread_t thread;
} relay;

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static void *pump(void *arg) {
  relay *r = arg;
  char buf[64 * 1024]; /* on the thread's own stack (8 MiB) */
  for (;;) {
    ssize_t n = read(r->from, buf, sizeof(buf));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0 || write_all(r->to, buf, (size_t)n) != 0)
      break;
  }
  if (r->shut) /* the link ended: the channel sees its end */
    shutdown(r->to, SHUT_WR);
  return NULL;
}

typedef struct stdio_channel {
  relay in, out;
  int direct; /* no relay: stdin and stdout are one Unix socket */
} stdio_channel;

/* fds 0 and 1 are one Unix stream socket (a local launcher, `sh` or
 * `ip netns exec`, passed fork's socketpair through): the channel can
 * take it as it is, without the relay's two hops. */
static int one_unix_socket(void) {
  struct stat a, b;
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  int type = 0;
  socklen_t tlen = sizeof(type);
  if (fstat(0, &a) != 0 || fstat(1, &b) != 0 || !S_ISSOCK(a.st_mode) ||
      a.st_dev != b.st_dev || a.st_ino != b.st_ino)
    return 0;
  if (getsockopt(0, SOL_SOCKET, SO_TYPE, &type, &tlen) != 0 ||
      type != SOCK_STREAM)
    return 0;
  return getsockname(0, (struct sockaddr *)&ss, &len) == 0 &&
         ss.ss_family == AF_UNIX;
}

static int blocking_dup(int fd) {
  int d = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (d >= 0)
    fcntl(d, F_SETFL, fcntl(d, F_GETFL) & ~O_NONBLOCK);
  return d;
}

/* Takes stdin and stdout as the link, starts the relays and names the
 * channel's end in the environment for fork.parent. 0 or -1. */
static int stdio_channel_start(stdio_channel *sc) {
  int sp[2], rfd = blocking_dup(0), wfd = blocking_dup(1), null;
  char num[16];
  sigset_t all, old;
  sc->direct = one_unix_socket();
  if (rfd < 0 || wfd < 0 ||
      (!sc->direct &&
       socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0)) {
    perror("lipc: --stdio-channel");
    return -1;
  }
  null = open("/dev/null", O_RDONLY);
  if (null < 0 || dup2(null, 0) < 0 || dup2(2, 1) < 0) {
    perror("lipc: --stdio-channel");
    return -1;
  }
  close(null);
  setenv("LIPC_CHANNEL_REMOTE", "1", 1);
  if (sc->direct) { /* rfd is the channel; wfd stays for the bye */
    sc->out = (relay){-1, wfd, 0, 0};
    snprintf(num, sizeof(num), "%d", rfd);
    setenv("LIPC_CHANNEL_FD", num, 1);
    return 0;
  }
  sc->in = (relay){rfd, sp[1], 1, 0};
  sc->out = (relay){sp[1], wfd, 0, 0};
  snprintf(num, sizeof(num), "%d", sp[0]);
  setenv("LIPC_CHANNEL_FD", num, 1);
  /* the relays take no signal: libuv's handlers run on the loop thread */
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  if (pthread_create(&sc->in.thread, NULL, pump, &sc->in) != 0 ||
      pthread_create(&sc->out.thread, NULL, pump, &sc->out) != 0) {
    fputs("lipc: --stdio-channel: cannot start the relay\n", stderr);
    return -1;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return 0;
}

/* After the runtime closed its end: the rest goes out, then the bye
 * frame: [len 16] d4 02 02, then the map {"status": int32}. */
static void stdio_channel_end(stdio_channel *sc, int status) {
  unsigned char bye[20] = {0,    0,   0,   16,  0xd4, 0x02, 0x02, 0x81,
                           0xa6, 's', 't', 'a', 't',  'u',  's',  0xd2};
  uint32_t st = (uint32_t)status;
  struct timespec until;
  if (sc->direct) { /* the loop made the socket non-blocking */
    fcntl(sc->out.to, F_SETFL, fcntl(sc->out.to, F_GETFL) & ~O_NONBLOCK);
  } else {
    /* The runtime closed its end, so the relay ends once the rest is
     * out; a peer that stopped reading must not keep us for ever. */
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 30;
    if (pthread_timedjoin_np(sc->out.thread, NULL, &until) != 0)
      return; /* no bye: the parent sees a lost link */
  }
  bye[16] = (unsigned char)(st >> 24);
  bye[17] = (unsigned char)(st >> 16);
  bye[18] = (unsigned char)(st >> 8);
  bye[19] = (unsigned char)st;
  (void)write_all(sc->out.to, (const char *)bye, sizeof(bye));
  close(sc->out.to);
}

/* The worker's main task: the handshake, then the script that came over
 * the channel (runtime/remote.lua). */
static void start_remote(lipc_runtime *rt) {
  lua_State *L = lipc_state(rt);
  lipc__load_embedded(L, "remote");
  lipc__task_start(rt, L, 0);
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

/* Starts the main task: -e's code, `lipc test`, the script, or stdin's
 * script. */
static void start(lipc_runtime *rt, const options *o, int argc, char **argv) {
  int i = o->script;
  if (o->code) {
    lipc__set_arg(lipc_state(rt), "-e", argc - i, argv + i);
    lipc_run_string(rt, o->code, "=(command line)");
  } else if (i < argc && !o->literal && strcmp(argv[i], "test") == 0) {
    start_test(rt, argc - i - 1, argv + i + 1);
  } else if (i < argc) {
    lipc_run_file(rt, argv[i], argc - i - 1, argv + i + 1);
  } else {
    lipc_run_file(rt, "-", 0, NULL);
  }
}

int main(int argc, char **argv) {
  lipc_runtime *rt;
  options o;
  stdio_channel sc;
  int status, interactive;

  /* fork runs this program on its workers' scripts, given as usual. */
  lipc__worker_exec = LIPC__EXEC_SELF;
  unsetenv(LIPC__WORKER_ENV);
  if (collect(argc, argv, &o) != 0)
    return 1;
  if (o.version) {
    version();
    return 0;
  }
  if (o.help) {
    fputs(usage, stdout);
    return 0;
  }
  if (o.trace)
    setenv("LIPC_TRACE", o.trace, 1); /* children trace too */
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
  if (o.stdio_channel && stdio_channel_start(&sc) != 0)
    return 1;
  rt = lipc_new(NULL);
  if (rt == NULL) {
    fputs("lipc: cannot create the runtime\n", stderr);
    return 1;
  }
  interactive = o.interactive;
  if (o.stdio_channel)
    start_remote(rt);
  else if (o.code || o.script < argc || !isatty(0))
    start(rt, &o, argc, argv);
  else
    interactive = 1; /* no script on a terminal: the prompt alone */
  if (interactive && lipc_exit_status(rt) == 0 && !o.stdio_channel)
    start_repl(rt);
  lipc_run(rt);
  status = lipc_exit_status(rt);
  lipc_free(rt);
  if (o.stdio_channel)
    stdio_channel_end(&sc, status);
  return status;
}
