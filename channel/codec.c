/*
** codec.c - Lua value <-> MessagePack value, the native channel format.
**
** Owns: the growable lipc__buf, the encoder (one Lua value straight from
** the stack into a lipc__buf), the decoder (one MessagePack value from a
** byte range onto the stack), the UTF-8 validator that picks str or
** bin, and the JSON encoder of Node's IPC lines, which shares the
** encoder's walk. Frames, the handle marker and channels belong to channel.c; the
** format is specified in docs/wire-format.md.
**
** Both directions run on the IPC hot path, so neither allocates per
** value: the encoder writes into reserved buffer space and the decoder
** creates each table once at its final size.
*/

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>

#include "codec.h"

#define MAXDEPTH LIPC_CODEC_MAX_DEPTH

/* stringify the depth limit for the error messages */
#define STR_(x) #x
#define STR(x) STR_(x)
#define DEEPMSG "nested deeper than " STR(LIPC_CODEC_MAX_DEPTH)

/* decoder: never preallocate more than this many slots on trust */
#define PREALLOC_MAX (1 << 24)

/*
** {==================================================================
** Big-endian loads and stores (MessagePack is big-endian on the wire)
** ===================================================================
*/

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define be16(x) (x)
#define be32(x) (x)
#define be64(x) (x)
#else
#define be16(x) __builtin_bswap16(x)
#define be32(x) __builtin_bswap32(x)
#define be64(x) __builtin_bswap64(x)
#endif

static void put16(unsigned char *w, uint16_t v) {
  v = be16(v);
  memcpy(w, &v, 2);
}

static void put32(unsigned char *w, uint32_t v) {
  v = be32(v);
  memcpy(w, &v, 4);
}

static void put64(unsigned char *w, uint64_t v) {
  v = be64(v);
  memcpy(w, &v, 8);
}

static uint16_t get16(const unsigned char *r) {
  uint16_t v;
  memcpy(&v, r, 2);
  return be16(v);
}

static uint32_t get32(const unsigned char *r) {
  uint32_t v;
  memcpy(&v, r, 4);
  return be32(v);
}

static uint64_t get64(const unsigned char *r) {
  uint64_t v;
  memcpy(&v, r, 8);
  return be64(v);
}

/* }================================================================== */

/*
** {==================================================================
** Buffer
** ===================================================================
*/

int lipc__buf_reserve(lipc__buf *b, size_t n) {
  size_t need, cap;
  char *p;
  if (b->cap - b->len >= n)
    return 0;
  if (n > SIZE_MAX - b->len)
    return -ENOMEM;
  need = b->len + n;
  cap = (b->cap > 0) ? b->cap : 256;
  while (cap < need) /* double, so appending stays amortised O(1) */
    cap = (cap > SIZE_MAX / 2) ? need : cap * 2;
  p = (char *)realloc(b->data, cap);
  if (p == NULL)
    return -ENOMEM;
  b->data = p;
  b->cap = cap;
  return 0;
}

void lipc__buf_free(lipc__buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

/* }================================================================== */

/*
** {==================================================================
** UTF-8
** ===================================================================
*/

#define HIGHBITS UINT64_C(0x8080808080808080)

/*
** Returns 0 when s[0..n) is valid UTF-8, 1 when it is valid but ends
** inside a sequence (so it is a prefix of valid UTF-8: the decoder needs
** the difference to tell a truncated str from a malformed one), -1 when
** it is invalid. Strict: no overlongs, no surrogates, nothing past
** U+10FFFF, the same rules as Lua's utf8 library and Python's decoder.
*/
static int utf8_check(const unsigned char *s, size_t n) {
  const unsigned char *e = s + n;
  if (n <= 16) { /* keys and words: nearly always ASCII, seen in one pass */
    unsigned acc = 0;
    size_t i;
    for (i = 0; i < n; i++)
      acc |= s[i];
    if (acc < 0x80)
      return 0;
  }
  while (s < e) {
    unsigned c = *s;
    unsigned lo = 0x80, hi = 0xBF; /* range of the next continuation */
    int k;
    if (c < 0x80) { /* ASCII run: skip 64, 16, then 8 bytes at a time */
      uint64_t w1, w2;
      while (e - s >= 64) { /* big strings: one test per 64 bytes */
        uint64_t w3, w4, w5, w6, w7, w8;
        memcpy(&w1, s, 8);
        memcpy(&w2, s + 8, 8);
        memcpy(&w3, s + 16, 8);
        memcpy(&w4, s + 24, 8);
        memcpy(&w5, s + 32, 8);
        memcpy(&w6, s + 40, 8);
        memcpy(&w7, s + 48, 8);
        memcpy(&w8, s + 56, 8);
        if ((w1 | w2 | w3 | w4 | w5 | w6 | w7 | w8) & HIGHBITS)
          break;
        s += 64;
      }
      while (e - s >= 16) {
        memcpy(&w1, s, 8);
        memcpy(&w2, s + 8, 8);
        if ((w1 | w2) & HIGHBITS)
          break;
        s += 16;
      }
      while (e - s >= 8) {
        memcpy(&w1, s, 8);
        if (w1 & HIGHBITS)
          break;
        s += 8;
      }
      while (s < e && *s < 0x80)
        s++;
      continue;
    }
    /* 2-byte characters (Latin, Greek, Cyrillic, ...) the short way */
    if (c >= 0xC2 && c < 0xE0 && e - s >= 2 && (s[1] & 0xC0) == 0x80) {
      s += 2;
      continue;
    }
    if (c < 0xC2) /* stray continuation, or overlong 2-byte lead */
      return -1;
    else if (c < 0xE0)
      k = 1;
    else if (c < 0xF0) {
      k = 2;
      if (c == 0xE0)
        lo = 0xA0; /* overlong */
      else if (c == 0xED)
        hi = 0x9F; /* surrogates */
    } else if (c < 0xF5) {
      k = 3;
      if (c == 0xF0)
        lo = 0x90; /* overlong */
      else if (c == 0xF4)
        hi = 0x8F; /* above U+10FFFF */
    } else
      return -1;
    for (s++; k > 0; k--, s++) {
      if (s == e)
        return 1;
      if (*s < lo || *s > hi)
        return -1;
      lo = 0x80;
      hi = 0xBF;
    }
  }
  return 0;
}

int lipc__utf8_valid(const char *p, size_t n) {
  return utf8_check((const unsigned char *)p, n) == 0;
}

/* }================================================================== */

/*
** {==================================================================
** Encoder
** ===================================================================
*/

/* one step of the key path: a map key on the stack or an array index */
typedef struct Seg {
  int key; /* stack index of the key, or 0 for an array index */
  lua_Integer i;
} Seg;

typedef struct Enc {
  lua_State *L;
  lipc__buf *b;
  const lipc__codec_refs *refs; /* big strings by reference (NULL: copied) */
  size_t nrefs;                 /* strings given to refs->add so far */
  int room;                     /* depths with stack room already made */
  int notarray;                 /* ref: tables found no array, see below */
  int open[MAXDEPTH + 1];       /* stack index of the table at each depth */
  Seg path[MAXDEPTH + 1];       /* path[1..depth] leads to the current value */
} Enc;

/* Lua reserved words cannot follow a '.', so they are shown as ["end"] */
static int isreserved(const char *s, size_t l) {
  static const char *const words[] = {"and",      "break",  "do",    "else",
                                      "elseif",   "end",    "false", "for",
                                      "function", "goto",   "if",    "in",
                                      "local",    "nil",    "not",   "or",
                                      "repeat",   "return", "then",  "true",
                                      "until",    "while",  NULL};
  int i;
  for (i = 0; words[i] != NULL; i++)
    if (strlen(words[i]) == l && memcmp(words[i], s, l) == 0)
      return 1;
  return 0;
}

#define isalpha_(c) (((c) | 0x20) >= 'a' && ((c) | 0x20) <= 'z')
#define isdigit_(c) ((c) >= '0' && (c) <= '9')
#define isword_(c) (isalpha_(c) || isdigit_(c) || (c) == '_')

#define KEYSHOW 40 /* longest string key shown in full */

/* short identifier-like keys are shown as .name (ASCII, locale-free) */
static int isname(const char *s, size_t l) {
  size_t i;
  if (l == 0 || l > KEYSHOW || isdigit_((unsigned char)s[0]))
    return 0;
  for (i = 0; i < l; i++)
    if (!isword_((unsigned char)s[i]))
      return 0;
  return !isreserved(s, l);
}

/* appends ["..."], escaped like Lua's %q and cut short when long */
static void addquoted(luaL_Buffer *B, const char *s, size_t l) {
  size_t i, show = l;
  if (l > KEYSHOW) { /* cut at a character boundary */
    show = KEYSHOW;
    while (show > 0 && ((unsigned char)s[show] & 0xC0) == 0x80)
      show--;
  }
  luaL_addstring(B, "[\"");
  for (i = 0; i < show; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      luaL_addchar(B, '\\');
      luaL_addchar(B, (char)c);
    } else if (c < 0x20 || c == 0x7F) {
      char esc[8];
      snprintf(esc, sizeof esc, "\\%u", c);
      luaL_addstring(B, esc);
    } else
      luaL_addchar(B, (char)c);
  }
  if (show < l)
    luaL_addstring(B, "...");
  luaL_addstring(B, "\"]");
}

