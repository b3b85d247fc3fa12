/*
 * pool_limit (C limit of the pool curves): W independent processes doing
 * the pool's work with no IPC at all. Each child spins WORK_US
 * microseconds of its own CPU time (CLOCK_PROCESS_CPUTIME_ID, what Lua's
 * os.clock reads) per unit until the time is up, then reports its units
 * through a pipe. The rate is the units of all children over the
 * parent's wall time from the first fork to the last report: what W
 * workers could do if handing out calls cost nothing.
 *
 *   pool_limit <workers> <work_us> [ms]   -> RESULT pool <n> calls/s
 */
#include "common.h"
#include <sys/wait.h>

static uint64_t cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t spin_until(uint64_t deadline, uint64_t work_ns) {
  uint64_t units = 0;
  while (now_ns() < deadline) {
    uint64_t stop = cpu_ns() + work_ns;
    while (cpu_ns() < stop) {
    }
    units++;
  }
  return units;
}

int main(int argc, char **argv) {
  int workers = argc > 1 ? atoi(argv[1]) : 2;
  uint64_t work_ns = (uint64_t)(1000 * (argc > 2 ? atof(argv[2]) : 160));
  uint64_t ms = arg_count(argc, argv, 3, 1000);
  int fds[2];
  uint64_t total = 0, units;
  if (workers < 1 || work_ns == 0)
    fail("usage: pool_limit <workers >= 1> <work_us > 0> [ms]");
  if (pipe(fds))
    die("pipe");
  uint64_t t0 = now_ns(), deadline = t0 + ms * 1000000u;
  for (int i = 0; i < workers; i++) {
    pid_t pid = fork();
    if (pid < 0)
      die("fork");
    if (pid == 0) {
      close(fds[0]);
      units = spin_until(deadline, work_ns);
      write_all(fds[1], &units, sizeof units);
      _exit(0);
    }
  }
  close(fds[1]);
  for (int i = 0; i < workers; i++) {
    if (!read_full(fds[0], &units, sizeof units))
      fail("a worker ended without its count");
    total += units;
  }
  double secs = (double)(now_ns() - t0) / 1e9;
  while (wait(NULL) > 0) {
  }
  printf("RESULT pool %.0f calls/s\n", (double)total / secs);
  return 0;
}
