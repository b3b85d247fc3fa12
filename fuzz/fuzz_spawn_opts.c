/*
** fuzz_spawn_opts.c - libFuzzer target for the option parsing of `spawn`
** (modules/spawn_opts.c, modules/spawn.lua).
**
** Each input is decoded (by the Lua driver below) into one call of
** spawn(file, args, opts) or spawn.run(file, args, opts) whose arguments
** have fuzzer-chosen types and values: negative, huge, NaN and infinite
** numbers, strings with NUL bytes, nested tables, functions, unknown keys.
** A wrong argument must raise a "spawn: ..." error or come back as
** nil, msg, code; nothing may crash or trip a sanitizer, and every handle
** must be closed once the call is over.
**
** No fork bomb, no arbitrary program: at most one spawn per input, the
** program is one of a fixed harmless list (/bin/true, `true` on PATH, a
** missing file, a directory, a name with a NUL byte), and `shell` is
** never given a fuzzer-made path. A child that starts is waited for.
**
**   make fuzz FUZZ_SECONDS=60     (builds build/fuzz/fuzz_spawn_opts)
*/

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static lipc_runtime *rt;
static lua_State *L;
static int drive_ref;

static const char driver[] =
    "local spawn = require 'spawn'\n"
    "local PROGRAMS = {'/bin/true', 'true', '/nonexistent/lipc-fuzz', '/tmp',\n"
    "                  '/bin/tr\\0ue', ''}\n"
    "local KEYS = {'cwd', 'env', 'clear_env', 'stdio', 'shell', 'input',\n"
    "              'timeout', 'kill_signal', 'detached', 'uid', 'gid', "
    "'argv0',\n"
    "              'max_buffer', 'pty', 'bogus', 1}\n"
    "local NUMBERS = {0, -1, 1, 2, 3, 255, 256, 2^31, -2^31, 2^53, 1e300,\n"
    "                 -1e300, 0.5, -0.5, 1/0, -1/0, 0/0, math.maxinteger,\n"
    "                 math.mininteger, 65536}\n"
    "local WORDS = {'pipe', 'inherit', 'ignore', 'ipc', 'SIGKILL', 'SIGTERM',\n"
    "               'SIGNOPE', '/', '/nonexistent', 'a\\0b', '', '0600'}\n"
    "return function(bytes, done)\n"
    "  local pos = 1\n"
    "  local function byte()\n"
    "    local b = bytes:byte(pos) or 0; pos = pos + 1; return b\n"
    "  end\n"
    "  local function str()\n"
    "    local n = byte() % 12\n"
    "    local s = bytes:sub(pos, pos + n - 1); pos = pos + n; return s\n"
    "  end\n"
    "  local value\n"
    "  function value(depth, safe)\n"
    "    local t = byte() % 11\n"
    "    if t == 0 then return nil\n"
    "    elseif t == 1 then return true\n"
    "    elseif t == 2 then return false\n"
    "    elseif t == 3 then return byte() - 128\n"
    "    elseif t == 4 then return NUMBERS[byte() % #NUMBERS + 1]\n"
    "    elseif t == 5 then return WORDS[byte() % #WORDS + 1]\n"
    "    elseif t == 6 then return safe and '/bin/true' or str()\n"
    "    elseif t == 7 then return print\n"
    "    elseif t == 8 and depth < 3 then\n"
    "      local r, n = {}, byte() % 5\n"
    "      for i = 1, n do\n"
    "        if byte() % 2 == 0 then r[i] = value(depth + 1, safe)\n"
    "        else\n"
    "          local k = value(depth + 1, true)\n"
    "          if k ~= nil and k == k then r[k] = value(depth + 1, safe) end\n"
    "        end\n"
    "      end\n"
    "      return r\n"
    "    elseif t == 9 then return io.stdout\n"
    "    else return byte() % 4 end\n"
    "  end\n"
    "  local how = byte()\n"
    "  local file = PROGRAMS[how % #PROGRAMS + 1]\n"
    "  if (how >> 3) % 8 == 0 then file = value(0, true) end\n"
    "  local args = value(0, false)\n"
    "  local opts = {}\n"
    "  for _ = 1, byte() % 8 do\n"
    "    local k = KEYS[byte() % #KEYS + 1]\n"
    "    opts[k] = value(0, k == 'shell')\n"
    "  end\n"
    "  if type(opts.shell) == 'string' then opts.shell = '/bin/sh' end\n"
    "  if byte() % 8 == 0 then opts = value(0, true) end\n"
    "  local use_run = (how >> 6) == 1\n"
    "  if os.getenv('FUZZ_TRACE') then\n"
    "    local function show(v, d)\n"
    "      if type(v) == 'string' then return ('%q'):format(v) end\n"
    "      if type(v) ~= 'table' or d > 3 then return tostring(v) end\n"
    "      local r = {}\n"
    "      for k, x in pairs(v) do r[#r + 1] = '[' .. show(k, d + 1) .. ']=' "
    ".. show(x, d + 1) end\n"
    "      return '{' .. table.concat(r, ', ') .. '}'\n"
    "    end\n"
    "    io.stderr:write(use_run and 'spawn.run(' or 'spawn(', show(file, 0), "
    "', ',\n"
    "                    show(args, 0), ', ', show(opts, 0), ')\\n')\n"
    "  end\n"
    "  local ok, child, msg, code = pcall(use_run and spawn.run or spawn,\n"
    "                                     file, args, opts)\n"
    "  if not ok then\n"
    "    assert(type(child) == 'string' and child:find('spawn', 1, true),\n"
    "           'unclear error: ' .. tostring(child))\n"
    "  elseif child == nil then\n"
    "    assert(type(msg) == 'string' and type(code) == 'string')\n"
    "  elseif not use_run then\n"
    "    child:on('error', function() end)\n"
    "    child:wait()\n"
    "    child:close()\n"
    "  end\n"
    "  done()\n"
    "end\n";