/* 'dot' is 0 right after an elision, so "...name" and not "....name" */
static void addseg(Enc *e, luaL_Buffer *B, const Seg *g, int dot) {
  lua_State *L = e->L;
  if (g->key == 0) {
    lua_pushfstring(L, "[%I]", (LUAI_UACINT)g->i);
    luaL_addvalue(B);
  } else
    switch (lua_type(L, g->key)) {
      case LUA_TSTRING: {
        size_t l;
        const char *s = lua_tolstring(L, g->key, &l);
        if (isname(s, l)) {
          if (dot)
            luaL_addchar(B, '.');
          luaL_addlstring(B, s, l);
        } else
          addquoted(B, s, l);
        break;
      }
      case LUA_TNUMBER:
        if (lua_isinteger(L, g->key))
          lua_pushfstring(L, "[%I]", (LUAI_UACINT)lua_tointeger(L, g->key));
        else
          lua_pushfstring(L, "[%f]", (LUAI_UACNUMBER)lua_tonumber(L, g->key));
        luaL_addvalue(B);
        break;
      default: /* boolean: the only other kind of key that gets this far */
        luaL_addstring(B, lua_toboolean(L, g->key) ? "[true]" : "[false]");
        break;
    }
}

#define PATHSHOW 12 /* longer paths show 6 steps, "...", 6 steps */

/*
** Pushes "<path>: <msg>" (path of the value at 'depth') and returns -1.
** The stack may hold iteration leftovers below the message;
** lipc__codec_encode drops them.
*/
static int encfail(Enc *e, int depth, const char *msg) {
  lua_State *L = e->L;
  luaL_Buffer B;
  int i;
  lua_checkstack(L, 4); /* keys below are still live; room for B */
  luaL_buffinit(L, &B);
  luaL_addstring(&B, "value");
  for (i = 1; i <= depth; i++) {
    int dot = 1;
    if (depth > PATHSHOW && i == PATHSHOW / 2 + 1) {
      luaL_addstring(&B, "...");
      i = depth - PATHSHOW / 2 + 1;
      dot = 0;
    }
    addseg(e, &B, &e->path[i], dot);
  }
  luaL_addstring(&B, ": ");
  luaL_addstring(&B, msg);
  luaL_pushresult(&B);
  return -1;
}

static int enctypefail(Enc *e, int depth, int idx, const char *what) {
  char msg[64];
  const char *tname = (lua_type(e->L, idx) == LUA_TLIGHTUSERDATA)
                          ? "light userdata"
                          : luaL_typename(e->L, idx);
  snprintf(msg, sizeof msg, "cannot send a %s%s", tname, what);
  return encfail(e, depth, msg);
}

/* header of a 16- or 32-bit length; 'c16' is the 16-bit type byte and
   the 32-bit one follows it, as for str, bin, array and map */
static unsigned char *putlen(unsigned char *w, size_t n, int c16) {
  if (n <= 0xFFFF) {
    *w = (unsigned char)c16;
    put16(w + 1, (uint16_t)n);
    return w + 3;
  }
  *w = (unsigned char)(c16 + 1);
  put32(w + 1, (uint32_t)n);
  return w + 5;
}

/* smallest form; non-negative values use the unsigned forms */
static void encint(lipc__buf *b, lua_Integer v) {
  unsigned char *w = (unsigned char *)b->data + b->len;
  if (v >= 0) {
    if (v <= 0x7F) {
      w[0] = (unsigned char)v;
      b->len += 1;
    } else if (v <= 0xFF) {
      w[0] = 0xCC;
      w[1] = (unsigned char)v;
      b->len += 2;
    } else if (v <= 0xFFFF) {
      w[0] = 0xCD;
      put16(w + 1, (uint16_t)v);
      b->len += 3;
    } else if (v <= 0xFFFFFFFF) {
      w[0] = 0xCE;
      put32(w + 1, (uint32_t)v);
      b->len += 5;
    } else {
      w[0] = 0xCF;
      put64(w + 1, (uint64_t)v);
      b->len += 9;
    }
  } else {
    if (v >= -32) {
      w[0] = (unsigned char)(int8_t)v;
      b->len += 1;
    } else if (v >= INT8_MIN) {
      w[0] = 0xD0;
      w[1] = (unsigned char)(int8_t)v;
      b->len += 2;
    } else if (v >= INT16_MIN) {
      w[0] = 0xD1;
      put16(w + 1, (uint16_t)v);
      b->len += 3;
    } else if (v >= INT32_MIN) {
      w[0] = 0xD2;
      put32(w + 1, (uint32_t)v);
      b->len += 5;
    } else {
      w[0] = 0xD3;
      put64(w + 1, (uint64_t)v);
      b->len += 9;
    }
  }
}

/* always float64, so 1.0 arrives as a float and not as 1 */
static void encfloat(lipc__buf *b, lua_Number x) {
  unsigned char *w = (unsigned char *)b->data + b->len;
  double d = (double)x;
  uint64_t u;
  memcpy(&u, &d, 8);
  w[0] = 0xCB;
  put64(w + 1, u);
  b->len += 9;
}

/* str when valid UTF-8, else bin; the bytes are copied once */
static int encstr(Enc *e, int idx, int depth) {
  lipc__buf *b = e->b;
  size_t l;
  const char *s = lua_tolstring(e->L, idx, &l);
  unsigned char *w;
  if ((uint64_t)l > UINT32_MAX)
    return encfail(e, depth, "string longer than 4 GiB");
  if (b->cap - b->len < 5 && lipc__buf_reserve(b, 5) != 0)
    return encfail(e, depth, "not enough memory");
  w = (unsigned char *)b->data + b->len;
  if (utf8_check((const unsigned char *)s, l) == 0) {
    if (l < 32)
      *w++ = (unsigned char)(0xA0 | l);
    else if (l <= 0xFF) {
      *w++ = 0xD9;
      *w++ = (unsigned char)l;
    } else
      w = putlen(w, l, 0xDA);
  } else {
    if (l <= 0xFF) {
      *w++ = 0xC4;
      *w++ = (unsigned char)l;
    } else
      w = putlen(w, l, 0xC5);
  }
  b->len = (size_t)((char *)w - b->data);
  if (e->refs != NULL && l >= LIPC_CODEC_REF_MIN) { /* not copied */
    if (e->refs->add(e->refs->ctx, e->L, idx, s, l) != 0)
      return encfail(e, depth, "not enough memory");
    e->nrefs++;
    return 0;
  }
  if (b->cap - b->len < l && lipc__buf_reserve(b, l) != 0)
    return encfail(e, depth, "not enough memory");
  memcpy(b->data + b->len, s, l);
  b->len += l;
  return 0;
}

