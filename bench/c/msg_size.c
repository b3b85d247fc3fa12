/*
 * msg_size (C baseline of the message-size curve): socketpair + fork; the
 * parent sends strings of SIZE bytes as lipc frames (4-byte length, then a
 * MessagePack str), first a few to warm both sides up, then for the time
 * given. After each part it sends the count so far (a MessagePack uint)
 * and the child, which checks every frame's header, length and ends,
 * answers with its own count. Frames under 64 KiB are packed into a
 * 64 KiB buffer and written when it is full (what batching writers do);
 * bigger ones go out with one writev of header and payload (no copy). The
 * child reads into a buffer that grows to the largest frame. Timed from
 * the end of the warm-up to the second answer; MB = 10^6 bytes of payload.
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
  uint8_t out[12];
  frd_init(&f, fd, BATCH);
  while ((p = frd_next(&f, &len)) != NULL) {
    mp_rd r = {p, p + len};
    uint32_t sn;
    if (len && (*p < 0x80 || (*p >= 0xcc && *p <= 0xcf))) {
      if (mp_get_uint(&r, &count) || count != n)
        fail("child: bad count");
      be32_put(out, 8);
      memcpy(out + 4, &n, 8);
      write_all(fd, out, 12);
      continue;
    }
    if (mp_get_str(&r, &s, &sn) || r.p != r.end || sn != size || s[0] != 'a' ||
        s[sn - 1] != 'a' + (sn - 1) % 26)
      fail("child: bad message");
    n++;
  }
  _exit(0);
}

typedef struct sender {
  int fd;
  uint8_t hdr[16], *buf;
  const char *data;
  size_t hl, frame, used;
  uint32_t size;
  uint64_t n;
  frd_t acks;
} sender;

/* sends `count` strings, or strings until `stop`, then the count; returns
 * when the child answered */
static void part(sender *x, uint64_t count, uint64_t stop) {
  uint64_t every = x->size < BATCH ? BATCH / x->size : 1;
  const uint8_t *p;
  uint32_t len;
  uint64_t got;
  do {
    for (uint64_t k = 0; k < every; k++, x->n++) {
      if (x->frame > BATCH) {
        struct iovec iov[2] = {{x->hdr, 4 + x->hl}, {(void *)x->data, x->size}};
        writev_all(x->fd, iov, 2);
        continue;
      }
      if (x->used + x->frame > BATCH) {
        write_all(x->fd, x->buf, x->used);
        x->used = 0;
      }
      memcpy(x->buf + x->used, x->hdr, 4 + x->hl);
      memcpy(x->buf + x->used + 4 + x->hl, x->data, x->size);
      x->used += x->frame;
    }
  } while (count ? x->n < count : now_ns() < stop);
  if (x->used + 13 > BATCH) {
    write_all(x->fd, x->buf, x->used);
    x->used = 0;
  }
  uint8_t *q = mp_put_uint(x->buf + x->used + 4, x->n);
  be32_put(x->buf + x->used, (uint32_t)(q - x->buf - x->used - 4));
  write_all(x->fd, x->buf, (size_t)(q - x->buf));
  x->used = 0;
  if (!(p = frd_next(&x->acks, &len)) || len != 8)
    fail("parent: no ack");
  memcpy(&got, p, 8);
  if (got != x->n)
    fail("parent: bad ack");
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

  sender x = {.fd = sv[0], .size = size, .buf = malloc(BATCH)};
  char *data = malloc(size);
  if (!x.buf || !data)
    die("malloc");
  for (uint32_t i = 0; i < size; i++)
    data[i] = (char)('a' + i % 26);
  x.data = data;
  x.hl = str_header(x.hdr + 4, size);
  be32_put(x.hdr, (uint32_t)(x.hl + size));
  x.frame = 4 + x.hl + size;
  frd_init(&x.acks, sv[0], 64);

  uint64_t warm = (8u << 20) / size;
  part(&x, warm < 4 ? 4 : warm > 1000 ? 1000 : warm, 0);
  warm = x.n;
  uint64_t t0 = now_ns();
  part(&x, 0, t0 + ms * 1000000u);
  double secs = (double)(now_ns() - t0) / 1e9;
  close(sv[0]);
  waitpid(pid, NULL, 0);
  printf("RESULT msg_size %.1f MB/s\n",
         (double)(x.n - warm) * size / 1e6 / secs);
  printf("RESULT msg_rate %.0f msg/s\n", (double)(x.n - warm) / secs);
  return 0;
}
