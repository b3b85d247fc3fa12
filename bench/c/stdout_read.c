/*
 * stdout_read (C baseline): posix_spawn a child whose stdout is a pipe(2)
 * (the `writer` helper beside this program, writing 1 MiB write()s; or
 * `head -c BYTES /dev/zero` when it is missing), read() it with a 64 KiB
 * buffer - the size libuv reads with - counting bytes until EOF, reap it.
 * Timed from the spawn to EOF. MB = 10^6 bytes.
 *
 *   stdout_read [bytes]            -> RESULT stdout_read <n> MB/s
 */
#include "common.h"
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

extern char **environ;

int main(int argc, char **argv) {
  uint64_t total = arg_count(argc, argv, 1, 1073741824.0);
  char exe[4096], writer[4200], bytes[32];
  ssize_t el = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (el < 0)
    die("readlink");
  exe[el] = 0;
  char *slash = strrchr(exe, '/');
  *slash = 0;
  snprintf(writer, sizeof writer, "%s/writer", exe);
  snprintf(bytes, sizeof bytes, "%llu", (unsigned long long)total);
  char *wargv[] = {writer, bytes, NULL};
  char hc[40];
  snprintf(hc, sizeof hc, "-c%llu", (unsigned long long)total);
  char *hargv[] = {"head", hc, "/dev/zero", NULL};
  char **cargv = access(writer, X_OK) == 0 ? wargv : hargv;
  const char *path = cargv == wargv ? writer : "/usr/bin/head";

  uint64_t t0 = now_ns();
  int fds[2];
  if (pipe2(fds, O_CLOEXEC))
    die("pipe2");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  pid_t pid;
  int e = posix_spawn(&pid, path, &fa, NULL, cargv, environ);
  if (e) {
    errno = e;
    die("posix_spawn");
  }
  close(fds[1]);
  char *buf = malloc(65536);
  uint64_t got = 0;
  for (;;) {
    ssize_t k = read(fds[0], buf, 65536);
    if (k < 0) {
      if (errno == EINTR)
        continue;
      die("read");
    }
    if (k == 0)
      break;
    got += (uint64_t)k;
  }
  uint64_t t1 = now_ns();
  int st;
  waitpid(pid, &st, 0);
  if (got != total || !WIFEXITED(st) || WEXITSTATUS(st))
    fail("short read or child failed");
  printf("RESULT stdout_read %.1f MB/s\n",
         (double)total * 1e3 / (double)(t1 - t0));
  return 0;
}
