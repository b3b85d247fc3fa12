/*
 * tcp_echo_rr (C baseline): the parent listens on 127.0.0.1 (port 0) and
 * echoes; a fork()ed child connects and does N round trips of 64 bytes
 * (write 64, read until 64 are back). Blocking sockets, no TCP_NODELAY (a
 * strict ping-pong never has unacked data when it writes, so Nagle does not
 * delay). The parent times from accept() to writing the Nth echo.
 *
 * With "evloop" both sides wait in epoll_wait before every read, as an
 * event loop does: the case's floor for an event-loop runtime. "evpoll"
 * (or "evpoll=<us>") also polls epoll_wait(..., 0) for up to 50 us before
 * it blocks, as lipc's poll does (common.h).
 *
 *   tcp_echo_rr [round_trips] [evloop|evpoll[=us]]   -> RESULT tcp_echo_rr <n> rt/s
 */
#include "common.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

#define MSG 64

int main(int argc, char **argv) {
  uint64_t n = arg_count(argc, argv, 1, 100000);
  int evloop = arg_evloop(argc, argv, 2);
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (ls < 0)
    die("socket");
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof sa;
  if (bind(ls, (struct sockaddr *)&sa, sl) || listen(ls, 16) ||
      getsockname(ls, (struct sockaddr *)&sa, &sl))
    die("bind/listen");
  pid_t pid = fork();
  if (pid < 0)
    die("fork");
  char buf[65536];

  if (pid == 0) {
    close(ls);
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof sa))
      die("connect");
    int ep = evloop ? ep_for(s) : -1;
    memset(buf, 'x', MSG);
    for (uint64_t i = 0; i < n; i++) {
      write_all(s, buf, MSG);
      if (!read_full_ep(s, buf, MSG, ep))
        fail("child: EOF");
    }
    close(s);
    _exit(0);
  }

  int s = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
  if (s < 0)
    die("accept");
  int ep = evloop ? ep_for(s) : -1;
  uint64_t t0 = now_ns(), t1 = 0, echoed = 0;
  for (;;) {
    ep_wait(ep);
    size_t k = read_some(s, buf, sizeof buf);
    if (k == 0)
      break;
    write_all(s, buf, k);
    echoed += k;
    if (echoed == n * MSG)
      t1 = now_ns();
  }
  close(s);
  close(ls);
  int st;
  waitpid(pid, &st, 0);
  if (!t1 || !WIFEXITED(st) || WEXITSTATUS(st))
    fail("echo incomplete");
  printf("RESULT tcp_echo_rr %.0f rt/s\n", (double)n * 1e9 / (double)(t1 - t0));
  return 0;
}
