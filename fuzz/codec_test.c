/*
** codec_test.c - standalone tests of the MessagePack codec (channel/codec.c):
** exact encodings, round trips, every refusal with its exact message, and
** hostile input for the decoder. Prints "N passed, N failed"; exit status 1
** on any failure.
**
**   gcc -O2 -Wall -Wextra -Werror -std=c11 -D_GNU_SOURCE \
**       $(pkg-config --cflags lua5.4) -Ichannel \
**       fuzz/codec_test.c channel/codec.c $(pkg-config --libs lua5.4) \
**       -o build/codec_test && build/codec_test
**   (also with clang -g -fsanitize=address,undefined, and under valgrind)
*/

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#include "lua_equal.h"
#include "codec.h"

static int passed, failed;
static lua_State *L;

static void check(int ok, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void check(int ok, const char *name, const char *fmt, ...) {
  if (ok) {
    passed++;
    return;
  }
  failed++;
  printf("FAIL %s: ", name);
  if (fmt) {
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
  }
  printf("\n");
}

/* deep equality that also compares integer/float subtype */
static int deq(int a, int b, int depth) {
  return lua_equal_at(L, a, b, depth, 300);
}

static size_t unhex(const char *hex, char *out) {
  size_t n = 0;
  while (*hex) {
    unsigned v;
    if (*hex == ' ') {
      hex++;
      continue;
    }
    sscanf(hex, "%2x", &v);
    out[n++] = (char)v;
    hex += 2;
  }
  return n;
}

static void tohex(const char *p, size_t n, char *out, size_t cap) {
  size_t i, o = 0;
  for (i = 0; i < n && o + 4 < cap; i++)
    o += (size_t)snprintf(out + o, cap - o, "%s%02x", i ? " " : "",
                          (unsigned char)p[i]);
  if (i < n && o + 4 < cap)
    snprintf(out + o, cap - o, "...");
}

/* pushes the value of a Lua expression */
static void pushexpr(const char *expr) {
  char chunk[4096];
  snprintf(chunk, sizeof chunk, "return %s", expr);
  if (luaL_dostring(L, chunk) != LUA_OK) {
    fprintf(stderr, "bad test expression %s: %s\n", expr, lua_tostring(L, -1));
    exit(2);
  }
}

static void expect_bytes(const char *expr, const char *hex) {
  char want[256], got[512], wanthex[512];
  size_t n = unhex(hex, want);
  lipc__buf b = {0};
  int top = lua_gettop(L), rc;
  pushexpr(expr);
  rc = lipc__codec_encode(L, -1, &b);
  if (rc != 0) {
    check(0, expr, "refused: %s", lua_tostring(L, -1));
  } else {
    tohex(b.data, b.len, got, sizeof got);
    tohex(want, n, wanthex, sizeof wanthex);
    check(b.len == n && memcmp(b.data, want, n) == 0, expr, "got %s, want %s",
          got, wanthex);
  }
  lua_settop(L, top);
  lipc__buf_free(&b);
}

/* all strict prefixes of a valid encoding are "need more" */
static void check_prefixes(const char *name, const char *p, size_t n) {
  size_t m, step = (n > 600) ? n / 300 : 1;
  const char *err = NULL;
  int top = lua_gettop(L), bad = 0;
  for (m = 0; m < n; m += step) {
    ptrdiff_t r = lipc__codec_decode(L, p, m, &err);
    if (r != 0 || lua_gettop(L) != top) {
      check(0, name, "prefix %zu of %zu: got %td (%s)", m, n, r,
            r < 0 ? err : "");
      lua_settop(L, top);
      bad = 1;
      break;
    }
  }
  if (n > 0 && !bad) { /* and the longest one, always */
    ptrdiff_t r = lipc__codec_decode(L, p, n - 1, &err);
    bad = (r != 0 || lua_gettop(L) != top);
    lua_settop(L, top);
  }
  check(!bad, name, "a strict prefix was not reported incomplete");
}

/* encode, decode, compare (with subtypes); check prefixes */
static void roundtrip_top(const char *name) {
  lipc__buf b = {0};
  const char *err = NULL;
  int v = lua_gettop(L);
  ptrdiff_t r;
  if (lipc__codec_encode(L, v, &b) != 0) {
    check(0, name, "refused: %s", lua_tostring(L, -1));
    lua_settop(L, v - 1);
    return;
  }
  r = lipc__codec_decode(L, b.data, b.len, &err);
  if (r != (ptrdiff_t)b.len)
    check(0, name, "decode returned %td of %zu (%s)", r, b.len,
          r < 0 ? err : "");
  else {
    check(lua_gettop(L) == v + 1, name, "decode left the stack unbalanced");
    check(deq(v, v + 1, 0), name, "decoded value differs");
  }
  check_prefixes(name, b.data, b.len);
  lua_settop(L, v - 1);
  lipc__buf_free(&b);
}

static void roundtrip(const char *expr) {
  pushexpr(expr);
  roundtrip_top(expr);
}

/* decoding the value of expr as sent, then this specific Lua value */
static void roundtrip_as(const char *expr, const char *want) {
  lipc__buf b = {0};
  const char *err = NULL;
  int top = lua_gettop(L);
  pushexpr(expr);
  if (lipc__codec_encode(L, -1, &b) != 0) {
    check(0, expr, "refused: %s", lua_tostring(L, -1));
  } else if (lipc__codec_decode(L, b.data, b.len, &err) != (ptrdiff_t)b.len) {
    check(0, expr, "did not decode: %s", err);
  } else {
    pushexpr(want);
    check(deq(-1, -2, 0), expr, "decoded value differs from %s", want);
  }
  lua_settop(L, top);
  lipc__buf_free(&b);
}

static void expect_refuse(const char *expr, const char *msg) {
  lipc__buf b = {0};
  int top, rc;
  lipc__buf_reserve(&b, 3);
  memcpy(b.data, "xyz", 3);
  b.len = 3;
  pushexpr(expr);
  top = lua_gettop(L);
  rc = lipc__codec_encode(L, top, &b);
  if (rc == 0)
    check(0, expr, "was sent, want refusal \"%s\"", msg);
  else {
    const char *got = lua_tostring(L, -1);
    check(lua_gettop(L) == top + 1, expr, "pushed %d values",
          lua_gettop(L) - top);
    check(got != NULL && strcmp(got, msg) == 0, expr,
          "message \"%s\", want \"%s\"", got ? got : "(not a string)", msg);
    check(b.len == 3 && memcmp(b.data, "xyz", 3) == 0, expr,
          "buffer not restored (len %zu)", b.len);
  }
  lua_settop(L, top - 1);
  lipc__buf_free(&b);
}

/* decode hex; want > 0: bytes consumed and equal to the Lua value
   'lua'; want == 0: need more; want < 0: error message 'lua' */
static void expect_decode(const char *name, const char *p, size_t n,
                          ptrdiff_t want, const char *lua) {
  const char *err = NULL;
  int top = lua_gettop(L);
  ptrdiff_t r = lipc__codec_decode(L, p, n, &err);
  if (r != want) {
    check(0, name, "returned %td, want %td (%s)", r, want, r < 0 ? err : "");
    lua_settop(L, top);
    return;
  }
  if (r > 0) {
    check(lua_gettop(L) == top + 1, name, "stack top");
    if (lua) {
      pushexpr(lua);
      check(deq(-1, -2, 0), name, "value differs from %s", lua);
    }
  } else {
    check(lua_gettop(L) == top, name, "pushed on failure");
    if (r < 0)
      check(err != NULL && lua != NULL && strcmp(err, lua) == 0, name,
            "error \"%s\", want \"%s\"", err ? err : "(null)", lua);
  }
  lua_settop(L, top);
}

static void expect_hex(const char *hex, ptrdiff_t want, const char *lua) {
  char buf[512];
  size_t n = unhex(hex, buf);
  expect_decode(hex, buf, n, want, lua);
}

/* ---------------------------------------------------------------- */

static void test_encodings(void) {
  expect_bytes("nil", "c0");
  expect_bytes("true", "c3");
  expect_bytes("false", "c2");
  expect_bytes("0", "00");
  expect_bytes("127", "7f");
  expect_bytes("128", "cc 80");
  expect_bytes("255", "cc ff");
  expect_bytes("256", "cd 01 00");
  expect_bytes("65535", "cd ff ff");
  expect_bytes("65536", "ce 00 01 00 00");
  expect_bytes("4294967295", "ce ff ff ff ff");
  expect_bytes("4294967296", "cf 00 00 00 01 00 00 00 00");
  expect_bytes("math.maxinteger", "cf 7f ff ff ff ff ff ff ff");
  expect_bytes("-1", "ff");
  expect_bytes("-32", "e0");
  expect_bytes("-33", "d0 df");
  expect_bytes("-128", "d0 80");
  expect_bytes("-129", "d1 ff 7f");
  expect_bytes("-32768", "d1 80 00");
  expect_bytes("-32769", "d2 ff ff 7f ff");
  expect_bytes("-2147483648", "d2 80 00 00 00");
  expect_bytes("-2147483649", "d3 ff ff ff ff 7f ff ff ff");
  expect_bytes("math.mininteger", "d3 80 00 00 00 00 00 00 00");
  expect_bytes("1.0", "cb 3f f0 00 00 00 00 00 00");
  expect_bytes("1.5", "cb 3f f8 00 00 00 00 00 00");
  expect_bytes("-0.0", "cb 80 00 00 00 00 00 00 00");
  expect_bytes("1/0", "cb 7f f0 00 00 00 00 00 00");
  expect_bytes("''", "a0");
  expect_bytes("'abc'", "a3 61 62 63");
  expect_bytes("('x'):rep(31)",
               "bf 78 78 78 78 78 78 78 78 78 78 78 78 78 78 78 78"
               " 78 78 78 78 78 78 78 78 78 78 78 78 78 78 78");
  expect_bytes("'\\xc3\\xa9'", "a2 c3 a9");
  expect_bytes("'\\xff'", "c4 01 ff");
  expect_bytes("'\\xc3'", "c4 01 c3");
  expect_bytes("'\\xed\\xa0\\x80'", "c4 03 ed a0 80"); /* surrogate: bin */
  expect_bytes("{}", "80");
  expect_bytes("setmetatable({}, {__index = function() return 1 end})", "80");
  expect_bytes("{1, 2, 3}", "93 01 02 03");
  expect_bytes("{a = 1}", "81 a1 61 01");
}

static void test_encoding_headers(void) {
  /* the length-dependent forms, checked on the header only */
  static const struct {
    const char *expr;
    const char *head;
  } t[] = {
      {"('x'):rep(32)", "d9 20"},
      {"('x'):rep(255)", "d9 ff"},
      {"('x'):rep(256)", "da 01 00"},
      {"('x'):rep(65535)", "da ff ff"},
      {"('x'):rep(65536)", "db 00 01 00 00"},
      {"('\\xff'):rep(255)", "c4 ff"},
      {"('\\xff'):rep(256)", "c5 01 00"},
      {"('\\xff'):rep(65536)", "c6 00 01 00 00"},
      {"(function() local t = {} for i = 1, 15 do t[i] = i end return t end)()",
       "9f"},
      {"(function() local t = {} for i = 1, 16 do t[i] = i end return t end)()",
       "dc 00 10"},
      {"(function() local t = {} for i = 1, 65536 do t[i] = i end return t "
       "end)()",
       "dd 00 01 00 00"},
      {"(function() local t = {} for i = 1, 15 do t['k'..i] = i end return t "
       "end)()",
       "8f"},
      {"(function() local t = {} for i = 1, 16 do t['k'..i] = i end return t "
       "end)()",
       "de 00 10"},
      {"(function() local t = {} for i = 1, 65536 do t['k'..i] = i end return "
       "t end)()",
       "df 00 01 00 00"},
      {"{1, 2, nil, 4}", "83"}, /* a hole: map */
      {"{[0] = 1}", "81 00 01"},
      {"{[2] = 1}", "81 02 01"},
      {"{1, 2, x = 1}", "83"},
      {"{['1'] = 1, [2] = 2}", "82"}, /* "1" is a string key */
      /* keys 1..n but not in lua_next's array order: still an array */
      {"(function() local t = {} for i = 40, 1, -1 do t[i] = i end return t "
       "end)()",
       "dc 00 28"},
      {"(function() local t = {x = 1} t[1] = 'a' t[2] = 'b' t.x = nil "
       "return t end)()",
       "92"},
      {"{[1.5] = true}", "81 cb 3f f8 00 00 00 00 00 00 c3"},
      {"{[true] = false}", "81 c3 c2"},
      {"{[2^53] = 1}",
       "81 cf 00 20 00 00 00 00 00 00 01"}, /* float key 2^53 is stored as integer */
      {NULL, NULL}};
  int i;
  for (i = 0; t[i].expr; i++) {
    char want[64], got[64], wanthex[64];
    size_t n = unhex(t[i].head, want);
    lipc__buf b = {0};
    pushexpr(t[i].expr);
    if (lipc__codec_encode(L, -1, &b) != 0)
      check(0, t[i].expr, "refused: %s", lua_tostring(L, -1));
    else {
      tohex(b.data, b.len < n ? b.len : n, got, sizeof got);
      tohex(want, n, wanthex, sizeof wanthex);
      check(b.len >= n && memcmp(b.data, want, n) == 0, t[i].expr,
            "header %s, want %s", got, wanthex);
    }
    lua_settop(L, 0);
    lipc__buf_free(&b);
  }
}

static void test_roundtrips(void) {
  static const char *const v[] =
      {"nil",
       "true",
       "false",
       "0",
       "1",
       "-1",
       "127",
       "128",
       "-32",
       "-33",
       "255",
       "256",
       "65535",
       "65536",
       "-32768",
       "-32769",
       "2^31",
       "-2^31",
       "math.maxinteger",
       "math.mininteger",
       "4294967295",
       "4294967296",
       "-2147483649",
       "1.0",
       "0.0",
       "-0.0",
       "0.1",
       "1e308",
       "-1e-308",
       "1/0",
       "-1/0",
       "0/0",
       "math.pi",
       "2^63",
       "''",
       "'hello'",
       "'\\0\\1\\2'",
       "'h\\xc3\\xa9llo w\\xf0\\x9f\\x98\\x80rld'",
       "'\\xff\\xfe'",
       "('ab'):rep(100000)",
       "('\\xe2\\x82\\xac'):rep(30000)",
       "('a'):rep(20) .. '\\x80'",
       "{}",
       "{{}}",
       "{{{}}}",
       "{1, 2, 3}",
       "{1.0, 2.0}",
       "{1, 'two', 3.0, true, false, {}}",
       "{op = 'sum', xs = {1, 2, 3}}",
       "{a = {b = {c = {d = 'e'}}}}",
       "{[1] = 'a', [2] = 'b', [4] = 'd'}",
       "{[0] = 0, 1, 2}",
       "{[-1] = 1}",
       "{[1.5] = 1.5, [true] = false, [false] = true}",
       "{['odd key'] = 1, [''] = 2, ['\\xff'] = 3}",
       "{[math.maxinteger] = 1, [math.mininteger] = 2}",
       "{[1/0] = 'inf', [-1/0] = '-inf'}",
       "(function() local t = {} for i = 1, 100000 do t[i] = i * 3 end return "
       "t end)()",
       "(function() local t = {} for i = 1, 70000 do t['k' .. i] = {i, i + "
       "0.5} end return t end)()",
       "(function() local t = {} for i = 1, 1000 do t[i] = {x = i, y = -i, s = "
       "tostring(i)} end return t end)()",
       "(function() local s = {} local t = {a = s, b = s, c = {s}} return t "
       "end)()", /* DAG, not a cycle */
       "(function() local t = {} local r = t for i = 1, 127 do t[1] = {} t = "
       "t[1] end return r end)()",
       "(function() local t = {} local r = t for i = 1, 127 do t.k = {} t = "
       "t.k end return r end)()",
       NULL};
  int i;
  for (i = 0; v[i]; i++)
    roundtrip(v[i]);
  /* the sender's subtype survives */
  roundtrip_as("1.0", "1.0");
  roundtrip_as("{1.0}", "{1.0}");
  roundtrip_as("{1, 2, nil, 4}", "{1, 2, nil, 4}");
  roundtrip_as("setmetatable({1, 2}, {__len = function() return 5 end})",
               "{1, 2}");
  { /* math.type preserved */
    pushexpr("1.0");
    {
      lipc__buf b = {0};
      const char *err;
      lipc__codec_encode(L, -1, &b);
      lipc__codec_decode(L, b.data, b.len, &err);
      check(!lua_isinteger(L, -1) && lua_type(L, -1) == LUA_TNUMBER,
            "1.0 stays float", NULL);
      lipc__buf_free(&b);
    }
    lua_settop(L, 0);
  }
  { /* encoding appends to what is already in the buffer */
    lipc__buf b = {0};
    lua_pushinteger(L, 1);
    lua_pushstring(L, "a");
    check(lipc__codec_encode(L, -2, &b) == 0 &&
              lipc__codec_encode(L, -1, &b) == 0 && b.len == 3 &&
              memcmp(b.data,
                     "\x01\xa1"
                     "a",
                     3) == 0,
          "appends", NULL);
    check(lua_gettop(L) == 2, "encode leaves the stack alone", NULL);
    lua_settop(L, 0);
    lipc__buf_free(&b);
  }
  { /* light userdata */
    lipc__buf b = {0};
    int x;
    lua_newtable(L);
    lua_pushlightuserdata(L, &x);
    lua_setfield(L, -2, "p");
    check(lipc__codec_encode(L, 1, &b) == -1 &&
              strcmp(lua_tostring(L, -1),
                     "value.p: cannot send a light userdata") == 0 &&
              b.len == 0 && lua_gettop(L) == 2,
          "light userdata", "%s", lua_tostring(L, -1));
    lua_settop(L, 0);
    lipc__buf_free(&b);
  }
}

static void test_refusals(void) {
  expect_refuse("print", "value: cannot send a function");
  expect_refuse("{jobs = {{}, {}, {fn = print}}}",
                "value.jobs[3].fn: cannot send a function");
  expect_refuse("{co = coroutine.create(print)}",
                "value.co: cannot send a thread");
  expect_refuse("{f = io.stdout}", "value.f: cannot send a userdata");
  expect_refuse("{1, 2, print}", "value[3]: cannot send a function");
  expect_refuse("{['odd key'] = {f = print}}",
                "value[\"odd key\"].f: cannot send a function");
  expect_refuse("{['end'] = print}", "value[\"end\"]: cannot send a function");
  expect_refuse("{_x9 = print}", "value._x9: cannot send a function");
  expect_refuse("{['9x'] = print}", "value[\"9x\"]: cannot send a function");
  expect_refuse("{['a\"b\\\\c\\n'] = print}",
                "value[\"a\\\"b\\\\c\\10\"]: cannot send a function");
  expect_refuse("{[('k'):rep(50)] = print}",
                "value[\"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk...\"]: "
                "cannot send a function");
  expect_refuse("{[1.5] = print}", "value[1.5]: cannot send a function");
  expect_refuse("{[-3] = print}", "value[-3]: cannot send a function");
  expect_refuse("{[true] = {print}}", "value[true][1]: cannot send a function");
  expect_refuse("{[{}] = 1}", "value: cannot send a table key");
  expect_refuse("{x = {[print] = 1}}", "value.x: cannot send a function key");
  expect_refuse("{x = {[coroutine.create(print)] = 1}}",
                "value.x: cannot send a thread key");
  expect_refuse(
      "(function() local t = {a = {b = {}}} t.a.b = t return t end)()",
      "value.a.b: cycle");
  expect_refuse("(function() local t = {} t.self = t return t end)()",
                "value.self: cycle");
  expect_refuse("(function() local t = {} t[1] = t return t end)()",
                "value[1]: cycle");
  expect_refuse("(function() local t = {x = {}} t.x.y = {t.x} return t end)()",
                "value.x.y[1]: cycle");
  expect_refuse(
      "(function() local t = {} local r = t for i = 1, 128 do t[1] = {} t = "
      "t[1] end return r end)()",
      "value[1][1][1][1][1][1]...[1][1][1][1][1][1]: nested deeper than 128");
  expect_refuse(
      "(function() local t = {} local r = t for i = 1, 200 do t[1] = {} t = "
      "t[1] end return r end)()",
      "value[1][1][1][1][1][1]...[1][1][1][1][1][1]: nested deeper than 128");
  expect_refuse("{a = {b = {c = {d = {e = {f = {g = {h = {i = {j = {k = {l = "
                "{m = print}}}}}}}}}}}}}",
                "value.a.b.c.d.e.f...h.i.j.k.l.m: cannot send a function");
  expect_refuse("{a = {b = {c = {d = {e = {f = {g = {h = {i = {j = {k = {l = "
                "print}}}}}}}}}}}}",
                "value.a.b.c.d.e.f.g.h.i.j.k.l: cannot send a function");
  expect_refuse(
      "{ok = 1, nested = {list = {1, 2, {deep = {coroutine.create(print)}}}}}",
      "value.nested.list[3].deep[1]: cannot send a thread");
}

static void test_hostile(void) {
  char big[8192];
  size_t i;
  expect_hex("", 0, NULL);
  expect_hex("c1", -1, "invalid MessagePack: unknown type byte 0xc1");
  expect_hex("91 c1", -1, "invalid MessagePack: unknown type byte 0xc1");
  expect_hex("01 02", 1, "1"); /* one value; the caller sees what is left */
  expect_hex("dd ff ff ff ff", 0, NULL);
  expect_hex("dd ff ff ff ff 01 02 03", 0, NULL);
  expect_hex("dd ff ff ff ff 01 c1", -1,
             "invalid MessagePack: unknown type byte 0xc1");
  expect_hex("df ff ff ff ff", 0, NULL);
  expect_hex("df ff ff ff ff 01", 0, NULL);
  expect_hex("df ff ff ff ff 01 02 c0", -1,
             "invalid MessagePack: map key is nil");
  expect_hex("db ff ff ff ff 61 62 63", 0, NULL);
  expect_hex("db ff ff ff ff 61 e2 82", 0,
             NULL); /* truncated inside a character */
  expect_hex("db ff ff ff ff 61 ff", -1,
             "invalid MessagePack: str is not valid UTF-8");
  expect_hex("c6 ff ff ff ff ff ff", 0, NULL);
  expect_hex("c6 00 00 00 02 ff ff", 7, "'\\xff\\xff'");
  expect_hex("c4 00", 2, "''");
  expect_hex("c5 00 03 61 62 63", 6, "'abc'");
  expect_hex("dc 00 00", 3, "{}");
  expect_hex("dd 00 00 00 00", 5, "{}");
  expect_hex("de 00 01 a1 61 01", 6, "{a = 1}");
  expect_hex("df 00 00 00 01 a1 61 01", 8, "{a = 1}");
  expect_hex("d9 00", 2, "''");
  expect_hex("d9 03 61 62 63", 5, "'abc'");
  expect_hex("da 00 01 61", 4, "'a'");
  expect_hex("a1 ff", -1, "invalid MessagePack: str is not valid UTF-8");
  expect_hex("a2 c3 28", -1, "invalid MessagePack: str is not valid UTF-8");
  expect_hex("a2 c0 80", -1,
             "invalid MessagePack: str is not valid UTF-8"); /* overlong */
  expect_hex("a3 e0 80 80", -1,
             "invalid MessagePack: str is not valid UTF-8"); /* overlong */
  expect_hex("a3 ed a0 80", -1,
             "invalid MessagePack: str is not valid UTF-8"); /* surrogate */
  expect_hex("a4 f4 90 80 80", -1,
             "invalid MessagePack: str is not valid UTF-8"); /* > U+10FFFF */
  expect_hex("a4 f5 80 80 80", -1,
             "invalid MessagePack: str is not valid UTF-8");
  expect_hex("a1 80", -1, "invalid MessagePack: str is not valid UTF-8");
  expect_hex(
      "a1 e2", -1,
      "invalid MessagePack: str is not valid UTF-8"); /* complete str, cut char */
  expect_hex("a4 f0 9f 98 80", 5, "'\\xf0\\x9f\\x98\\x80'");
  expect_hex("a3 e2 82 ac", 4, "'\\xe2\\x82\\xac'");
  expect_hex("a4 e2 82", 0, NULL);
  expect_hex("a4 c3 a9 c3", 0, NULL);
  expect_hex("a4 c3 a9 c3 28", -1,
             "invalid MessagePack: str is not valid UTF-8");
  expect_hex("a3 c3 a9 c3", -1, "invalid MessagePack: str is not valid UTF-8");
  expect_hex("a4 e2 28", -1, "invalid MessagePack: str is not valid UTF-8");
  expect_hex("d4 05 00", -1, "invalid MessagePack: unknown ext type 5");
  expect_hex("d4 01 01", -1, "invalid MessagePack: unknown ext type 1");
  expect_hex("d4 ff 00", -1, "invalid MessagePack: unknown ext type -1");
  expect_hex("d5 02", -1, "invalid MessagePack: unknown ext type 2");
  expect_hex("d8 7f", -1, "invalid MessagePack: unknown ext type 127");
  expect_hex("c7 00 07", -1, "invalid MessagePack: unknown ext type 7");
  expect_hex("c8 00 00 09", -1, "invalid MessagePack: unknown ext type 9");
  expect_hex("c9 ff ff ff ff 80", -1,
             "invalid MessagePack: unknown ext type -128");
  expect_hex("d4", -1, "invalid MessagePack: unknown ext type");
  expect_hex("c9 00 00", -1, "invalid MessagePack: unknown ext type");
  expect_hex("92 01 d4 03 00", -1, "invalid MessagePack: unknown ext type 3");
  expect_hex("81 c0 01", -1, "invalid MessagePack: map key is nil");
  expect_hex("81 c0", -1, "invalid MessagePack: map key is nil");
  expect_hex("81 cb 7f f8 00 00 00 00 00 00 01", -1,
             "invalid MessagePack: map key is NaN");
  expect_hex("81 ca 7f c0 00 00 01", -1, "invalid MessagePack: map key is NaN");
  expect_hex("81 90 01", -1, "invalid MessagePack: map key is an array or map");
  expect_hex("81 80 01", -1, "invalid MessagePack: map key is an array or map");
  expect_hex("81 dc 00 00 01", -1,
             "invalid MessagePack: map key is an array or map");
  expect_hex("81 df", -1, "invalid MessagePack: map key is an array or map");
  expect_hex("81 01", 0, NULL);
  expect_hex("81", 0, NULL);
  expect_hex("81 01 c0", 3, "{}"); /* a nil value is an absent entry */
  expect_hex("82 01 0a 01 0b", 5, "{[1] = 11}"); /* duplicate key: last wins */
  expect_hex("81 cb 3f f0 00 00 00 00 00 00 02", 11,
             "{2}"); /* float key 1.0 is key 1 */
  expect_hex("92 c0 01", 3, "{nil, 1}");
  expect_hex("cf ff ff ff ff ff ff ff ff", 9, "18446744073709551615.0");
  expect_hex("cf 80 00 00 00 00 00 00 00", 9, "2^63");
  expect_hex("cf 7f ff ff ff ff ff ff ff", 9, "math.maxinteger");
  expect_hex("d3 80 00 00 00 00 00 00 00", 9, "math.mininteger");
  expect_hex("ca 3f c0 00 00", 5, "1.5");
  expect_hex("ca 7f 80 00 00", 5, "1/0");
  expect_hex("cb 3f f0 00 00 00 00 00 00", 9, "1.0");
  expect_hex("cc ff", 2, "255");
  expect_hex("cd ff ff", 3, "65535");
  expect_hex("ce ff ff ff ff", 5, "4294967295");
  expect_hex("d0 ff", 2, "-1");
  expect_hex("d1 ff fe", 3, "-2");
  expect_hex("d2 ff ff ff fd", 5, "-3");
  expect_hex("d3 ff ff ff ff ff ff ff fc", 9, "-4");
  expect_hex("e0", 1, "-32");
  expect_hex("cf ff", 0, NULL);
  expect_hex("cb 00", 0, NULL);
  expect_hex("ca", 0, NULL);
  expect_hex("d9", 0, NULL);
  expect_hex("dc 00", 0, NULL);
  expect_hex("93 01 02", 0, NULL);
  expect_hex("93 01 02 93", 0, NULL);
  expect_hex("93 01 02 93 c1", -1,
             "invalid MessagePack: unknown type byte 0xc1");
  /* depth: 128 levels are fine, 129 are not, even when the rest is missing */
  memset(big, 0x91, sizeof big);
  big[127] = (char)0x90;
  expect_decode("128 nested arrays", big, 128, 128, NULL);
  big[127] = (char)0x91;
  big[128] = (char)0x90;
  expect_decode("129 nested arrays", big, 129, -1,
                "invalid MessagePack: nested deeper than 128");
  expect_decode("129 nested arrays, truncated", big, 128, 0, NULL);
  expect_decode("8192 nested arrays", big, sizeof big, -1,
                "invalid MessagePack: nested deeper than 128");
  for (i = 0; i < sizeof big; i += 2) {
    big[i] = (char)0x81;
    big[i + 1] = 0x01;
  }
  expect_decode("4096 nested maps", big, sizeof big, -1,
                "invalid MessagePack: nested deeper than 128");
  big[254] = (char)0x80; /* 127 maps {[1] = ...}, then {} */
  expect_decode("128 nested maps", big, 255, 255, NULL);
}

static void test_utf8(void) {
  static const struct {
    const char *s;
    size_t n;
    int ok;
  } t[] = {{"", 0, 1},
           {"abc", 3, 1},
           {"abcdefghijklmnopqrstuvwxyz0123456789", 36, 1},
           {"abcdefghijklmnop\xc3\xa9qrstuvwxyz", 28, 1},
           {"abcdefghijklmnopqrstuvw\xff", 24, 0},
           {"abcdefgh\x80", 9, 0},
           {"\xc2\x80", 2, 1},
           {"\xdf\xbf", 2, 1},
           {"\xc1\xbf", 2, 0},
           {"\xe0\xa0\x80", 3, 1},
           {"\xe0\x9f\xbf", 3, 0},
           {"\xed\x9f\xbf", 3, 1},
           {"\xed\xa0\x80", 3, 0},
           {"\xee\x80\x80", 3, 1},
           {"\xef\xbf\xbf", 3, 1},
           {"\xf0\x90\x80\x80", 4, 1},
           {"\xf0\x8f\xbf\xbf", 4, 0},
           {"\xf4\x8f\xbf\xbf", 4, 1},
           {"\xf4\x90\x80\x80", 4, 0},
           {"\xf8\x88\x80\x80\x80", 5, 0},
           {"\xe2\x82", 2, 0},
           {"a\xc3", 2, 0},
           {"\xc3\x28", 2, 0},
           {"\xdf\xc0", 2, 0},
           {"\xc3\xa9\xc3\xa9\xce\xb1\xd0\xb6", 8, 1},
           {"\xc3\xa9\xc3\xa9\xce\xb1\xd0", 7, 0},
           {"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xc3\xa9", 11, 1},
           {"a\0b", 3, 1},
           {"\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac", 15,
            1},
           {"\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82", 14, 0},
           {NULL, 0, 0}};
  int i;
  for (i = 0; t[i].s; i++) {
    char name[32];
    snprintf(name, sizeof name, "utf8 case %d", i);
    check(lipc__utf8_valid(t[i].s, t[i].n) == t[i].ok, name, NULL);
  }
}

/* random and mutated input: no crash, balanced stack, and whatever
   decodes re-encodes to bytes that decode to an equal value */
static uint64_t rng = 88172645463325252u;
static unsigned rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (unsigned)(rng >> 16);
}

