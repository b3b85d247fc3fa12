/*
 * spawn_reap.c - reaping. Children are reaped through one SIGCHLD watcher
 * per runtime (lipc_runtime.reaper) that peeks at exited children
 * (waitid, WNOWAIT) and calls waitpid(pid, WNOHANG) on our own children
 * only: libuv's watcher does the same for the pids it spawned (the
 * uid/gid path), so both coexist and nobody steals a child.
 *
 * As PID 1 (a container's init) lipc also reaps the orphans the kernel
 * reparents to it (every child in /proc that is neither ours nor
 * libuv's), and passes SIGTERM, which init ignores by default, on to its
 * children (their groups, for children that lead one).
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "spawn_int.h"

static void proc_unlink(lipc__reaper *r, lproc *p) {
  if (p->prev)
    p->prev->next = p->next;
  else if (r->procs == p)
    r->procs = p->next;
  if (p->next)
    p->next->prev = p->prev;
  p->next = p->prev = NULL;
}

/* Tells the child object (if it still cares) how p ended. */
static void report(lproc *p) {
  lchild *c = p->child;
  int status = p->status;
  if (c == NULL)
    return;
  c->proc = NULL;
  if (status == -1)
    lipc__child_exit(c, -1, 0);
  else if (WIFSIGNALED(status))
    lipc__child_exit(c, -1, WTERMSIG(status));
  else
    lipc__child_exit(c, WEXITSTATUS(status), 0);
}

static lproc *find_proc(lipc__reaper *r, pid_t pid) {
  lproc *p;
  for (p = r->procs; p; p = p->next)
    if (p->pid == pid)
      return p;
  return NULL;
}

/* Moves p, reaped with this status (-1: by someone else), to done. */
static void reaped(lipc__reaper *r, lproc *p, int status, lproc **done) {
  proc_unlink(r, p);
  p->status = status;
  p->next = *done;
  *done = p;
}

/* The exited children the kernel names, peeked at (WNOWAIT) and reaped
 * when they are ours: two syscalls an exit, however many children run.
 * Returns 0 when no exited child is left, -1 at one that is not ours
 * (libuv's, an embedder's): asking each of ours is then the way on. */
static int reap_named(lipc__reaper *r, lproc **done) {
  for (;;) {
    siginfo_t si;
    int status;
    pid_t got;
    lproc *p;
    si.si_pid = 0;
    if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) < 0)
      return errno == EINTR ? -1 : 0; /* ECHILD: no child at all */
    if (si.si_pid == 0)
      return 0;
    if ((p = find_proc(r, si.si_pid)) == NULL)
      return -1;
    do
      got = waitpid(p->pid, &status, WNOHANG);
    while (got < 0 && errno == EINTR);
    if (got == 0)
      return -1; /* not ready after all: ask each */
    reaped(r, p, got < 0 ? -1 : status, done);
  }
}

/* ---- PID 1 ------------------------------------------------------------- */

/* A child libuv started (the uid/gid path): libuv reaps it. */
static int is_uv_child(lipc_runtime *rt, pid_t pid) {
  lipc__handle *h;
  for (h = rt->handles; h; h = h->next)
    if (h->bare && h->uv && strcmp(h->kind, "process") == 0 &&
        ((uvproc *)h)->p.pid == pid)
      return 1;
  return 0;
}

/* Reaps the exited children that are neither ours nor libuv's: orphans
 * reparented to us, as init. */
static void reap_orphans(lipc__reaper *r) {
  DIR *d = opendir("/proc/self/task");
  struct dirent *e;
  if (d == NULL)
    return;
  while ((e = readdir(d)) != NULL) {
    char path[300];
    FILE *f;
    long pid;
    if (e->d_name[0] == '.')
      continue;
    snprintf(path, sizeof(path), "/proc/self/task/%s/children", e->d_name);
    if ((f = fopen(path, "re")) == NULL)
      continue;
    while (fscanf(f, "%ld", &pid) == 1)
      if (find_proc(r, (pid_t)pid) == NULL && !is_uv_child(r->h.rt, (pid_t)pid))
        while (waitpid((pid_t)pid, NULL, WNOHANG) < 0 && errno == EINTR)
          ;
    fclose(f);
  }
  closedir(d);
}

