-- pty_session.lua - drive an interactive shell through a terminal, as a
-- user at a keyboard would: wait for its prompt, type a command, read
-- the answer up to the next prompt.
--   lipc scripts/pty_session.lua [command...]
local spawn = require "spawn"

local commands = {...}
if #commands == 0 then commands = {"tty", "stty size", "echo $((6 * 7))", "resize", "stty size"} end

local PROMPT = "lipc$ "
local sh = spawn("sh", {"-i"}, {pty = {cols = 100, rows = 30}, env = {PS1 = PROMPT, ENV = false}})
sh:on("error", function(msg) io.stderr:write("pty_session: ", msg, "\n") end)

-- prompt() reads the terminal up to the next prompt; returns what came
-- before it (nil once the terminal has ended).
local seen = ""
local function prompt()
  while true do
    local s, e = seen:find(PROMPT, 1, true)
    if s then
      local before = seen:sub(1, s - 1)
      seen = seen:sub(e + 1)
      return before
    end
    local chunk = sh.pty:read()
    if not chunk then return nil end
    seen = seen .. chunk
  end
end

prompt()
for _, cmd in ipairs(commands) do
  if cmd == "resize" then -- the window changes: the kernel tells the shell
    sh:resize(120, 40)
    print("(resized to 120x40)")
  else
    sh.pty:write(cmd .. "\n")
    -- the terminal echoes the line typed (\r\n line ends), then the answer
    local out = prompt() or ""
    out = out:gsub("^[^\n]*\n", ""):gsub("\r\n", "\n")
    io.write(PROMPT, cmd, "\n", out)
  end
end
sh.pty:write("exit 0\n")
sh.pty:read_all()
local code = sh:wait()
print("shell exited with " .. tostring(code))
os.exit(code == 0 and 0 or 1)
