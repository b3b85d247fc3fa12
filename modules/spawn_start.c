/*
 * spawn_start.c - starting a program. Programs start through posix_spawn:
 * glibc implements it with clone(CLONE_VM|CLONE_VFORK), several times
 * cheaper than the plain fork() of libuv 1.44's uv_spawn, and it reports
 * the exec errno (ENOENT, EACCES) synchronously. uv_spawn is used only
 * when uid/gid are asked for.
 *
 * A "pipe" stdio entry is a real pipe(2) (a child may open /dev/stdin and
 * bulk output moves at pipe speed); "ipc" entries are socketpairs,
 * wrapped in the parent as a uv_pipe_t opened with ipc=1. Every fd made
 * here is O_CLOEXEC and the child gets exactly the fds it was given
 * (closefrom).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "spawn_int.h"

#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 34)
#define HAVE_CLOSEFROM 1
#endif

static int stream_fd(lua_State *L, int idx) {
  int fd = -1;
  lua_getfield(L, idx, "fileno");
  lua_pushvalue(L, idx);
  lua_call(L, 1, 1);
  if (lua_isinteger(L, -1))
    fd = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  return fd;
}

static void close_fd(int *fd) {
  if (*fd >= 0)
    close(*fd);
  *fd = -1;
}

void lipc__spawn_release(spec *sp, int parent_ends) {
  int i;
  for (i = 0; i < sp->n; i++) {
    sio *io = &sp->io[i];
    if (io->kind == IO_PIPE || io->kind == IO_IPC)
      close_fd(&io->src);
    close_fd(&io->tmp);
    if (parent_ends)
      close_fd(&io->parent_end);
  }
}

/* A new fd must not land on 0-2 (lipc started with one closed): libuv
 * refuses to close those, and they are the child's places. */
static int lift(int *fds) {
  int i, nfd;
  for (i = 0; i < 2; i++) {
    if (fds[i] >= 3)
      continue;
    nfd = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
    close(fds[i]);
    fds[i] = nfd;
  }
  if (fds[0] >= 0 && fds[1] >= 0)
    return 0;
  nfd = -errno;
  close_fd(&fds[0]);
  close_fd(&fds[1]);
  return nfd;
}

/* Makes the pipes and finds the fds of streams; sources below n that are
 * not in their own place are moved up, so that no dup2 in the child
 * overwrites a source still needed. */
int lipc__spawn_fds(lua_State *L, spec *sp) {
  int i, fds[2], err;
  if (sp->pty.on && (err = lipc__pty_open(sp)) != 0)
    return err;
  for (i = 0; i < sp->n; i++) {
    sio *io = &sp->io[i];
    switch (io->kind) {
      case IO_PIPE:
        if (pipe2(fds, O_CLOEXEC) != 0)
          return -errno;
        if ((err = lift(fds)) != 0)
          return err;
        io->src = fds[i == 0 ? 0 : 1];
        io->parent_end = fds[i == 0 ? 1 : 0];
        break;
      case IO_IPC:
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
          return -errno;
        if ((err = lift(fds)) != 0)
          return err;
        io->parent_end = fds[0];
        io->src = fds[1];
        break;
      case IO_FD: /* "inherit" of a closed fd */
        if (io->src == i && i < 3 && fcntl(i, F_GETFD) < 0)
          io->kind = IO_NULL;
        break;
      case IO_STREAM: {
        lipc__stream *s = lipc__stream_test(L, io->sidx);
        io->src = stream_fd(L, io->sidx);
        if (io->src < 0 || !lipc__stream_open(s))
          return UV_EBADF;
        /* The child shares the open file description: it must not get it
       * non-blocking. The parent is about to give its copy up. */
        if (!lipc__stream_handle(s)->internal) {
          int fl = fcntl(io->src, F_GETFL);
          if (fl >= 0 && (fl & O_NONBLOCK))
            fcntl(io->src, F_SETFL, fl & ~O_NONBLOCK);
        }
        break;
      }
      default: break;
    }
  }
  for (i = 0; i < sp->n; i++) {
    sio *io = &sp->io[i];
    if (io->kind != IO_STDOUT && io->src >= 0 && io->src < sp->n &&
        io->src != i) {
      io->tmp = fcntl(io->src, F_DUPFD_CLOEXEC, sp->n);
      if (io->tmp < 0)
        return -errno;
    }
  }
  return 0;
}

static int src_of(const sio *io) {
  return io->tmp >= 0 ? io->tmp : io->src;
}

/* A file exec refuses as ENOEXEC (a script with no #! line) runs under
 * /bin/sh, as execvp does it and so as Node's spawn does. */
static int spawn_sh(spec *sp, pid_t *pid, const posix_spawn_file_actions_t *fa,
                    const posix_spawnattr_t *at) {
  size_t n = 0, i;
  char **av;
  int e;
  while (sp->argv[n])
    n++;
  if ((av = malloc((n + 2) * sizeof(*av))) == NULL)
    return ENOMEM;
  av[0] = "/bin/sh";
  av[1] = (char *)sp->path;
  for (i = 1; i <= n; i++) /* argv[1..n-1] and the NULL */
    av[i + 1] = sp->argv[i];
  e = posix_spawn(pid, "/bin/sh", fa, at, av, sp->envp);
  free(av);
  return e;
}

