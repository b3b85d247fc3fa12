/*
 * alloc.c - the Lua state of a runtime lipc creates itself: its allocator
 * (free lists per size class for small blocks, malloc for the rest), its
 * panic handler and its warning function.
 *
 * Lua tells the allocator the size of every block it frees or resizes, so
 * a small block needs no header: a block of class c is 16 * (c + 1) bytes
 * carved from 64 KiB slabs and, once freed, goes on class c's list for the
 * next block of that class. A decoded message is two tables, their parts
 * and a few strings; glibc's malloc and free were a quarter of a busy
 * receiver's time. Slabs go back to malloc only when the state closes, so
 * small-block memory stays at its peak, as malloc's own arenas mostly do.
 *
 * A big block (BIG_MIN or more: a big message or read chunk as a Lua
 * string) is a mapping of its own, and the last few freed are kept for
 * the next ones. A receiver of big messages makes one such string after
 * another, and each fresh mapping faults and clears every page when first
 * written, which cost more than the copy itself (msg_size of 16 MiB: 5
 * faults a message in 6 before; on this VM a fault is ~20 us). Lua's
 * generational collector frees the dead ones in bursts, a few at a time,
 * so a few are kept (NBIG, at most KEEP_MAX bytes in all); the runtime
 * unmaps them once a second has passed without a reuse (lipc__state_trim).
 * Fresh mappings ask for transparent huge pages (MADV_HUGEPAGE), 512
 * times fewer faults where the system allows them. A block that is known
 * to come can be made ready beforehand a step at a time
 * (lipc__state_warm): a large frame's table is then created without
 * faulting 128 MiB of pages in one loop turn.
 *
 * LIPC_ALLOC=malloc (and builds with AddressSanitizer) use plain malloc,
 * so that ASan and valgrind see every Lua block on its own.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

#define GRAIN 16
#define SMALL_MAX 256
#define NCLASS (SMALL_MAX / GRAIN)
#define SLAB_SIZE (64 * 1024)
#define BIG_MIN ((size_t)4 << 20)
#define BIG_HDR 16 /* the mapping's length, padded to keep malloc's alignment */
#define NBIG 4
#define KEEP_MAX ((size_t)NBIG * (65 << 20)) /* four of max_message */

#if defined(__SANITIZE_ADDRESS__)
#define POOL_DEFAULT 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define POOL_DEFAULT 0
#endif
#endif
#ifndef POOL_DEFAULT
#define POOL_DEFAULT 1
#endif

typedef struct slab {
  struct slab *next;
} slab;

/* The slab header is padded to GRAIN so blocks keep malloc's alignment. */
#define SLAB_HDR ((sizeof(slab) + GRAIN - 1) / GRAIN * GRAIN)

typedef struct pool {
  void *free[NCLASS]; /* each block's first word links to the next */
  char *bump, *end;   /* the uncarved rest of the newest slab */
  slab *slabs;
  char *kept[NBIG]; /* big mappings freed, for the next big blocks */
  int nkept;
  size_t kept_bytes;
  unsigned reused : 1;     /* a kept mapping was taken since the last trim */
  char *warm;              /* a mapping made ready for the next big block */
  size_t warm_done;        /* bytes of it touched so far */
  void (*on_keep)(void *); /* told when a first mapping is kept */
  void *keep_arg;
  unsigned warn_on : 1;   /* warn("@on") was given */
  unsigned warn_cont : 1; /* inside a multi-part warning */
} pool;

static size_t class_of(size_t n) {
  return (n - 1) / GRAIN;
}

static void *take(pool *p, size_t n) {
  size_t c = class_of(n), size = (c + 1) * GRAIN;
  void *b = p->free[c];
  slab *s;
  if (b != NULL) {
    p->free[c] = *(void **)b;
    return b;
  }
  if ((size_t)(p->end - p->bump) < size) {
    /* the old slab's tail (under SMALL_MAX bytes) is left unused */
    if ((s = malloc(SLAB_SIZE)) == NULL)
      return NULL;
    s->next = p->slabs;
    p->slabs = s;
    p->bump = (char *)s + SLAB_HDR;
    p->end = (char *)s + SLAB_SIZE;
  }
  b = p->bump;
  p->bump += size;
  return b;
}

static void give(pool *p, void *b, size_t n) {
  size_t c = class_of(n);
  *(void **)b = p->free[c];
  p->free[c] = b;
}

/* ---- big blocks: a mapping each, [length | block] ---------------------- */

static size_t map_len(const char *map) {
  size_t len;
  memcpy(&len, map, sizeof len);
  return len;
}

static size_t page_round(size_t n) {
  size_t pg = (size_t)sysconf(_SC_PAGESIZE);
  return (n + pg - 1) / pg * pg;
}

