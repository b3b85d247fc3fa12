/*
 * conn_load (the load side of the connections curve, one program for every
 * server): starts the echo server given after "--" (lipc, Node or C), reads
 * the "PORT <n>" line it prints, opens CLIENTS connections to 127.0.0.1
 * (at most 128 connects in flight), makes one 64-byte round trip on each,
 * and then reads the server's resident set: (RSS now - RSS before the
 * first connection) / CLIENTS is the memory an idle connection costs it.
 * Then every connection does round trips (write 64 bytes, read until 64
 * are back, again) until the time is up. One epoll loop drives them all.
 * Connections end with a reset (SO_LINGER 0: no TIME_WAIT piles up from
 * one point to the next); closing the server's stdin ends it.
 *
 * RLIMIT_NOFILE is raised to what CLIENTS needs (the server inherits it):
 * to the hard limit, and above it where the process may.
 *
 *   conn_load <clients> <ms> -- <server argv...>
 *     -> RESULT conns_rt <n> rt/s, RESULT conns_rss <n> KiB/conn,
 *        RESULT conns_base <n> KiB (the server's RSS before connections)
 */
#include "common.h"
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>

#define MSG 64
#define CONNECTS 128 /* in flight at once: under any listen backlog */

extern char **environ;

typedef struct conn {
  int fd;
  int got;  /* bytes of the current echo */
  int busy; /* a round trip is under way */
} conn;

static void raise_nofile(rlim_t need) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl))
    die("getrlimit");
  if (rl.rlim_cur >= need)
    return;
  rl.rlim_cur = rl.rlim_max >= need ? rl.rlim_max : need;
  if (rl.rlim_max < need)
    rl.rlim_max = need;
  if (setrlimit(RLIMIT_NOFILE, &rl)) {
    getrlimit(RLIMIT_NOFILE, &rl);
    fprintf(stderr,
            "bench: %llu connections need %llu fds, the limit is %llu\n",
            (unsigned long long)(need - 64), (unsigned long long)need,
            (unsigned long long)rl.rlim_max);
    exit(1);
  }
}

static long rss_kib(pid_t pid) {
  char path[64], line[256];
  long kib = -1;
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f)
    die("open /proc/<server>/status");
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmRSS: %ld", &kib) == 1)
      break;
  fclose(f);
  return kib;
}

/* starts argv with stdin and stdout on pipes; returns the port it printed */
static int start_server(char **argv, pid_t *pid, int *in) {
  int ip[2], op[2];
  posix_spawn_file_actions_t fa;
  char line[128];
  size_t got = 0;
  if (pipe2(ip, O_CLOEXEC) || pipe2(op, O_CLOEXEC))
    die("pipe");
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, ip[0], 0);
  posix_spawn_file_actions_adddup2(&fa, op[1], 1);
  int e = posix_spawnp(pid, argv[0], &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (e) {
    errno = e;
    die(argv[0]);
  }
  close(ip[0]);
  close(op[1]);
  *in = ip[1];
  for (;;) { /* the first line, within 30 s */
    struct pollfd pf = {.fd = op[0], .events = POLLIN};
    if (poll(&pf, 1, 30000) <= 0)
      fail("the server printed no PORT line in 30 s");
    ssize_t k = read(op[0], line + got, sizeof line - 1 - got);
    if (k <= 0)
      fail("the server ended before printing its port");
    got += (size_t)k;
    line[got] = 0;
    char *nl = strchr(line, '\n');
    int port;
    if (nl && sscanf(line, "PORT %d", &port) == 1) {
      close(op[0]);
      return port;
    }
    if (nl || got == sizeof line - 1)
      fail("the server's first line is not PORT <n>");
  }
}

static void stop_server(pid_t pid, int in) {
  int st;
  close(in);
  for (int i = 0; i < 500; i++) { /* 5 s, then it is killed */
    if (waitpid(pid, &st, WNOHANG) == pid)
      return;
    usleep(10000);
  }
  kill(pid, SIGKILL);
  waitpid(pid, &st, 0);
  fail("the server did not end when its stdin closed");
}

