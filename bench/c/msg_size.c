/*
 * msg_size (C baseline of the message-size curve): socketpair + fork; the
 * parent sends strings of SIZE bytes as lipc frames (4-byte length, then a
 * MessagePack str) until the time is up, then a frame holding the count;
 * the child checks every frame's header, length and ends, and acks with
 * the count and the bytes. Frames under 64 KiB are packed into a 64 KiB
 * buffer and written when it is full (what batching writers do); bigger
 * ones go out with one writev of header and payload (no copy). The child
 * reads into a buffer that grows to the largest frame. Timed from the
 * first write to the ack; MB = 10^6 bytes of payload.
 *
 *   msg_size <size> [ms]   -> RESULT msg_size <n> MB/s, RESULT msg_rate <n> msg/s
 */
#include "common.h"
#include <sys/socket.h>
#include <sys/wait.h>

#define BATCH 65536u
#define MAX_SIZE \
  ((64u << 20) - 16) /* lipc's default max_message, less a header */

/* MessagePack str header of a string of n bytes; returns its length */
static size_t str_header(uint8_t *p, uint32_t n) {
  if (n < 32) {
    p[0] = (uint8_t)(0xa0 | n);
    return 1;
  }
  if (n < 256) {
    p[0] = 0xd9;
    p[1] = (uint8_t)n;
    return 2;
  }
  if (n < 65536) {
    p[0] = 0xda;
    p[1] = (uint8_t)(n >> 8);
    p[2] = (uint8_t)n;
    return 3;
  }
  p[0] = 0xdb;
  be32_put(p + 1, n);
  return 5;
}

static void child(int fd, uint32_t size) {
  frd_t f;
  uint32_t len;
  const uint8_t *p, *s;
  uint64_t n = 0, count;
  uint8_t out[16];
  frd_init(&f, fd, BATCH);
  for (;;) {
    if (!(p = frd_next(&f, &len)))
      fail("child: EOF");
    mp_rd r = {p, p + len};
    uint32_t sn;
    if (len && (*p < 0x80 || (*p >= 0xcc && *p <= 0xcf))) {
      if (mp_get_uint(&r, &count) || count != n)
        fail("child: bad count");
      break;
    }
    if (mp_get_str(&r, &s, &sn) || r.p != r.end || sn != size || s[0] != 'a' ||
        s[sn - 1] != 'a' + (sn - 1) % 26)
      fail("child: bad message");
    n++;
  }
  be32_put(out, 8);
  memcpy(out + 4, &n, 8);
  write_all(fd, out, 12);
  _exit(0);
}

int main(int argc, char **argv) {
  uint32_t size = argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 10) : 1024;
  uint64_t ms = arg_count(argc, argv, 2, 1000);
  int sv[2];
  if (size == 0)
    fail("usage: msg_size <size > 0> [ms]");
  if (size > MAX_SIZE)
    size = MAX_SIZE;
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
    die("socketpair");
  pid_t pid = fork();
  if (pid < 0)
    die("fork");
  if (pid == 0) {
    close(sv[0]);
    child(sv[1], size);
  }
  close(sv[1]);

  uint8_t hdr[16], *buf = malloc(BATCH);
  char *data = malloc(size);
  if (!buf || !data)
    die("malloc");
  for (uint32_t i = 0; i < size; i++)
    data[i] = (char)('a' + i % 26);
  size_t hl = str_header(hdr + 4, size), used = 0;
  be32_put(hdr, (uint32_t)(hl + size));
  size_t frame = 4 + hl + size;
  uint64_t every = size < BATCH ? BATCH / size : 1, n = 0;
  uint64_t t0 = now_ns(), stop = t0 + ms * 1000000u;
  do {
    for (uint64_t k = 0; k < every; k++, n++) {
      if (frame > BATCH) {
        struct iovec iov[2] = {{hdr, 4 + hl}, {data, size}};
        writev_all(sv[0], iov, 2);
        continue;
      }
      if (used + frame > BATCH) {
        write_all(sv[0], buf, used);
        used = 0;
      }
      memcpy(buf + used, hdr, 4 + hl);
      memcpy(buf + used + 4 + hl, data, size);
      used += frame;
    }
  } while (now_ns() < stop);
  uint8_t *q = mp_put_uint(buf + used + 4, n);
  be32_put(buf + used, (uint32_t)(q - buf - used - 4));
  write_all(sv[0], buf, (size_t)(q - buf));

  frd_t f;
  uint32_t len;
  const uint8_t *p;
  uint64_t got;
  frd_init(&f, sv[0], 64);
  if (!(p = frd_next(&f, &len)) || len != 8)
    fail("parent: no ack");
  uint64_t t1 = now_ns();
  memcpy(&got, p, 8);
  if (got != n)
    fail("parent: bad ack");
  close(sv[0]);
  waitpid(pid, NULL, 0);
  double secs = (double)(t1 - t0) / 1e9;
  printf("RESULT msg_size %.1f MB/s\n", (double)n * size / 1e6 / secs);
  printf("RESULT msg_rate %.0f msg/s\n", (double)n / secs);
  return 0;
}