static int do_posix_spawn(spec *sp, pid_t *pid) {
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  sigset_t none, all;
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  int i, e = 0;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&at);
  for (i = 0; i < sp->n && e == 0; i++) {
    const sio *io = &sp->io[i];
    if (io->kind == IO_NULL)
      e = posix_spawn_file_actions_addopen(&fa, i, "/dev/null", O_RDWR, 0);
    else if (io->kind == IO_CLOSE)
      e = posix_spawn_file_actions_addclose(&fa, i);
    else if (io->kind == IO_STDOUT) /* fd 1 is in place by now */
      e = posix_spawn_file_actions_adddup2(&fa, 1, i);
    else if (io->kind == IO_PTY && i == 0) /* after setsid: see spawn_pty.c */
      e = posix_spawn_file_actions_addopen(&fa, 0, sp->pty.slave, O_RDWR, 0);
    else if (io->kind == IO_PTY)
      e = posix_spawn_file_actions_adddup2(&fa, 0, i);
    else
      e = posix_spawn_file_actions_adddup2(&fa, src_of(io), i);
  }
  if (e == 0 && sp->cwd)
    e = posix_spawn_file_actions_addchdir_np(&fa, sp->cwd);
#ifdef HAVE_CLOSEFROM
  if (e == 0)
    e = posix_spawn_file_actions_addclosefrom_np(&fa, sp->n);
#endif
  /* Signals: nothing blocked, every disposition back to default (the
   * parent ignores SIGPIPE, and ignored signals survive exec). */
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&at, &none);
  posix_spawnattr_setsigdefault(&at, &all);
  if (sp->detached || sp->pty.on) { /* a pty: the terminal's session */
    flags |= POSIX_SPAWN_SETSID;
  } else if (sp->process_group) {
    flags |= POSIX_SPAWN_SETPGROUP;
    posix_spawnattr_setpgroup(&at, 0);
  }
  posix_spawnattr_setflags(&at, flags);
  if (e == 0)
    e = posix_spawn(pid, sp->path, &fa, &at, sp->argv, sp->envp);
  if (e == ENOEXEC)
    e = spawn_sh(sp, pid, &fa, &at);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  return -e;
}

/* ---- die_with_parent: fork, prctl, exec ---------------------------------- */

/* posix_spawn cannot set PR_SET_PDEATHSIG, so a child that must die with
 * us starts through fork(): the child, a copy of this process with one
 * thread, makes only async-signal-safe calls, does what posix_spawn's
 * file actions do, and reports an exec failure's errno through a
 * close-on-exec pipe (so the error is synchronous, as posix_spawn's). */
_Noreturn static void child_exec(const spec *sp, int ep, pid_t parent,
                                 char **sh_argv) {
  struct sigaction sa;
  sigset_t none;
  int i, e, fd;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = SIG_DFL;
  for (i = 1; i < NSIG; i++) /* dispositions back to default */
    sigaction(i, &sa, NULL);
  if (prctl(PR_SET_PDEATHSIG, sp->pdeathsig) != 0)
    goto fail;
  if (getppid() != parent) /* the parent died before prctl */
    _exit(128 + sp->pdeathsig);
  if (sp->detached || sp->pty.on)
    setsid();
  else if (sp->process_group)
    setpgid(0, 0);
  for (i = 0; i < sp->n; i++) {
    const sio *io = &sp->io[i];
    if (io->kind == IO_NULL) {
      if ((fd = open("/dev/null", O_RDWR)) < 0)
        goto fail;
      if (fd != i && (dup2(fd, i) < 0 || close(fd) < 0))
        goto fail;
    } else if (io->kind == IO_CLOSE) {
      close(i);
    } else if (io->kind == IO_STDOUT) {
      if (dup2(1, i) < 0)
        goto fail;
    } else if (io->kind == IO_PTY && i == 0) {
      /* in the new session: it becomes the controlling terminal */
      if ((fd = open(sp->pty.slave, O_RDWR)) < 0)
        goto fail;
      if (fd != 0 && (dup2(fd, 0) < 0 || close(fd) < 0))
        goto fail;
    } else if (io->kind == IO_PTY) {
      if (dup2(0, i) < 0)
        goto fail;
    } else if (src_of(io) == i) { /* in place: keep it across exec */
      if (fcntl(i, F_SETFD, 0) < 0)
        goto fail;
    } else if (dup2(src_of(io), i) < 0) {
      goto fail;
    }
  }
  if (sp->cwd && chdir(sp->cwd) != 0)
    goto fail;
  for (fd = sp->n; fd < ep; fd++) /* exactly the fds it was given */
    close(fd);
#ifdef HAVE_CLOSEFROM
  closefrom(ep + 1);
#endif
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  execve(sp->path, sp->argv, sp->envp);
  if (errno == ENOEXEC)
    execve("/bin/sh", sh_argv, sp->envp);
fail:
  e = errno;
  while (write(ep, &e, sizeof(e)) < 0 && errno == EINTR)
    ;
  _exit(127);
}