static void send_msg(conn *c) {
  static const char msg[MSG] = "0123456789abcdef0123456789abcdef"
                               "0123456789abcdef0123456789abcdef";
  if (write(c->fd, msg, MSG) != MSG)
    die("write");
  c->got = 0;
  c->busy = 1;
}

/* reads what is there; returns 1 when the echo is complete */
static int on_readable(conn *c) {
  char buf[MSG];
  ssize_t k = read(c->fd, buf, (size_t)(MSG - c->got));
  if (k < 0 && errno == EAGAIN)
    return 0;
  if (k <= 0)
    fail(k == 0 ? "the server closed a connection" : strerror(errno));
  c->got += (int)k;
  if (c->got < MSG)
    return 0;
  c->busy = 0;
  return 1;
}

static int open_conn(const struct sockaddr_in *sa) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  struct linger lg = {1, 0};
  if (fd < 0)
    die("socket");
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  if (connect(fd, (const struct sockaddr *)sa, sizeof *sa) &&
      errno != EINPROGRESS)
    die("connect");
  return fd;
}

static void ep_mod(int ep, int op, int fd, uint32_t events, uint32_t idx) {
  struct epoll_event ev = {.events = events, .data.u32 = idx};
  if (epoll_ctl(ep, op, fd, &ev))
    die("epoll_ctl");
}

int main(int argc, char **argv) {
  if (argc < 5 || strcmp(argv[3], "--"))
    fail("usage: conn_load <clients> <ms> -- <server argv...>");
  uint32_t n = (uint32_t)strtoul(argv[1], NULL, 10);
  uint64_t ms = strtoull(argv[2], NULL, 10);
  if (n == 0)
    fail("clients must be > 0");
  raise_nofile((rlim_t)n + 64);
  signal(SIGPIPE, SIG_IGN);

  pid_t pid;
  int in, ep = epoll_create1(EPOLL_CLOEXEC);
  int port = start_server(argv + 4, &pid, &in);
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)port),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  long base = rss_kib(pid);
  conn *cs = calloc(n, sizeof *cs);
  struct epoll_event *evs = calloc(1024, sizeof *evs);
  if (ep < 0 || !cs || !evs)
    die("setup");

  /* connect all, one round trip each */
  uint32_t opened = 0, ready = 0;
  while (ready < n) {
    while (opened < n && opened - ready < CONNECTS) {
      cs[opened].fd = open_conn(&sa);
      ep_mod(ep, EPOLL_CTL_ADD, cs[opened].fd, EPOLLOUT, opened);
      opened++;
    }
    int k = epoll_wait(ep, evs, 1024, 30000);
    if (k == 0)
      fail("connections stalled for 30 s");
    for (int i = 0; i < k; i++) {
      conn *c = &cs[evs[i].data.u32];
      if (!c->busy) {
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
          errno = err;
          die("connect");
        }
        ep_mod(ep, EPOLL_CTL_MOD, c->fd, EPOLLIN, evs[i].data.u32);
        send_msg(c);
      } else if (on_readable(c)) {
        ready++;
      }
    }
  }
  usleep(200000); /* let the server settle (a GC, freed buffers) */
  long idle = rss_kib(pid);

  /* round trips on every connection until the time is up */
  uint64_t rts = 0, t0 = now_ns(), stop = t0 + ms * 1000000u;
  uint32_t busy = n;
  for (uint32_t i = 0; i < n; i++)
    send_msg(&cs[i]);
  while (busy > 0) {
    int k = epoll_wait(ep, evs, 1024, 30000);
    if (k == 0)
      fail("round trips stalled for 30 s");
    uint64_t now = now_ns();
    for (int i = 0; i < k; i++) {
      conn *c = &cs[evs[i].data.u32];
      if (!on_readable(c))
        continue;
      rts++;
      if (now < stop)
        send_msg(c);
      else
        busy--;
    }
  }
  double secs = (double)(now_ns() - t0) / 1e9;
  for (uint32_t i = 0; i < n; i++)
    close(cs[i].fd);
  stop_server(pid, in);
  printf("RESULT conns_rt %.0f rt/s\n", (double)rts / secs);
  printf("RESULT conns_rss %.2f KiB/conn\n", (double)(idle - base) / n);
  printf("RESULT conns_base %ld KiB\n", base);
  return 0;
}
