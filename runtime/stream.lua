-- stream.lua - the parts of the stream API that read best in Lua:
-- read_all(), lines() and pipe(). Called once with the stream methods
-- table and the task check; every stream type (pipe, tcp, tty, file)
-- copies these methods.
local methods, task_check = ...

local concat = table.concat

-- read_all() in a task -> the whole rest of the stream as one string,
-- or nil, msg, code on error.
function methods:read_all()
  local parts, n = {}, 0
  while true do
    local chunk, err, code = self:read()
    if chunk == nil then
      if err then return nil, err, code end
      return concat(parts, "", 1, n)
    end
    n = n + 1
    parts[n] = chunk
  end
end

-- lines() in a task -> iterator over lines without their "\n"; the last
-- line is returned even without a final newline. A read error raises.
function methods:lines()
  task_check("stream.lines")
  local buf, pos, ended = "", 1, false
  return function()
    while true do
      local nl = buf:find("\n", pos, true)
      if nl then
        local line = buf:sub(pos, nl - 1)
        pos = nl + 1
        return line
      end
      if ended then
        if pos <= #buf then
          local line = buf:sub(pos)
          buf, pos = "", 1
          return line
        end
        return nil
      end
      local chunk, err = self:read()
      if chunk == nil then
        if err then error("stream.lines: " .. err, 2) end
        ended = true
      else
        buf, pos = buf:sub(pos) .. chunk, 1
      end
    end
  end
end

-- pipe(dest[, opts]) -> dest. Chunks flow to dest; a write over dest's
-- high-water mark pauses the source until dest drains; the source's end
-- shuts dest down unless opts["end"] == false.
function methods:pipe(dest, opts)
  local src = self
  if type(dest) ~= "userdata" and type(dest) ~= "table" then
    error("bad argument #1 to 'stream.pipe' (writable stream expected, got "
          .. type(dest) .. ")", 2)
  end
  dest:on("drain", function() src:resume() end)
  if not (opts and opts["end"] == false) then
    src:on("end", function() dest:shutdown() end)
  end
  src:on("data", function(chunk)
    if dest:write(chunk) == false then src:pause() end
  end)
  return dest
end
