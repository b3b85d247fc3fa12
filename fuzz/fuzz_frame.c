/*
** fuzz_frame.c - libFuzzer target for the channel readers: the native
** frame reader (channel/receive.c: 4-byte length + MessagePack) and,
** built with -DFUZZ_JSON, Node's JSON-lines reader (channel/json.c).
**
** The bytes go through a real channel over a real socketpair in a real
** lipc runtime, entering through lipc__channel_feed, which takes the same
** path as the stream's reads (on_alloc's buffer sizing, then parse); the
** fuzzer chooses where the reads split. Input layout:
**
**   byte 0   bits 0-1: max_message (default, 16, 1000, 2^32-4)
**            bits 2-4: largest read (1, 2, 3, 7, 64, 4096, 65536, all)
**   byte 1   seed of the read sizes (each in 1..largest)
**   rest     the bytes the peer sent
**
** Properties checked, beyond "no crash, no sanitizer report": the stack
** is balanced; the messages delivered and the error reported (if any) are
** the same whether the bytes come in one read or split as chosen; the
** channel is closed after a protocol error; every handle is closed at the
** end of each input (nothing leaks from one input to the next).
** fuzz_json also reads each line of the input as one JSON text: in one
** call and in steps of a few tokens alike (the same value, or the same
** reason), and whatever it reads lua-cjson reads too, as the same value
** (its floats that are integral within 2^53 taken as integers).
**
**   make fuzz FUZZ_SECONDS=60     (builds build/fuzz/fuzz_frame, fuzz_json)
*/

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "channel.h"
#include "lua_equal.h"
#include "codec.h"

static lipc_runtime *rt;
static lua_State *L;
static int open_ref;
#ifdef FUZZ_JSON
#define JSON_MODE 1
/* cjson.decode(s), its integral floats within 2^53 as integers:
 * -> ok, value (or the error) */
static int cjson_ref;
static const char cjson_helper[] =
    "local cjson = require('cjson').new()\n"
    "cjson.decode_max_depth(128)\n"
    "local function ints(v)\n"
    "  if math.type(v) == 'float' then\n"
    "    if v >= -2^53 and v <= 2^53 and v == math.floor(v) then\n"
    "      return math.tointeger(v)\n"
    "    end\n"
    "  elseif type(v) == 'table' then\n"
    "    for k, x in pairs(v) do v[k] = ints(x) end\n"
    "  end\n"
    "  return v\n"
    "end\n"
    "return function(s)\n"
    "  local ok, v = pcall(cjson.decode, s)\n"
    "  return ok, ok and ints(v) or v\n"
    "end\n";
#else
#define JSON_MODE 0
#endif

/* open(json, max, late) -> channel, other end, record of what arrived,
 * and a function that adds the 'message' listener: called before the
 * bytes arrive, or after them (late), when they waited undecoded. */
static const char helper[] =
    "local fork = require 'fork'\n"
    "return function(json, max, late)\n"
    "  local a, b = assert(fork.socketpair())\n"
    "  local ch = a:channel({max_message = max,\n"
    "                        serialization = json and 'json' or 'lipc'})\n"
    "  local got = {n = 0}\n"
    "  local function listen()\n"
    "    ch:on('message', function(m) got.n = got.n + 1; got[got.n] = m end)\n"
    "  end\n"
    "  ch:on('error', function(m, code) got.err, got.msg = code, m end)\n"
    "  if not late then listen() end\n"
    "  return ch, b, got, late and listen or function() end\n"
    "end\n";

#define ensure(c) ((c) ? (void)0 : fail(#c, __LINE__))

static void fail(const char *what, int line) {
  fprintf(stderr, "fuzz_frame.c:%d: property failed: %s\n", line, what);
  abort();
}

static void init(void) {
  rt = lipc_new(NULL);
  ensure(rt != NULL);
  L = lipc_state(rt);
  ensure(luaL_loadbuffer(L, helper, sizeof helper - 1, "=fuzz_frame") == 0);
  ensure(lua_pcall(L, 0, 1, 0) == 0);
  open_ref = luaL_ref(L, LUA_REGISTRYINDEX);
#ifdef FUZZ_JSON
  ensure(luaL_loadbuffer(L, cjson_helper, sizeof cjson_helper - 1, "=cjson") ==
         0);
  ensure(lua_pcall(L, 0, 1, 0) == 0);
  cjson_ref = luaL_ref(L, LUA_REGISTRYINDEX);
#endif
}

/* What each of the three runs got (records at 1..3), for a property
 * that failed: the error and the message count of each. */
static void report(lua_Integer max, size_t largest, unsigned seed) {
  static const char *const runs[] = {"whole", "split", "late listener"};
  int i;
  fprintf(stderr, "max_message %lld, largest read %zu, seed %u\n",
          (long long)max, largest, seed);
  for (i = 1; i <= 3; i++) {
    lua_getfield(L, i, "err");
    lua_getfield(L, i, "msg");
    lua_getfield(L, i, "n");
    fprintf(stderr, "run %d (%s): %lld messages, error %s (%s)\n", i,
            runs[i - 1], (long long)lua_tointeger(L, -1),
            lua_isnil(L, -3) ? "none" : lua_tostring(L, -3),
            lua_isnil(L, -2) ? "" : lua_tostring(L, -2));
    lua_pop(L, 3);
  }
}

/* deep equality that also compares integer/float subtype */
static int deq(int a, int b, int depth) {
  return lua_equal_at(L, a, b, depth, 2 * LIPC_CODEC_MAX_DEPTH);
}

/* Runs the loop until every handle of this input has closed. */
static void settle(void) {
  int i;
  for (i = 0; i < 100 && rt->handles; i++)
    uv_run(rt->loop, UV_RUN_NOWAIT);
  ensure(rt->handles == NULL);
}

