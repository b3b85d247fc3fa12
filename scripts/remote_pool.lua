-- remote_pool.lua - one parent feeds a pool of workers on two hosts. Each
-- host is a launcher (an ssh command line, say); the workers' code is
-- sent over the channel, so the hosts need only the lipc executable.
--   lipc scripts/remote_pool.lua                       two local "hosts"
--   lipc scripts/remote_pool.lua "ssh -T build1" "ssh -T build2"
-- LIPC_REMOTE_EXEC names the lipc on the hosts (default: `lipc`, or this
-- lipc for the local ones).
local lipc = require "lipc"
local fork = require "fork"

local dir = arg and arg[0] and arg[0]:match("^(.*)/[^/]*$") or "scripts"
local hosts, exec = {}, os.getenv("LIPC_REMOTE_EXEC")
for i, line in ipairs(arg) do
  local via = {}
  for word in line:gmatch("%S+") do via[#via + 1] = word end
  hosts[i] = via
end
if #hosts == 0 then -- `env HOST=...` is the smallest launcher
  hosts = {{"env", "HOST=local-a"}, {"env", "HOST=local-b"}}
  exec = exec or lipc.argv[1]
end

local pool = fork.pool(dir .. "/remote_pool_worker.lua",
                       {size = 2 * #hosts, hosts = hosts, exec_path = exec or "lipc"})
pool:started(30000) -- every worker up (or its host failing): calls spread over all
local per_host, total = {}, 0
lipc.scope(function(scope) -- returns once all 40 calls have
  for i = 1, 40 do
    scope:go(function()
      local r, err = pool:call({from = (i - 1) * 5000 + 1, to = i * 5000})
      if r then
        per_host[r.host] = (per_host[r.host] or 0) + 1
        total = total + r.primes
      else
        io.stderr:write("call ", i, ": ", err, "\n")
      end
    end)
  end
end)
print("primes up to 200000: " .. total)
local names = {}
for name in pairs(per_host) do names[#names + 1] = name end
table.sort(names)
for _, name in ipairs(names) do print(("  %s answered %d calls"):format(name, per_host[name])) end
pool:close()