static int encvalue(Enc *e, int idx, int type, int depth);

/* entries of table 't': two API calls each, the cheapest way to count */
static lua_Unsigned tabcount(lua_State *L, int t) {
  lua_Unsigned n = 0;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    n++;
  }
  return n;
}

/* header of an array of n elements; encvalue reserved room for it */
static void arrayhead(lipc__buf *b, lua_Unsigned n) {
  unsigned char *w = (unsigned char *)b->data + b->len;
  if (n < 16) {
    *w = (unsigned char)(0x90 | n);
    b->len += 1;
  } else
    b->len += (size_t)(putlen(w, (size_t)n, 0xDC) - w);
}

/*
** t as an array of n = #t elements in one lua_next walk, for a sequence
** laid out the way a constructor or appending lays it out: keys 1, 2,
** ..., n in that order and nothing after them. Returns 1, having
** written only garbage past the header, as soon as the walk shows
** anything else; enctable then decides the slow way.
*/
static int encseq(Enc *e, int t, lua_Unsigned n, int depth) {
  lua_State *L = e->L;
  lua_Unsigned i = 0;
  arrayhead(e->b, n);
  lua_pushnil(L);
  while (lua_next(L, t)) { /* stack: key value */
    int v = lua_gettop(L);
    if (++i > n || !lua_isinteger(L, v - 1) ||
        lua_tointeger(L, v - 1) != (lua_Integer)i) {
      lua_pop(L, 2);
      return 1;
    }
    e->path[depth + 1].key = 0;
    e->path[depth + 1].i = (lua_Integer)i;
    if (encvalue(e, v, lua_type(L, v), depth + 1))
      return -1;
    lua_pop(L, 1);
  }
  return i == n ? 0 : 1;
}

/*
** t[1..n] as an array. Returns 1, having written only garbage past the
** header, at the first nil: then t is not a sequence (see enctable).
*/
static int encarray(Enc *e, int t, lua_Unsigned n, int depth) {
  lua_State *L = e->L;
  lipc__buf *b = e->b;
  int v = lua_gettop(L) + 1; /* where each element lands */
  lua_Unsigned i;
  arrayhead(b, n);
  for (i = 1; i <= n; i++) {
    int type = lua_rawgeti(L, t, (lua_Integer)i);
    if (type == LUA_TNIL) {
      lua_pop(L, 1);
      return 1;
    }
    e->path[depth + 1].key = 0;
    e->path[depth + 1].i = (lua_Integer)i;
    if (encvalue(e, v, type, depth + 1))
      return -1;
    lua_pop(L, 1);
  }
  return 0;
}

/*
** t as a map, in one walk: the entries go after a 1-byte fixmap header
** and are counted on the way; the rare map of 16 entries or more then
** moves them up to make room for its longer header. (Counting first
** would cost a second lua_next walk of every small map, the most common
** message shape.)
*/
static int encmap(Enc *e, int t, int depth) {
  lua_State *L = e->L;
  lipc__buf *b = e->b;
  size_t start = b->len, extra;
  lua_Unsigned c = 0;
  b->len += 1; /* encvalue reserved room for it */
  lua_pushnil(L);
  while (lua_next(L, t)) { /* stack: key value */
    int v = lua_gettop(L);
    int kt = lua_type(L, v - 1);
    if (kt != LUA_TSTRING && kt != LUA_TNUMBER && kt != LUA_TBOOLEAN)
      return enctypefail(e, depth, v - 1, " key");
    e->path[depth + 1].key = v - 1;
    /* the key is a scalar: it adds no step to the path */
    if (encvalue(e, v - 1, kt, depth))
      return -1;
    if (encvalue(e, v, lua_type(L, v), depth + 1))
      return -1;
    lua_pop(L, 1);
    c++;
  }
  if (c < 16) {
    b->data[start] = (char)(0x80 | c);
    return 0;
  }
  if (c > UINT32_MAX)
    return encfail(e, depth, "table has more than 2^32-1 entries");
  extra = c <= 0xFFFF ? 2 : 4;
  if (b->cap - b->len < extra && lipc__buf_reserve(b, extra) != 0)
    return encfail(e, depth, "not enough memory");
  memmove(b->data + start + 1 + extra, b->data + start + 1, b->len - start - 1);
  b->len += extra;
  putlen((unsigned char *)b->data + start, (size_t)c, 0xDE);
  return 0;
}

/* Back to what was written before a table that turned out to be a map:
   b's length, and the strings given by reference since. */
static void rewind_to(Enc *e, size_t len, size_t nrefs) {
  e->b->len = len;
  if (e->nrefs > nrefs) {
    e->refs->drop(e->refs->ctx, e->nrefs - nrefs);
    e->nrefs = nrefs;
  }
}

/*
** Called when the walk is MAXDEPTH deep. A table that contains itself
** always gets this deep, so cycles are looked for here rather than at
** every table: the first table on the path that was already open is
** where the cycle closes.
*/
static int deepfail(Enc *e, int depth) {
  int d, d2;
  for (d = 1; d <= depth; d++)
    for (d2 = 0; d2 < d; d2++)
      if (lua_rawequal(e->L, e->open[d], e->open[d2]))
        return encfail(e, d, "cycle");
  return encfail(e, depth, DEEPMSG);
}

#define ROOMSTEP 8 /* depths of stack room made at a time */

/* A table about to be walked at depth: refuses one level too many (or a
   cycle), makes stack room. 0, or -1 with the message. */
static int opentable(Enc *e, int t, int depth) {
  e->open[depth] = t;
  if (depth >= MAXDEPTH)
    return deepfail(e, depth);
  if (depth >= e->room) { /* key and value per depth, and room to fail */
    if (!lua_checkstack(e->L, 2 * ROOMSTEP + 4))
      return encfail(e, depth, "Lua stack overflow");
    e->room = depth + ROOMSTEP;
  }
  return 0;
}

/*
** A table tried as an array may turn out not to be one only after its
** elements were written: the retry as a map writes them again. Were its
** elements such tables too, each depth would double the work (2^depth for
** a value a peer sent, if it is sent on). So a table is tried as an array
** once per encoding: the ones that failed are kept in a registry table,
** made at the first failure (ordinary values never need it).
*/
static int notarray(Enc *e, int t) {
  lua_State *L = e->L;
  int r;
  if (e->notarray == LUA_NOREF)
    return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, e->notarray);
  r = lua_rawgetp(L, -1, lua_topointer(L, t)) != LUA_TNIL;
  lua_pop(L, 2);
  return r;
}

static void mark_notarray(Enc *e, int t) {
  lua_State *L = e->L;
  if (e->notarray == LUA_NOREF) {
    lua_newtable(L);
    e->notarray = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, e->notarray);
  lua_pushboolean(L, 1);
  lua_rawsetp(L, -2, lua_topointer(L, t));
  lua_pop(L, 1);
}

/*
** A table is an array when its keys are exactly 1..n, n = #t (raw) > 0.
** The common layout is checked in the one walk that writes it (encseq).
** Otherwise, with c entries, the keys are 1..n iff c == n and none of
** t[1..n] is nil: then 1..n are n of the c keys, leaving room for no
** other. So a counting pass decides, and the holes are found by the
** array encoder itself; after a hole we start over as a map.
*/
static int enctable(Enc *e, int t, int depth) {
  size_t start = e->b->len, nrefs = e->nrefs;
  lua_Unsigned n;
  int r;
  if (opentable(e, t, depth))
    return -1;
  n = (lua_Unsigned)lua_rawlen(e->L, t);
  if (n == 0) /* no border: a map, no need to count */
    return encmap(e, t, depth);
  if (n > UINT32_MAX)
    return encfail(e, depth, "table has more than 2^32-1 entries");
  if (notarray(e, t))
    return encmap(e, t, depth);
  /* encvalue reserved 9 bytes: room for either header */
  if ((r = encseq(e, t, n, depth)) <= 0)
    return r;
  rewind_to(e, start, nrefs);
  if (tabcount(e->L, t) == n) {
    if ((r = encarray(e, t, n, depth)) <= 0)
      return r;
    rewind_to(e, start, nrefs);
  }
  mark_notarray(e, t);
  return encmap(e, t, depth);
}

