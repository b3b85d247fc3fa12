/*
 * echo_server (C baseline of the connections curve): one epoll loop, a
 * non-blocking listener on 127.0.0.1 (a free port, backlog 4096), prints
 * "PORT <n>" and echoes whatever each connection sends (read, write back;
 * nothing is kept per connection but the socket). Ends when its stdin
 * ends (conn_load closes it).
 *
 *   echo_server   (run by build/bench/conn_load)
 */
#include "common.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

int main(void) {
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof sa;
  if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sl) || listen(ls, 4096) ||
      getsockname(ls, (struct sockaddr *)&sa, &sl))
    die("listen");
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls}, evs[256];
  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev))
    die("epoll");
  ev.data.fd = 0;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev))
    die("epoll stdin");
  printf("PORT %d\n", ntohs(sa.sin_port));
  fflush(stdout);
  char buf[65536];
  for (;;) {
    int k = epoll_wait(ep, evs, 256, -1);
    if (k < 0 && errno != EINTR)
      die("epoll_wait");
    for (int i = 0; i < k; i++) {
      int fd = evs[i].data.fd;
      if (fd == 0) {
        if (read(0, buf, sizeof buf) <= 0)
          return 0;
      } else if (fd == ls) {
        int s;
        while ((s = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >=
               0) {
          ev.data.fd = s;
          if (epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev))
            die("epoll_ctl");
        }
      } else {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r <= 0) {
          if (r < 0 && errno == EAGAIN)
            continue;
          close(fd); /* also leaves the epoll set */
        } else if (write(fd, buf, (size_t)r) != r) {
          close(fd); /* a peer that does not read: dropped */
        }
      }
    }
  }
}