static void test_random(void) {
  static const char *const seeds[] =
      {"{op = 'sum', xs = {1, 2, 3}}",
       "{1, 2.5, 'x', {a = {true, false}}, '\\xff'}",
       "{[1.5] = -1, [-7] = 300, s = ('q'):rep(40), n = 70000}",
       "'h\\xc3\\xa9llo'",
       "{{{{{{{}}}}}}}",
       NULL};
  char buf[256];
  lipc__buf enc[5] = {{0}};
  int i, k, bad = 0, ok = 0;
  for (i = 0; i < 5; i++) {
    pushexpr(seeds[i]);
    lipc__codec_encode(L, -1, &enc[i]);
    lua_settop(L, 0);
  }
  for (i = 0; i < 200000 && !bad; i++) {
    size_t n;
    const char *err;
    ptrdiff_t r;
    if (i % 2) {
      n = rnd() % 40;
      for (k = 0; k < (int)n; k++)
        buf[k] = (char)rnd();
    } else {
      lipc__buf *b = &enc[rnd() % 5];
      n = b->len < sizeof buf ? b->len : sizeof buf;
      memcpy(buf, b->data, n);
      for (k = 0; k < 1 + (int)(rnd() % 3); k++)
        buf[rnd() % n] = (char)((rnd() % 4 == 0) ? 0xc1 + rnd() % 30 : rnd());
    }
    r = lipc__codec_decode(L, buf, n, &err);
    if (r < 0 || r == 0) {
      bad = (lua_gettop(L) != 0) ||
            (r < 0 &&
             (err == NULL || strncmp(err, "invalid MessagePack: ", 21) != 0));
      continue;
    }
    ok++;
    {
      lipc__buf b = {0};
      if (r > (ptrdiff_t)n || lua_gettop(L) != 1 ||
          lipc__codec_encode(L, 1, &b) != 0 ||
          lipc__codec_decode(L, b.data, b.len, &err) != (ptrdiff_t)b.len ||
          !deq(1, 2, 0))
        bad = 1;
      lipc__buf_free(&b);
    }
    lua_settop(L, 0);
  }
  for (i = 0; i < 5; i++)
    lipc__buf_free(&enc[i]);
  check(!bad, "random input", "failed at iteration %d", i);
  check(ok > 1000, "random input decodes sometimes", "%d", ok);
}