/* appends the value at absolute index 'idx', of Lua type 'type';
   stack unchanged on success */
static int encvalue(Enc *e, int idx, int type, int depth) {
  lua_State *L = e->L;
  lipc__buf *b = e->b;
  /* room for any scalar or table header, so those need no checks */
  if (b->cap - b->len < 9 && lipc__buf_reserve(b, 9) != 0)
    return encfail(e, depth, "not enough memory");
  switch (type) {
    case LUA_TNIL: b->data[b->len++] = (char)0xC0; return 0;
    case LUA_TBOOLEAN:
      b->data[b->len++] = (char)(lua_toboolean(L, idx) ? 0xC3 : 0xC2);
      return 0;
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx))
        encint(b, lua_tointeger(L, idx));
      else
        encfloat(b, lua_tonumber(L, idx));
      return 0;
    case LUA_TSTRING: return encstr(e, idx, depth);
    case LUA_TTABLE: return enctable(e, idx, depth);
    case LUA_TLIGHTUSERDATA: /* lipc.null (cjson.null): a nil message */
      if (lua_touserdata(L, idx) == NULL) {
        b->data[b->len++] = (char)0xC0;
        return 0;
      }
      return enctypefail(e, depth, idx, "");
    default: /* function, userdata, thread */
      return enctypefail(e, depth, idx, "");
  }
}

typedef int (*Encfn)(Enc *e, int idx, int type, int depth);

static int encode_with(lua_State *L, int idx, lipc__buf *b, Encfn value,
                       const lipc__codec_refs *refs) {
  Enc e;
  size_t len0 = b->len;
  int top = lua_gettop(L), r;
  e.L = L;
  e.b = b;
  e.refs = refs;
  e.nrefs = 0;
  e.room = 0;
  e.notarray = LUA_NOREF;
  idx = lua_absindex(L, idx);
  r = value(&e, idx, lua_type(L, idx), 0);
  if (e.notarray != LUA_NOREF)
    luaL_unref(L, LUA_REGISTRYINDEX, e.notarray);
  if (r == 0)
    return 0;
  b->len = len0;                 /* keep nothing partial */
  if (lua_gettop(L) > top + 1) { /* drop iteration leftovers */
    lua_replace(L, top + 1);
    lua_settop(L, top + 1);
  }
  return -1;
}

int lipc__codec_encode(lua_State *L, int idx, lipc__buf *b) {
  return encode_with(L, idx, b, encvalue, NULL);
}

int lipc__codec_encode_ref(lua_State *L, int idx, lipc__buf *b,
                           const lipc__codec_refs *refs) {
  return encode_with(L, idx, b, encvalue, refs);
}

/* }================================================================== */

/*
** {==================================================================
** JSON encoder: the text Node's JSON.stringify would write
** ===================================================================
** For Node's IPC lines (channel JSON mode). lua-cjson 2.1.0 writes
** numbers with 14 significant digits, so an id, a timestamp in us or a
** double reached Node changed; this writes integers exactly and floats
** in the fewest digits that read back the same. The walk, the limits
** and the error messages are the MessagePack encoder's. Decoding stays
** with cjson.
*/

static int jvalue(Enc *e, int idx, int type, int depth);

static int jroom(Enc *e, int depth, size_t n) {
  if (e->b->cap - e->b->len < n && lipc__buf_reserve(e->b, n) != 0)
    return encfail(e, depth, "not enough memory");
  return 0;
}

static void jput(lipc__buf *b, const char *s, size_t n) { /* room made */
  memcpy(b->data + b->len, s, n);
  b->len += n;
}

/* JSON numbers have no NaN or infinity: JSON.stringify writes null */
static int jnumber(Enc *e, int idx, int depth) {
  char num[40];
  int n, prec;
  if (lua_isinteger(e->L, idx)) {
    n = snprintf(num, sizeof num, LUA_INTEGER_FMT,
                 (LUAI_UACINT)lua_tointeger(e->L, idx));
  } else {
    double x = (double)lua_tonumber(e->L, idx);
    if (x != x || x - x != 0) { /* NaN, inf */
      n = 4;
      memcpy(num, "null", 4);
    } else {
      for (prec = 15; prec <= 17; prec++) { /* the shortest that reads back */
        n = snprintf(num, sizeof num, "%.*g", prec, x);
        if (strtod(num, NULL) == x)
          break;
      }
      for (prec = 0; prec < n; prec++) /* a locale's decimal comma */
        if (num[prec] == ',')
          num[prec] = '.';
    }
  }
  if (jroom(e, depth, (size_t)n))
    return -1;
  jput(e->b, num, (size_t)n);
  return 0;
}

/* a JSON string: text only (Node's strings are text, a binary string
   would arrive changed), with " \ and control characters escaped */
static int jstring(Enc *e, const char *s, size_t l, int depth, int key) {
  static const char hex[] = "0123456789abcdef";
  size_t i, extra = 0, run = 0;
  char *w;
  if (!lipc__utf8_valid(s, l))
    return encfail(e, depth,
                   key ? "cannot send a key that is not UTF-8 "
                         "in JSON mode"
                       : "cannot send a string that is not UTF-8 "
                         "in JSON mode");
  for (i = 0; i < l; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' ||
        c == '\r' || c == '\t')
      extra += 1;
    else if (c < 0x20)
      extra += 5;
  }
  if (jroom(e, depth, l + extra + 2))
    return -1;
  w = e->b->data + e->b->len;
  *w++ = '"';
  for (i = 0; i < l; i++) {
    unsigned char c = (unsigned char)s[i];
    const char *esc = NULL;
    if (c >= 0x20 && c != '"' && c != '\\')
      continue;
    memcpy(w, s + run, i - run);
    w += i - run;
    run = i + 1;
    switch (c) {
      case '"': esc = "\\\""; break;
      case '\\': esc = "\\\\"; break;
      case '\b': esc = "\\b"; break;
      case '\f': esc = "\\f"; break;
      case '\n': esc = "\\n"; break;
      case '\r': esc = "\\r"; break;
      case '\t': esc = "\\t"; break;
      default:
        memcpy(w, "\\u00", 4);
        w[4] = hex[c >> 4];
        w[5] = hex[c & 15];
        w += 6;
        continue;
    }
    memcpy(w, esc, 2);
    w += 2;
  }
  memcpy(w, s + run, l - run);
  w += l - run;
  *w++ = '"';
  e->b->len = (size_t)(w - e->b->data);
  return 0;
}

/* an object key: strings as they are, numbers as JavaScript writes them */
static int jkey(Enc *e, int k, int depth) {
  size_t l;
  const char *s;
  if (lua_type(e->L, k) == LUA_TNUMBER) {
    size_t at = e->b->len;
    lua_Number x = lua_tonumber(e->L, k);
    char *w;
    if (!lua_isinteger(e->L, k) && (x == HUGE_VAL || x == -HUGE_VAL))
      return jstring(e, x > 0 ? "Infinity" : "-Infinity", x > 0 ? 8 : 9, depth,
                     1); /* String(Infinity); a NaN key cannot be */
    if (jnumber(e, k, depth) || jroom(e, depth, 2))
      return -1;
    w = e->b->data + at; /* quote what was written */
    l = e->b->len - at;
    memmove(w + 1, w, l);
    w[0] = '"';
    w[1 + l] = '"';
    e->b->len += 2;
    return 0;
  }
  if (lua_type(e->L, k) != LUA_TSTRING)
    return enctypefail(e, depth, k, " key in JSON mode");
  s = lua_tolstring(e->L, k, &l);
  return jstring(e, s, l, depth, 1);
}