/* Feeds data through a fresh channel in reads of the chosen sizes; leaves
 * the record of what arrived on the stack. */
static void run_once(lua_Integer max, const uint8_t *data, size_t size,
                     size_t largest, unsigned seed, int late) {
  int top = lua_gettop(L);
  size_t off = 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, open_ref);
  lua_pushboolean(L, JSON_MODE);
  if (max)
    lua_pushinteger(L, max);
  else
    lua_pushnil(L);
  lua_pushboolean(L, late);
  ensure(lua_pcall(L, 3, 4, 0) == 0); /* ch b got listen */
  lua_insert(L, top + 1);             /* listen ch b got */
  top++;
  while (off < size) {
    size_t k = size - off, taken;
    if (largest < k) {
      seed = seed * 1103515245u + 12345u;
      k = 1 + (seed >> 8) % largest;
    }
    taken = lipc__channel_feed(L, top + 1, (const char *)data + off, k);
    ensure(lua_gettop(L) == top + 3);
    if (taken < k)
      break; /* the channel is gone */
    off += k;
  }
  lua_pushvalue(L, top); /* late: now the messages */
  ensure(lua_pcall(L, 0, 0, 0) == 0);
  ensure(lua_gettop(L) == top + 3);
  /* after a protocol error nothing more is taken */
  lua_getfield(L, top + 3, "err");
  if (!lua_isnil(L, -1))
    ensure(lipc__channel_feed(L, top + 1, "\0\0\0\1\xc0\n", 6) == 0);
  lua_pop(L, 1);
  lua_getfield(L, top + 1, "close");
  lua_pushvalue(L, top + 1);
  ensure(lua_pcall(L, 1, 0, 0) == 0);
  lua_getfield(L, top + 2, "close");
  lua_pushvalue(L, top + 2);
  ensure(lua_pcall(L, 1, 0, 0) == 0);
  settle();
  lua_replace(L, top); /* got */
  lua_settop(L, top);
}

#ifdef FUZZ_JSON
/* One JSON text: the same in one call and in steps of `work` tokens,
 * and what we read, lua-cjson reads the same. */
static void json_text(const char *p, size_t n, size_t work) {
  int top = lua_gettop(L), one, steps;
  char why[128];
  lipc__json_steps *st = lipc__json_steps_new();
  ensure(st != NULL);
  one = lipc__json_decode(L, p, n, why, sizeof why);
  ensure(one == 1 || one == -1);
  ensure(lua_gettop(L) == top + (one == 1));
  do
    steps = lipc__json_steps_run(st, L, p, n, work);
  while (steps == LIPC_CODEC_MORE);
  ensure(steps == one);
  if (one < 0)
    ensure(strcmp(why, lipc__json_steps_error(st)) == 0);
  lipc__json_steps_free(st);
  if (one < 0) {
    ensure(lua_gettop(L) == top);
    return;
  }
  ensure(deq(top + 1, top + 2, 0));
  lua_rawgeti(L, LUA_REGISTRYINDEX, cjson_ref);
  lua_pushlstring(L, p, n);
  ensure(lua_pcall(L, 1, 2, 0) == 0);
  ensure(lua_toboolean(L, -2)); /* cjson reads it too */
  ensure(deq(top + 1, top + 4, 0));
  lua_settop(L, top);
}

/* Each line of the bytes as a JSON text, as the channel cuts them. */
static void json_lines(const uint8_t *data, size_t size, unsigned seed) {
  const char *p = (const char *)data, *end = p + size;
  int lines = 0;
  while (p < end && lines++ < 64) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t n = (size_t)((nl ? nl : end) - p);
    if (n > 0 && p[n - 1] == '\r')
      n--;
    json_text(p, n, 1 + seed % 7);
    p = nl ? nl + 1 : end;
  }
}
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const lua_Integer maxes[4] = {0, 16, 1000, 0xfffffffcLL};
  static const size_t reads[8] = {1, 2, 3, 7, 64, 4096, 65536, SIZE_MAX};
  lua_Integer max;
  size_t largest;
  unsigned seed;
  int i;
  if (rt == NULL)
    init();
  if (size < 2)
    return 0;
  max = maxes[data[0] & 3];
  largest = reads[(data[0] >> 2) & 7];
  seed = data[1];
  lua_settop(L, 0);
  run_once(max, data + 2, size - 2, SIZE_MAX, 0, 0);   /* got1 */
  run_once(max, data + 2, size - 2, largest, seed, 0); /* got2 */
  run_once(max, data + 2, size - 2, largest, seed, 1); /* got3: late */
  ensure(lua_gettop(L) == 3);
  /* neither a split nor a late listener changes what arrives, nor the
   * error */
  lua_getfield(L, 1, "err");
  lua_getfield(L, 2, "err");
  lua_getfield(L, 3, "err");
  if (!lua_rawequal(L, -1, -2) || !lua_rawequal(L, -2, -3))
    report(max, largest, seed);
  ensure(lua_rawequal(L, -1, -2) && lua_rawequal(L, -2, -3));
  lua_pop(L, 3);
  for (i = 1; i <= 3; i++) { /* the messages may word a fault apart */
    lua_pushnil(L);
    lua_setfield(L, i, "msg");
  }
  if (!deq(1, 2, 0) || !deq(1, 3, 0))
    report(max, largest, seed);
  ensure(deq(1, 2, 0));
  ensure(deq(1, 3, 0));
  lua_settop(L, 0);
  ensure(!rt->exiting); /* no uncaught error */
#ifdef FUZZ_JSON
  json_lines(data + 2, size - 2, seed);
#endif
  return 0;
}
