/*
** fuzz_codec.c - libFuzzer target for the MessagePack codec (channel/codec.c).
**
** Decodes arbitrary bytes. Whatever the result, the stack must be balanced
** and a failure must carry an "invalid MessagePack: ..." message, and the
** check-only walk (lipc__codec_check) must give the same result and message;
** lipc__codec_decode_checked of what passed must give an equal value; the
** JSON encoder must write the value or refuse it cleanly. When a
** value decodes, every strict prefix of its bytes must be "need more" (0),
** and the value must re-encode, and the re-encoding must decode to an equal
** value (integer/float subtype included) of the same encoded length.
** Decoding in steps (lipc__codec_steps_run, a few values per slice) must
** give the same result, message and value, and so must checking in steps
** with a budget (lipc__codec_check_budget).
**
** Build and run from the repository root:
**
**   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
**     -std=c11 -D_GNU_SOURCE $(pkg-config --cflags lua5.4) -Ichannel \
**     fuzz/fuzz_codec.c channel/codec.c $(pkg-config --libs lua5.4) \
**     -o build/fuzz_codec
**   mkdir -p build/fuzz-codec-corpus
**   build/fuzz_codec -max_total_time=60 build/fuzz-codec-corpus fuzz/corpus/codec
**
** (new inputs go to the first directory, so the seed corpus stays clean).
** `make fuzz` does the same against build/fuzz/liblipc.a, with the other
** targets. Seeds: python3 fuzz/make_codec_corpus.py.
*/

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>

#include "lua_equal.h"
#include "codec.h"

static lua_State *L;

#define ensure(c) ((c) ? (void)0 : fail(#c, __LINE__))

static void fail(const char *what, int line) {
  fprintf(stderr, "fuzz_codec.c:%d: property failed: %s\n", line, what);
  abort();
}

/* deep equality that also compares integer/float subtype */
static int deq(int a, int b, int depth) {
  return lua_equal_at(L, a, b, depth, LIPC_CODEC_MAX_DEPTH);
}

static void check_failure(ptrdiff_t r, const char *err) {
  ensure(lua_gettop(L) == 0);
  if (r < 0)
    ensure(err != NULL && strncmp(err, "invalid MessagePack: ", 21) == 0);
}

/* strict prefixes of a value are "need more": all of them when short */
static void check_prefixes(const char *p, size_t n) {
  size_t m, step = (n <= 64) ? 1 : n / 16;
  const char *err;
  for (m = 0; m < n; m += step) {
    ensure(lipc__codec_decode(L, p, m, &err) == 0);
    ensure(lua_gettop(L) == 1);
  }
  ensure(lipc__codec_decode(L, p, n - 1, &err) == 0);
  ensure(lua_gettop(L) == 1);
}

/* decoding in steps of `work` values agrees with decoding at once: r,
 * err and, for a value, an equal one (left on the stack at top + 1) */
/* the stepped walk run to its end, work values a step; builds on T
 * (NULL: checks only) */
static ptrdiff_t steps_to_end(uint64_t budget, lua_State *T, const char *p,
                              size_t n, size_t work, const char **serr) {
  lipc__codec_steps *s = lipc__codec_steps_new(budget, 0);
  ptrdiff_t rs;
  ensure(s != NULL);
  do
    rs = lipc__codec_steps_run(s, T, p, n, work, serr);
  while (rs == LIPC_CODEC_MORE);
  lipc__codec_steps_free(s);
  return rs;
}

static void check_steps(const char *p, size_t n, ptrdiff_t r, const char *err,
                        size_t work) {
  const char *serr = NULL;
  int top = lua_gettop(L);
  ptrdiff_t rs = steps_to_end(UINT64_MAX, L, p, n, work, &serr);
  ensure(rs == r);
  if (r < 0)
    ensure(serr != NULL && strcmp(serr, err) == 0);
  if (r > 0) {
    ensure(lua_gettop(L) == top + 1 && deq(top, top + 1, 0));
    lua_pop(L, 1);
  }
  ensure(lua_gettop(L) == top);
}

/* checking in steps with a budget agrees with lipc__codec_check_budget */
static void check_steps_budget(const char *p, size_t n, uint64_t budget,
                               size_t work) {
  const char *err = NULL, *serr = NULL;
  ptrdiff_t r = lipc__codec_check_budget(p, n, budget, &err);
  ptrdiff_t rs = steps_to_end(budget, NULL, p, n, work, &serr);
  ensure(rs == r);
  if (r < 0)
    ensure(serr != NULL && strcmp(serr, err) == 0);
}

/* a step left unfinished frees what it holds (ASan sees a leak) */
static void check_steps_abandoned(const char *p, size_t n) {
  lipc__codec_steps *s = lipc__codec_steps_new(UINT64_MAX, 0);
  const char *err = NULL;
  int top = lua_gettop(L);
  ensure(s != NULL);
  (void)lipc__codec_steps_run(s, L, p, n, 2, &err);
  lipc__codec_steps_free(s);
  lua_settop(L, top);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *p = (const char *)data, *err = NULL, *cerr = NULL;
  lipc__buf b = {0}, b2 = {0};
  ptrdiff_t r, rc;
  if (L == NULL)
    L = luaL_newstate();
  lua_settop(L, 0);
  rc = lipc__codec_check(p, size, &cerr);
  r = lipc__codec_decode(L, p, size, &err);
  ensure(rc == r);
  if (r < 0)
    ensure(cerr != NULL && strcmp(cerr, err) == 0);
  if (size > 0) {
    check_steps_budget(p, size, (uint64_t)size * (data[0] % 64), 1 + size % 3);
    check_steps_abandoned(p, size);
  }
  if (r <= 0) {
    check_steps(p, size, r, err, 1 + size % 5);
    check_failure(r, err);
    return 0;
  }
  ensure((size_t)r <= size && lua_gettop(L) == 1);
  check_steps(p, size, r, err, 1 + size % 5);
  /* what the check passed decodes the same without the checks */
  ensure(lipc__codec_decode_checked(L, p, (size_t)r, &err) == r);
  ensure(lua_gettop(L) == 2 && deq(1, 2, 0));
  lua_pop(L, 1);
  check_prefixes(p, (size_t)r);
  /* re-encode: anything the decoder makes is sendable */
  ensure(lipc__codec_encode(L, 1, &b) == 0);
  ensure(lua_gettop(L) == 1);
  r = lipc__codec_decode(L, b.data, b.len, &err);
  ensure(r == (ptrdiff_t)b.len && lua_gettop(L) == 2);
  ensure(deq(1, 2, 0));
  /* map order may differ, the size may not */
  ensure(lipc__codec_encode(L, 2, &b2) == 0 && b2.len == b.len);
  /* JSON: written whole, or refused with a message and nothing kept */
  b2.len = 0;
  if (lipc__codec_encode_json(L, 1, &b2) == 0) {
    ensure(lua_gettop(L) == 2 && b2.len > 0);
  } else {
    ensure(lua_gettop(L) == 3 && b2.len == 0);
    ensure(strncmp(lua_tostring(L, 3), "value", 5) == 0);
    lua_pop(L, 1);
  }
  lipc__buf_free(&b);
  lipc__buf_free(&b2);
  lua_settop(L, 0);
  return 0;
}
