-- gendocs.lua - docs/api.md and types/*.lua from one description of the
-- API, docs/api/*.lua (plain Lua 5.4; runs under lua5.4 or lipc).
--
--   lua5.4 tools/gendocs.lua [outdir]      writes outdir/docs/api.md and
--                                          outdir/types/<module>.lua
--                                          (outdir defaults to ".")
--   lipc tools/gendocs.lua --undocumented  requires every module, walks the
--                                          module tables and the methods of
--                                          every "lipc.*" class metatable in
--                                          the registry; prints each function
--                                          that has no entry, exits 1 if any
--
-- The description: each docs/api/*.lua file (taken in name order) returns
--   { section = "core",       -- <!-- section:core --> marker in api.md
--     module = "lipc",        -- types/lipc.lua, `---@meta lipc` (optional)
--     module_text = "...",    -- the module table's description (types)
--     module_call = "spawn(file: string, ...): lipc.child",  -- callable module
--     classes = { {name = "lipc.timer", extends = "lipc.handle", var = "timer",
--                  text = "...", events = {"data(chunk: string)", ...},
--                  fields = {"bytes_read: integer", ...}}, ...},
--     doc = { block, ... } }
-- A block is a markdown string (copied as is), or
--   {list = true, item, ...}                  a bullet list of items
--   {table = {"method", "meaning"}, item, ...} a two-column table of items
-- with an optional `class` (what bare names and ambiguous vars mean) and
-- `options` (the items are fields of that options class). An item is
--   {def, ..., text = "markdown", ret = "shown after →", task = true,
--    sig = "shown instead of the signatures", class = "..."}
-- and a def is a signature: "lipc.set_timeout(ms: integer, fn: function):
-- lipc.timer", "s:write(data: string|string[], cb?: function): boolean?",
-- "lipc.pid: integer" (a field), "send(...)" (bare: a method of the block's
-- class), "cwd: string" (in an options block: a field). Params ending in
-- "?" are optional and shown as [, name]. A name prefix is a module name or
-- a class's `var`.

local DIR = "docs/api"

-- ---- reading the description --------------------------------------------

local function list_files()
  local p = assert(io.popen("ls " .. DIR .. "/*.lua 2>/dev/null"))
  local files = {}
  for f in p:lines() do files[#files + 1] = f end
  p:close()
  table.sort(files)
  assert(#files > 0, "gendocs: no " .. DIR .. "/*.lua")
  return files
end

local function load_parts()
  local parts = {}
  for _, f in ipairs(list_files()) do
    local part = assert(loadfile(f, "t", {}))()
    part.file = f
    parts[#parts + 1] = part
  end
  return parts
end

-- Splits s at sep characters that are outside (), [], {}, <> and quotes.
local function split_top(s, sep)
  local out, depth, start, quote = {}, 0, 1, nil
  for i = 1, #s do
    local c = s:sub(i, i)
    if quote then
      if c == quote then quote = nil end
    elseif c == '"' or c == "'" then
      quote = c
    elseif c == "(" or c == "[" or c == "{" or c == "<" then
      depth = depth + 1
    elseif c == ")" or c == "]" or c == "}" or (c == ">" and s:sub(i - 1, i - 1) ~= "-") then
      depth = depth - 1
    elseif c == sep and depth == 0 then
      out[#out + 1] = s:sub(start, i - 1)
      start = i + 1
    end
  end
  out[#out + 1] = s:sub(start)
  for i, v in ipairs(out) do out[i] = v:match("^%s*(.-)%s*$") end
  if #out == 1 and out[1] == "" then return {} end
  return out
end

-- Index of the ")" closing the "(" at i.
local function close_paren(s, i)
  local depth = 0
  for j = i, #s do
    local c = s:sub(j, j)
    if c == "(" then depth = depth + 1 elseif c == ")" then
      depth = depth - 1
      if depth == 0 then return j end
    end
  end
  error("gendocs: unbalanced parentheses in " .. s)
end

-- "a.b:c(x: T, y?: U): R1, R2" -> {name=, params=, returns=}; or a field.
local function parse_def(s)
  local name = s:match("^[%w_.]+")
  assert(name, "gendocs: bad signature: " .. s)
  local method = s:match("^:[%w_]+", #name + 1)
  if method then name = name .. method end
  local rest = s:sub(#name + 1):match("^%s*(.*)$")
  local def = {name = name, src = s}
  if rest:sub(1, 1) == "(" then
    local j = close_paren(rest, 1)
    def.params = {}
    for _, p in ipairs(split_top(rest:sub(2, j - 1), ",")) do
      local pn, opt, pt = p:match("^([%w_.]+)(%??)%s*:%s*(.+)$")
      if not pn then pn, opt = p:match("^([%w_.]+)(%??)$"); pt = "any" end
      assert(pn, "gendocs: bad parameter '" .. p .. "' in " .. s)
      def.params[#def.params + 1] = {name = pn, optional = opt == "?", type = pt}
    end
    rest = rest:sub(j + 1)
    local r = rest:match("^%s*:%s*(.+)$")
    def.returns = r and split_top(r, ",") or {}
  else
    local t = rest:match("^:%s*(.+)$")
    assert(t, "gendocs: a field needs a type: " .. s)
    def.field, def.type = true, t
  end
  return def
end

-- ---- the model ------------------------------------------------------------

local model = {
  classes = {},     -- name -> class
  vars = {},        -- var -> class name, or false when ambiguous
  modules = {},     -- module name -> part
  documented = {},  -- "class\0name" -> true
}

local function add_class(c, part)
  assert(not model.classes[c.name], "gendocs: class declared twice: " .. c.name)
  c.part = part
  c.members = {}
  model.classes[c.name] = c
  if c.var then
    if model.vars[c.var] == nil then model.vars[c.var] = c.name else model.vars[c.var] = false end
  end
end

-- Where a def belongs: class name and member name.
local function resolve(def, item, block)
  local prefix, sep, member = def.name:match("^(.-)([.:])([%w_]+)$")
  local cls = item.class or block.class
  if not prefix then
    if block.options then return block.options, def.name, "" end
    assert(cls, "gendocs: bare name outside a class block: " .. def.src)
    return cls, def.name, ""
  end
  if model.modules[prefix] and sep == "." and not item.class then
    return prefix, member, prefix .. "."
  end
  if not cls then
    cls = model.vars[prefix]
    assert(cls, "gendocs: unknown or ambiguous prefix '" .. prefix .. "' in " .. def.src
      .. " (give the block or item a class)")
  end
  return cls, member, prefix .. sep
end

local function each_item(parts, fn)
  for _, part in ipairs(parts) do
    for _, block in ipairs(part.doc) do
      if type(block) == "table" then
        for _, item in ipairs(block) do
          fn(part, block, item)
        end
      end
    end
  end
end

local function build(parts)
  for _, part in ipairs(parts) do
    if part.module then
      model.modules[part.module] = part
      add_class({name = part.module, text = part.module_text, module = true,
                 call = part.module_call}, part)
    end
  end
  for _, part in ipairs(parts) do
    for _, c in ipairs(part.classes or {}) do add_class(c, part) end
  end
  each_item(parts, function(part, block, item)
    assert(type(item) == "table", "gendocs: an item must be a table in " .. part.file)
    item.defs = {}
    for _, s in ipairs(item) do
      local def = parse_def(s)
      def.class, def.member, def.shown_prefix = resolve(def, item, block)
      local c = model.classes[def.class]
      assert(c, "gendocs: unknown class " .. def.class .. " for " .. s)
      c.members[#c.members + 1] = {def = def, item = item, optional = block.options ~= nil}
      model.documented[def.class .. "\0" .. def.member] = true
      item.defs[#item.defs + 1] = def
    end
  end)
end

-- ---- api.md ---------------------------------------------------------------

local function shown(def)
  local s = def.shown_prefix .. def.member
  if def.field then return s end
  local req, out = {}, {}
  for _, p in ipairs(def.params) do
    if p.optional then
      out[#out + 1] = (#req == 0 and #out == 0) and ("[" .. p.name .. "]") or ("[, " .. p.name .. "]")
    else
      assert(#out == 0, "gendocs: required parameter after an optional one: " .. def.src)
      req[#req + 1] = p.name
    end
  end
  return s .. "(" .. table.concat(req, ", ") .. table.concat(out) .. ")"
end

local function sigs(item)
  local s
  if item.sig then
    s = item.sig
  else
    local t = {}
    for _, def in ipairs(item.defs) do t[#t + 1] = "`" .. shown(def) .. "`" end
    s = table.concat(t, ", ")
  end
  if item.task then s = s .. " *(task)*" end
  return s
end

-- An item as one list entry: signatures, → what it returns, text.
local function item_line(item)
  local line = sigs(item)
  if item.ret then line = line .. " → " .. item.ret end
  if item.text and item.text ~= "" then
    local sep = " — "
    if item.text:match("^[,.;:]") then sep = ""
    elseif item.text:match("^%(") or (item.ret and item.ret:match("[,.;:]$")) then sep = " " end
    line = line .. sep .. item.text
  end
  return line
end

-- A two-column table row; an empty cell is "| |".
local function row(a, b)
  return "| " .. a .. " |" .. (b == "" and " " or " " .. b .. " ") .. "|"
end

local function render_md(parts)
  local out = {"# lipc API reference", ""}
  local open
  for i, part in ipairs(parts) do
    if part.section ~= open then
      if open then out[#out + 1] = "<!-- /section:" .. open .. " -->"; out[#out + 1] = "" end
      open = part.section
      out[#out + 1] = "<!-- section:" .. open .. " -->"
    end
    for _, block in ipairs(part.doc) do
      if type(block) == "string" then
        out[#out + 1] = (block:gsub("^\n+", ""):gsub("\n+$", ""))
      elseif block.table then
        out[#out + 1] = row(block.table[1], block.table[2])
        out[#out + 1] = "|---|---|"
        for _, item in ipairs(block) do
          local text = (item.text or ""):gsub("%s*\n%s*", " ")
          out[#out + 1] = row((sigs(item):gsub("|", "\\|")), text)
        end
      else
        for _, item in ipairs(block) do
          local line = "- " .. item_line(item)
          out[#out + 1] = (line:gsub("\n", "\n  "))
        end
      end
      out[#out + 1] = ""
    end
    if i == #parts then out[#out + 1] = "<!-- /section:" .. open .. " -->" end
  end
  return table.concat(out, "\n") .. "\n"
end

-- ---- types/*.lua ------------------------------------------------------------

local function comment(text, out)
  if not text then return end
  for line in (text .. "\n"):gmatch("(.-)\n") do
    out[#out + 1] = ("---" .. line:gsub("^%s+", "")):gsub("%s+$", "")
  end
end

local function luavar(name)
  return (name:gsub("[^%w_]", "_"))
end

local function fun_type(def, self_type)
  local ps = {}
  if self_type then ps[1] = "self: " .. self_type end
  for _, p in ipairs(def.params) do
    ps[#ps + 1] = p.name .. (p.optional and "?" or "") .. ": " .. p.type
  end
  local r = #def.returns > 0 and (": " .. table.concat(def.returns, ", ")) or ""
  return "fun(" .. table.concat(ps, ", ") .. ")" .. r
end

local function emit_function(out, v, sep, def, item)
  comment(item_line(item), out)
  local names = {}
  for _, p in ipairs(def.params) do
    out[#out + 1] = "---@param " .. p.name .. (p.optional and "? " or " ") .. p.type
    names[#names + 1] = p.name
  end
  for _, r in ipairs(def.returns) do out[#out + 1] = "---@return " .. r end
  out[#out + 1] = "function " .. v .. sep .. def.member .. "(" .. table.concat(names, ", ") .. ") end"
  out[#out + 1] = ""
end

local function event_params(ev)
  local name, ps = ev:match("^([%w_]+)%((.*)%)$")
  assert(name, "gendocs: bad event " .. ev)
  return name, ps
end

local function emit_class(out, c)
  local v = luavar(c.name) -- "lipc.test" -> lipc_test
  comment(c.text, out)
  out[#out + 1] = "---@class " .. c.name .. (c.extends and (": " .. c.extends) or "")
  local methods = {}
  for _, f in ipairs(c.fields or {}) do out[#out + 1] = "---@field " .. (f:gsub(":%s*", " ", 1)) end
  for _, m in ipairs(c.members) do
    if m.def.field then
      out[#out + 1] = "---@field " .. m.def.member .. (m.optional and "? " or " ") .. m.def.type .. " "
        .. item_line(m.item):gsub("%s*\n%s*", " ")
    else
      methods[#methods + 1] = m
    end
  end
  if c.call then
    local def = parse_def(c.call)
    out[#out + 1] = "---@overload " .. fun_type(def)
  end
  out[#out + 1] = "local " .. v .. " = {}"
  out[#out + 1] = ""
  for _, m in ipairs(methods) do
    local sep = (m.def.shown_prefix:sub(-1) == "." or c.module) and "." or ":"
    emit_function(out, v, sep, m.def, m.item)
  end
  if c.events then
    local names, fns = {}, {}
    for _, ev in ipairs(c.events) do
      local name, ps = event_params(ev)
      names[#names + 1] = '"' .. name .. '"'
      fns[#fns + 1] = "fun(" .. ps .. ")"
    end
    for _, m in ipairs({"on", "once"}) do
      out[#out + 1] = "---Listen for " .. table.concat(names, ", ") .. "; returns the object."
      for i, ev in ipairs(c.events) do
        out[#out + 1] = "---@overload fun(self: " .. c.name .. ", name: " .. names[i]
          .. ", fn: " .. fns[i] .. "): " .. c.name
        local _ = ev
      end
      out[#out + 1] = "---@param name string"
      out[#out + 1] = "---@param fn function"
      out[#out + 1] = "---@return " .. c.name
      out[#out + 1] = "function " .. v .. ":" .. m .. "(name, fn) end"
      out[#out + 1] = ""
    end
  end
  return v
end

local function render_types(parts)
  local files, order = {}, {}
  local current
  for _, part in ipairs(parts) do
    local mod = part.module or current
    assert(mod, "gendocs: " .. part.file .. " has no module and follows none")
    current = mod
    if not files[mod] then
      files[mod] = {"---@meta " .. mod,
        "-- Generated by tools/gendocs.lua from docs/api/*.lua: do not edit.", ""}
      order[#order + 1] = mod
    end
    local out = files[mod]
    if part.module then emit_class(out, model.classes[part.module]) end
    for _, c in ipairs(part.classes or {}) do emit_class(out, c) end
  end
  local result = {}
  for _, mod in ipairs(order) do
    local out = files[mod]
    out[#out + 1] = "return " .. luavar(mod)
    result[mod] = table.concat(out, "\n") .. "\n"
  end
  return result, order
end

-- ---- the check: every function registered has an entry ------------------------

local function documented(cls, name)
  local seen = {}
  while cls and not seen[cls] do
    seen[cls] = true
    if model.documented[cls .. "\0" .. name] then return true end
    local c = model.classes[cls]
    cls = c and c.extends
  end
  return false
end

local function undocumented()
  local missing = {}
  local mods = {}
  for name in pairs(model.modules) do mods[#mods + 1] = name end
  table.sort(mods)
  for _, name in ipairs(mods) do
    local ok, t = pcall(require, name)
    if not ok then
      missing[#missing + 1] = name .. ": require failed: " .. tostring(t)
    else
      for k, v in pairs(t) do
        if type(v) == "function" and not documented(name, k) then
          missing[#missing + 1] = name .. "." .. k
        end
      end
    end
  end
  for k, mt in pairs(debug.getregistry()) do
    if type(k) == "string" and k:match("^lipc%.") and type(mt) == "table" then
      local methods = mt.methods
      if type(methods) ~= "table" then methods = type(mt.__index) == "table" and mt.__index or {} end
      for name, f in pairs(methods) do
        if type(f) == "function" and not documented(k, name) then
          missing[#missing + 1] = k .. ":" .. name
            .. (model.classes[k] and "" or " (class " .. k .. " is not described)")
        end
      end
    end
  end
  table.sort(missing)
  return missing
end

-- ---- main -------------------------------------------------------------------------

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local parts = load_parts()
build(parts)

if arg[1] == "--undocumented" then
  local missing = undocumented()
  for _, m in ipairs(missing) do io.stderr:write("undocumented: ", m, "\n") end
  if #missing > 0 then
    io.stderr:write(#missing, " function(s) registered in C have no entry in ", DIR, "/*.lua\n")
    os.exit(1)
  end
  print("every registered function is documented")
  os.exit(0)
end

local outdir = arg[1] or "."
os.execute("mkdir -p '" .. outdir .. "/docs' '" .. outdir .. "/types'")
write(outdir .. "/docs/api.md", render_md(parts))
local types, order = render_types(parts)
for _, mod in ipairs(order) do write(outdir .. "/types/" .. mod .. ".lua", types[mod]) end
