-- stream_spec.lua - the stream object every module shares, over real
-- pipe(2) pairs: pulled and flowing reads, writes with a high-water mark
-- and drain, backpressure with a slow reader, shutdown, close, pipe().
local lipc = require "lipc"
local pipe = require "pipe"

local function pair()
  return assert(pipe.new())
end

describe("streams", function()
  it("read() returns chunks in order, then nil at the end", function()
    local r, w = pair()
    lipc.go(function()
      w:write("one ")
      lipc.sleep(5)
      w:write({"two ", "three"})
      w:shutdown()
    end)
    assert.are.equal("one two three", r:read_all())
    assert.is_nil(r:read())
    r:close()
  end)

  it("lines() splits across chunks and keeps a last line without newline", function()
    local r, w = pair()
    lipc.go(function()
      w:write("alpha\nbe")
      lipc.sleep(5)
      w:write("ta\n\ngamma")
      w:shutdown()
    end)
    local got = {}
    for line in r:lines() do got[#got + 1] = line end
    assert.are.same({"alpha", "beta", "", "gamma"}, got)
    r:close()
  end)

  it("data, end and close events come in order", function()
    local r, w = pair()
    local log, done = {}, lipc.cond()
    r:on("data", function(c) log[#log + 1] = "data:" .. c end)
    r:on("end", function() log[#log + 1] = "end" end)
    r:on("close", function() log[#log + 1] = "close"; done:signal() end)
    w:write("x")
    w:shutdown()
    done:wait(2000)
    assert.are.same({"data:x", "end", "close"}, log)
  end)

  it("pause() stops data events and resume() brings them back", function()
    local r, w = pair()
    local got = {}
    r:on("data", function(c) got[#got + 1] = c end)
    r:pause()
    w:write("held")
    lipc.sleep(20)
    assert.are.same({}, got)
    r:resume()
    lipc.sleep(20)
    assert.are.same({"held"}, got)
    w:close()
    r:close()
  end)

  it("backpressure: a slow reader makes write return false, drain waits, nothing is lost", function()
    local r, w = pair()
    w:set_high_water(64 * 1024)
    local chunk = ("z"):rep(16 * 1024)
    local sent, falses, total = 0, 0, 4 * 1024 * 1024
    local received = 0
    lipc.go(function()
      while true do
        local c = r:read()
        if not c then break end
        received = received + #c
        lipc.sleep(1) -- a slow consumer
      end
    end)
    while sent < total do
      local ok = w:write(chunk)
      sent = sent + #chunk
      assert.is_true(w:state().queued <= 64 * 1024 + #chunk)
      if ok == false then
        falses = falses + 1
        assert.is_true(w:drain())
      end
    end
    w:shutdown()
    while received < total do lipc.sleep(5) end
    assert.are.equal(total, received)
    assert.is_true(falses > 0, "write never reported backpressure")
    assert.is_true(w:stats().high_water_hits > 0)
    r:close()
  end)

  it("several writer tasks can wait in drain(); nothing they write is lost", function()
    local r, w = pair()
    w:set_high_water(16 * 1024)
    local chunk, done = ("d"):rep(8 * 1024), 0
    for _ = 1, 3 do
      lipc.go(function()
        for _ = 1, 40 do
          if not w:write(chunk) then assert.is_true(w:drain()) end
        end
        done = done + 1
      end)
    end
    local got = 0
    while done < 3 or got < 3 * 40 * #chunk do
      local c = r:read()
      got = got + #c
    end
    assert.are.equal(3 * 40 * #chunk, got)
    assert.is_true(w:stats().high_water_hits > 0)
    w:close()
    r:close()
  end)

  it("a stream nobody reads does not read: the writer feels it", function()
    local r, w = pair()
    local chunk = ("q"):rep(64 * 1024)
    local full = false
    for _ = 1, 64 do
      if w:write(chunk) == false then full = true; break end
    end
    assert.is_true(full)
    assert.is_true(r:state().readable)
    r:close()
    w:close()
  end)

  it("pipe() copies with backpressure and ends the destination", function()
    local r1, w1 = pair()
    local r2, w2 = pair()
    r1:pipe(w2)
    lipc.go(function()
      for i = 1, 200 do w1:write(("%05d"):format(i) .. ("."):rep(4000)) end
      w1:shutdown()
    end)
    local all = r2:read_all()
    assert.are.equal(200 * 4005, #all)
    assert.are.equal("00200", all:sub(-4005, -4001))
    r2:close()
  end)

  it("write after shutdown or close is an error value, not a crash", function()
    local r, w = pair()
    w:shutdown()
    local ok, msg, code = w:write("late")
    assert.is_nil(ok)
    assert.matches("write after", msg)
    assert.are.equal("ERR_STREAM_WRITE_AFTER_END", code)
    w:close()
    w:close() -- idempotent
    ok, msg, code = w:write("later")
    assert.is_nil(ok)
    assert.matches("write after close", msg)
    assert.are.equal("ERR_STREAM_WRITE_AFTER_END", code)
    r:close()
  end)

  it("writing to a pipe whose reader is gone is an EPIPE error event", function()
    local r, w = pair()
    r:close()
    lipc.sleep(5)
    local got = lipc.cond()
    w:on("error", function(msg, code) got:signal(msg, code) end)
    local ok, _, code = w:write(("x"):rep(100))
    if ok == nil then
      assert.are.equal("EPIPE", code)
    else
      local msg, c = got:wait(2000)
      assert.are.equal("EPIPE", c, msg)
    end
    w:close()
  end)

  it("a write callback runs once the bytes are written", function()
    local r, w = pair()
    local done = lipc.cond()
    w:write(("y"):rep(1000), function(err) done:signal(err or "ok") end)
    assert.are.equal("ok", done:wait(2000))
    w:close()
    r:close()
  end)

  it("<close> closes a stream when the scope ends", function()
    local closed = lipc.cond()
    local r, w = pair()
    do
      local rc <close> = r
      local wc <close> = w
      rc:on("close", function() closed:signal("closed") end)
      wc:write("bye")
    end
    assert.are.equal("closed", closed:wait(2000))
  end)

  it("set_raw_mode is for terminals: another stream says ENOTTY", function()
    local r, w = pair()
    local ok, msg, code = r:set_raw_mode(true)
    assert.is_nil(ok)
    assert.are.equal("ENOTTY", code)
    assert.matches("stream.set_raw_mode", msg)
    r:close()
    w:close()
  end)

  it("read() in a second task at once is refused, outside a task it says so", function()
    local r, w = pair()
    lipc.go(function() r:read() end)
    local ok, err = pcall(r.read, r)
    assert.is_false(ok)
    assert.matches("another task is already reading", err)
    ok, err = coroutine.wrap(function() return pcall(r.read, r) end)()
    assert.is_false(ok)
    assert.matches("must be called inside a task", err)
    w:close()
    lipc.sleep(5)
    r:close()
  end)

  -- A child lipc running code (lipc is required) with pipes as its
  -- stdin, stdout and fd 3.
  local function child_with_fd3(code)
    local spawn = require "spawn"
    local support = require "support"
    return assert(spawn(support.lipc, {"-e", 'local lipc = require "lipc"\n' .. code},
                        {stdio = {"pipe", "pipe", "inherit", "pipe"}}))
  end

  it("stream_from_fd wraps an fd a parent handed down", function()
    local child = child_with_fd3([[
      local s = lipc.stream_from_fd(3)
      s:write("hello through fd 3")
      s:shutdown()
    ]])
    child.stdin:close()
    assert.are.equal("hello through fd 3", child.stdio[4]:read_all())
    assert.are.equal(0, (child:wait()))
    local ok, err = pcall(lipc.stream_from_fd, -1)
    assert.is_false(ok)
    assert.are.equal("bad argument #1 to 'lipc.stream_from_fd' (bad fd)", err)
  end)

  it("stream_from_fd owns the fd: once the stream is closed, no copy is left open", function()
    local child = child_with_fd3([[
      local s = lipc.stream_from_fd(3)
      s:write("bye")
      s:close()
      lipc.sleep(20)
      print(io.open("/proc/self/fd/3") and "fd 3 open" or "fd 3 closed")
      lipc.stdin:read_all()                    -- lives on until the parent says
    ]])
    -- EOF comes while the child still lives: no copy of fd 3 is left open
    -- (else this read would last until the spec's deadline)
    assert.are.equal("bye", child.stdio[4]:read_all())
    child.stdin:close()
    assert.are.equal("fd 3 closed\n", child.stdout:read_all())
    assert.are.equal(0, (child:wait()))
  end)

  it("bad arguments name the method", function()
    local r, w = pair()
    local ok, err = pcall(w.write, w, 42)
    assert.is_false(ok)
    assert.matches("string or array of strings", err)
    ok, err = pcall(w.write, {}, "x")
    assert.is_false(ok)
    assert.matches("stream.write", err)
    r:close()
    w:close()
  end)
end)
