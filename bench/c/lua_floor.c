/*
 * lua_floor (the floor under ipc_stream, not a case of its own): what the
 * Lua values of ipc_stream cost on this machine with no IPC at all. One
 * process, lipc's own Lua allocator (runtime/alloc.c), two loops:
 *
 *   send:    a Lua loop builds the small table and hands it to a C function
 *            that reads it as any encoder must: lua_next over each table,
 *            the type and the value of every key and value. Nothing is
 *            written anywhere.
 *   receive: C builds the small table through the API as any decoder must
 *            (lua_createtable, lua_pushlstring, lua_rawset, lua_rawseti)
 *            and a Lua loop reads it as ipc_stream's child does.
 *
 * ipc_stream's two sides run on two CPUs at once, so its floor is the
 * slower of the two loops; when this process may use one CPU only
 * (BENCH_PIN), the two sides share it and the floor is one message's
 * time in both loops. Built by run.sh with Lua's flags.
 *
 *   lua_floor [messages]  -> RESULT ipc_stream <n> msg/s  (the floor)
 *                            RESULT lua_floor_send <n> msg/s
 *                            RESULT lua_floor_receive <n> msg/s
 */
#include "common.h"
#include <sched.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

lua_State *lipc__state_new(void);
void lipc__state_close(lua_State *L);

static size_t sink; /* what the reads saw, so that none is optimised away */

static void readvalue(lua_State *L, int idx) {
  size_t l;
  switch (lua_type(L, idx)) {
    case LUA_TSTRING:
      sink += (unsigned char)lua_tolstring(L, idx, &l)[0] + l;
      break;
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx))
        sink += (size_t)lua_tointeger(L, idx);
      else
        sink += (size_t)lua_tonumber(L, idx);
      break;
    case LUA_TTABLE:
      lua_pushnil(L);
      while (lua_next(L, idx)) {
        int v = lua_gettop(L);
        readvalue(L, v - 1);
        readvalue(L, v);
        lua_pop(L, 1);
      }
      break;
    default: sink++; break;
  }
}

static int l_walk(lua_State *L) {
  readvalue(L, 1);
  return 0;
}

static void pushkey(lua_State *L, const char *k) {
  lua_pushlstring(L, k, strlen(k));
}

static int l_build(lua_State *L) {
  lua_Integer seq = lua_tointeger(L, 1);
  int i;
  lua_createtable(L, 0, 3);
  pushkey(L, "seq");
  lua_pushinteger(L, seq);
  lua_rawset(L, -3);
  pushkey(L, "op");
  pushkey(L, "add");
  lua_rawset(L, -3);
  pushkey(L, "args");
  lua_createtable(L, 3, 0);
  for (i = 1; i <= 3; i++) {
    lua_pushinteger(L, i);
    lua_rawseti(L, -2, i);
  }
  lua_rawset(L, -3);
  return 1;
}

static const char SEND[] = "local walk, n = ...\n"
                           "local function small(seq) return {seq = seq, op = "
                           "'add', args = {1, 2, 3}} end\n"
                           "for i = 1, n do walk(small(i)) end\n";

static const char RECEIVE[] = "local build, n = ...\n"
                              "local sum = 0\n"
                              "for i = 1, n do\n"
                              "  local m = build(i)\n"
                              "  if m.args[1] + m.args[2] + m.args[3] ~= 6 "
                              "then error('bad message') end\n"
                              "  sum = sum + m.seq\n"
                              "end\n"
                              "return sum\n";

/* runs one loop over n messages in a fresh state; returns msg/s */
static double run(const char *src, lua_CFunction fn, uint64_t n) {
  lua_State *L = lipc__state_new();
  uint64_t t0, t1;
  if (L == NULL)
    fail("no Lua state");
  luaL_openlibs(L);
  lua_gc(L, LUA_GCGEN, 0, 0); /* as lipc runs its state */
  if (luaL_loadstring(L, src) != LUA_OK)
    fail(lua_tostring(L, -1));
  lua_pushcfunction(L, fn);
  lua_pushinteger(L, (lua_Integer)n);
  t0 = now_ns();
  if (lua_pcall(L, 2, 1, 0) != LUA_OK)
    fail(lua_tostring(L, -1));
  t1 = now_ns();
  lipc__state_close(L);
  return (double)n * 1e9 / (double)(t1 - t0);
}

int main(int argc, char **argv) {
  uint64_t n = arg_count(argc, argv, 1, 3000000);
  double send = run(SEND, l_walk, n), receive = run(RECEIVE, l_build, n);
  double lim = send < receive ? send : receive;
  cpu_set_t cpus;
  if (sched_getaffinity(0, sizeof cpus, &cpus) == 0 && CPU_COUNT(&cpus) == 1)
    lim = 1 / (1 / send + 1 / receive);
  printf("RESULT ipc_stream %.0f msg/s\n", lim);
  printf("RESULT lua_floor_send %.0f msg/s\n", send);
  printf("RESULT lua_floor_receive %.0f msg/s\n", receive);
  return sink == 42; /* never: keeps sink observable */
}
