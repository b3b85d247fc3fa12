-- pipeline.lua - ls DIR | grep PATTERN | wc -l as three spawns wired fd to
-- fd: each stdout is handed to the next child as its stdin, so no data
-- passes through Lua; only the final count is read.
--   lipc scripts/pipeline.lua [dir] [pattern]
local spawn = require "spawn"

local dir, pattern = ...
dir, pattern = dir or ".", pattern or "lua"

local ls = spawn("ls", {dir}, {stdio = {"ignore", "pipe", "inherit"}})
local grep = spawn("grep", {"--", pattern}, {stdio = {ls.stdout, "pipe", "inherit"}})
local wc = spawn("wc", {"-l"}, {stdio = {grep.stdout, "pipe", "inherit"}})

io.write(wc.stdout:read_all():match("%d+"), "\n")
local status = 0
for _, child in ipairs({ls, grep, wc}) do
  local code = child:wait()
  -- grep exits 1 when nothing matched: still a count (0)
  if code ~= 0 and not (child == grep and code == 1) then status = 1 end
end
os.exit(status)
