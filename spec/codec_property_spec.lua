-- codec_property_spec.lua - the round-trip property of the wire format
-- (issue #7): for generated values v, decode(encode(v)) == v, integer and
-- float subtypes included, through a real channel (send encodes, receive
-- decodes), and through Node's JSON lines to what JSON.stringify would
-- make of v. The generator is seeded, so a failure names a reproducible
-- seed (LIPC_PROPERTY_SEED, LIPC_PROPERTY_N).
local lipc = require "lipc"
local S = require "support"

local SEED = tonumber(os.getenv("LIPC_PROPERTY_SEED")) or 7
local N = tonumber(os.getenv("LIPC_PROPERTY_N")) or 3000

local INTS = {0, 1, -1, 127, 128, -32, -33, 255, 256, 65535, 65536, -32768, -32769,
              2^31 // 1, -(2^31 // 1) - 1, 4294967295, 4294967296, math.maxinteger,
              math.mininteger, 9007199254740993}
local FLOATS = {0.0, -0.0, 1.5, -2.25, 1e300, -1e-300, 2^53 + 0.0, 3.0, math.huge,
                -math.huge, 0 / 0, 5e-324}

local function gen(rand, depth)
  local t = rand(depth < 4 and 10 or 7)
  if t == 1 then return rand(2) == 1
  elseif t == 2 then return INTS[rand(#INTS)]
  elseif t == 3 then return rand(-1000000, 1000000)
  elseif t == 4 then return FLOATS[rand(#FLOATS)]
  elseif t == 5 then return rand() * 10 ^ rand(-20, 20)
  elseif t == 6 then                                    -- UTF-8 text
    local parts = {}
    for i = 1, rand(0, 40) do
      parts[i] = utf8.char(({rand(32, 126), rand(128, 2047), rand(2048, 55295),
                             rand(65536, 1114111)})[rand(4)])
    end
    return table.concat(parts)
  elseif t == 7 then                                    -- binary
    local b = {}
    for i = 1, rand(0, 300) do b[i] = string.char(rand(0, 255)) end
    return table.concat(b)
  elseif t == 8 then                                    -- array
    local a = {}
    for i = 1, rand(0, 20) do a[i] = gen(rand, depth + 1) end
    return a
  else                                                  -- map
    local m = {}
    for _ = 1, rand(0, 12) do
      local k = gen(rand, 99)
      if k == k and k ~= nil then m[k] = gen(rand, depth + 1) end
    end
    return m
  end
end

-- Equality that also compares integer/float subtype (and NaN to NaN).
local function same(a, b, path)
  if type(a) ~= type(b) then return false, path end
  if type(a) == "number" then
    if math.type(a) ~= math.type(b) then return false, path end
    if a ~= a then return b ~= b, path end
    if a == 0 and math.type(a) == "float" and 1 / a ~= 1 / b then return false, path end
    return a == b, path
  end
  if type(a) ~= "table" then return a == b, path end
  for k, v in pairs(a) do
    local ok, p = same(v, b[k], path .. "[" .. tostring(k) .. "]")
    if not ok then return false, p end
  end
  for k in pairs(b) do
    if a[k] == nil then return false, path .. "[" .. tostring(k) .. "] extra" end
  end
  return true
end

-- What a value becomes after a trip through JSON (lipc writes, cjson reads):
-- integral numbers within 2^53 are integers, others floats; NaN and the
-- infinities are null (cjson.null, which is lipc.null); a table with
-- keys 1..n is an array, any other an object with string keys (number keys
-- as JavaScript writes them). nil for what JSON cannot carry (a key
-- collision after that, a boolean key, a binary string), to skip it.
local NULL = require("cjson").null

local function shortest(x)
  for p = 15, 17 do
    local t = ("%." .. p .. "g"):format(x)
    if tonumber(t) == x then return t end
  end
end

local function via_json(v)
  if type(v) == "number" then
    local x = v
    if math.type(x) == "integer" then
      if x >= -2^53 and x <= 2^53 then return x end
      x = x + 0.0
    end
    if x ~= x or x == math.huge or x == -math.huge then return NULL end
    if x >= -2^53 and x <= 2^53 and x == math.floor(x) then return math.tointeger(x) end
    return x
  elseif type(v) == "string" then
    if not utf8.len(v) then return nil end
    return v
  elseif type(v) ~= "table" then
    return v
  end
  local n, count, out = #v, 0, {}
  for _ in pairs(v) do count = count + 1 end
  local array = n > 0 and count == n
  for i = 1, array and n or 0 do
    if v[i] == nil then array = false; break end
  end
  for k, x in pairs(v) do
    local key = k
    if not array then
      if type(k) == "number" then
        key = math.type(k) == "integer" and tostring(k)
              or (k == math.huge and "Infinity") or (k == -math.huge and "-Infinity")
              or shortest(k)
      elseif type(k) ~= "string" or not utf8.len(k) then
        return nil
      end
      if out[key] ~= nil then return nil end       -- 1 and "1": one key in JSON
    end
    local y = via_json(x)
    if y == nil then return nil end
    out[key] = y
  end
  return out
end

-- Sends count generated values (seed SEED) through a channel pair made
-- with opts: those expect(v) keeps (keep, want); each must arrive as want.
-- Returns how many were sent.
local function round_trip(opts, count, expect, what)
  local ca, cb = S.channel_pair(opts, opts)
  math.randomseed(SEED)
  local wants, values, sent = {}, {}, 0
  for _ = 1, count do
    local v = gen(math.random, 0)
    local keep, want = expect(v)
    if keep then
      sent = sent + 1
      wants[sent], values[sent] = want, v
    end
  end
  -- the sender in a task of its own: the receiver reads only while
  -- somebody takes (receive backpressure)
  lipc.go(function()
    for i = 1, sent do
      if not ca:send(values[i]) then ca:drain() end
    end
  end)
  for i = 1, sent do
    local ok, path = same(wants[i], cb:receive(), "v")
    assert(ok, ("%s value %d (seed %d) differs at %s"):format(what, i, SEED, tostring(path)))
  end
  ca:disconnect()
  cb:disconnect()
  return sent
end

describe("the codec round trip", function()
  it("holds through JSON lines (Node's format), values written as JSON.stringify would", function()
    local sent = round_trip({serialization = "json"}, N // 3, function(v)
      local want = via_json(v)
      return want ~= nil, want
    end, "JSON")
    assert.is_true(sent > N // 6)
  end)

  it(("holds for %d generated values (seed %d)"):format(N, SEED), function()
    assert.are.equal(N, round_trip(nil, N, function(v) return true, v end, "MessagePack"))
  end)

  it("holds at the integer/float edges", function()
    local ca, cb = S.channel_pair()
    for _, v in ipairs(INTS) do ca:send(v) end
    for _, v in ipairs(FLOATS) do ca:send(v) end
    for _, v in ipairs(INTS) do assert.is_true((same(v, cb:receive(), "v"))) end
    for _, v in ipairs(FLOATS) do assert.is_true((same(v, cb:receive(), "v"))) end
    ca:disconnect()
    cb:disconnect()
  end)

  it("holds at the map header sizes (fixmap, map16, map32)", function()
    local ca, cb = S.channel_pair()
    for _, n in ipairs({0, 1, 15, 16, 17, 65535, 65536, 70000}) do
      local t = {}
      for i = 1, n do t["k" .. i] = i end
      ca:send(t)
      assert.is_true((same(t, cb:receive(), "map of " .. n)))
    end
    ca:disconnect()
    cb:disconnect()
  end)
end)

-- Lua keeps a map of n entries in 2^k >= n nodes and an integer key in
-- node k % ((2^k - 1) | 1), k read as unsigned; inserting a key first
-- walks the keys already in its node's chain.
local function chain_steps(keys)
  local nodes = 1
  while nodes < #keys do nodes = nodes * 2 end
  local mod, count, steps = (nodes - 1) | 1, {}, 0
  for _, k in ipairs(keys) do
    local slot = k >= 0 and k % mod or ((k >> 1) % mod * 2 + (k & 1)) % mod
    steps = steps + (count[slot] or 0)
    count[slot] = (count[slot] or 0) + 1
  end
  return steps
end

describe("the decoder's cost", function()
  it("stays linear in the frame: maps built to collide are refused, others cost <= 8 steps a key", function()
    local rand = math.random
    math.randomseed(SEED)
    for _, n in ipairs({64, 128, 1000, 2048, 4096, 8192}) do
      local nodes = 1
      while nodes < n do nodes = nodes * 2 end
      local d = rand(2, 5000)
      local families = {
        collide = function(i) return i * (nodes - 1) end,                 -- one chain
        half = function(i) return i * (nodes // 2 - 1) end,              -- the size below
        collide_neg = function(i) return -i * (nodes - 1) end,
        collide_big = function(i) return (1 << 40) + i * (nodes - 1) end,
        sequential = function(i) return i end,
        random = function() return rand(math.mininteger, math.maxinteger) end,
        strided = function(i) return i * d end,
      }
      for name, key in pairs(families) do
        local keys, parts = {}, {"\xdf" .. S.be32(n)}
        for i = 1, n do
          keys[i] = key(i)
          parts[#parts + 1] = "\xd3" .. string.pack(">i8", keys[i]) .. "\xc3"
        end
        local body = table.concat(parts)
        local ch, raw = S.raw_channel()
        raw:write(S.be32(#body) .. body)
        local v, msg = ch:receive()
        local steps = chain_steps(keys)
        local what = ("%s, %d keys (seed %d): %d steps"):format(name, n, SEED, steps)
        if v == nil then
          assert.matches("hash flooding", msg, what)
          assert.is_true(steps > 8 * n, what .. ", refused")
        else
          assert.is_true(steps <= 8 * n, what .. ", taken")
        end
        if name:match("^collide") then assert.is_nil(v, what) end
        raw:close()
        ch:close()
      end
    end
  end)
end)