static int jobject(Enc *e, int t, int depth) {
  lua_State *L = e->L;
  int first = 1;
  lua_pushnil(L);
  while (lua_next(L, t)) { /* stack: key value */
    int v = lua_gettop(L);
    e->path[depth + 1].key = v - 1;
    if (jroom(e, depth, 2))
      return -1;
    e->b->data[e->b->len++] = first ? '{' : ',';
    first = 0;
    if (jkey(e, v - 1, depth) || jroom(e, depth, 1))
      return -1;
    e->b->data[e->b->len++] = ':';
    if (jvalue(e, v, lua_type(L, v), depth + 1))
      return -1;
    lua_pop(L, 1);
  }
  if (jroom(e, depth, 2))
    return -1;
  if (first)
    e->b->data[e->b->len++] = '{';
  e->b->data[e->b->len++] = '}';
  return 0;
}

/* t[1..n] as an array; 1 at the first nil (then t is an object) */
static int jarray(Enc *e, int t, lua_Unsigned n, int depth) {
  lua_State *L = e->L;
  int v = lua_gettop(L) + 1;
  lua_Unsigned i;
  for (i = 1; i <= n; i++) {
    int type = lua_rawgeti(L, t, (lua_Integer)i);
    if (type == LUA_TNIL) {
      lua_pop(L, 1);
      return 1;
    }
    if (jroom(e, depth, 1))
      return -1;
    e->b->data[e->b->len++] = i == 1 ? '[' : ',';
    e->path[depth + 1].key = 0;
    e->path[depth + 1].i = (lua_Integer)i;
    if (jvalue(e, v, type, depth + 1))
      return -1;
    lua_pop(L, 1);
  }
  if (jroom(e, depth, 1))
    return -1;
  e->b->data[e->b->len++] = ']';
  return 0;
}

/* the same array rule as MessagePack (keys exactly 1..n, n > 0); an
   empty table is {} */
static int jtable(Enc *e, int t, int depth) {
  int r = opentable(e, t, depth);
  lua_Unsigned n;
  if (r)
    return r;
  n = (lua_Unsigned)lua_rawlen(e->L, t);
  if (n > 0 && !notarray(e, t) && tabcount(e->L, t) == n) {
    size_t start = e->b->len;
    if ((r = jarray(e, t, n, depth)) <= 0)
      return r;
    e->b->len = start; /* a hole */
    mark_notarray(e, t);
  }
  return jobject(e, t, depth);
}

static int jvalue(Enc *e, int idx, int type, int depth) {
  size_t l;
  const char *s;
  switch (type) {
    case LUA_TNIL:
      if (jroom(e, depth, 4))
        return -1;
      jput(e->b, "null", 4);
      return 0;
    case LUA_TBOOLEAN: {
      int on = lua_toboolean(e->L, idx);
      if (jroom(e, depth, 5))
        return -1;
      jput(e->b, on ? "true" : "false", on ? 4 : 5);
      return 0;
    }
    case LUA_TNUMBER: return jnumber(e, idx, depth);
    case LUA_TSTRING:
      s = lua_tolstring(e->L, idx, &l);
      return jstring(e, s, l, depth, 0);
    case LUA_TTABLE: return jtable(e, idx, depth);
    default:
      if (type == LUA_TLIGHTUSERDATA && lua_touserdata(e->L, idx) == NULL)
        return jvalue(e, idx, LUA_TNIL, depth); /* cjson.null: Node's null */
      return enctypefail(e, depth, idx, "");
  }
}

int lipc__codec_encode_json(lua_State *L, int idx, lipc__buf *b) {
  return encode_with(L, idx, b, jvalue, NULL);
}

/* }================================================================== */

/*
** {==================================================================
** Decoder
** ===================================================================
** Each step returns 1 (value pushed), 0 (input ended before the value
** did) or -1 (malformed, d->err set). Input is consumed left to right,
** so the first problem decides: a malformed byte anywhere in the input
** gives -1 even inside a container whose claimed length runs past the
** end, and 0 means that what is there is a valid prefix (one lenient
** corner: a float map key cut short is not known to be NaN yet).
** With d->L NULL the same walk only checks (lipc__codec_check): nothing
** is pushed, so a channel can refuse a bad frame when it arrives and
** build the value later, when somebody takes it.
*/

#define ERRPFX "invalid MessagePack: "

typedef struct Dec {
  lua_State *L; /* NULL: check only */
  int room;     /* depths with stack room already made */
  const unsigned char *p, *end;
  const char *err;
  uint64_t owed; /* bytes the open containers still need after this value */
  int nan;       /* the last value was a NaN float (map keys) */
  int checked;   /* lipc__codec_check passed these bytes: UTF-8 is known */
  uint64_t cost; /* what the Lua objects so far take (COST_*, estimated) */
  uint64_t budget;
} Dec;

/*
** Memory budget. What a value's Lua objects take, estimated from Lua
** 5.4's sizes (a Table is 56 bytes, an array slot 16, a node 24 in a
** power-of-two array, a string 24 + its length, and malloc's overhead):
** a 1-byte empty map becomes ~80 bytes, so a frame well under max_message
** could take gigabytes. A believed container counts when it opens (an
** unbelieved one cannot complete), a string when it is complete.
*/
#define COST_TABLE 64
#define COST_SLOT 16
#define COST_ENTRY 32
#define COST_STRING 40
const char lipc__codec_over_budget[] = "over the decoding budget";
#define spend(d, n) ((d)->cost += (n), (d)->cost > (d)->budget)
#define overbudget(d) ((d)->err = lipc__codec_over_budget, -1)

#define bad(d, msg) ((d)->err = ERRPFX msg, -1)
#define left(d) ((size_t)((d)->end - (d)->p))

static int decvalue(Dec *d, int depth);

/* the ext type sits at d->p[at]. The message names it, so it cannot be
   a literal: it lives in thread-local storage until the next ext
   failure on this thread */
static int badext(Dec *d, size_t at) {
  static _Thread_local char msg[64];
  if (at >= left(d)) /* no ext type is accepted, so this is already bad */
    return bad(d, "unknown ext type");
  snprintf(msg, sizeof msg, ERRPFX "unknown ext type %d",
           (int)(int8_t)d->p[at]);
  d->err = msg;
  return -1;
}

/* str (utf8 = 1) or bin of l bytes at d->p */
static int decstr(Dec *d, size_t l, int utf8) {
  if (l > left(d)) { /* truncated: bad only if no completion could fix it */
    if (utf8 && utf8_check(d->p, left(d)) < 0)
      return bad(d, "str is not valid UTF-8");
    return 0;
  }
  if (utf8 && !d->checked && utf8_check(d->p, l) != 0)
    return bad(d, "str is not valid UTF-8");
  if (spend(d, COST_STRING + (uint64_t)l))
    return overbudget(d);
  if (d->L)
    lua_pushlstring(d->L, (const char *)d->p, l);
  d->p += l;
  return 1;
}

/*
** Preallocation. A claimed count is believed only when the input has
** room for it: every array element takes at least 1 byte, every map
** entry 2, and those bytes come after the ones still owed to the
** enclosing containers' later elements (d->owed). So the tables open
** at any moment together preallocate no more slots than there are
** bytes, and 128 nested claims of 2^32-1 cost nothing. An unbelieved
** count still decodes (the input is certainly incomplete, but whether
** it is also malformed is decided by the bytes that are there); its
** table grows only as elements really arrive.
*/
static int believe(Dec *d, uint64_t need) {
  uint64_t room = left(d);
  return d->owed <= room && need <= room - d->owed;
}

#define prealloc(n) ((int)((n) < PREALLOC_MAX ? (n) : PREALLOC_MAX))

