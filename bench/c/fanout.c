/*
 * fanout (C baseline of the fan-out curve): W children forked with a
 * socketpair each; the parent encodes the small table into a 64 KiB
 * buffer once and writes each full buffer to every child (blocking
 * write()s, one per child and buffer) until the time is up, then the
 * count; each child decodes and checks every frame and acks with the sum
 * of the seqs. Timed from the first write to the last ack; the figure is
 * messages delivered (W x sent).
 *
 *   fanout <workers> [ms]   -> RESULT fanout <n> msg/s
 */
#include "common.h"
#include <sys/socket.h>
#include <sys/wait.h>

#define BATCH 65536u

static void worker(int fd) {
  frd_t f;
  uint32_t len;
  const uint8_t *p;
  uint64_t n = 0, sum = 0, count;
  msg_t m;
  uint8_t out[64];
  frd_init(&f, fd, BATCH);
  for (;;) {
    if (!(p = frd_next(&f, &len)))
      fail("worker: EOF");
    mp_rd r = {p, p + len};
    if (len && *p != 0x83) {
      if (mp_get_uint(&r, &count) || count != n)
        fail("worker: bad count");
      break;
    }
    if (decode_msg(p, len, &m) || m.seq != n + 1 || m.args_sum != 6)
      fail("worker: bad message");
    n++;
    sum += m.seq;
  }
  write_all(fd, out, frame_small(out, sum));
  _exit(0);
}

int main(int argc, char **argv) {
  int nw = argc > 1 ? atoi(argv[1]) : 4;
  uint64_t ms = arg_count(argc, argv, 2, 1000);
  if (nw < 1)
    fail("usage: fanout <workers >= 1> [ms]");
  int *fds = calloc((size_t)nw, sizeof *fds);
  pid_t *pids = calloc((size_t)nw, sizeof *pids);
  uint8_t *buf = malloc(BATCH);
  if (!fds || !pids || !buf)
    die("malloc");
  for (int i = 0; i < nw; i++) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
      die("socketpair");
    if ((pids[i] = fork()) < 0)
      die("fork");
    if (pids[i] == 0) {
      for (int j = 0; j < i; j++)
        close(fds[j]);
      close(sv[0]);
      worker(sv[1]);
    }
    close(sv[1]);
    fds[i] = sv[0];
  }
  uint64_t n = 0, t0 = now_ns(), stop = t0 + ms * 1000000u;
  size_t used;
  do {
    used = 0;
    while (used + 40 <= BATCH)
      used += frame_small(buf + used, ++n);
    for (int i = 0; i < nw; i++)
      write_all(fds[i], buf, used);
  } while (now_ns() < stop);
  uint8_t *q = mp_put_uint(buf + 4, n);
  be32_put(buf, (uint32_t)(q - buf - 4));
  for (int i = 0; i < nw; i++)
    write_all(fds[i], buf, (size_t)(q - buf));
  for (int i = 0; i < nw; i++) {
    frd_t f;
    uint32_t len;
    const uint8_t *p;
    msg_t m;
    frd_init(&f, fds[i], 64);
    if (!(p = frd_next(&f, &len)) || decode_msg(p, len, &m) ||
        m.seq != n * (n + 1) / 2)
      fail("parent: bad ack");
    free(f.buf);
  }
  uint64_t t1 = now_ns();
  for (int i = 0; i < nw; i++) {
    close(fds[i]);
    waitpid(pids[i], NULL, 0);
  }
  printf("RESULT fanout %.0f msg/s\n",
         (double)nw * n * 1e9 / (double)(t1 - t0));
  return 0;
}
