-- remote_pool_worker.lua - a worker of remote_pool.lua: counts the primes
-- in a range and says which host it runs on (the address sshd took the
-- connection on, or HOST from a local launcher).
local fork = require "fork"
local conn = os.getenv("SSH_CONNECTION")
local host = conn and conn:match("^%S+ %S+ (%S+)") or os.getenv("HOST") or "?"

local function is_prime(n)
  if n < 2 then return false end
  for d = 2, math.floor(math.sqrt(n)) do
    if n % d == 0 then return false end
  end
  return true
end

fork.serve(function(job)
  local count = 0
  for n = job.from, job.to do
    if is_prime(n) then count = count + 1 end
  end
  return {host = host, primes = count}
end)
