/*
 * spawn_rate (C baseline): posix_spawn("/bin/true") + waitpid, N times one
 * after another ("seq"), or N times keeping 8 children in flight ("par8",
 * waitpid(-1) then spawn the next). stdio inherited, no pipes.
 * glibc's posix_spawn is clone(CLONE_VM|CLONE_VFORK) + execve.
 *
 *   spawn_rate [spawns] [seq|par8|both]
 *        -> RESULT spawn_seq <n> spawns/s  and/or  RESULT spawn_par8 <n> spawns/s
 */
#include "common.h"
#include <spawn.h>
#include <sys/wait.h>

extern char **environ;

static pid_t start(void) {
  static char *argv[] = {"/bin/true", NULL};
  pid_t pid;
  int e = posix_spawn(&pid, "/bin/true", NULL, NULL, argv, environ);
  if (e) {
    errno = e;
    die("posix_spawn");
  }
  return pid;
}

static void reap(pid_t pid) {
  int st;
  pid_t r;
  while ((r = waitpid(pid, &st, 0)) < 0 && errno == EINTR) {
  }
  if (r < 0)
    die("waitpid");
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    fail("/bin/true failed");
}

int main(int argc, char **argv) {
  uint64_t n = arg_count(argc, argv, 1, 5000);
  const char *mode = argc > 2 ? argv[2] : "both";
  if (!strcmp(mode, "seq") || !strcmp(mode, "both")) {
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < n; i++)
      reap(start());
    printf("RESULT spawn_seq %.0f spawns/s\n",
           (double)n * 1e9 / (double)(now_ns() - t0));
  }
  if (!strcmp(mode, "par8") || !strcmp(mode, "both")) {
    uint64_t t0 = now_ns(), started = 0, done = 0;
    while (done < n) {
      while (started < n && started - done < 8) {
        start();
        started++;
      }
      reap(-1);
      done++;
    }
    printf("RESULT spawn_par8 %.0f spawns/s\n",
           (double)n * 1e9 / (double)(now_ns() - t0));
  }
  fflush(stdout);
  return 0;
}
