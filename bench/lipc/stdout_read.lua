-- stdout_read (lipc): spawn a child whose stdout is a pipe (build/bench/writer,
-- the C helper writing 8 KiB write()s - path in $BENCH_WRITER - or
-- `head -c BYTES /dev/zero` when it is missing) and count the bytes of every
-- child.stdout:read() chunk until EOF. Timed from spawn to EOF.
-- MB = 10^6 bytes.
--   lipc stdout_read.lua [bytes]   -> RESULT stdout_read <n> MB/s
local C = dofile((debug.getinfo(1, "S").source:match("^[@=]?(.*/)") or "./") .. "common.lua")
local spawn = require "spawn"

local argv = C.args(...)
local total = C.count(argv[1], 1073741824)
local cmd, args = C.writer(), {tostring(total)}
if not cmd then cmd, args = "head", {"-c" .. total, "/dev/zero"} end

local t0 = C.now()
local child = C.check(spawn(cmd, args, {stdio = {"inherit", "pipe", "inherit"}}))
local out = child.stdout
local got = 0
while true do
  local chunk, err = out:read()
  if chunk == nil then
    if err then error(err) end
    break
  end
  got = got + #chunk
end
local t1 = C.now()
local code = child:wait()
if got ~= total or code ~= 0 then
  error(string.format("read %d of %d bytes, child exit %s", got, total, tostring(code)))
end
C.result("stdout_read", total / 1e6 / C.secs(t0, t1), "MB/s", 1)
