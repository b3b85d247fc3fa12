/*
 * ipc_pingpong (C baseline): socketpair + fork; the parent sends a framed
 * small table, the child decodes it and sends it back re-encoded, the parent
 * decodes the reply and checks it. Blocking read()/write(), one of each per
 * message per side: two syscalls per side per round trip.
 *
 * With "evloop", both sides also wait in epoll_wait before every read, as
 * an event loop does: three syscalls per side per round trip, like lipc's
 * and Node's. That is the case's floor for an event-loop runtime.
 *
 * "evpoll" (or "evpoll=<us>") is evloop with lipc's poll: each side polls
 * epoll_wait(..., 0) for up to 50 us before it blocks (common.h).
 *
 * A third argument, ns, makes each side also spin ns nanoseconds before
 * each send: a runtime's CPU per message, without the runtime. With the
 * CPU lipc spends, this C program lands on lipc's figure (bench/README.md).
 *
 *   ipc_pingpong [round_trips] [evloop|evpoll[=us]] [ns]   -> RESULT ipc_pingpong <n> rt/s
 */
#include "common.h"
#include <sys/socket.h>
#include <sys/wait.h>

/* busy for ns nanoseconds, as a runtime's work on a message would be */
static void spin(uint64_t ns) {
  uint64_t t0 = now_ns();
  while (ns > 0 && now_ns() - t0 < ns)
    ;
}

int main(int argc, char **argv) {
  uint64_t n = arg_count(argc, argv, 1, 100000);
  int evloop = arg_evloop(argc, argv, 2);
  uint64_t busy = argc > 3 ? strtoull(argv[3], NULL, 10) : 0;
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
    if (evloop)
      f.ep = ep_for(sv[1]);
    while ((p = frd_next(&f, &len))) {
      if (decode_msg(p, len, &m) || m.args_sum != 6)
        fail("child: bad message");
      spin(busy);
      write_all(sv[1], out, frame_small(out, m.seq));
    }
    _exit(0);
  }

  close(sv[1]);
  frd_init(&f, sv[0], 65536);
  if (evloop)
    f.ep = ep_for(sv[0]);
  uint64_t t0 = now_ns();
  for (uint64_t i = 1; i <= n; i++) {
    spin(busy);
    write_all(sv[0], out, frame_small(out, i));
    if (!(p = frd_next(&f, &len)))
      fail("parent: EOF");
    if (decode_msg(p, len, &m) || m.seq != i)
      fail("parent: bad reply");
  }
  uint64_t t1 = now_ns();
  close(sv[0]);
  waitpid(pid, NULL, 0);
  printf("RESULT ipc_pingpong %.0f rt/s\n",
         (double)n * 1e9 / (double)(t1 - t0));
  return 0;
}
