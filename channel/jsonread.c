/*
** jsonread.c - JSON text -> Lua value, for Node's IPC lines (json.c).
**
** Owns the reader of JSON mode: strict JSON (RFC 8259) onto a Lua stack,
** a slice of values at a time when asked, so that a large line from a
** peer is built over several loop turns as a large MessagePack frame is
** (receive.c's job), instead of holding the loop for the whole of it.
**
** Numbers come out as Lua sees them: an integral value within 2^53 is an
** integer (JSON has one number type; the peer most likely meant one),
** anything else a float as strtod reads it in the C locale. null is
** lipc.null (cjson.null, a NULL light userdata), so it keeps its place
** in arrays and objects. Strings are bytes, \u escapes become UTF-8 (a
** surrogate pair one code point; a lone surrogate is refused).
**
** What Node's JSON.stringify never writes is refused with the byte it
** stopped at: hex, leading zeros, NaN and Infinity, a raw control
** character in a string, a NUL byte, anything after the value.
*/

#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "codec.h"

#define MAXDEPTH LIPC_CODEC_MAX_DEPTH
#define STR_(x) #x
#define STR(x) STR_(x)

enum {
  VALUE,
  ARRAY_FIRST,
  ARRAY_NEXT,
  OBJECT_FIRST,
  OBJECT_KEY,
  OBJECT_NEXT,
  END
};

struct lipc__json_steps {
  size_t pos;       /* where the next token starts */
  int state, depth; /* what comes next; open containers */
  int base;         /* L's top before the first value */
  int started;
  lua_Integer count[MAXDEPTH + 1]; /* items of each open array; -1: object */
  char why[96];
};

/* Stops the walk with a reason naming the byte (counted from 1). */
static int bad(lipc__json_steps *s, lua_State *L, const char *what) {
  snprintf(s->why, sizeof s->why, "%s at byte %zu", what, s->pos + 1);
  lua_settop(L, s->base);
  return -1;
}

static size_t skip_space(const char *p, size_t n, size_t i) {
  while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
    i++;
  return i;
}

static int hex4(const char *p) {
  int v = 0, i;
  for (i = 0; i < 4; i++) {
    int c = (unsigned char)p[i], d;
    if (c >= '0' && c <= '9')
      d = c - '0';
    else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
      d = (c | 0x20) - 'a' + 10;
    else
      return -1;
    v = v * 16 + d;
  }
  return v;
}

