/*
 * stdout_read (C baseline): posix_spawn a child whose stdout is a pipe(2)
 * (the `writer` helper beside this program, writing 1 MiB write()s; or
 * `head -c BYTES /dev/zero` when it is missing), read() it with a 64 KiB
 * buffer - the size libuv reads with - counting bytes until EOF, reap it.
 * Timed from the spawn to EOF. MB = 10^6 bytes.
 *
 * With "evloop" it reads the way lipc's streams do (the case's floor for a
 * runtime that hands out each chunk as a string of its own): epoll_wait,
 * a read, and after a read of 4 KiB or more more reads until the pipe is
 * empty or 32 KiB are in; each chunk is then copied into a buffer of its
 * own, allocated and freed, as a new Lua string is.
 *
 *   stdout_read [bytes] [evloop]   -> RESULT stdout_read <n> MB/s
 */
#include "common.h"
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

extern char **environ;

/* one chunk as lipc reads it: a read of up to 256 KiB; after 4 KiB or
   more, reads on until the pipe is empty or 32 KiB are in. Returns the
   bytes, 0 at EOF (nothing before it), -1 when the pipe is empty. */
static ssize_t read_chunk(int fd, char *buf, int *eof) {
  ssize_t n = read(fd, buf, 256 * 1024), k = n;
  if (n <= 0) {
    if (n == 0)
      *eof = 1;
    else if (errno != EAGAIN && errno != EINTR)
      die("read");
    return n == 0 ? 0 : -1;
  }
  while (n < 32 * 1024 && k >= 4096) {
    k = read(fd, buf + n, 32 * 1024 - (size_t)n);
    if (k > 0)
      n += k;
    else if (k == 0)
      *eof = 1;
    else if (errno != EAGAIN && errno != EINTR)
      die("read");
  }
  return n;
}

static uint64_t read_evloop(int fd) {
  char *buf = malloc(256 * 1024);
  uint64_t got = 0;
  int ep = ep_for(fd), eof = 0;
  if (buf == NULL || fcntl(fd, F_SETFL, O_NONBLOCK))
    die("setup");
  while (!eof) {
    ep_wait(ep);
    ssize_t n = read_chunk(fd, buf, &eof);
    if (n <= 0)
      continue;
    char *chunk = malloc((size_t)n);
    if (chunk == NULL)
      die("malloc");
    memcpy(chunk, buf, (size_t)n);
    got += (uint64_t)n -
           (uint64_t)(chunk[n - 1] != 0); /* the writer writes zeros */
    free(chunk);
  }
  close(ep);
  free(buf);
  return got;
}

int main(int argc, char **argv) {
  uint64_t total = arg_count(argc, argv, 1, 1073741824.0);
  int evloop = arg_evloop(argc, argv, 2);
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
  uint64_t got = evloop ? read_evloop(fds[0]) : count_to_eof(fds[0], 65536);
  uint64_t t1 = now_ns();
  int st;
  waitpid(pid, &st, 0);
  if (got != total || !WIFEXITED(st) || WEXITSTATUS(st))
    fail("short read or child failed");
  printf("RESULT stdout_read %.1f MB/s\n",
         (double)total * 1e3 / (double)(t1 - t0));
  return 0;
}
