/*
 * spawn_rate (C baseline): posix_spawn("/bin/true") + waitpid, N times one
 * after another ("seq"), or N times keeping K children in flight ("parK",
 * e.g. par8: waitpid(-1) then spawn the next). stdio inherited, no pipes.
 * glibc's posix_spawn is clone(CLONE_VM|CLONE_VFORK) + execve. With MS,
 * no spawn starts once MS milliseconds have passed (the scaling curves
 * bound each point by time).
 *
 *   spawn_rate [spawns] [seq|parK|both] [ms]
 *        -> RESULT spawn_seq <n> spawns/s  and/or  RESULT spawn_parK <n> spawns/s
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

/* n spawns (fewer when the deadline passes), `width` in flight */
static void run(const char *name, uint64_t n, uint64_t width, uint64_t ms) {
  uint64_t t0 = now_ns(), started = 0, done = 0;
  uint64_t stop = ms ? t0 + ms * 1000000u : UINT64_MAX;
  do {
    while (started < n && started - done < width &&
           (started == 0 || now_ns() < stop)) {
      start();
      started++;
    }
    reap(-1);
    done++;
  } while (done < started);
  printf("RESULT %s %.0f spawns/s\n", name,
         (double)done * 1e9 / (double)(now_ns() - t0));
}

int main(int argc, char **argv) {
  uint64_t n = arg_count(argc, argv, 1, 5000);
  const char *mode = argc > 2 ? argv[2] : "both";
  uint64_t ms = argc > 3 ? strtoull(argv[3], NULL, 10) : 0;
  char name[32];
  if (!strcmp(mode, "seq") || !strcmp(mode, "both"))
    run("spawn_seq", n, 1, ms);
  if (!strcmp(mode, "both"))
    run("spawn_par8", n, 8, ms);
  else if (!strncmp(mode, "par", 3) && atoi(mode + 3) > 0) {
    snprintf(name, sizeof name, "spawn_par%d", atoi(mode + 3));
    run(name, n, (uint64_t)atoi(mode + 3), ms);
  }
  fflush(stdout);
  return 0;
}
