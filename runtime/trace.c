/*
 * trace.c - LIPC_TRACE: one line on stderr per event of the kinds asked
 * for (ipc, spawn, net), with the addresses of the sockets involved.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"

unsigned lipc__trace_parse(const char *spec) {
  static const struct {
    const char *name;
    unsigned bit;
  } kinds[] = {{"ipc", LIPC_TRACE_IPC},
               {"spawn", LIPC_TRACE_SPAWN},
               {"net", LIPC_TRACE_NET},
               {"all", ~0u},
               {"1", ~0u},
               {NULL, 0}};
  unsigned mask = 0;
  const char *p = spec;
  if (spec == NULL)
    return 0;
  while (*p) { /* comma-separated words */
    size_t n = strcspn(p, ",");
    int i, known = n == 0;
    for (i = 0; !known && kinds[i].name; i++) {
      if (strlen(kinds[i].name) == n && strncmp(p, kinds[i].name, n) == 0) {
        mask |= kinds[i].bit;
        known = 1;
      }
    }
    if (!known) /* a typo must not look like a quiet program */
      fprintf(stderr,
              "lipc: warning: LIPC_TRACE: unknown kind '%.*s' (known: ipc, "
              "spawn, net, all)\n",
              (int)n, p);
    p += n;
    if (*p == ',')
      p++;
  }
  return mask;
}

/* One line per event, whole lines in one write so that the traces of a
 * parent and its children interleave by line. The time is the host's
 * monotonic clock (seconds, as lipc.hrtime()), one clock for every
 * process: the lines of a parent and its children, even from separate
 * files, sort into the order they happened in. */
void lipc__trace(lipc_runtime *rt, const char *what, const char *fmt, ...) {
  char line[512];
  uint64_t t = uv_hrtime();
  int n;
  va_list ap;
  (void)rt;
  n = snprintf(line, sizeof(line), "lipc[%d] %llu.%06llu %-5s ", (int)getpid(),
               (unsigned long long)(t / 1000000000u),
               (unsigned long long)(t % 1000000000u / 1000u), what);
  va_start(ap, fmt);
  n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
  va_end(ap);
  if (n > (int)sizeof(line) - 2)
    n = (int)sizeof(line) - 2;
  line[n++] = '\n';
  if (write(2, line, (size_t)n) < 0)
    return;
}

const char *lipc__trace_addr(uv_handle_t *uv, int peer, char *buf, size_t n) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  uv_os_fd_t fd;
  char ip[64] = "";
  int rc;
  if (uv == NULL || uv_is_closing(uv) || uv_fileno(uv, &fd) != 0)
    return NULL;
  memset(&ss, 0, sizeof(ss));
  rc = peer ? getpeername(fd, (struct sockaddr *)&ss, &len)
            : getsockname(fd, (struct sockaddr *)&ss, &len);
  if (rc != 0)
    return NULL;
  if (ss.ss_family == AF_INET) {
    uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof(ip));
    snprintf(buf, n, "%s:%d", ip, ntohs(((struct sockaddr_in *)&ss)->sin_port));
  } else if (ss.ss_family == AF_INET6) {
    uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof(ip));
    snprintf(buf, n, "[%s]:%d", ip,
             ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
  } else if (ss.ss_family == AF_UNIX) {
    struct sockaddr_un *sun = (struct sockaddr_un *)&ss;
    size_t off = offsetof(struct sockaddr_un, sun_path);
    size_t plen = len > off ? len - off : 0;
    if (plen == 0)
      snprintf(buf, n, "unnamed");
    else if (sun->sun_path[0] == '\0')
      snprintf(buf, n, "@%.*s", (int)plen - 1, sun->sun_path + 1);
    else
      snprintf(buf, n, "%.*s", (int)strnlen(sun->sun_path, plen),
               sun->sun_path);
  } else {
    return NULL;
  }
  return buf;
}

/* A socket or server closing, with its addresses (not a pipe(2) or a
 * FIFO: they have none). */
void lipc__trace_close(lipc__handle *h) {
  char a[128], b[128];
  const char *local, *peer;
  uv_os_fd_t fd = -1;
  if (h->uv->type != UV_TCP && h->uv->type != UV_NAMED_PIPE)
    return;
  local = lipc__trace_addr(h->uv, 0, a, sizeof(a));
  peer = lipc__trace_addr(h->uv, 1, b, sizeof(b));
  if (local == NULL)
    return;
  uv_fileno(h->uv, &fd);
  lipc__trace(h->rt, "net", "close %s fd %d %s%s%s", h->kind, (int)fd, local,
              peer ? " <-> " : "", peer ? peer : "");
}