static int do_fork_spawn(spec *sp, pid_t *pid) {
  size_t n = 0, i;
  char **sh_argv;
  sigset_t all, old;
  int ep[2], e = 0;
  ssize_t got;
  pid_t parent = getpid();
  while (sp->argv[n])
    n++;
  if ((sh_argv = malloc((n + 2) * sizeof(*sh_argv))) == NULL)
    return UV_ENOMEM;
  sh_argv[0] = "/bin/sh";
  sh_argv[1] = (char *)sp->path;
  for (i = 1; i <= n; i++)
    sh_argv[i + 1] = sp->argv[i];
  if (pipe2(ep, O_CLOEXEC) != 0) {
    e = errno;
    free(sh_argv);
    return -e;
  }
  if (ep[1] < sp->n) { /* above the child's fds: no dup2 lands on it */
    int up = fcntl(ep[1], F_DUPFD_CLOEXEC, sp->n);
    close(ep[1]);
    if ((ep[1] = up) < 0) {
      e = errno;
      close(ep[0]);
      free(sh_argv);
      return -e;
    }
  }
  /* No handler of ours may run in the child before its reset. */
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  *pid = fork();
  if (*pid == 0)
    child_exec(sp, ep[1], parent, sh_argv);
  e = *pid < 0 ? errno : 0;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  close(ep[1]);
  free(sh_argv);
  if (*pid < 0) {
    close(ep[0]);
    return -e;
  }
  do
    got = read(ep[0], &e, sizeof(e));
  while (got < 0 && errno == EINTR);
  close(ep[0]);
  if (got == (ssize_t)sizeof(e)) { /* exec failed: the child is gone */
    while (waitpid(*pid, NULL, 0) < 0 && errno == EINTR)
      ;
    return -e;
  }
  return 0;
}

static void uvproc_closed(lipc__handle *h) {
  free(h);
}

static void on_uv_exit(uv_process_t *p, int64_t status, int termsig) {
  uvproc *u = (uvproc *)p->data;
  lchild *c = u->child;
  u->child = NULL;
  if (c) {
    c->uvp = NULL;
    lipc__child_exit(c, termsig ? -1 : (int)status, termsig);
  }
  lipc__handle_close(&u->h);
}

static int do_uv_spawn(lipc_runtime *rt, lchild *c, spec *sp) {
  uv_stdio_container_t io[MAX_STDIO];
  uv_process_options_t o;
  uvproc *u = calloc(1, sizeof(*u));
  int i, err;
  if (u == NULL)
    return UV_ENOMEM;
  memset(&o, 0, sizeof(o));
  for (i = 0; i < sp->n; i++) {
    if (sp->io[i].kind == IO_STDOUT) {
      io[i] = io[1]; /* the same fd, or /dev/null */
    } else if (sp->io[i].kind == IO_NULL || sp->io[i].kind == IO_CLOSE) {
      io[i].flags = UV_IGNORE;
    } else {
      io[i].flags = UV_INHERIT_FD;
      io[i].data.fd = src_of(&sp->io[i]);
    }
  }
  o.exit_cb = on_uv_exit;
  o.file = sp->path;
  o.args = sp->argv;
  o.env = sp->envp;
  o.cwd = sp->cwd;
  o.stdio = io;
  o.stdio_count = sp->n;
  if (sp->detached || sp->process_group) /* setsid: a group of its own */
    o.flags |= UV_PROCESS_DETACHED;
  if (sp->uid >= 0) {
    o.flags |= UV_PROCESS_SETUID;
    o.uid = (uv_uid_t)sp->uid;
  }
  if (sp->gid >= 0) {
    o.flags |= UV_PROCESS_SETGID;
    o.gid = (uv_gid_t)sp->gid;
  }
  err = uv_spawn(rt->loop, &u->p, &o);
  lipc__handle_bare(rt, &u->h, (uv_handle_t *)&u->p, "process", uvproc_closed);
  if (err) {
    lipc__handle_close(&u->h);
    return err;
  }
  uv_unref((uv_handle_t *)&u->p); /* the child's timer counts */
  u->child = c;
  c->uvp = u;
  c->pid = u->p.pid;
  return 0;
}

int lipc__spawn_start(lipc_runtime *rt, lchild *c, spec *sp) {
  pid_t pid = -1;
  int err = lipc__reap_start(rt);
  if (err)
    return err;
  c->group = sp->detached || sp->process_group || sp->pty.on;
  c->kill_tree = sp->kill_tree;
  if (sp->uid >= 0 || sp->gid >= 0)
    return do_uv_spawn(rt, c, sp);
  err = sp->pdeathsig ? do_fork_spawn(sp, &pid) : do_posix_spawn(sp, &pid);
  if (err != 0)
    return err;
  return lipc__reap_track(rt, c, pid);
}
