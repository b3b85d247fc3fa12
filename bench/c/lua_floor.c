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
 *
 * "pingpong" is the floor of ipc_pingpong for any runtime that hands a
 * Lua script its messages: ipc_pingpong.c's two processes and loop (and
 * its poll, "evpoll"), where each side also does the Lua work that no
 * such runtime can skip. The bytes of each message become a Lua table
 * through the C API, a Lua function reads it and makes the next table
 * (the child's reply, the parent's check and next request, as
 * bench/lipc/ipc_pingpong.lua does), and the C side walks that table
 * with lua_next and writes it as MessagePack. No coroutine, no framing
 * object, no method lookup: what is left of lipc's work beyond this is
 * the runtime's own.
 *
 *   lua_floor pingpong [round_trips] [evloop|evpoll[=us]]
 *                         -> RESULT ipc_pingpong <n> rt/s
 */
#include "common.h"
#include <sched.h>
#include <sys/socket.h>
#include <sys/wait.h>
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

/* ---- pingpong: the Lua work of a round trip, in ipc_pingpong.c's loop */

/* the MessagePack value at r as a Lua value: the small table's types */
static int push_mp(lua_State *L, mp_rd *r) {
  uint8_t t;
  uint32_t n, i;
  const uint8_t *s;
  uint64_t u;
  if (r->p >= r->end)
    return -1;
  t = *r->p;
  if ((t & 0xf0) == 0x80 || t == 0xde || t == 0xdf) {
    if (mp_get_map(r, &n))
      return -1;
    lua_createtable(L, 0, (int)n);
    for (i = 0; i < n; i++) {
      if (push_mp(L, r) || push_mp(L, r))
        return -1;
      lua_rawset(L, -3);
    }
  } else if ((t & 0xf0) == 0x90 || t == 0xdc || t == 0xdd) {
    if (mp_get_arr(r, &n))
      return -1;
    lua_createtable(L, (int)n, 0);
    for (i = 1; i <= n; i++) {
      if (push_mp(L, r))
        return -1;
      lua_rawseti(L, -2, i);
    }
  } else if (mp_get_str(r, &s, &n) == 0) {
    lua_pushlstring(L, (const char *)s, n);
  } else {
    r->p--; /* not a str: mp_get_str took the type byte */
    if (mp_get_uint(r, &u))
      return -1;
    lua_pushinteger(L, (lua_Integer)u);
  }
  return 0;
}

/* the Lua value at idx as MessagePack at w: strings, integers >= 0,
 * tables (an array when t[1] is set) */
static uint8_t *put_lua(lua_State *L, int idx, uint8_t *w) {
  size_t l;
  const char *str;
  lua_Integer n, i;
  switch (lua_type(L, idx)) {
    case LUA_TSTRING:
      str = lua_tolstring(L, idx, &l);
      *w++ = (uint8_t)(0xa0 | l); /* < 32 */
      memcpy(w, str, l);
      return w + l;
    case LUA_TNUMBER: return mp_put_uint(w, (uint64_t)lua_tointeger(L, idx));
    case LUA_TTABLE:
      if ((n = (lua_Integer)lua_rawlen(L, idx)) > 0) {
        *w++ = (uint8_t)(0x90 | n);
        for (i = 1; i <= n; i++) {
          lua_rawgeti(L, idx, i);
          w = put_lua(L, lua_gettop(L), w);
          lua_pop(L, 1);
        }
        return w;
      } else {
        uint8_t *head = w++;
        unsigned c = 0;
        lua_pushnil(L);
        while (lua_next(L, idx)) {
          int v = lua_gettop(L);
          w = put_lua(L, v - 1, w);
          w = put_lua(L, v, w);
          lua_pop(L, 1);
          c++;
        }
        *head = (uint8_t)(0x80 | c);
        return w;
      }
    default: fail("pingpong: unexpected Lua type"); return w;
  }
}

/* the table on top of the stack, framed at out; pops it */
static size_t frame_lua(lua_State *L, uint8_t *out) {
  uint8_t *end = put_lua(L, lua_gettop(L), out + 4);
  lua_pop(L, 1);
  be32_put(out, (uint32_t)(end - out - 4));
  return (size_t)(end - out);
}

static const char CHILD[] =
    "return function(m)\n"
    "  if m.args[1] + m.args[2] + m.args[3] ~= 6 then error('child: bad "
    "message') end\n"
    "  return {seq = m.seq, op = 'add', args = {1, 2, 3}}\n"
    "end\n";
static const char PARENT[] =
    "return function(r, seq)\n"
    "  if r ~= nil and r.seq ~= seq - 1 then error('parent: bad reply') end\n"
    "  return {seq = seq, op = 'add', args = {1, 2, 3}}\n"
    "end\n";

/* a state as lipc runs it, with the side's function on top */
static lua_State *side(const char *src) {
  lua_State *L = lipc__state_new();
  if (L == NULL)
    fail("no Lua state");
  luaL_openlibs(L);
  lua_gc(L, LUA_GCGEN, 0, 0);
  if (luaL_loadstring(L, src) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK)
    fail(lua_tostring(L, -1));
  return L;
}

/* the frame at p as a Lua table on top of L's stack */
static void push_frame(lua_State *L, const uint8_t *p, uint32_t len) {
  mp_rd r = {p, p + len};
  if (push_mp(L, &r) || r.p != r.end)
    fail("pingpong: bad frame");
}

static int pingpong(int argc, char **argv) {
  uint64_t n = arg_count(argc, argv, 2, 100000);
  int evloop = arg_evloop(argc, argv, 3);
  int sv[2];
  uint8_t out[64];
  frd_t f;
  const uint8_t *p;
  uint32_t len;
  lua_State *L;
  pid_t pid;
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
    die("socketpair");
  if ((pid = fork()) < 0)
    die("fork");
  if (pid == 0) {
    close(sv[0]);
    L = side(CHILD);
    frd_init(&f, sv[1], 65536);
    if (evloop)
      f.ep = ep_for(sv[1]);
    while ((p = frd_next(&f, &len))) {
      lua_pushvalue(L, 1);
      push_frame(L, p, len);
      lua_call(L, 1, 1);
      write_all(sv[1], out, frame_lua(L, out));
    }
    _exit(0);
  }
  close(sv[1]);
  L = side(PARENT);
  frd_init(&f, sv[0], 65536);
  if (evloop)
    f.ep = ep_for(sv[0]);
  lua_pushnil(L); /* no reply before the first request */
  uint64_t t0 = now_ns();
  for (uint64_t i = 1; i <= n; i++) {
    lua_pushvalue(L, 1);
    lua_insert(L, -2);
    lua_pushinteger(L, (lua_Integer)i);
    lua_call(L, 2, 1);
    write_all(sv[0], out, frame_lua(L, out));
    if (!(p = frd_next(&f, &len)))
      fail("parent: EOF");
    push_frame(L, p, len);
  }
  lua_pushvalue(L, 1);
  lua_insert(L, -2);
  lua_pushinteger(L, (lua_Integer)n + 1);
  lua_call(L, 2, 1); /* checks the last reply */
  uint64_t t1 = now_ns();
  close(sv[0]);
  waitpid(pid, NULL, 0);
  printf("RESULT ipc_pingpong %.0f rt/s\n",
         (double)n * 1e9 / (double)(t1 - t0));
  return 0;
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "pingpong") == 0)
    return pingpong(argc, argv);
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