static int decarray(Dec *d, size_t n, int depth) {
  lua_State *L = d->L;
  uint64_t owed = d->owed;
  size_t i;
  int r, believed = believe(d, n);
  if (believed && spend(d, COST_TABLE + COST_SLOT * (uint64_t)n))
    return overbudget(d);
  if (L)
    lua_createtable(L, believed ? prealloc(n) : 0, 0);
  for (i = 1; i <= n; i++) {
    d->owed = owed + (n - i);
    if ((r = decvalue(d, depth + 1)) <= 0)
      return r;
    if (L)
      lua_rawseti(L, -2, (lua_Integer)i);
  }
  d->owed = owed;
  return 1;
}

/*
** Hash flooding. A map's number keys go to the hash part of its table,
** where a peer can predict the chains: Lua 5.4 puts an integer key k in
** node k % ((size - 1) | 1) (ltable.c: hashint, hashmod) and a float that
** is no integer by a hash of its exponent and mantissa (l_hashfloat). So
** keys i * (2^16 - 1) share one chain of a 65,536-node table, and as
** every insertion first walks its key's chain, n of them cost n^2 / 2
** steps: 10 s for a 640 KB frame. A map of FLOOD_MIN entries or more
** counts its keys per main position of the node array it gets (sized for
** n entries: the next power of two) and is refused once those walks
** pass FLOOD_STEPS steps per entry; a smaller one costs at most
** FLOOD_MIN / 2 steps per entry. String keys use Lua's hash, seeded per
** state. The check-only walk counts the same, so both agree.
*/
#define FLOOD_MIN 64
#define FLOOD_STEPS 8
#define FLOODMSG "map keys collide in Lua's hash (hash flooding)"

static uint64_t getn(const unsigned char *p, size_t k);

typedef struct Flood {
  uint16_t *count; /* keys per main position so far (saturating) */
  uint64_t mod;    /* (nodes - 1) | 1 */
  uint64_t steps;  /* chain steps the insertions walked so far */
  uint64_t limit;
} Flood;

/* l_hashfloat (ltable.c): a float key that is no integer */
static unsigned hashfloat(double x) {
  int e;
  double m = frexp(x, &e) * 2147483648.0; /* -(double)INT_MIN */
  unsigned u;
  if (!(m >= -0x1p63 && m < 0x1p63))
    return 0; /* inf */
  u = (unsigned)e + (unsigned)(int64_t)m;
  return u <= (unsigned)INT32_MAX ? u : ~u;
}

/* The main position of the map key at p (all its bytes are there), or
   UINT64_MAX for a key that is no number. A float with an integer value
   is stored as that integer (Lua's key normalisation). */
static uint64_t keyslot(const unsigned char *p, uint64_t mod) {
  unsigned c = *p;
  uint64_t u;
  double x;
  if (c <= 0x7F)
    return c % mod;
  if (c >= 0xE0)
    return (uint64_t)(int64_t)(int8_t)c % mod;
  if (c >= 0xCC && c <= 0xCF) { /* uint: over maxinteger, a float */
    u = getn(p + 1, (size_t)1 << (c - 0xCC));
    if (u <= (uint64_t)LUA_MAXINTEGER)
      return u % mod;
    return hashfloat((double)u) % mod;
  }
  if (c >= 0xD0 && c <= 0xD3) {
    size_t k = (size_t)1 << (c - 0xD0);
    u = getn(p + 1, k);
    if (k == 1) /* sign-extend */
      u = (uint64_t)(int64_t)(int8_t)u;
    else if (k == 2)
      u = (uint64_t)(int64_t)(int16_t)u;
    else if (k == 4)
      u = (uint64_t)(int64_t)(int32_t)u;
    return u % mod;
  }
  if (c == 0xCA) {
    uint32_t u32 = (uint32_t)getn(p + 1, 4);
    float f;
    memcpy(&f, &u32, 4);
    x = (double)f;
  } else if (c == 0xCB) {
    u = getn(p + 1, 8);
    memcpy(&x, &u, 8);
  } else {
    return UINT64_MAX;
  }
  if (x == floor(x) && x >= -0x1p63 && x < 0x1p63)
    return (uint64_t)(int64_t)x % mod;
  return hashfloat(x) % mod;
}

/* Counts the key at p into its chain: -1 once the map floods. */
static int flood_add(Dec *d, Flood *f, const unsigned char *p) {
  uint64_t slot = keyslot(p, f->mod);
  uint16_t *c;
  if (slot == UINT64_MAX)
    return 0;
  c = &f->count[slot];
  f->steps += *c;
  if (*c < UINT16_MAX)
    (*c)++;
  if (f->steps > f->limit)
    return bad(d, FLOODMSG);
  return 0;
}

static inline __attribute__((always_inline)) int decentries(Dec *d, size_t n,
                                                            int depth,
                                                            Flood *f) {
  lua_State *L = d->L;
  uint64_t owed = d->owed;
  size_t i;
  int r;
  for (i = 1; i <= n; i++) {
    const unsigned char *key;
    unsigned c;
    if (d->p == d->end)
      return 0;
    c = *d->p; /* refuse by type byte, before a partial key could hide it */
    if (c == 0xC0)
      return bad(d, "map key is nil");
    if ((c & 0xE0) == 0x80 || (c >= 0xDC && c <= 0xDF))
      return bad(d, "map key is an array or map");
    d->owed = owed + 1 + 2 * (uint64_t)(n - i); /* this value, later entries */
    d->nan = 0;
    key = d->p;
    if ((r = decvalue(d, depth + 1)) <= 0)
      return r;
    if (d->nan)
      return bad(d, "map key is NaN");
    if (f && flood_add(d, f, key) < 0)
      return -1;
    d->owed = owed + 2 * (uint64_t)(n - i);
    if ((r = decvalue(d, depth + 1)) <= 0)
      return r;
    if (L)
      lua_rawset(L, -3);
  }
  d->owed = owed;
  return 1;
}

/*
** keys must be usable in Lua: not nil, NaN, or a table. A map the input
** has no room for cannot complete the value (see believe), so it is only
** checked: no table is built, and a placeholder stands for it in the
** enclosing containers until the whole decode fails.
*/
static int decmap(Dec *d, size_t n, int depth) {
  lua_State *L = d->L;
  Flood f;
  size_t nodes = FLOOD_MIN;
  int r, believed = believe(d, 2 * (uint64_t)n);
  if (believed && spend(d, COST_TABLE + COST_ENTRY * (uint64_t)n))
    return overbudget(d);
  if (n < FLOOD_MIN) { /* the common case: cheap whatever its keys */
    if (L)
      lua_createtable(L, 0, believed ? (int)n : 0);
    return decentries(d, n, depth, NULL);
  }
  if (!believed) {
    d->L = NULL;
    r = decentries(d, n, depth, NULL);
    d->L = L;
    if (L && r > 0)
      lua_pushboolean(L, 0);
    return r;
  }
  if (n > PREALLOC_MAX)
    return bad(d, "map of more than 16777216 entries");
  while (nodes < n) /* Lua's node array for n entries */
    nodes *= 2;
  if ((f.count = calloc(nodes, sizeof(*f.count))) == NULL)
    return bad(d, "not enough memory");
  f.mod = (nodes - 1) | 1;
  f.steps = 0;
  f.limit = FLOOD_STEPS * (uint64_t)n;
  if (L)
    lua_createtable(L, 0, (int)n);
  r = decentries(d, n, depth, &f);
  free(f.count);
  return r;
}

/* the k-byte big-endian number at p, for k = 1, 2, 4 or 8 */
static uint64_t getn(const unsigned char *p, size_t k) {
  switch (k) {
    case 1: return p[0];
    case 2: return get16(p);
    case 4: return get32(p);
    default: return get64(p);
  }
}

/* fixarray, fixmap, array 16/32, map 16/32 */
static int deccontainer(Dec *d, unsigned c, int depth) {
  int ismap = (c <= 0x8F || c >= 0xDE);
  size_t k = (c <= 0x9F) ? 0 : (c & 1) ? 4 : 2; /* bytes of the count */
  size_t n;
  if (depth >= MAXDEPTH) /* whatever follows, this is too deep */
    return bad(d, DEEPMSG);
  if (left(d) < 1 + k)
    return 0;
  n = (k == 0) ? (c & 0x0F) : (size_t)getn(d->p + 1, k);
  d->p += 1 + k;
  if (d->L && depth >= d->room) { /* table and key per depth, a value */
    if (!lua_checkstack(d->L, 2 * ROOMSTEP + 3))
      return bad(d, "Lua stack overflow");
    d->room = depth + ROOMSTEP;
  }
  return ismap ? decmap(d, n, depth) : decarray(d, n, depth);
}

