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
 * LIPC_ALLOC=malloc (and builds with AddressSanitizer) use plain malloc,
 * so that ASan and valgrind see every Lua block on its own.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define GRAIN 16
#define SMALL_MAX 256
#define NCLASS (SMALL_MAX / GRAIN)
#define SLAB_SIZE (64 * 1024)

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

static void *pool_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  pool *p = ud;
  void *nb;
  if (ptr == NULL)
    osize = 0; /* osize then tells the kind of object, not a size */
  if (nsize == 0) {
    if (ptr != NULL && osize <= SMALL_MAX)
      give(p, ptr, osize);
    else
      free(ptr);
    return NULL;
  }
  if (osize > SMALL_MAX && nsize > SMALL_MAX)
    return realloc(ptr, nsize);
  if (ptr != NULL && osize <= SMALL_MAX && nsize <= SMALL_MAX &&
      class_of(osize) == class_of(nsize))
    return ptr;
  nb = nsize <= SMALL_MAX ? take(p, nsize) : malloc(nsize);
  if (nb == NULL || ptr == NULL)
    return nb; /* on failure Lua keeps the old block */
  memcpy(nb, ptr, osize < nsize ? osize : nsize);
  if (osize <= SMALL_MAX)
    give(p, ptr, osize);
  else
    free(ptr);
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

void lipc__state_close(lua_State *L) {
  void *ud;
  pool *p;
  slab *s;
  lua_getallocf(L, &ud);
  p = ud;
  lua_close(L);
  while ((s = p->slabs) != NULL) {
    p->slabs = s->next;
    free(s);
  }
  free(p);
}