static void put_utf8(luaL_Buffer *b, unsigned long c) {
  char u[4];
  int n;
  if (c < 0x80) {
    u[0] = (char)c;
    n = 1;
  } else if (c < 0x800) {
    u[0] = (char)(0xC0 | (c >> 6));
    u[1] = (char)(0x80 | (c & 0x3F));
    n = 2;
  } else if (c < 0x10000) {
    u[0] = (char)(0xE0 | (c >> 12));
    u[1] = (char)(0x80 | ((c >> 6) & 0x3F));
    u[2] = (char)(0x80 | (c & 0x3F));
    n = 3;
  } else {
    u[0] = (char)(0xF0 | (c >> 18));
    u[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    u[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    u[3] = (char)(0x80 | (c & 0x3F));
    n = 4;
  }
  luaL_addlstring(b, u, (size_t)n);
}

/* \uXXXX at p[i] (the backslash): the code point, the pair's second half
 * taken too; -1 if malformed. *len: the bytes the escape took. */
static long unicode_escape(const char *p, size_t n, size_t i, size_t *len) {
  long hi, lo;
  if (n - i < 6 || (hi = hex4(p + i + 2)) < 0)
    return -1;
  *len = 6;
  if (hi >= 0xDC00 && hi <= 0xDFFF)
    return -1;
  if (hi < 0xD800 || hi > 0xDBFF)
    return hi;
  if (n - i < 12 || p[i + 6] != '\\' || p[i + 7] != 'u' ||
      (lo = hex4(p + i + 8)) < 0xDC00 || lo > 0xDFFF)
    return -1;
  *len = 12;
  return 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
}

/* The string whose opening quote is at s->pos, pushed; the common one
 * without escapes straight from the text. */
static int text(lipc__json_steps *s, lua_State *L, const char *p, size_t n) {
  size_t i = s->pos + 1, start = i;
  luaL_Buffer b;
  while (i < n && p[i] != '"' && p[i] != '\\' && (unsigned char)p[i] >= 0x20)
    i++;
  if (i < n && p[i] == '"') {
    lua_pushlstring(L, p + start, i - start);
    s->pos = i + 1;
    return 0;
  }
  luaL_buffinit(L, &b);
  luaL_addlstring(&b, p + start, i - start);
  while (i < n && p[i] != '"') {
    unsigned char c = (unsigned char)p[i];
    const char *esc;
    size_t len;
    long cp;
    if (c < 0x20) {
      luaL_pushresult(&b);
      s->pos = i;
      return bad(s, L, "a control character in a string");
    }
    if (c != '\\') {
      luaL_addchar(&b, (char)c);
      i++;
      continue;
    }
    if (i + 1 < n && (esc = strchr("\"\\/bfnrt", p[i + 1])) && *esc) {
      luaL_addchar(&b, "\"\\/\b\f\n\r\t"[esc - "\"\\/bfnrt"]);
      i += 2;
      continue;
    }
    if (i + 1 < n && p[i + 1] == 'u' &&
        (cp = unicode_escape(p, n, i, &len)) >= 0) {
      put_utf8(&b, (unsigned long)cp);
      i += len;
      continue;
    }
    luaL_pushresult(&b);
    s->pos = i;
    return bad(s, L, "an invalid escape in a string");
  }
  luaL_pushresult(&b);
  if (i == n) {
    s->pos = n;
    return bad(s, L, "the text ends inside a string");
  }
  s->pos = i + 1;
  return 0;
}

static int digits(const char *p, size_t n, size_t *i) {
  size_t start = *i;
  while (*i < n && p[*i] >= '0' && p[*i] <= '9')
    (*i)++;
  return *i > start;
}

/* strtod in the C locale, whatever the program set (os.setlocale), of
 * the len bytes at p: 0, or -1 out of memory for a long token. */
static int c_strtod(const char *p, size_t len, double *x) {
  static locale_t c;
  char small[64], *tmp = small;
  if (c == (locale_t)0)
    c = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
  if (len >= sizeof small && (tmp = malloc(len + 1)) == NULL)
    return -1;
  memcpy(tmp, p, len);
  tmp[len] = '\0';
  *x = c ? strtod_l(tmp, NULL, c) : strtod(tmp, NULL);
  if (tmp != small)
    free(tmp);
  return 0;
}

/* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? at s->pos, pushed. */
static int number(lipc__json_steps *s, lua_State *L, const char *p, size_t n) {
  size_t i = s->pos, start = i, first;
  int integral = 1;
  double x;
  if (p[i] == '-')
    i++;
  first = i;
  if (i < n && p[i] == '0')
    i++;
  else if (!digits(p, n, &i))
    return bad(s, L, "an invalid number");
  if (i < n && p[i] == '.') {
    i++;
    integral = 0;
    if (!digits(p, n, &i))
      return bad(s, L, "an invalid number");
  }
  if (i < n && (p[i] | 0x20) == 'e') {
    i++;
    integral = 0;
    if (i < n && (p[i] == '+' || p[i] == '-'))
      i++;
    if (!digits(p, n, &i))
      return bad(s, L, "an invalid number");
  }
  s->pos = i;
  if (integral && i - first <= 15) { /* |v| < 10^15: exact either way */
    lua_Integer v = 0;
    for (; first < i; first++)
      v = v * 10 + (p[first] - '0');
    lua_pushinteger(L, p[start] == '-' ? -v : v);
    return 0;
  }
  if (c_strtod(p + start, i - start, &x) < 0)
    return bad(s, L, "not enough memory for a number");
  if (x >= -9007199254740992.0 && x <= 9007199254740992.0 &&
      x == (lua_Number)(lua_Integer)x)
    lua_pushinteger(L, (lua_Integer)x);
  else
    lua_pushnumber(L, x);
  return 0;
}

static int word(lipc__json_steps *s, const char *p, size_t n, const char *w) {
  size_t len = strlen(w);
  if (n - s->pos < len || memcmp(p + s->pos, w, len) != 0)
    return 0;
  s->pos += len;
  return 1;
}

static int open_container(lipc__json_steps *s, lua_State *L, int object) {
  if (s->depth >= MAXDEPTH)
    return bad(s, L, "nested deeper than " STR(MAXDEPTH));
  if (!lua_checkstack(L, 4))
    return bad(s, L, "nesting too deep for the stack");
  lua_newtable(L);
  s->count[s->depth++] = object ? -1 : 0;
  s->state = object ? OBJECT_FIRST : ARRAY_FIRST;
  s->pos++;
  return 0;
}

/* The value on top goes into the container below it, or is the result. */
static void attach(lipc__json_steps *s, lua_State *L) {
  lua_Integer *c;
  if (s->depth == 0) {
    s->state = END;
    return;
  }
  c = &s->count[s->depth - 1];
  if (*c < 0) {
    lua_rawset(L, -3);
    s->state = OBJECT_NEXT;
  } else {
    lua_rawseti(L, -2, ++*c);
    s->state = ARRAY_NEXT;
  }
}

/* A value starts at s->pos: a scalar is pushed and attached, a
 * container opened. */
static int value(lipc__json_steps *s, lua_State *L, const char *p, size_t n) {
  int r = 0;
  if (s->pos == n)
    return bad(s, L, "the text ends where a value should be");
  switch (p[s->pos]) {
    case '[': return open_container(s, L, 0);
    case '{': return open_container(s, L, 1);
    case '"': r = text(s, L, p, n); break;
    case 't':
    case 'f':
    case 'n':
      if (word(s, p, n, "true"))
        lua_pushboolean(L, 1);
      else if (word(s, p, n, "false"))
        lua_pushboolean(L, 0);
      else if (word(s, p, n, "null"))
        lua_pushlightuserdata(L, NULL);
      else
        return bad(s, L, "an unknown word");
      break;
    default:
      if (p[s->pos] == '-' || (p[s->pos] >= '0' && p[s->pos] <= '9'))
        r = number(s, L, p, n);
      else
        return bad(s, L, "an unexpected character");
  }
  if (r == 0)
    attach(s, L);
  return r;
}

/* After a value in a container: ',' or the container's end. */
static int next(lipc__json_steps *s, lua_State *L, const char *p, size_t n,
                int object) {
  if (s->pos == n)
    return bad(s, L, "the text ends inside an array or object");
  if (p[s->pos] == ',') {
    s->pos++;
    s->state = object ? OBJECT_KEY : VALUE;
    return 0;
  }
  if (p[s->pos] != (object ? '}' : ']'))
    return bad(s, L, object ? "expected ',' or '}'" : "expected ',' or ']'");
  s->pos++;
  s->depth--;
  attach(s, L);
  return 0;
}

/* In an object: a key, then ':'. */
static int key(lipc__json_steps *s, lua_State *L, const char *p, size_t n) {
  if (s->pos == n || p[s->pos] != '"')
    return bad(s, L, "expected a key string");
  if (text(s, L, p, n) < 0)
    return -1;
  s->pos = skip_space(p, n, s->pos);
  if (s->pos == n || p[s->pos] != ':')
    return bad(s, L, "expected ':'");
  s->pos++;
  s->state = VALUE;
  return 0;
}

lipc__json_steps *lipc__json_steps_new(void) {
  return calloc(1, sizeof(lipc__json_steps));
}

void lipc__json_steps_free(lipc__json_steps *s) {
  free(s);
}

const char *lipc__json_steps_error(const lipc__json_steps *s) {
  return s->why;
}

int lipc__json_steps_run(lipc__json_steps *s, lua_State *L, const char *p,
                         size_t n, size_t work) {
  size_t done = 0;
  int r = 0;
  if (!s->started) {
    s->started = 1;
    s->base = lua_gettop(L);
    if (!lua_checkstack(L, 4))
      return bad(s, L, "no room on the stack");
  }
  while (r == 0) {
    s->pos = skip_space(p, n, s->pos);
    switch (s->state) {
      case VALUE: r = value(s, L, p, n); break;
      case ARRAY_FIRST: /* "]" at once ends it, as "," ... "]" would */
        r = s->pos < n && p[s->pos] == ']' ? next(s, L, p, n, 0)
                                           : value(s, L, p, n);
        break;
      case ARRAY_NEXT: r = next(s, L, p, n, 0); break;
      case OBJECT_FIRST:
        r = s->pos < n && p[s->pos] == '}' ? next(s, L, p, n, 1)
                                           : key(s, L, p, n);
        break;
      case OBJECT_KEY: r = key(s, L, p, n); break;
      case OBJECT_NEXT: r = next(s, L, p, n, 1); break;
      default:
        if (s->pos < n)
          return bad(s, L, "more text after the value");
        return 1;
    }
    if (r == 0 && s->state != END && ++done >= work)
      return LIPC_CODEC_MORE;
  }
  return r;
}

int lipc__json_decode(lua_State *L, const char *p, size_t n, char *why,
                      size_t size) {
  lipc__json_steps s;
  int r;
  s.pos = 0;
  s.state = VALUE;
  s.depth = s.started = 0;
  r = lipc__json_steps_run(&s, L, p, n, SIZE_MAX);
  if (r < 0 && size > 0)
    snprintf(why, size, "%s", s.why);
  return r;
}