/* a counting allocator, to see what hostile input makes us allocate */
static size_t mem_now, mem_peak;

static void *countalloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  if (ptr == NULL)
    osize = 0;
  if (nsize == 0) {
    free(ptr);
    mem_now -= osize;
    return NULL;
  }
  ptr = realloc(ptr, nsize);
  if (ptr != NULL) {
    mem_now = mem_now - osize + nsize;
    if (mem_now > mem_peak)
      mem_peak = mem_now;
  }
  return ptr;
}

/* decoding 'p' may allocate at most 'limit' bytes beyond what it had */
static void expect_peak(const char *name, const char *p, size_t n,
                        ptrdiff_t want, size_t limit) {
  const char *err;
  ptrdiff_t r;
  lua_gc(L, LUA_GCCOLLECT);
  mem_peak = mem_now;
  r = lipc__codec_decode(L, p, n, &err);
  check(r == want, name, "returned %td, want %td", r, want);
  check(mem_peak - mem_now <= limit || r > 0, name,
        "allocated %zu bytes for %zu bytes of input", mem_peak - mem_now, n);
  if (r > 0)
    check(mem_peak - mem_now <= limit, name, "allocated %zu bytes",
          mem_peak - mem_now);
  lua_settop(L, 0);
}

static void test_prealloc(void) {
  size_t n = 128 * 6 + 60000, i;
  char *p = calloc(n, 1);
  /* 128 nested arrays each claiming 2^31 elements, then 60000 zeros */
  for (i = 0; i < 128; i++)
    memcpy(p + 5 * i, "\xdd\x7f\xff\xff\xff", 5);
  expect_peak("nested array claims", p, 128 * 5 + 60000, 0, 4u << 20);
  /* 128 nested maps each claiming 2^31 entries */
  memset(p, 0, n);
  for (i = 0; i < 128; i++)
    memcpy(p + 6 * i, "\xdf\x7f\xff\xff\xff\x01", 6);
  expect_peak("nested map claims", p, 128 * 6 + 60000, 0, 4u << 20);
  /* a believable claim of the same size is preallocated and decodes */
  memset(p, 0, n);
  memcpy(p, "\xdd\x00\x00\xea\x60", 5); /* 60000 */
  expect_peak("true array claim", p, 5 + 60000, 5 + 60000, 2u << 20);
  free(p);
}

int main(void) {
  L = lua_newstate(countalloc, NULL);
  luaL_openlibs(L);
  test_encodings();
  test_encoding_headers();
  test_roundtrips();
  test_refusals();
  test_hostile();
  test_utf8();
  test_random();
  test_prealloc();
  check(lua_gettop(L) == 0, "stack balanced at the end", "%d", lua_gettop(L));
  lua_close(L);
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
