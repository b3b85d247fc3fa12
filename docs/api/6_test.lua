-- `lipc test` and the lipc.test module (section "test" of docs/api.md).
-- Format: tools/gendocs.lua.
return {
  section = "test",
  module = "lipc.test",
  module_text = [[Helpers for busted specs of topologies (`require "lipc.test"`), run by
`lipc test`: what a helper starts in a spec is stopped and removed after it.]],
  classes = {
    {name = "lipc.test.capture", var = "cap",
     text = "A child's output as it arrives (`lipc.test.capture`, `worker.output`).",
     fields = {"stdout: string", "stderr: string", "output: string"}},
    {name = "lipc.test.worker", extends = "lipc.fork.child",
     text = "A worker started by `lipc.test.worker`: a forked child, or with `fake_peer` a child "
       .. "whose channel the test plays byte by byte.",
     fields = {"output: lipc.test.capture", "peer: lipc.stream?"}},
    {name = "lipc.test.worker_options", extends = "fork.options",
     text = "Options of `lipc.test.worker`: `fork`'s, plus `fake_peer`.",
     fields = {"fake_peer: boolean"}},
  },
  doc = {
[[## Testing: `lipc test` and `lipc.test`

`lipc test [--timeout MS] [busted options] [paths...]` runs the busted specs
of the project in the current directory (its `.busted` file too) in this
lipc; busted's options and output formats (`-o TAP`, `-o junit`...) are
unchanged. What it adds:
- **A task and a deadline per block.** Each `it`, and each `before_each`,
  `after_each`, `finally`, `setup` and `teardown`, runs in its own task,
  so coroutine-style calls work everywhere. A block that has not finished
  by its deadline fails with its name, the deadline and where it waits,
  and the run goes on. The deadline: `lipc.test.timeout(ms)` in the spec
  (or in a `describe` block, for its specs), else `--timeout`, else
  `LIPC_TEST_TIMEOUT`, else the `timeout` key of `.busted`, else 30000 ms.
  A loop that never waits, or a blocking call (`os.execute`), cannot be
  stopped.
- **Leaks fail the spec.** After the spec's last `after_each`, what it
  opened and left open — handles (servers, sockets, timers, children,
  watchers), tasks still in `lipc.sleep` or `cond:wait`, running child
  processes, file descriptors (sockets, pipes, files) — fails it, listed
  (`spec left open: tcp server 127.0.0.1:40123, child process 4242 (sleep
  30)`), after a grace of 500 ms for what is on its way out. The harness
  then closes the handles and kills the children. What is left open after
  the last spec (a `describe`-level server nobody closed) fails the run.
- **Uncaught errors fail the spec.** An error thrown by a listener, timer
  or task while a spec runs fails that spec (the block running, or the
  spec once it ends), naming it; while no spec runs, it is an error of the
  `describe` block being run. The run goes on either way
  (`lipc.on_uncaught`).
- The exit status is 0 when everything passed, non-zero otherwise.

### `lipc.test`]],
    {list = true,
      {"lipc.test.timeout(ms: integer)",
       text = [[the deadline of the spec running now (and of the block running),
or, called in a `describe` block, of its specs.]]},
      {"lipc.test.tmpdir(): string",
       text = "a new private directory (under `$TMPDIR` or `/tmp`), removed with what is in it after the spec."},
      {"lipc.test.free_port(host?: string): integer",
       text = "a TCP port nobody listens on now (default host `127.0.0.1`)."},
      {"lipc.test.wait_for(pred: fun(): any, ms?: integer): any, string?", task = true,
       text = [[calls `pred()` every 5 ms until it returns a true value,
and returns that value; `nil, msg` after `ms` (default 5000).]]},
      {"lipc.test.eventually(fn: function, ms?: integer): any", task = true,
       text = [[calls `fn()` every 5 ms until it does not raise (assertions
inside), and returns what it returns; after `ms` (default 5000) raises its
last failure, noting how long it kept failing.]]},
      {"lipc.test.capture(child: lipc.child|lipc.stream): lipc.test.capture",
       text = [[collects a child's `stdout` and `stderr` (or a stream's
data) from now on: `cap.stdout`, `cap.stderr`, `cap.output` (both, in
arrival order) are the strings so far.]]},
      {"cap:wait_for(pattern: string, ms?: integer): any, string?", task = true,
       text = [[the captures of `pattern` (a Lua pattern) in `cap.output`
once it appears; `nil, msg` (with the output) after `ms` (default 5000) or
when the output ended without it.]]},
      {"lipc.test.worker(script: string, args?: string[], opts?: lipc.test.worker_options): lipc.test.worker?, string?, string?",
       text = [[starts `script` as a forked worker (`fork`), its output
captured in `worker.output` (stdio `{"ignore", "pipe", "pipe"}` unless
`opts.stdio` says otherwise). After the spec it is stopped: its channel
disconnected and SIGTERM, then SIGKILL, each given 2 s. With
`opts.fake_peer`, the worker's end of the channel (`fork.parent` in the
worker) is `worker.peer`, a raw stream: the test writes the bytes the worker
reads, frames or not, and reads what it sends (`lipc.test.frame`,
`lipc.test.read_frame`).]]},
      {"lipc.test.fake_peer(): lipc.stream, lipc.stream",
       text = [[`peer, other`: two connected streams (a socketpair), closed
after the spec. Give `other` (or `other:channel()`) to the code under test;
the test writes and reads raw bytes on `peer`.]]},
      {"lipc.test.frame(value: any): string", task = true,
       text = "the bytes a channel sends for `value`: one native frame (docs/wire-format.md)."},
      {"lipc.test.read_frame(stream: lipc.stream): any, string?", task = true,
       text = [[reads one native frame from a raw stream (a fake peer) and
returns its value (`lipc.null` for nil, as `receive()`); `nil, msg` when
the stream ended first or the frame does not decode. Bytes after the frame stay for the next call.]]},
      {"lipc.test.exits_within(child: lipc.child, ms: integer): integer?, string?", task = true,
       text = [[`code, signal` once `child` has exited; when it has not
after `ms`, kills it and fails the spec.]]},
    },
[[Example (see also the README's "Testing your topologies" and
examples/kv, a service with its specs):

```lua
local t = require "lipc.test"
it("answers a ping, then stops when its parent goes", function()
  local w = t.worker("service.lua")
  w:send({op = "ping"})
  assert.are.same({op = "pong"}, w:receive())
  w:disconnect()
  assert.are.equal(0, t.exits_within(w, 1000))
end)
```]],
  },
}
