-- test.lua - `lipc test [--timeout MS] [busted options] [paths...]`: runs
-- the busted specs of the project in the current directory (its .busted
-- file too) under this runtime, with the spec harness (test_harness.lua)
-- in every run. Started as the main task by main.c, with the harness
-- chunk as its argument and the command's arguments in `arg`.
local harness_chunk = ...
local lipc = require "lipc"

local HELP = [[
usage: lipc test [--timeout MS] [busted options] [paths...]

Runs the busted specs of the project in the current directory, with its
.busted file if there is one, in this lipc. Each spec (`it`) and each
before_each, after_each, finally, setup and teardown runs in its own task
with a deadline; a spec fails when it leaves a handle, a child process or
an fd open, and when a listener, timer or task it started raises an error.
The run goes on with the next spec either way.

  --timeout MS   the deadline of each spec (default 30000 ms; also the
                 `timeout` key of .busted or LIPC_TEST_TIMEOUT; a spec or a
                 describe block sets its own with require("lipc.test").timeout)

Specs require "lipc.test" for helpers (temp dirs, free ports, workers,
fake peers, wait_for/eventually...). Everything else is busted's own,
output formats included (-o TAP, -o junit).

busted's options:
]]

local function fail(msg)
  io.stderr:write("lipc test: ", msg, "\n")
  lipc.exit(1)
end

-- Our options out, busted's left in order.
local args, timeout, help = {}, nil, false
do
  local i = 1
  while arg[i] ~= nil do
    local a, v = arg[i]
    if a == "--timeout" then
      i = i + 1
      v = arg[i] or ""
    else
      v = a:match("^%-%-timeout=(.*)$")
    end
    if v then
      timeout = tonumber(v)
      if not timeout or timeout <= 0 then
        fail("--timeout: a number of milliseconds > 0 expected, got '" .. v .. "'")
      end
    else
      args[#args + 1] = a
      help = help or a == "-h" or a == "--help"
    end
    i = i + 1
  end
end

local ok, core = pcall(require, "busted.core")
if not ok then
  fail("busted is not installed for Lua 5.4 (Debian: apt-get install lua-busted; "
    .. "LuaRocks: luarocks --lua-version=5.4 install busted)\n" .. tostring(core))
end

local harness = harness_chunk()
local env_timeout = tonumber(os.getenv("LIPC_TEST_TIMEOUT") or "")
harness.timeout = timeout or env_timeout or harness.timeout

-- The harness goes into the busted instance the runner makes; the
-- runner's parsed options give it .busted's `timeout` (below the command
-- line and the environment).
package.loaded["busted.core"] = function(...)
  local busted = core(...)
  harness.install(busted)
  return busted
end
local cli = require "busted.modules.cli"
package.loaded["busted.modules.cli"] = function(...)
  local c = cli(...)
  local parse = c.parse
  c.parse = function(self, argv)
    local opts, err = parse(self, argv)
    if opts and not (timeout or env_timeout) and opts.timeout ~= nil then
      local ms = tonumber(opts.timeout)
      if not ms or ms <= 0 then
        return nil, "lipc test: .busted: timeout must be a number of milliseconds > 0"
      end
      harness.timeout = ms
    end
    return opts, err
  end
  return c
end

-- busted writes its usage as an error (to stderr, status 1): after ours,
-- it goes to stdout, and asking for it succeeds.
if help then
  io.write(HELP)
  local function usage(self, text)
    text = text:gsub("^lipc test: error: ", ""):gsub("; re%-run with %-%-help for usage%.\n?$", "\n")
    io.stdout:write(text)
    return self
  end
  io.stderr = {write = usage} -- luacheck: ignore 122
  os.exit = function() lipc.exit(0) end -- luacheck: ignore 122
end

-- The runner names itself after the chunk that calls it.
_G.arg = args
args[0] = "lipc test"
assert(load("require('busted.runner')({standalone = false})", "@lipc test"))()

-- Every spec passed (a failing run has exited): what no spec owns.
local code = harness.finish()
lipc.exit(code)