typedef struct termfwd {
  lipc__handle h;
  uv_signal_t sig;
  lipc__reaper *r;
} termfwd;

static void on_term(uv_signal_t *uv, int signum) {
  termfwd *t = (termfwd *)uv->data;
  lproc *p;
  if (t->r == NULL)
    return;
  for (p = t->r->procs; p; p = p->next) {
    if (p->child && p->child->group && kill(-p->pid, signum) == 0)
      continue;
    kill(p->pid, signum);
  }
}

static void termfwd_closed(lipc__handle *h) {
  termfwd *t = (termfwd *)h;
  if (t->r)
    t->r->termfwd = NULL;
  free(t);
}

static void init_duties(lipc_runtime *rt, lipc__reaper *r) {
  termfwd *t;
  r->init = 1;
  if ((t = calloc(1, sizeof(*t))) == NULL)
    return;
  uv_signal_init(rt->loop, &t->sig);
  lipc__handle_bare(rt, &t->h, (uv_handle_t *)&t->sig, "sigterm",
                    termfwd_closed);
  if (uv_signal_start(&t->sig, on_term, SIGTERM) != 0) {
    lipc__handle_close(&t->h);
    return;
  }
  uv_unref((uv_handle_t *)&t->sig);
  t->r = r;
  r->termfwd = t;
}

/* One SIGCHLD may stand for several exits. With many children running,
 * asking each of them cost a waitpid per child and signal (16 at once:
 * 8 syscalls a spawn); the kernel names the exited ones instead, and only
 * behind a child that is not ours is every child of ours asked. The
 * exited ones are unlinked first and reported after, because a listener
 * may spawn (and so change the list) while we report. */
static void on_sigchld(uv_signal_t *uv, int signum) {
  lipc__reaper *r = (lipc__reaper *)uv->data;
  lproc *p, *next, *done = NULL;
  int status;
  pid_t got;
  (void)signum;
  for (p = reap_named(r, &done) == 0 ? NULL : r->procs; p; p = next) {
    next = p->next;
    do
      got = waitpid(p->pid, &status, WNOHANG);
    while (got < 0 && errno == EINTR);
    if (got != 0)
      reaped(r, p, got < 0 ? -1 : status, &done);
  }
  if (r->init)
    reap_orphans(r);
  while (done) {
    p = done;
    done = p->next;
    report(p);
    free(p);
  }
}

/* At exit the runtime closes the watcher: the children still running are
 * left to init, their records freed. */
static void reaper_closed(lipc__handle *h) {
  lipc__reaper *r = (lipc__reaper *)h;
  while (r->procs) {
    lproc *p = r->procs;
    proc_unlink(r, p);
    if (p->child)
      p->child->proc = NULL;
    free(p);
  }
  if (r->termfwd)
    r->termfwd->r = NULL;
  h->rt->reaper = NULL;
  free(r);
}

int lipc__reap_start(lipc_runtime *rt) {
  lipc__reaper *r;
  int err;
  if (rt->reaper)
    return 0;
  r = calloc(1, sizeof(*r));
  if (r == NULL)
    return UV_ENOMEM;
  uv_signal_init(rt->loop, &r->sig);
  lipc__handle_bare(rt, &r->h, (uv_handle_t *)&r->sig, "sigchld",
                    reaper_closed);
  err = uv_signal_start(&r->sig, on_sigchld, SIGCHLD);
  if (err) {
    lipc__handle_close(&r->h);
    return err;
  }
  uv_unref((uv_handle_t *)&r->sig); /* children keep us up */
  rt->reaper = r;
  if (getpid() == 1)
    init_duties(rt, r);
  return 0;
}

int lipc__reap_track(lipc_runtime *rt, lchild *c, pid_t pid) {
  lipc__reaper *r = rt->reaper;
  lproc *p = calloc(1, sizeof(*p));
  if (p == NULL) {      /* cannot be tracked: no */
    kill(pid, SIGKILL); /* zombie left behind */
    waitpid(pid, NULL, 0);
    return UV_ENOMEM;
  }
  p->pid = pid;
  p->child = c;
  p->next = r->procs;
  if (r->procs)
    r->procs->prev = p;
  r->procs = p;
  c->proc = p;
  c->pid = pid;
  return 0;
}
