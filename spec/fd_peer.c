/*
 * fd_peer.c - a raw peer for spec/handles_spec.lua: it speaks the native
 * frame format (docs/wire-format.md) on fd 3 and passes fds with
 * SCM_RIGHTS as it is told, lying where told to. Each argument is one
 * step:
 *
 *   send:WHAT:KIND  one sendmsg: a frame whose value is the string WHAT,
 *                   with the handle marker of KIND (0: no marker), and
 *                   an fd of WHAT (none: no fd) as SCM_RIGHTS
 *   junk:N          one sendmsg: a frame "junk" without a marker, and N
 *                   fds (of /dev/null) that nothing claims
 *   wait            reads fd 3 until the other side closes it
 *   json            from here on, Node's JSON lines instead of frames: a
 *                   plain line "WHAT" for KIND 0, else a NODE_HANDLE line
 *                   (type net.Server for KIND 1 and 3, else net.Socket)
 *
 * WHAT: tcp-server, tcp-socket, pipe-server, pipe-socket (all blocking,
 * as a peer may leave them), devnull, eventfd, udp, none. Exits 0, or 1
 * with a message on stderr when a system call fails.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define CHAN 3
#define MAX_FDS 253 /* SCM_MAX_FD */

static void die(const char *what) {
  fprintf(stderr, "fd_peer: %s: %s\n", what, strerror(errno));
  exit(1);
}

/* A listening TCP socket on 127.0.0.1 (blocking). */
static int tcp_server(void) {
  struct sockaddr_in a = {.sin_family = AF_INET};
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
      listen(fd, 16) != 0)
    die("tcp server");
  return fd;
}

/* A TCP socket connected to a server of our own (blocking). */
static int tcp_socket(void) {
  struct sockaddr_in a;
  socklen_t n = sizeof a;
  int srv = tcp_server(), fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0 || getsockname(srv, (struct sockaddr *)&a, &n) != 0 ||
      connect(fd, (struct sockaddr *)&a, n) != 0)
    die("tcp socket");
  return fd; /* srv stays open: the connection waits in its backlog */
}

/* A listening Unix socket at an abstract name of our own (blocking). */
static int pipe_server(void) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  int n = snprintf(a.sun_path + 1, sizeof a.sun_path - 1, "fd_peer-%d-%d",
                   (int)getpid(), fd);
  if (fd < 0 ||
      bind(fd, (struct sockaddr *)&a,
           (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n)) != 0 ||
      listen(fd, 16) != 0)
    die("pipe server");
  return fd;
}

static int pipe_socket(void) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
    die("socketpair");
  return sv[0]; /* sv[1] stays open: the socket is connected */
}

static int make_fd(const char *what) {
  int fd = -1;
  if (strcmp(what, "tcp-server") == 0)
    return tcp_server();
  if (strcmp(what, "tcp-socket") == 0)
    return tcp_socket();
  if (strcmp(what, "pipe-server") == 0)
    return pipe_server();
  if (strcmp(what, "pipe-socket") == 0)
    return pipe_socket();
  if (strcmp(what, "devnull") == 0)
    fd = open("/dev/null", O_RDWR);
  else if (strcmp(what, "eventfd") == 0)
    fd = eventfd(0, 0);
  else if (strcmp(what, "udp") == 0)
    fd = socket(AF_INET, SOCK_DGRAM, 0);
  else if (strcmp(what, "none") == 0)
    return -1;
  else {
    fprintf(stderr, "fd_peer: unknown fd kind %s\n", what);
    exit(2);
  }
  if (fd < 0)
    die(what);
  return fd;
}

static int json; /* JSON lines instead of frames */

/* One sendmsg: n bytes at buf, with nfds fds. */
static void send_bytes(const char *buf, size_t n, const int *fds, int nfds) {
  union {
    struct cmsghdr h;
    char space[CMSG_SPACE(sizeof(int) * MAX_FDS)];
  } c;
  struct iovec iov;
  struct msghdr m = {0};
  iov.iov_base = (void *)buf;
  iov.iov_len = n;
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  if (nfds > 0) {
    memset(&c, 0, sizeof c);
    m.msg_control = c.space;
    m.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
    c.h.cmsg_level = SOL_SOCKET;
    c.h.cmsg_type = SCM_RIGHTS;
    c.h.cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
    memcpy(CMSG_DATA(&c.h), fds, sizeof(int) * (size_t)nfds);
  }
  if (sendmsg(CHAN, &m, 0) != (ssize_t)n)
    die("sendmsg");
}

/* One sendmsg: a frame [marker of kind] "value" (or its JSON line), with
 * nfds fds. */
static void send_frame(const char *value, int kind, const int *fds, int nfds) {
  char buf[300];
  size_t vlen = strlen(value), body = (kind ? 3 : 0) + 1 + vlen, n = 0;
  if (vlen > 31) {
    fprintf(stderr, "fd_peer: value too long\n");
    exit(2);
  }
  if (json) {
    int len =
        kind ? snprintf(buf, sizeof buf,
                        "{\"cmd\":\"NODE_HANDLE\",\"type\":\"%s\","
                        "\"msg\":\"%s\"}\n",
                        kind == 1 || kind == 3 ? "net.Server" : "net.Socket",
                        value)
             : snprintf(buf, sizeof buf, "\"%s\"\n", value);
    send_bytes(buf, (size_t)len, fds, nfds);
    return;
  }
  buf[n++] = (char)(body >> 24);
  buf[n++] = (char)(body >> 16);
  buf[n++] = (char)(body >> 8);
  buf[n++] = (char)body;
  if (kind) {
    buf[n++] = (char)0xd4;
    buf[n++] = 0x01;
    buf[n++] = (char)kind;
  }
  buf[n++] = (char)(0xa0 | vlen); /* fixstr */
  memcpy(buf + n, value, vlen);
  n += vlen;
  send_bytes(buf, n, fds, nfds);
}

int main(int argc, char **argv) {
  int i;
  for (i = 1; i < argc; i++) {
    char what[64];
    int kind, n, fds[MAX_FDS], k;
    if (sscanf(argv[i], "send:%63[a-z-]:%d", what, &kind) == 2) {
      int fd = make_fd(what);
      send_frame(what, kind, &fd, fd >= 0 ? 1 : 0);
      if (fd >= 0)
        close(fd);
    } else if (sscanf(argv[i], "junk:%d", &n) == 1 && n > 0 && n <= MAX_FDS) {
      for (k = 0; k < n; k++)
        if ((fds[k] = open("/dev/null", O_RDONLY)) < 0)
          die("open /dev/null");
      send_frame("junk", 0, fds, n);
      for (k = 0; k < n; k++)
        close(fds[k]);
    } else if (strcmp(argv[i], "json") == 0) {
      json = 1;
    } else if (strcmp(argv[i], "wait") == 0) {
      char b[4096];
      while (read(CHAN, b, sizeof b) > 0) {
      }
    } else {
      fprintf(stderr, "fd_peer: unknown step %s\n", argv[i]);
      return 2;
    }
  }
  return 0;
}
