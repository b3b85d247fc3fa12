/*
 * startup: runs a command RUNS times one after another (stdin /dev/null,
 * stdout and stderr inherited) and prints the median wall time from
 * posix_spawn to wait4() and the median peak RSS (ru_maxrss of that child,
 * from wait4's rusage). /usr/bin/time exists here but its %e has only 10 ms
 * resolution, too coarse for a ~1 ms start.
 *
 *   startup NAME RUNS cmd [args...]
 *        -> RESULT NAME_wall <ms> ms
 *           RESULT NAME_rss <KiB> KiB
 */
#include "common.h"
#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>

extern char **environ;

int main(int argc, char **argv) {
  if (argc < 4)
    fail("usage: startup NAME RUNS cmd [args...]");
  const char *name = argv[1];
  long runs = strtol(argv[2], NULL, 10);
  if (runs < 1)
    runs = 1;
  uint64_t *wall = calloc((size_t)runs, sizeof *wall);
  uint64_t *rss = calloc((size_t)runs, sizeof *rss);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  for (long i = 0; i < runs; i++) {
    pid_t pid;
    uint64_t t0 = now_ns();
    int e = posix_spawnp(&pid, argv[3], &fa, NULL, argv + 3, environ);
    if (e) {
      errno = e;
      die(argv[3]);
    }
    int st;
    struct rusage ru;
    while (wait4(pid, &st, 0, &ru) < 0)
      if (errno != EINTR)
        die("wait4");
    wall[i] = now_ns() - t0;
    rss[i] = (uint64_t)ru.ru_maxrss;
    if (!WIFEXITED(st) || WEXITSTATUS(st))
      fail("command failed");
  }
  qsort(wall, (size_t)runs, sizeof *wall, cmp_u64);
  qsort(rss, (size_t)runs, sizeof *rss, cmp_u64);
  printf("RESULT %s_wall %.3f ms\n", name, (double)wall[runs / 2] / 1e6);
  printf("RESULT %s_rss %llu KiB\n", name, (unsigned long long)rss[runs / 2]);
  return 0;
}
