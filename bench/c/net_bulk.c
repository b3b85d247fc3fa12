/*
 * tcp_bulk / unix_bulk (C baseline): the parent listens (127.0.0.1 port 0,
 * or a Unix socket path in $BENCH_TMP or /tmp) and counts what it reads with
 * a 64 KiB buffer (libuv's read size) until EOF; a fork()ed child connects
 * and writes BYTES in 1 MiB write()s, then closes. Blocking sockets.
 * Timed by the parent from accept() to EOF. MB = 10^6 bytes.
 *
 *   net_bulk tcp|unix [bytes]      -> RESULT tcp_bulk|unix_bulk <n> MB/s
 */
#include "common.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#define WCHUNK (1u << 20)
#define RCHUNK (64u << 10)

int main(int argc, char **argv) {
  if (argc < 2 || (strcmp(argv[1], "tcp") && strcmp(argv[1], "unix")))
    fail("usage: net_bulk tcp|unix [bytes]");
  int tcp = !strcmp(argv[1], "tcp");
  uint64_t total = arg_count(argc, argv, 2, 1073741824.0);
  struct sockaddr_storage ss;
  socklen_t sl;
  memset(&ss, 0, sizeof ss);
  int dom = tcp ? AF_INET : AF_UNIX;
  if (tcp) {
    struct sockaddr_in *sa = (struct sockaddr_in *)&ss;
    sa->sin_family = AF_INET;
    sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sl = sizeof *sa;
  } else {
    struct sockaddr_un *su = (struct sockaddr_un *)&ss;
    const char *dir = getenv("BENCH_TMP") ? getenv("BENCH_TMP") : "/tmp";
    su->sun_family = AF_UNIX;
    snprintf(su->sun_path, sizeof su->sun_path, "%s/c-bulk-%d.sock", dir,
             (int)getpid());
    unlink(su->sun_path);
    sl = sizeof *su;
  }
  int ls = socket(dom, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (ls < 0)
    die("socket");
  if (bind(ls, (struct sockaddr *)&ss, sl) || listen(ls, 16))
    die("bind/listen");
  if (tcp && getsockname(ls, (struct sockaddr *)&ss, &sl))
    die("getsockname");
  pid_t pid = fork();
  if (pid < 0)
    die("fork");

  if (pid == 0) {
    close(ls);
    int s = socket(dom, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&ss, sl))
      die("connect");
    char *buf = calloc(1, WCHUNK);
    for (uint64_t left = total; left > 0;) {
      size_t k = left < WCHUNK ? (size_t)left : WCHUNK;
      write_all(s, buf, k);
      left -= k;
    }
    close(s);
    _exit(0);
  }

  int s = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
  if (s < 0)
    die("accept");
  uint64_t t0 = now_ns();
  uint64_t got = count_to_eof(s, RCHUNK);
  uint64_t t1 = now_ns();
  close(s);
  close(ls);
  if (!tcp)
    unlink(((struct sockaddr_un *)&ss)->sun_path);
  int st;
  waitpid(pid, &st, 0);
  if (got != total || !WIFEXITED(st) || WEXITSTATUS(st))
    fail("short transfer");
  printf("RESULT %s_bulk %.1f MB/s\n", argv[1],
         (double)total * 1e3 / (double)(t1 - t0));
  return 0;
}
