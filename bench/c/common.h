/*
 * common.h - shared helpers of the C baselines (header-only, every program
 * includes it). Each program is the "what the hardware allows" side of one
 * benchmark case and prints exactly one line per measured figure:
 *
 *     RESULT <case> <value> <unit>
 *
 * Counts come from argv (run.sh passes them) or, when absent, from the
 * program's default scaled by $BENCH_SCALE.
 *
 * The IPC baselines speak the lipc wire format: a 4-byte big-endian length,
 * then one MessagePack value. The "small table" is the same value every
 * implementation sends:  {seq = <int>, op = "add", args = {1, 2, 3}}
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/uio.h>

static inline uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void die(const char *what) {
  perror(what);
  exit(1);
}

static inline void fail(const char *what) {
  fprintf(stderr, "bench: %s\n", what);
  exit(1);
}

static inline double bench_scale(void) {
  const char *s = getenv("BENCH_SCALE");
  double v = s ? strtod(s, NULL) : 1.0;
  return v > 0 ? v : 1.0;
}

/* argv[i] as a count, or dflt * BENCH_SCALE (at least 1). */
static inline uint64_t arg_count(int argc, char **argv, int i, double dflt) {
  if (argc > i)
    return strtoull(argv[i], NULL, 10);
  double n = dflt * bench_scale();
  return n >= 1 ? (uint64_t)n : 1;
}

static inline void write_all(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n > 0) {
    ssize_t k = write(fd, c, n);
    if (k < 0) {
      if (errno == EINTR)
        continue;
      die("write");
    }
    c += k;
    n -= (size_t)k;
  }
}

/* writev until everything is out (iov is modified). */
static inline void writev_all(int fd, struct iovec *iov, int cnt) {
  while (cnt > 0) {
    ssize_t k = writev(fd, iov, cnt);
    if (k < 0) {
      if (errno == EINTR)
        continue;
      die("writev");
    }
    while (cnt > 0 && (size_t)k >= iov->iov_len) {
      k -= (ssize_t)iov->iov_len;
      iov++;
      cnt--;
    }
    if (cnt > 0) {
      iov->iov_base = (char *)iov->iov_base + k;
      iov->iov_len -= (size_t)k;
    }
  }
}

/* Reads exactly n bytes; returns 0 on EOF before the first byte, 1 when done. */
/* ---- event-loop shape ------------------------------------------------ */

/* The floors of the latency cases read the way an event loop (libuv)
 * does: wait in epoll_wait until the fd is readable, then read. ep_for
 * returns an epoll fd watching fd; ep_wait(-1) does nothing, so the
 * blocking shape and the event-loop shape share one code path.
 *
 * "evpoll" is that loop with lipc's poll (runtime/poll.c, LIPC_POLL=1):
 * before it blocks, it polls epoll_wait(..., 0) for up to ep_poll_us
 * (50, or "evpoll=<us>") since the last read. Unlike lipc's, the window
 * does not adapt: in a ping-pong every poll finds data soon. */
static uint64_t ep_poll_ns;
static inline int ep_for(int fd) {
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev))
    die("epoll");
  return ep;
}

static inline void ep_wait(int ep) {
  struct epoll_event ev;
  if (ep >= 0 && ep_poll_ns > 0) {
    uint64_t t0 = now_ns();
    do {
      if (epoll_wait(ep, &ev, 1, 0) > 0)
        return;
    } while (now_ns() - t0 < ep_poll_ns);
  }
  while (ep >= 0 && epoll_wait(ep, &ev, 1, -1) < 0)
    if (errno != EINTR)
      die("epoll_wait");
}

/* argv[i] is "evloop", "evpoll" or "evpoll=<us>" (the last two also
 * set ep_poll_ns) */
static inline int arg_evloop(int argc, char **argv, int i) {
  if (argc <= i)
    return 0;
  if (strncmp(argv[i], "evpoll", 6) == 0) {
    long us = argv[i][6] == '=' ? strtol(argv[i] + 7, NULL, 10) : 50;
    ep_poll_ns = (uint64_t)(us > 0 ? us : 50) * 1000u;
    return 1;
  }
  return strcmp(argv[i], "evloop") == 0;
}

/* read() that retries EINTR and dies on any other error: bytes, 0 at EOF */
static inline size_t read_some(int fd, void *p, size_t n) {
  ssize_t k;
  while ((k = read(fd, p, n)) < 0)
    if (errno != EINTR)
      die("read");
  return (size_t)k;
}