/* A block of n >= BIG_MIN bytes: a kept mapping big enough but not more
 * than twice too big (a small string must not pin a huge mapping), or a
 * fresh one. */
static void *big_take(pool *p, size_t n) {
  size_t need = n + BIG_HDR, len;
  char *map;
  int i;
  if (p->warm != NULL) { /* made ready for this one (lipc__state_warm) */
    len = map_len(p->warm);
    if (len >= need && len / 2 <= need) {
      map = p->warm;
      p->warm = NULL;
      return map + BIG_HDR;
    }
  }
  for (i = 0; i < p->nkept; i++) {
    len = map_len(p->kept[i]);
    if (len >= need && len / 2 <= need) {
      map = p->kept[i];
      p->kept[i] = p->kept[--p->nkept];
      p->kept_bytes -= len;
      p->reused = 1;
      return map + BIG_HDR;
    }
  }
  len = page_round(need);
  map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
             0);
  if (map == MAP_FAILED)
    return NULL;
#ifdef MADV_HUGEPAGE
  madvise(map, len, MADV_HUGEPAGE);
#endif
  memcpy(map, &len, sizeof len);
  return map + BIG_HDR;
}

/* Keeps a freed big block for the next ones, in place of a smaller kept
 * one when all places or bytes are taken; what is not kept is unmapped. */
static void big_give(pool *p, void *b) {
  char *map = (char *)b - BIG_HDR;
  size_t len = map_len(map);
  int i, min;
  while (p->nkept > 0 && (p->nkept == NBIG || p->kept_bytes + len > KEEP_MAX)) {
    for (min = 0, i = 1; i < p->nkept; i++)
      if (map_len(p->kept[i]) < map_len(p->kept[min]))
        min = i;
    if (map_len(p->kept[min]) >= len)
      break;
    p->kept_bytes -= map_len(p->kept[min]);
    munmap(p->kept[min], map_len(p->kept[min]));
    p->kept[min] = p->kept[--p->nkept];
  }
  if (p->nkept == NBIG || p->kept_bytes + len > KEEP_MAX) {
    munmap(map, len);
    return;
  }
  p->kept[p->nkept++] = map;
  p->kept_bytes += len;
  if (p->nkept == 1 && p->on_keep != NULL)
    p->on_keep(p->keep_arg);
}

/* A big block resized to n >= BIG_MIN bytes: in place when it fits. */
static void *big_resize(void *b, size_t n) {
  char *map = (char *)b - BIG_HDR;
  size_t len = map_len(map), nlen;
  if (n + BIG_HDR <= len)
    return b;
  nlen = page_round(n + BIG_HDR);
  map = mremap(map, len, nlen, MREMAP_MAYMOVE);
  if (map == MAP_FAILED)
    return NULL;
  memcpy(map, &nlen, sizeof nlen);
  return map + BIG_HDR;
}

/* ---- the allocator ---------------------------------------------------- */

/* Blocks are small (slabs), medium (malloc) or big (mappings), by the size
 * Lua gives: every block stays in the kind of its current size. */
enum { SMALL, MEDIUM, BIG };

static int kind_of(size_t n) {
  return n <= SMALL_MAX ? SMALL : n < BIG_MIN ? MEDIUM : BIG;
}

static void *block_new(pool *p, size_t n) {
  switch (kind_of(n)) {
    case SMALL: return take(p, n);
    case MEDIUM: return malloc(n);
    default: return big_take(p, n);
  }
}

static void block_free(pool *p, void *b, size_t n) {
  switch (kind_of(n)) {
    case SMALL: give(p, b, n); break;
    case MEDIUM: free(b); break;
    default: big_give(p, b);
  }
}

static void *pool_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  pool *p = ud;
  void *nb;
  if (ptr == NULL)
    osize = 0; /* osize then tells the kind of object, not a size */
  if (nsize == 0) {
    if (ptr != NULL)
      block_free(p, ptr, osize);
    return NULL;
  }
  if (ptr != NULL && kind_of(osize) == kind_of(nsize)) {
    switch (kind_of(nsize)) {
      case SMALL:
        if (class_of(osize) == class_of(nsize))
          return ptr;
        break;
      case MEDIUM: return realloc(ptr, nsize);
      default: return big_resize(ptr, nsize);
    }
  }
  nb = block_new(p, nsize);
  if (nb == NULL || ptr == NULL)
    return nb; /* on failure Lua keeps the old block */
  memcpy(nb, ptr, osize < nsize ? osize : nsize);
  block_free(p, ptr, osize);
  return nb;
}

static void *plain_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  (void)osize;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  return realloc(ptr, nsize);
}

