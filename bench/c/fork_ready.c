/*
 * fork_ready (C baseline): the time from starting a child to its first
 * message, with an exec like every runtime's fork has to do: socketpair,
 * posix_spawn of this same program with the child's end as fd 3, the child
 * writes one framed small table on fd 3 and exits; the parent reads it and
 * reaps the child. The median of K runs.
 *
 *   fork_ready [runs]              -> RESULT fork_ready <ms> ms
 */
#include "common.h"
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>

extern char **environ;

int main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "child")) {
    uint8_t out[64];
    write_all(3, out, frame_small(out, 1));
    return 0;
  }
  uint64_t k = arg_count(argc, argv, 1, 20);
  if (k < 1)
    k = 1;
  uint64_t *ts = calloc(k, sizeof *ts);
  char exe[4096];
  ssize_t el = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (el < 0)
    die("readlink");
  exe[el] = 0;
  for (uint64_t i = 0; i < k; i++) {
    uint64_t t0 = now_ns();
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
      die("socketpair");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, sv[1], 3); /* dup2 clears CLOEXEC */
    char *cargv[] = {exe, "child", NULL};
    pid_t pid;
    int e = posix_spawn(&pid, exe, &fa, NULL, cargv, environ);
    if (e) {
      errno = e;
      die("posix_spawn");
    }
    posix_spawn_file_actions_destroy(&fa);
    close(sv[1]);
    frd_t f;
    frd_init(&f, sv[0], 256);
    uint32_t len;
    msg_t m;
    const uint8_t *p = frd_next(&f, &len);
    ts[i] = now_ns() - t0;
    if (!p || decode_msg(p, len, &m) || m.seq != 1)
      fail("bad ready message");
    free(f.buf);
    close(sv[0]);
    waitpid(pid, NULL, 0);
  }
  qsort(ts, k, sizeof *ts, cmp_u64);
  printf("RESULT fork_ready %.3f ms\n", (double)ts[k / 2] / 1e6);
  return 0;
}