#define ensure(c) ((c) ? (void)0 : fail(#c, __LINE__))

static void fail(const char *what, int line) {
  fprintf(stderr, "fuzz_spawn_opts.c:%d: property failed: %s\n", line, what);
  abort();
}

static int finished;

static int l_done(lua_State *l) {
  (void)l;
  finished = 1;
  return 0;
}

static void init(void) {
  rt = lipc_new(NULL);
  ensure(rt != NULL);
  L = lipc_state(rt);
  if (luaL_loadbuffer(L, driver, sizeof driver - 1, "=spawn_opts") != 0 ||
      lua_pcall(L, 0, 1, 0) != 0) {
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
    abort();
  }
  drive_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

/* Handles still open, but for the runtime's one SIGCHLD watcher, which
 * lives as long as the runtime. */
static int open_handles(int report) {
  lipc__handle *h;
  int n = 0;
  for (h = rt->handles; h; h = h->next) {
    if (strcmp(h->kind, "sigchld") == 0)
      continue;
    n++;
    if (report)
      fprintf(stderr, "left open: %s\n", h->kind);
  }
  return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int i;
  if (rt == NULL)
    init();
  if (size > 512)
    return 0; /* one call's worth */
  lua_settop(L, 0);
  finished = 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, drive_ref);
  lua_pushlstring(L, (const char *)data, size);
  lua_pushcfunction(L, l_done);
  lipc__task_start(rt, L, 2); /* runs until it first waits */
  while (!finished && !rt->exiting && uv_run(rt->loop, UV_RUN_ONCE))
    ;
  ensure(!rt->exiting); /* no uncaught error */
  ensure(finished);
  lua_gc(L, LUA_GCCOLLECT); /* children nobody closed */
  for (i = 0; i < 1000 && open_handles(0); i++)
    uv_run(rt->loop, UV_RUN_NOWAIT);
  ensure(open_handles(1) == 0);
  return 0;
}