static int on_panic(lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  fprintf(stderr, "lipc: PANIC: unprotected error in call to Lua API (%s)\n",
          msg ? msg : "error object is not a string");
  fflush(stderr);
  return 0; /* Lua aborts */
}

/* Warnings as the stock lua: off until warn("@on"), "@off" stops them,
 * a message in parts is one line. */
static void on_warn(void *ud, const char *msg, int tocont) {
  pool *p = ud;
  if (!p->warn_cont && !tocont && msg[0] == '@') {
    if (strcmp(msg + 1, "on") == 0)
      p->warn_on = 1;
    else if (strcmp(msg + 1, "off") == 0)
      p->warn_on = 0;
    return;
  }
  if (p->warn_on) {
    if (!p->warn_cont)
      fputs("Lua warning: ", stderr);
    fputs(msg, stderr);
    if (!tocont)
      fputs("\n", stderr);
    fflush(stderr);
  }
  p->warn_cont = tocont != 0;
}

static int use_pool(void) {
  const char *e = getenv("LIPC_ALLOC");
  if (e != NULL && *e != '\0')
    return strcmp(e, "malloc") != 0;
  return POOL_DEFAULT;
}

lua_State *lipc__state_new(void) {
  pool *p = calloc(1, sizeof *p);
  lua_State *L;
  if (p == NULL)
    return NULL;
  L = lua_newstate(use_pool() ? pool_alloc : plain_alloc, p);
  if (L == NULL) {
    free(p);
    return NULL;
  }
  lua_atpanic(L, on_panic);
  lua_setwarnf(L, on_warn, p);
  return L;
}

/* The pool of a state lipc__state_new made with its own allocator, or NULL */
static pool *pool_of(lua_State *L) {
  void *ud;
  return lua_getallocf(L, &ud) == pool_alloc ? ud : NULL;
}

static void unmap_kept(pool *p) {
  while (p->nkept > 0) {
    char *map = p->kept[--p->nkept];
    munmap(map, map_len(map));
  }
  p->kept_bytes = 0;
}

void lipc__state_on_keep(lua_State *L, void (*fn)(void *), void *arg) {
  pool *p = pool_of(L);
  if (p != NULL) {
    p->on_keep = fn;
    p->keep_arg = arg;
  }
}

int lipc__state_trim(lua_State *L) {
  pool *p = pool_of(L);
  if (p == NULL)
    return 0;
  if (!p->reused)
    unmap_kept(p);
  p->reused = 0;
  return p->nkept;
}

/* A fresh mapping faults every page when first written (~20 us each on
 * this VM): creating a table of 8 million slots (128 MiB) at once held
 * the loop for a quarter of a second. A caller that knows a big block
 * is coming (a large frame built in steps) makes it ready here, step
 * bytes a call, and the block is then taken without a fault. */
static void drop_warm(pool *p) {
  if (p->warm != NULL)
    munmap(p->warm, map_len(p->warm));
  p->warm = NULL;
}

int lipc__state_warm(lua_State *L, size_t n, size_t step) {
  pool *p = pool_of(L);
  size_t len, pg = (size_t)sysconf(_SC_PAGESIZE), end;
  char *map;
  int i;
  if (p == NULL)
    return 1;
  if (n < BIG_MIN) {
    drop_warm(p);
    return 1;
  }
  for (i = 0; i < p->nkept; i++) { /* a kept one will do: no faults */
    len = map_len(p->kept[i]);
    if (len >= n + BIG_HDR && len / 2 <= n + BIG_HDR)
      return 1;
  }
  len = page_round(n + BIG_HDR);
  if (p->warm != NULL && map_len(p->warm) != len)
    drop_warm(p);
  if (p->warm == NULL) {
    map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
               -1, 0);
    if (map == MAP_FAILED)
      return 1; /* then the block is mapped when it is made */
#ifdef MADV_HUGEPAGE
    madvise(map, len, MADV_HUGEPAGE);
#endif
    memcpy(map, &len, sizeof len);
    p->warm = map;
    p->warm_done = pg;
  }
  end = len - p->warm_done > step ? p->warm_done + step : len;
  for (; p->warm_done < end; p->warm_done += pg)
    ((volatile char *)p->warm)[p->warm_done] = 0;
  return p->warm_done >= len;
}

void lipc__state_close(lua_State *L) {
  void *ud;
  pool *p;
  slab *s;
  lua_getallocf(L, &ud);
  p = ud;
  p->on_keep = NULL; /* what lua_close frees is not kept for anyone */
  lua_close(L);
  unmap_kept(p);
  drop_warm(p);
  while ((s = p->slabs) != NULL) {
    p->slabs = s->next;
    free(s);
  }
  free(p);
}
