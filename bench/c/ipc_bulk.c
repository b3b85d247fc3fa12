/*
 * ipc_bulk (C baseline): socketpair + fork; the parent sends N frames
 * {seq = i, data = <1 MiB string>}, each with one writev() of the 20-byte
 * header and the payload (no copy of the payload in user space); the child
 * reads each frame straight into its frame buffer (read() sized to what is
 * missing), decodes it, checks the data's length and ends, and acks after
 * the last one. Timed from the first writev to the ack; MB = 10^6 bytes of
 * payload.
 *
 *   ipc_bulk [messages]            -> RESULT ipc_bulk <n> MB/s
 */
#include "common.h"
#include <sys/socket.h>
#include <sys/wait.h>

#define SIZE (1u << 20)

int main(int argc, char **argv) {
  uint64_t n = arg_count(argc, argv, 1, 2000);
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
    frd_init(&f, sv[1], 65536);
    uint64_t bytes = 0;
    for (uint64_t i = 1; i <= n; i++) {
      if (!(p = frd_next(&f, &len)))
        fail("child: EOF");
      if (decode_msg(p, len, &m) || m.seq != i || m.data_len != SIZE ||
          m.data[0] != 'a' || m.data[SIZE - 1] != 'a' + (SIZE - 1) % 26)
        fail("child: bad message");
      bytes += m.data_len;
    }
    write_all(sv[1], out, frame_small(out, bytes));
    _exit(0);
  }

  close(sv[1]);
  char *data = malloc(SIZE);
  for (uint32_t i = 0; i < SIZE; i++)
    data[i] = (char)('a' + i % 26);
  uint64_t t0 = now_ns();
  for (uint64_t i = 1; i <= n; i++) {
    uint8_t *q = out + 4;
    *q++ = 0x82;
    q = mp_put_fixstr(q, "seq");
    q = mp_put_uint(q, i);
    q = mp_put_fixstr(q, "data");
    *q++ = 0xdb;
    be32_put(q, SIZE);
    q += 4;
    be32_put(out, (uint32_t)(q - out - 4) + SIZE);
    struct iovec iov[2] = {{out, (size_t)(q - out)}, {data, SIZE}};
    writev_all(sv[0], iov, 2);
  }
  frd_init(&f, sv[0], 256);
  if (!(p = frd_next(&f, &len)))
    fail("parent: EOF");
  uint64_t t1 = now_ns();
  if (decode_msg(p, len, &m) || m.seq != n * SIZE)
    fail("parent: bad ack");
  close(sv[0]);
  waitpid(pid, NULL, 0);
  printf("RESULT ipc_bulk %.1f MB/s\n",
         (double)n * SIZE * 1e3 / (double)(t1 - t0));
  return 0;
}
