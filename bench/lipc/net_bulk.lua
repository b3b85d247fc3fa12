-- tcp_bulk / unix_bulk (lipc): the parent listens (net server on 127.0.0.1
-- port 0, or a pipe server on a Unix socket path in $BENCH_TMP or /tmp) and
-- counts the bytes of every sock:read() chunk until EOF; a forked child
-- connects and writes BYTES as 1 MiB strings (sock:drain() whenever write
-- returns false), then shuts down. The parent times from the connection to
-- EOF. MB = 10^6 bytes.
--   lipc net_bulk.lua tcp|unix [bytes]   -> RESULT tcp_bulk|unix_bulk <n> MB/s
local C = dofile((debug.getinfo(1, "S").source:match("^[@=]?(.*/)") or "./") .. "common.lua")
local lipc = require "lipc"
local net = require "net"
local pipe = require "pipe"

local CHUNK = 1 << 20
local argv = C.args(...)

if argv[1] == "client" then
  local total = math.tointeger(tonumber(argv[2]))
  local where = argv[3]
  local sock
  if where:match("^%d+$") then
    sock = C.check(net.connect({host = "127.0.0.1", port = math.tointeger(tonumber(where))}))
  else
    sock = C.check(pipe.connect(where))
  end
  local buf = string.rep("\0", CHUNK)
  local left = total
  while left > 0 do
    local k = math.min(left, CHUNK)
    left = left - k
    if not sock:write(k == CHUNK and buf or buf:sub(1, k)) then sock:drain() end
  end
  -- flush, send FIN, then leave (the open channel to the parent would keep
  -- the child alive otherwise)
  sock:shutdown(function() lipc.exit(0) end)
  return
end

local kind = argv[1]
if kind ~= "tcp" and kind ~= "unix" then error("usage: net_bulk.lua tcp|unix [bytes]") end
local total = C.count(argv[2], 1073741824)
local path = string.format("%s/lipc-bulk-%d.sock", C.tmpdir(), math.random(1, 1 << 30))
local server
local function on_connection(sock)
  local t0 = C.now()
  local got = 0
  while true do
    local d = sock:read()
    if d == nil then break end
    got = got + #d
  end
  local t1 = C.now()
  sock:close()
  server:close()
  if kind == "unix" then os.remove(path) end
  if got ~= total then error(string.format("read %d of %d bytes", got, total)) end
  C.result(kind .. "_bulk", total / 1e6 / C.secs(t0, t1), "MB/s", 1)
end

local where
if kind == "tcp" then
  server = net.create_server(on_connection)
  C.check(server:listen(0, "127.0.0.1"))
  where = tostring(server:address().port)
else
  os.remove(path)
  server = pipe.create_server(on_connection)
  C.check(server:listen(path))
  where = path
end
local fork = require "fork"
C.check(fork(C.script(), {"client", tostring(total), where}))
