-- security_spec.lua - the secure defaults (issue #7), each shown from the
-- outside: a Unix socket file is 0600 unless `mode` says otherwise; `net`
-- listens on loopback unless a host is named; `spawn` never goes through
-- a shell unless asked; no channel fd or listening socket leaks into a
-- spawned or forked child.
local lipc = require "lipc"
local fork = require "fork"
local spawn = require "spawn"
local pipe = require "pipe"
local net = require "net"
local S = require "support"

-- The lines of out as a set.
local function line_set(out)
  local set = {}
  for line in out:gmatch("[^\n]+") do set[line] = true end
  return set
end

-- The targets of a process's fds ("socket:[123]", "pipe:[45]", "/dev/null").
local function fd_links(pid)
  return line_set(S.sh(("for f in /proc/%d/fd/*; do readlink \"$f\"; done 2>/dev/null"):format(pid)))
end

local function sockets(links)
  local r = {}
  for l in pairs(links) do
    if l:match("^socket:") then r[#r + 1] = l end
  end
  return r
end

describe("secure defaults", function()

  it("a Unix socket file is created 0600", function()
    local path = S.tmpdir() .. "/s.sock"
    local srv = assert(pipe.create_server(function() end):listen(path))
    assert.are.equal("600\n", (S.sh("stat -c %a " .. S.shell_quote(path))))
    srv:close()
  end)

  it("a Unix socket file gets the mode asked for", function()
    local path = S.tmpdir() .. "/s.sock"
    local srv = assert(pipe.create_server(function() end):listen(path, {mode = "0660"}))
    assert.are.equal("660\n", (S.sh("stat -c %a " .. S.shell_quote(path))))
    srv:close()
  end)

  it("net listens on loopback unless a host is named", function()
    local srv = assert(net.create_server(function() end):listen(0))
    assert.are.equal("127.0.0.1", srv:address().address)
    srv:close()
  end)

  it("spawn passes arguments as they are, with no shell", function()
    local r = assert(spawn.run("echo", {"$HOME; echo pwned", "*", "`id`"}))
    assert.are.equal("$HOME; echo pwned * `id`\n", r.stdout)
  end)

  it("spawn does not read a command line as a program plus arguments", function()
    local r, _, code = spawn.run("echo hi")
    assert.is_nil(r)
    assert.are.equal("ENOENT", code)
  end)

  it("spawn goes through a shell only when asked", function()
    local r = assert(spawn.run("echo \"$0\"", {}, {shell = true}))
    assert.are.equal("/bin/sh\n", r.stdout)
  end)

  it("no channel fd or listening socket reaches a spawned child", function()
    local tcp = assert(net.create_server(function() end):listen(0))
    local unix = assert(pipe.create_server(function() end):listen(S.tmpdir() .. "/s.sock"))
    local ca, cb = S.channel_pair()
    local r = assert(spawn.run("sh", {"-c", "for f in /proc/$$/fd/*; do readlink $f; done"}))
    assert.are.same({}, sockets(line_set(r.stdout)))
    ca:disconnect()
    cb:disconnect()
    tcp:close()
    unix:close()
  end)

  it("a forked child has only its own channel, none of the parent's sockets", function()
    local tcp = assert(net.create_server(function() end):listen(0))
    local unix = assert(pipe.create_server(function() end):listen(S.tmpdir() .. "/s.sock"))
    local ca, cb = S.channel_pair()
    local mine = fd_links(lipc.pid)
    local child = assert(fork(S.write_file(S.tmpdir() .. "/child.lua", [[
      local parent = require("fork").parent
      parent:send(require("lipc").pid)
      parent:receive()
    ]])))
    local pid = child:receive()
    local theirs = sockets(fd_links(pid))
    assert.are.equal(1, #theirs, "the channel only: " .. table.concat(theirs, " "))
    assert.is_nil(mine[theirs[1]])
    child:send("bye")
    child:wait()
    ca:disconnect()
    cb:disconnect()
    tcp:close()
    unix:close()
  end)
end)