/* fixstr, str 8/16/32, bin 8/16/32 */
static int decsized(Dec *d, unsigned c) {
  size_t k, n;
  int isstr = (c <= 0xBF || c >= 0xD9);
  if (c <= 0xBF) /* fixstr */
    k = 0;
  else
    k = (size_t)1 << (c - (isstr ? 0xD9 : 0xC4));
  if (left(d) < 1 + k)
    return 0;
  n = (k == 0) ? (c & 0x1F) : (size_t)getn(d->p + 1, k);
  d->p += 1 + k;
  return decstr(d, n, isstr);
}

/* uint 8/16/32/64 (0xcc-0xcf), int 8/16/32/64 (0xd0-0xd3) */
static int decint(Dec *d, unsigned c) {
  int sign = (c >= 0xD0);
  size_t k = (size_t)1 << (c - (sign ? 0xD0 : 0xCC));
  uint64_t u;
  if (left(d) < 1 + k)
    return 0;
  u = getn(d->p + 1, k);
  d->p += 1 + k;
  if (d->L == NULL)
    return 1;
  if (sign) /* sign-extend from k bytes */
    lua_pushinteger(d->L, k == 1   ? (int8_t)u
                          : k == 2 ? (int16_t)u
                          : k == 4 ? (int32_t)u
                                   : (lua_Integer)(int64_t)u);
  else if (u > (uint64_t)LUA_MAXINTEGER) /* no Lua integer: a float */
    lua_pushnumber(d->L, (lua_Number)u);
  else
    lua_pushinteger(d->L, (lua_Integer)u);
  return 1;
}

/* float 32 (0xca), float 64 (0xcb); both become Lua floats */
static int decfloat(Dec *d, unsigned c) {
  size_t k = (c == 0xCA) ? 4 : 8;
  uint64_t u;
  lua_Number x;
  if (left(d) < 1 + k)
    return 0;
  u = getn(d->p + 1, k);
  d->p += 1 + k;
  if (k == 4) {
    uint32_t u32 = (uint32_t)u;
    float f;
    memcpy(&f, &u32, 4);
    x = (lua_Number)f;
  } else {
    double f;
    memcpy(&f, &u, 8);
    x = (lua_Number)f;
  }
  d->nan = x != x;
  if (d->L)
    lua_pushnumber(d->L, x);
  return 1;
}

/* Every value but the two commonest: out of line, so that decvalue
   stays small (its prologue runs for every value). */
static __attribute__((noinline)) int decother(Dec *d, unsigned c, int depth) {
  if (c <= 0x9F || (c >= 0xDC && c <= 0xDF))
    return deccontainer(d, c, depth);
  if (c <= 0xBF || (c >= 0xC4 && c <= 0xC6) || (c >= 0xD9 && c <= 0xDB))
    return decsized(d, c);
  if (c >= 0xCC && c <= 0xD3)
    return decint(d, c);
  switch (c) {
    case 0xC0:
    case 0xC2:
    case 0xC3:
      if (d->L == NULL)
        break;
      if (c == 0xC0)
        lua_pushnil(d->L);
      else
        lua_pushboolean(d->L, c == 0xC3);
      break;
    case 0xCA:
    case 0xCB: return decfloat(d, c);
    case 0xC7: return badext(d, 2); /* ext 8: length, then the type */
    case 0xC8: return badext(d, 3);
    case 0xC9: return badext(d, 5);
    case 0xC1: return bad(d, "unknown type byte 0xc1");
    default: return badext(d, 1); /* fixext 1/2/4/8/16: 0xd4-0xd8 */
  }
  d->p++;
  return 1;
}

static int decvalue(Dec *d, int depth) {
  unsigned c;
  if (d->p == d->end)
    return 0;
  c = *d->p;
  if (c <= 0x7F || c >= 0xE0) { /* positive or negative fixint */
    if (d->L)
      lua_pushinteger(d->L, (lua_Integer)(int8_t)c);
    d->p++;
    return 1;
  }
  if ((c & 0xE0) == 0xA0) { /* fixstr: map keys, short words */
    d->p++;
    return decstr(d, c & 0x1F, 1);
  }
  return decother(d, c, depth);
}

/* L NULL: check only */
static ptrdiff_t decode(lua_State *L, const char *p, size_t n, const char **err,
                        int checked, uint64_t budget) {
  Dec d;
  int top = L ? lua_gettop(L) : 0, r;
  if (n == 0)
    return 0;
  d.L = L;
  d.room = 0;
  d.p = (const unsigned char *)p;
  d.end = d.p + n;
  d.err = NULL;
  d.owed = 0;
  d.nan = 0;
  d.checked = checked;
  d.cost = 0;
  d.budget = budget;
  if (L && !lua_checkstack(L, 2))
    r = bad(&d, "Lua stack overflow");
  else
    r = decvalue(&d, 0);
  if (r > 0)
    return (ptrdiff_t)(d.p - (const unsigned char *)p);
  if (L)
    lua_settop(L, top); /* drop the partial value */
  if (r < 0 && err != NULL)
    *err = d.err;
  return r;
}

ptrdiff_t lipc__codec_decode(lua_State *L, const char *p, size_t n,
                             const char **err) {
  return decode(L, p, n, err, 0, UINT64_MAX);
}

ptrdiff_t lipc__codec_decode_checked(lua_State *L, const char *p, size_t n,
                                     const char **err) {
  return decode(L, p, n, err, 1, UINT64_MAX);
}

ptrdiff_t lipc__codec_check(const char *p, size_t n, const char **err) {
  return decode(NULL, p, n, err, 0, UINT64_MAX);
}

ptrdiff_t lipc__codec_check_budget(const char *p, size_t n, uint64_t budget,
                                   const char **err) {
  return decode(NULL, p, n, err, 0, budget);
}

/* }================================================================== */

/*
** {==================================================================
** Decoding in steps
** ===================================================================
** The same walk as decvalue, with the open containers on an explicit
** stack instead of the C stack, so that it can stop after a number of
** values and go on later: a channel builds a large frame's values a
** slice per loop turn. Scalars go through decvalue itself; a container
** is opened here (what deccontainer and decmap do before their loop),
** and each element completed is stored as decarray and decentries
** store it. Results, messages and budget agree with lipc__codec_decode
** and lipc__codec_check byte for byte (fuzz_codec compares them).
*/

typedef struct Open {
  size_t n, i;   /* elements (map entries) and those complete */
  uint64_t owed; /* d->owed when it opened */
  Flood f;       /* f.count NULL: keys not counted */
  lua_State *L;  /* d->L when it opened: a map not believed builds none */
  unsigned char ismap, haskey, unbelieved;
} Open;

struct lipc__codec_steps {
  Dec d;
  int (*ready)(void *ctx, size_t bytes); /* lipc__codec_steps_ready */
  void *ctx;
  size_t pos; /* bytes consumed so far */
  int depth;  /* containers open */
  int top;    /* L's top before the value */
  int started;
  Open open[MAXDEPTH];
};

lipc__codec_steps *lipc__codec_steps_new(uint64_t budget, int checked) {
  lipc__codec_steps *s = calloc(1, sizeof(*s));
  if (s == NULL)
    return NULL;
  s->d.budget = budget;
  s->d.checked = checked;
  return s;
}

void lipc__codec_steps_ready(lipc__codec_steps *s,
                             int (*ready)(void *ctx, size_t bytes), void *ctx) {
  s->ready = ready;
  s->ctx = ctx;
}

/* Lua 5.4's blocks on 64 bits: an array slot (TValue), a hash node, a
   long string's header and terminator */
