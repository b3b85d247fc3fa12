/*
 * ipc_stream (C baseline): socketpair + fork; the parent encodes N framed
 * small tables into a 64 KiB buffer and write()s it whenever it is full
 * (coalescing: ~2,500 messages per syscall); the child read()s 64 KiB at a
 * time, decodes every frame and, after the last one, sends one ack frame
 * whose seq is the sum of all the seqs it saw. Timed from the first encode to
 * the ack.
 *
 *   ipc_stream [messages]          -> RESULT ipc_stream <n> msg/s
 */
#include "common.h"
#include <sys/socket.h>
#include <sys/wait.h>

#define BUF 65536

int main(int argc, char **argv) {
  uint64_t n = arg_count(argc, argv, 1, 2000000);
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
    die("socketpair");
  pid_t pid = fork();
  if (pid < 0)
    die("fork");
  uint8_t out[64];
  frd_t f;
  msg_t m;
  uint32_t len;
  const uint8_t *p;

  if (pid == 0) {
    close(sv[0]);
    frd_init(&f, sv[1], BUF);
    uint64_t sum = 0;
    for (uint64_t i = 0; i < n; i++) {
      if (!(p = frd_next(&f, &len)))
        fail("child: EOF");
      if (decode_msg(p, len, &m) || m.args_sum != 6)
        fail("child: bad message");
      sum += m.seq;
    }
    write_all(sv[1], out, frame_small(out, sum));
    _exit(0);
  }

  close(sv[1]);
  uint8_t *buf = malloc(BUF);
  size_t used = 0;
  uint64_t t0 = now_ns();
  for (uint64_t i = 1; i <= n; i++) {
    if (BUF - used < 64) {
      write_all(sv[0], buf, used);
      used = 0;
    }
    used += frame_small(buf + used, i);
  }
  write_all(sv[0], buf, used);
  frd_init(&f, sv[0], 256);
  if (!(p = frd_next(&f, &len)))
    fail("parent: EOF");
  uint64_t t1 = now_ns();
  if (decode_msg(p, len, &m) || m.seq != n * (n + 1) / 2)
    fail("parent: bad ack");
  close(sv[0]);
  waitpid(pid, NULL, 0);
  printf("RESULT ipc_stream %.0f msg/s\n", (double)n * 1e9 / (double)(t1 - t0));
  return 0;
}
