-- inspect.lua - lipc.inspect(value[, opts]): a readable one-line picture
-- of any Lua value, as Node's util.inspect (the prompt prints with it).
-- Strings are quoted, tables show their contents (the sequence first,
-- then the other keys sorted), nesting is cut at opts.depth (default 4),
-- a table met again inside itself is shown as <cycle>, and long tables
-- and strings are cut (the rest counted). Returns the
-- inspect function.
local concat, sort = table.concat, table.sort
local fmt = string.format

local MAX_ITEMS = 100 -- per table; the rest is counted, not shown
local MAX_STRING = 10000 -- bytes of a string shown, as Node's maxStringLength

local function is_ident(k)
  return type(k) == "string" and k:match("^[%a_][%w_]*$") ~= nil and
    not ({["and"] = 1, ["break"] = 1, ["do"] = 1, ["else"] = 1, ["elseif"] = 1,
          ["end"] = 1, ["false"] = 1, ["for"] = 1, ["function"] = 1, ["goto"] = 1,
          ["if"] = 1, ["in"] = 1, ["local"] = 1, ["nil"] = 1, ["not"] = 1, ["or"] = 1,
          ["repeat"] = 1, ["return"] = 1, ["then"] = 1, ["true"] = 1, ["until"] = 1,
          ["while"] = 1})[k]
end

local function key_order(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return ta < tb end
  if ta == "number" or ta == "string" then return a < b end
  return tostring(a) < tostring(b)
end

local show

local function show_table(t, depth, seen, opts)
  if seen[t] then return "<cycle>" end
  local mt = getmetatable(t)
  if mt and mt.__tostring then return tostring(t) end
  if depth >= opts.depth then return next(t) == nil and "{}" or "{...}" end
  seen[t] = true
  local parts, n = {}, #t
  for i = 1, math.min(n, MAX_ITEMS) do parts[i] = show(t[i], depth + 1, seen, opts) end
  local keys = {}
  for k in pairs(t) do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
  end
  sort(keys, key_order)
  for _, k in ipairs(keys) do
    if #parts >= MAX_ITEMS then break end
    local ks = is_ident(k) and k or "[" .. show(k, opts.depth, seen, opts) .. "]"
    parts[#parts + 1] = ks .. " = " .. show(t[k], depth + 1, seen, opts)
  end
  local more = n + #keys - #parts
  if more > 0 then parts[#parts + 1] = fmt("...(%d more)", more) end
  seen[t] = nil
  if #parts == 0 then return "{}" end
  return "{" .. concat(parts, ", ") .. "}"
end

function show(v, depth, seen, opts)
  local t = type(v)
  if t == "string" then
    local more = #v - MAX_STRING
    if more > 0 then v = v:sub(1, MAX_STRING) end
    local q = fmt("%q", v):gsub("\\\n", "\\n")
    return more > 0 and fmt("%s...(%d more bytes)", q, more) or q
  elseif t == "table" then
    return show_table(v, depth, seen, opts)
  elseif v == opts.null then
    return "null" -- lipc.null (cjson.null)
  end
  return tostring(v)
end

return function(v, opts)
  local depth = 4
  if opts ~= nil then
    if type(opts) ~= "table" then
      error("bad argument #2 to 'lipc.inspect' (table expected, got " .. type(opts) .. ")", 2)
    end
    depth = opts.depth or depth
    if math.type(depth) ~= "integer" or depth < 0 then
      error("bad argument #2 to 'lipc.inspect' (opts.depth: integer >= 0 expected)", 2)
    end
  end
  return show(v, 0, {}, {depth = depth, null = require("lipc").null})
end