#define LUA_SLOT 16
#define LUA_NODE 24
#define LUA_STRHDR 25

/* A block of `bytes` is about to be made: 0 when the caller wants it
   ready first (the slice ends there). */
static int ready(lipc__codec_steps *s, uint64_t bytes) {
  return s->ready == NULL || s->d.L == NULL || bytes < LIPC_CODEC_READY_MIN ||
         s->ready(s->ctx, (size_t)bytes);
}

void lipc__codec_steps_free(lipc__codec_steps *s) {
  int i;
  if (s == NULL)
    return;
  for (i = 0; i < s->depth; i++)
    free(s->open[i].f.count);
  free(s);
}

/* Opens the container with type byte c as decmap / decarray would, at
   depth; pushes its table (or nothing, or placeholder-to-be). */
static int open_container(Dec *d, lipc__codec_steps *s, unsigned c, int depth) {
  int ismap = (c <= 0x8F || c >= 0xDE), believed;
  size_t k = (c <= 0x9F) ? 0 : (c & 1) ? 4 : 2, n, nodes = FLOOD_MIN;
  Open *o;
  if (depth >= MAXDEPTH)
    return bad(d, DEEPMSG);
  if (left(d) < 1 + k)
    return 0;
  n = (k == 0) ? (c & 0x0F) : (size_t)getn(d->p + 1, k);
  d->p += 1 + k;
  if (d->L && !lua_checkstack(d->L, 3))
    return bad(d, "Lua stack overflow");
  believed = believe(d, ismap ? 2 * (uint64_t)n : n);
  if (believed && n >= 1024) { /* a big table's block: made ready first */
    while (ismap && nodes < n)
      nodes *= 2;
    if (!ready(s, ismap ? (uint64_t)nodes * LUA_NODE
                        : (uint64_t)prealloc(n) * LUA_SLOT)) {
      d->p -= 1 + k; /* again on the next slice */
      return LIPC_CODEC_MORE;
    }
    nodes = FLOOD_MIN;
  }
  o = &s->open[s->depth];
  memset(o, 0, sizeof(*o));
  o->n = n;
  o->owed = d->owed;
  o->ismap = (unsigned char)ismap;
  o->L = d->L;
  if (believed &&
      spend(d, COST_TABLE + (ismap ? COST_ENTRY : COST_SLOT) * (uint64_t)n))
    return overbudget(d);
  if (!ismap || n < FLOOD_MIN) {
    if (d->L)
      lua_createtable(d->L, ismap ? 0 : (believed ? prealloc(n) : 0),
                      ismap ? (believed ? (int)n : 0) : 0);
  } else if (!believed) {
    o->unbelieved = 1;
    d->L = NULL;
  } else {
    if (n > PREALLOC_MAX)
      return bad(d, "map of more than 16777216 entries");
    while (nodes < n)
      nodes *= 2;
    if ((o->f.count = calloc(nodes, sizeof(*o->f.count))) == NULL)
      return bad(d, "not enough memory");
    o->f.mod = (nodes - 1) | 1;
    o->f.limit = FLOOD_STEPS * (uint64_t)n;
    if (d->L)
      lua_createtable(d->L, 0, (int)n);
  }
  s->depth++;
  return 1;
}

/* The open container o is complete: closes it; its value is on top. */
static void close_container(Dec *d, lipc__codec_steps *s, Open *o) {
  d->owed = o->owed;
  free(o->f.count);
  o->f.count = NULL;
  if (o->unbelieved) {
    d->L = o->L;
    if (d->L)
      lua_pushboolean(d->L, 0);
  }
  s->depth--;
}

/* Sets up for the next element of o (decarray's and decentries' loop
   heads); *key gets where a map key starts. 1, or 0 / -1. */
static int next_element(Dec *d, Open *o, const unsigned char **key) {
  uint64_t later = (uint64_t)(o->n - o->i - 1);
  unsigned c;
  if (!o->ismap) {
    d->owed = o->owed + later;
    return 1;
  }
  if (o->haskey) {
    d->owed = o->owed + 2 * later;
    return 1;
  }
  if (d->p == d->end)
    return 0;
  c = *d->p;
  if (c == 0xC0)
    return bad(d, "map key is nil");
  if ((c & 0xE0) == 0x80 || (c >= 0xDC && c <= 0xDF))
    return bad(d, "map key is an array or map");
  d->owed = o->owed + 1 + 2 * later;
  d->nan = 0;
  *key = d->p;
  return 1;
}

/* The value on top completes an element of o (or a map key). */
static int store_element(Dec *d, Open *o, const unsigned char *key) {
  if (!o->ismap) {
    o->i++;
    if (d->L)
      lua_rawseti(d->L, -2, (lua_Integer)o->i);
    return 1;
  }
  if (!o->haskey) {
    if (d->nan)
      return bad(d, "map key is NaN");
    if (o->f.count && flood_add(d, &o->f, key) < 0)
      return -1;
    o->haskey = 1;
    return 1;
  }
  o->haskey = 0;
  o->i++;
  if (d->L)
    lua_rawset(d->L, -3);
  return 1;
}

/* A str or bin 16/32 (type byte c, whole in the input) of a size whose
   block the caller wants ready: 0 until it is. */
static int ready_str(Dec *d, lipc__codec_steps *s, unsigned c) {
  size_t k = (c == 0xC5 || c == 0xDA) ? 2 : 4;
  uint64_t l;
  if (left(d) < 1 + k)
    return 1;
  l = getn(d->p + 1, k);
  return l > left(d) - 1 - k || ready(s, l + LUA_STRHDR);
}

/* Runs the walk for at most work values: 1 when the value is complete,
   LIPC_CODEC_MORE when the work ran out, else 0 / -1. */
static int steps_walk(Dec *d, lipc__codec_steps *s, size_t work) {
  const unsigned char *key = NULL;
  int r;
  for (;;) {
    Open *o = s->depth > 0 ? &s->open[s->depth - 1] : NULL;
    if (o && o->i == o->n) {
      close_container(d, s, o);
    } else {
      unsigned c;
      if (work == 0)
        return LIPC_CODEC_MORE;
      work--;
      if (o && (r = next_element(d, o, &key)) <= 0)
        return r;
      if (d->p == d->end)
        return 0;
      c = *d->p;
      if (c >= 0x80 && (c <= 0x9F || (c >= 0xDC && c <= 0xDF))) {
        if ((r = open_container(d, s, c, s->depth)) <= 0)
          return r;
        continue;
      }
      if ((c == 0xC5 || c == 0xC6 || c == 0xDA || c == 0xDB) &&
          !ready_str(d, s, c))
        return LIPC_CODEC_MORE;
      if ((r = decvalue(d, s->depth)) <= 0)
        return r;
    }
    if (s->depth == 0)
      return 1;
    if (store_element(d, &s->open[s->depth - 1], key) < 0)
      return -1;
  }
}

ptrdiff_t lipc__codec_steps_run(lipc__codec_steps *s, lua_State *L,
                                const char *p, size_t n, size_t work,
                                const char **err) {
  Dec *d = &s->d;
  int r;
  if (!s->started) {
    s->started = 1;
    s->top = L ? lua_gettop(L) : 0;
    d->L = L;
    if (n == 0)
      return 0;
    if (L && !lua_checkstack(L, 2)) {
      if (err != NULL)
        *err = ERRPFX "Lua stack overflow";
      return -1;
    }
  }
  d->p = (const unsigned char *)p + s->pos;
  d->end = (const unsigned char *)p + n;
  r = steps_walk(d, s, work);
  s->pos = (size_t)(d->p - (const unsigned char *)p);
  if (r > 0)
    return (ptrdiff_t)s->pos;
  if (r == LIPC_CODEC_MORE)
    return r;
  if (L)
    lua_settop(L, s->top); /* drop the partial value */
  if (r < 0 && err != NULL)
    *err = d->err;
  return r;
}

/* }================================================================== */
