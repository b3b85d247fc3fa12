/*
** codec_bench.c - how fast the MessagePack codec (channel/codec.c) is on the
** two shapes the IPC benchmarks care about: a small message and a big string.
**
**   gcc -O2 -std=c11 -D_GNU_SOURCE $(pkg-config --cflags lua5.4) -Ichannel \
**       fuzz/codec_bench.c channel/codec.c $(pkg-config --libs lua5.4) \
**       -o build/codec_bench && build/codec_bench
*/

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#include "codec.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* times encode and decode of the value of 'expr', 'n' times each */
static void bench(lua_State *L, const char *label, const char *expr, long n,
                  int mbps) {
  lipc__buf b = {0};
  const char *err;
  double t0, te, td;
  long i;
  if (luaL_dostring(L, expr) != LUA_OK) {
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
    exit(2);
  }
  t0 = now();
  for (i = 0; i < n; i++) {
    b.len = 0;
    if (lipc__codec_encode(L, 1, &b) != 0) {
      fprintf(stderr, "encode failed\n");
      exit(1);
    }
  }
  te = now() - t0;
  t0 = now();
  for (i = 0; i < n; i++) {
    if (lipc__codec_decode(L, b.data, b.len, &err) != (ptrdiff_t)b.len) {
      fprintf(stderr, "decode failed\n");
      exit(1);
    }
    lua_settop(L, 1);
  }
  td = now() - t0;
  if (mbps)
    printf("%-34s %6zu B  encode %8.0f MB/s   decode %8.0f MB/s\n", label,
           b.len, (double)b.len * n / te / 1e6, (double)b.len * n / td / 1e6);
  else
    printf("%-34s %6zu B  encode %8.2f M/s    decode %8.2f M/s   (%.0f ns + "
           "%.0f ns)\n",
           label, b.len, n / te / 1e6, n / td / 1e6, te / n * 1e9,
           td / n * 1e9);
  lua_settop(L, 0);
  lipc__buf_free(&b);
}

int main(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  bench(L, "{op=\"sum\", xs={1,2,3}}", "return {op = 'sum', xs = {1, 2, 3}}",
        5000000, 0);
  bench(L, "{id=7, method=\"add\", params=...}",
        "return {id = 7, method = 'add', params = {a = 1.5, b = 'text', list = "
        "{1, 2, 3, 4, 5}}}",
        2000000, 0);
  bench(L, "1 MiB ASCII string", "return ('abcdefgh'):rep(131072)", 2000, 1);
  bench(L, "1 MiB UTF-8 string (2-byte chars)",
        "return ('\\xc3\\xa9'):rep(524288)", 500, 1);
  bench(L, "1 MiB binary string (bin)", "return ('\\xff'):rep(1048576)", 2000,
        1);
  bench(L, "array of 100k integers",
        "local t = {} for i = 1, 100000 do t[i] = i end return t", 200, 1);
  lua_close(L);
  return 0;
}