/* reads fd to its end in chunks of 'chunk' bytes; returns the bytes */
static inline uint64_t count_to_eof(int fd, size_t chunk) {
  char *buf = malloc(chunk);
  uint64_t got = 0;
  size_t k;
  if (buf == NULL)
    die("malloc");
  while ((k = read_some(fd, buf, chunk)) > 0)
    got += k;
  free(buf);
  return got;
}

static inline int read_full_ep(int fd, void *p, size_t n, int ep) {
  char *c = p;
  size_t got = 0;
  while (got < n) {
    ep_wait(ep);
    size_t k = read_some(fd, c + got, n - got);
    if (k == 0) {
      if (got == 0)
        return 0;
      fail("unexpected EOF");
    }
    got += k;
  }
  return 1;
}

static inline int read_full(int fd, void *p, size_t n) {
  return read_full_ep(fd, p, n, -1);
}

/* ---- MessagePack, just the subset the benchmarks send ---------------- */

static inline void be32_put(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

static inline uint32_t be32_get(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         p[3];
}

static inline uint8_t *mp_put_uint(uint8_t *p, uint64_t v) {
  if (v < 128) {
    *p++ = (uint8_t)v;
  } else if (v < 256) {
    *p++ = 0xcc;
    *p++ = (uint8_t)v;
  } else if (v < 65536) {
    *p++ = 0xcd;
    *p++ = (uint8_t)(v >> 8);
    *p++ = (uint8_t)v;
  } else if (v <= 0xffffffffu) {
    *p++ = 0xce;
    be32_put(p, (uint32_t)v);
    p += 4;
  } else {
    *p++ = 0xcf;
    be32_put(p, (uint32_t)(v >> 32));
    be32_put(p + 4, (uint32_t)v);
    p += 8;
  }
  return p;
}

static inline uint8_t *mp_put_fixstr(uint8_t *p, const char *s) {
  size_t n = strlen(s); /* < 32 */
  *p++ = (uint8_t)(0xa0 | n);
  memcpy(p, s, n);
  return p + n;
}

/* Encodes one framed small table at p; returns the frame's size (<= 40). */
static inline size_t frame_small(uint8_t *p, uint64_t seq) {
  uint8_t *q = p + 4;
  *q++ = 0x83;
  q = mp_put_fixstr(q, "seq");
  q = mp_put_uint(q, seq);
  q = mp_put_fixstr(q, "op");
  q = mp_put_fixstr(q, "add");
  q = mp_put_fixstr(q, "args");
  *q++ = 0x93;
  *q++ = 1;
  *q++ = 2;
  *q++ = 3;
  be32_put(p, (uint32_t)(q - p - 4));
  return (size_t)(q - p);
}

typedef struct {
  const uint8_t *p, *end;
} mp_rd;

static inline int mp_get_uint(mp_rd *r, uint64_t *v) {
  if (r->p >= r->end)
    return -1;
  uint8_t t = *r->p++;
  size_t need = t < 0x80    ? 0
                : t == 0xcc ? 1
                : t == 0xcd ? 2
                : t == 0xce ? 4
                : t == 0xcf ? 8
                            : 99;
  if (need == 99 || (size_t)(r->end - r->p) < need)
    return -1;
  if (need == 0) {
    *v = t;
    return 0;
  }
  uint64_t x = 0;
  for (size_t i = 0; i < need; i++)
    x = x << 8 | *r->p++;
  *v = x;
  return 0;
}

/* str or bin of any width; *s points into the input (no copy). */
static inline int mp_get_str(mp_rd *r, const uint8_t **s, uint32_t *n) {
  if (r->p >= r->end)
    return -1;
  uint8_t t = *r->p++;
  size_t w;
  if ((t & 0xe0) == 0xa0) {
    *n = t & 0x1f;
    w = 0;
  } else if (t == 0xd9 || t == 0xc4)
    w = 1;
  else if (t == 0xda || t == 0xc5)
    w = 2;
  else if (t == 0xdb || t == 0xc6)
    w = 4;
  else
    return -1;
  if ((size_t)(r->end - r->p) < w)
    return -1;
  if (w) {
    uint32_t x = 0;
    for (size_t i = 0; i < w; i++)
      x = x << 8 | *r->p++;
    *n = x;
  }
  if ((size_t)(r->end - r->p) < *n)
    return -1;
  *s = r->p;
  r->p += *n;
  return 0;
}

static inline int mp_get_len(mp_rd *r, uint8_t fixmask, uint8_t fixtag,
                             uint8_t t16, uint8_t t32, uint32_t *n) {
  if (r->p >= r->end)
    return -1;
  uint8_t t = *r->p++;
  if ((t & fixmask) == fixtag) {
    *n = t & (uint8_t)~fixmask;
    return 0;
  }
  size_t w = t == t16 ? 2 : t == t32 ? 4 : 0;
  if (!w || (size_t)(r->end - r->p) < w)
    return -1;
  uint32_t x = 0;
  for (size_t i = 0; i < w; i++)
    x = x << 8 | *r->p++;
  *n = x;
  return 0;
}
#define mp_get_map(r, n) mp_get_len((r), 0xf0, 0x80, 0xde, 0xdf, (n))
#define mp_get_arr(r, n) mp_get_len((r), 0xf0, 0x90, 0xdc, 0xdd, (n))

/* The decoded small table (or the seq + data of a bulk message). */
typedef struct {
  uint64_t seq, args_sum;
  const uint8_t *op, *data;
  uint32_t op_len, data_len;
} msg_t;

/* Decodes {seq=..., op=..., args={...}, data=...} (any subset, any order). */
static inline int decode_msg(const uint8_t *p, size_t n, msg_t *m) {
  mp_rd r = {p, p + n};
  uint32_t cnt;
  memset(m, 0, sizeof *m);
  if (mp_get_map(&r, &cnt))
    return -1;
  while (cnt--) {
    const uint8_t *k;
    uint32_t kn;
    if (mp_get_str(&r, &k, &kn))
      return -1;
    if (kn == 3 && !memcmp(k, "seq", 3)) {
      if (mp_get_uint(&r, &m->seq))
        return -1;
    } else if (kn == 2 && !memcmp(k, "op", 2)) {
      if (mp_get_str(&r, &m->op, &m->op_len))
        return -1;
    } else if (kn == 4 && !memcmp(k, "data", 4)) {
      if (mp_get_str(&r, &m->data, &m->data_len))
        return -1;
    } else if (kn == 4 && !memcmp(k, "args", 4)) {
      uint32_t an;
      if (mp_get_arr(&r, &an))
        return -1;
      while (an--) {
        uint64_t v;
        if (mp_get_uint(&r, &v))
          return -1;
        m->args_sum += v;
      }
    } else {
      return -1;
    }
  }
  return r.p == r.end ? 0 : -1;
}

/* ---- frame reader: buffered, grows to hold the largest frame ---------- */

typedef struct {
  int fd;
  int ep; /* an epoll fd to wait in before every read (frd_evloop), or -1 */
  uint8_t *buf;
  size_t cap, r, w;
  uint64_t reads; /* read() calls made, for the notes */
} frd_t;

static inline void frd_init(frd_t *f, int fd, size_t cap) {
  f->fd = fd;
  f->buf = malloc(cap);
  if (!f->buf)
    die("malloc");
  f->cap = cap;
  f->r = f->w = 0;
  f->reads = 0;
  f->ep = -1;
}

static inline void frd_wait(frd_t *f) {
  ep_wait(f->ep);
}

/* Returns the next frame's payload (valid until the next call), NULL at EOF. */
static inline const uint8_t *frd_next(frd_t *f, uint32_t *len) {
  for (;;) {
    size_t avail = f->w - f->r, need = 4;
    if (avail >= 4) {
      uint32_t n = be32_get(f->buf + f->r);
      need = 4 + (size_t)n;
      if (avail >= need) {
        const uint8_t *p = f->buf + f->r + 4;
        f->r += need;
        *len = n;
        return p;
      }
    }
    if (f->r == f->w)
      f->r = f->w = 0;
    if (f->cap - f->r < need) {
      memmove(f->buf, f->buf + f->r, avail);
      f->r = 0;
      f->w = avail;
      if (f->cap < need) {
        f->buf = realloc(f->buf, need);
        if (!f->buf)
          die("realloc");
        f->cap = need;
      }
    }
    frd_wait(f);
    size_t k = read_some(f->fd, f->buf + f->w, f->cap - f->w);
    f->reads++;
    if (k == 0) {
      if (avail)
        fail("EOF inside a frame");
      return NULL;
    }
    f->w += k;
  }
}

static inline int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

#endif
