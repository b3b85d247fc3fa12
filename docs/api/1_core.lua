-- The core module, events and streams (section "core" of docs/api.md).
-- See tools/gendocs.lua for the format.
return {
  section = "core",
  module = "lipc",
  module_text = [[The core module: tasks, timers, signals, process information and the
standard streams. `lipc.spawn`, `lipc.fork`, `lipc.pipe`, `lipc.net` are the other modules.]],
  classes = {
    {name = "lipc.emitter", var = "obj", text = "Every lipc object is an event emitter."},
    {name = "lipc.handle", extends = "lipc.emitter", var = "handle",
     text = "An object over a libuv handle (timers, signal watchers, streams, servers, children)."},
    {name = "lipc.cond", var = "cond", text = "A condition tasks wait on (`lipc.cond()`)."},
    {name = "lipc.task", extends = "lipc.emitter", var = "task",
     text = "A task started by `lipc.go` or `scope:go`.", events = {"cancel(reason: string)"}},
    {name = "lipc.scope", extends = "lipc.emitter", var = "scope",
     text = "The scope `lipc.scope` passes to its function.", events = {"cancel(reason: string)"}},
    {name = "lipc.timer", extends = "lipc.handle", var = "timer"},
    {name = "lipc.signal", extends = "lipc.handle", var = "watcher",
     text = "A signal watcher (`lipc.on_signal`)."},
    {name = "lipc.stream", extends = "lipc.handle", var = "s",
     text = "One stream type serves stdio, pipes, Unix and TCP sockets and child processes' stdio.",
     events = {"data(chunk: string)", "end()", "drain()", "error(msg: string, code: string)", "close()"}},
    {name = "lipc.stream_stats", text = "What `stream:stats()` returns.",
     fields = {"bytes_read: integer", "bytes_written: integer", "reads: integer", "writes: integer",
               "queued: integer", "pending_writes: integer", "high_water_hits: integer"}},
    {name = "lipc.poll_state", text = "What `lipc.poll()` returns.",
     fields = {"mode: string", "max_us: integer", "budget_us: integer", "spins: integer",
               "hits: integer", "misses: integer", "turns: integer"}},
  },
  doc = {
[[## Conventions

- Modules return tables: `require "lipc"`, `"spawn"`, `"fork"`, `"pipe"`,
  `"net"` (also `lipc.spawn`, `lipc.fork`, `lipc.pipe`, `lipc.net`).
- Methods use `:`; options are tables; names are snake_case.
- **Tasks.** The main chunk, every listener, every timer callback and every
  `lipc.go` body runs in a task (a coroutine from a pool). Functions marked
  *(task)* wait without blocking the loop and may only be called inside a
  task; elsewhere they raise `"<name>: must be called inside a task
  (lipc.go)"` when called (`lines()` too, not at its first iteration), at
  the caller's line and naming the function called (`stream.read_all`,
  not the `stream.read` it uses).
- **Calls that wait, and why.** Only these park the task: `lipc.sleep`,
  `task:wait`, `cond:wait`, stream `read`, `read_all`, `lines`' iterator
  and `drain` (data or room to come), `child:wait` (the exit), channel
  `receive` and `drain`, `server:accept` (a connection), `spawn.run` and
  `spawn.exec` (the output, then the exit), `pool:call` (the answer), and
  three calls that wait *only in a task*, so that they return a usable
  object or the failure as `nil, msg, code`: `net.connect` and
  `pipe.connect` (the connection) and `pipe.open(path, "w")` (a reader).
  Node's shape works with these too: in a task they still emit `connect` /
  `open` on the next turn, for a listener added after the call; passed a
  connect listener (`net.connect(opts, fn)`), a connect never waits, as in
  Node, and a failure is an `error` event. Code that uses the result of
  one of them that failed (`nil`) gets an error that names the failure
  (`attempt to index a nil value (local 'client')` then `(a lipc call
  before it had failed, returning nil, "ECONNREFUSED: ...")`).
- **Errors.** Wrong argument types raise errors naming the function and the
  argument. System failures are returned as `nil, message, code`, e.g.
  `nil, "ECONNREFUSED: connection refused (127.0.0.1:9)", "ECONNREFUSED"`,
  and objects emit `error(message, code)`. An `error` event with no
  listener, and an error thrown by a task or listener, is *uncaught*: its
  message and traceback go to stderr and the process exits with status 1.
- **Exit.** The process ends when nothing is pending (no active handle, no
  pending request), on `lipc.exit(code)` / `os.exit(code)`, or after an
  uncaught error. Queued writes (stream writes, channel messages) are
  flushed first, for at most 2 seconds.
- **Editors.** `types/*.lua` (generated with this page from `docs/api/*.lua`)
  are LuaLS `---@meta` files: add `types/` to `workspace.library`.

## Events: every object]],
    {table = {"method", "meaning"},
      {"obj:on(name: string, fn: function): lipc.emitter",
       text = "call `fn(...)` on every `name` event; returns `obj`"},
      {"obj:once(name: string, fn: function): lipc.emitter", text = "only the next one"},
      {"obj:off(name?: string, fn?: function): lipc.emitter",
       text = "remove one registration of `fn`, or all of `name`; `off()` removes all"},
      {"obj:emit(name: string, ...: any): integer",
       text = "call the listeners (each in its own task); returns how many"},
      {"obj:listeners(name: string): function[]", text = "array of the listening functions"},
      {"handle:close()",
       text = "every object over a handle (timer, watcher, stream, server, child) closes with "
         .. "`close()`: idempotent, also `__close`; `close` is emitted once it is closed"},
    },
[[Listeners added while an event is being emitted are called from the next
emit on.]],
    {list = true,
      {"lipc.emitter(t?: table): table",
       text = "makes a table `t` (or a new one) an emitter (for objects written in Lua)."},
    },
[[## `lipc` — the core module

### Tasks]],
    {list = true,
      {"lipc.go(fn: function, ...: any): lipc.task",
       text = "start `fn(...)` as a task now; it runs until it first waits, then the caller goes on "
         .. "with the task object."},
      {"lipc.in_task(): boolean", ret = "boolean."},
      {"task:wait(): any", task = true,
       text = "`fn`'s results once it has returned; `nil, err, \"ERROR\"` when it raised `err` "
         .. "(`\"ECANCELED\"` instead of `\"ERROR\"` for an `ECANCELED` error raised after it was "
         .. "cancelled). A task that waits for itself raises."},
      {"task:cancel(reason?: string): boolean",
       text = "cancel it: the wait it is in, and every later one, returns `nil, \"ECANCELED: operation "
         .. "canceled (reason)\", \"ECANCELED\"`; the scopes it opened are cancelled; `cancel` is "
         .. "emitted. `false` when it had ended or was cancelled before"},
      {"task:status(): string",
       text = "`\"running\"`, `\"done\"` (returned), `\"failed\"` (raised) or `\"cancelled\"` "
         .. "(ended after `cancel`)"},
      {"task:cancelled(): boolean", text = "whether `cancel` reached it"},
      {"lipc.scope(fn: fun(scope: lipc.scope): any, opts?: {timeout?: number}): any", task = true,
       text = [[runs `fn(scope)` in the calling task;
tasks started with `scope:go` belong to the scope. Returns `fn`'s results
once `fn` and all of them have ended (it waits for them). The first error
(of `fn` or of a task) cancels the rest, which are waited for, and is then
raised again. After `opts.timeout` ms everything in the scope is cancelled
and it returns `nil, "ETIMEDOUT: scope timed out after N ms",
"ETIMEDOUT"`; `scope:cancel()`, or cancelling the task that opened it,
gives `nil, "ECANCELED: ...", "ECANCELED"`. Scopes nest: an outer deadline
reaches the tasks of inner scopes. Once the scope is left, the caller's
waits work again.]]},
      {"scope:go(fn: function, ...: any): lipc.task",
       text = "start `fn(...)` as a task of the scope (cancelled at once when the scope is); raises once "
         .. "the scope has ended"},
      {"scope:cancel(reason?: string): boolean",
       text = "cancel the scope: its tasks, the waits of `fn`, its inner scopes; emits `cancel`. "
         .. "`false` when it was cancelled or had ended before"},
      {"scope:cancelled(): boolean", text = "whether it was cancelled"},
      {"lipc.shield(fn: function, ...: any): any", task = true,
       text = "`fn(...)`'s results; its waits are not cancelled (cleanup that must wait, such as a "
         .. "child's exit after a kill). A cancellation that came meanwhile applies after it"},
      {"lipc.cond(): lipc.cond", "cond:wait(timeout_ms?: integer): any", "cond:signal(...: any)",
       "cond:broadcast(...: any)", "cond:waiting(): integer",
       sig = "`lipc.cond()`", ret = "a condition:",
       text = [[`cond:wait([timeout_ms])` *(task)* returns
the values given to `cond:signal(...)` (wakes the oldest waiter) or
`cond:broadcast(...)` (wakes all), or `nil, "timeout"`;
`cond:waiting()` → count. A wait without a timeout does not keep the
process alive by itself.]]},
    },
[[**Cancellation.** Every wait (`sleep`, `cond:wait`, `read`, `drain`,
`receive`, `accept`, `child:wait`, `task:wait`, `net.connect`, opening a
FIFO) returns `nil, "ECANCELED: operation canceled (reason)", "ECANCELED"`
when its task is cancelled. Nothing is raised, so `pcall` and
`assert(...)` behave as with any other failure; an `ECANCELED` error
raised by a cancelled task is not reported as uncaught. What the wait held
is released: a sleep's timer stops, a waiter leaves its queue (the next
message, connection or signal goes to the next waiter; bytes that arrive
later are kept for the next `read`), a connecting socket is closed. The
child of a cancelled `child:wait()` runs on. Cancellation sticks: a
cancelled task's later waits return the same at once (use `lipc.shield` to
wait during cleanup), and a CPU loop that never waits is not interrupted.
A task's error nobody waits for is uncaught, as before; one raised before
`lipc.go` returned is reported a loop turn later, so `lipc.go(f):wait()`
still gets it. `spawn`, `fork`, `spawn.run`
and `net.connect` take `opts.cancel` (a task or a scope).

### Timers]],
    {list = true,
      {"lipc.sleep(ms: integer)", task = true,
       text = [[; the delay counts from the call, however long Lua ran
before it in that loop turn (as for every lipc timeout). `lipc.sleep(0)`
yields to the loop: the task resumes after one full loop turn, its poll
for I/O included, so a task looping on `sleep(0)` does not starve the
other peers; tasks that yield in the same turn resume in that order.]]},
      {"lipc.set_timeout(ms: integer, fn: function): lipc.timer", ret = "timer;",
       text = "`fn` runs once in a task."},
      {"lipc.set_interval(ms: integer, fn: function): lipc.timer", ret = "timer;",
       text = "repeats every `ms` (0 means 1)."},
      {"timer:stop()", "timer:active(): boolean", "timer:ref()", "timer:unref()",
       sig = "`timer:stop()` (idempotent), `timer:active()` → boolean, `timer:ref()`, `timer:unref()`",
       text = "(an unref'd timer does not keep the process alive)."},
    },
[[- Timers with the same delay fire in the order they were created.

### Signals and processes]],
    {list = true,
      {"lipc.on_signal(name: string|integer, fn: fun(name: string)): lipc.signal", ret = "watcher;",
       text = [[`fn(name)` runs on each delivery.
Names: `"SIGINT"` or `"INT"`, or numbers. The watcher does not keep the
process alive (as in Node).]]},
      {"watcher:stop()", "watcher:ref()", "watcher:unref()",
       text = "stop watching; `ref()` makes the watcher keep the process alive, `unref()` undoes it."},
      {"lipc.kill(pid: integer, signal?: string|integer): true?, string?, string?",
       ret = "`true` or `nil, msg, code`", text = "(default `SIGTERM`)."},
    },
[[- SIGPIPE is ignored process-wide: writing to a closed pipe is an `EPIPE`
  error, never a death.

### Process information]],
    {list = true,
      {"lipc.pid: integer", "lipc.ppid: integer", text = "live values."},
      {"lipc.argv: string[]", sig = "`lipc.argv`",
       text = "`{exe_path, script, args...}`; the global `arg` is set as by `lua` (`arg[0]` the script)."},
      {"lipc.getenv(name: string): string?", "lipc.setenv(name: string, value?: string)",
       "lipc.env(): table<string, string>",
       sig = "`lipc.getenv(name)`, `lipc.setenv(name, value|nil)`, `lipc.env()` → table", text = "."},
      {"lipc.cwd(): string", "lipc.chdir(dir: string): true?, string?, string?", text = "."},
      {"lipc.hrtime(): integer", "lipc.now(): integer",
       sig = "`lipc.hrtime()` → monotonic nanoseconds (integer); `lipc.now()` → wall clock "
         .. "milliseconds since the epoch (integer)", text = "."},
      {"lipc.version: string", "lipc.versions: {lipc: string, lua: string, libuv: string}",
       sig = "`lipc.version` (`\"0.1.0\"`), `lipc.versions` → `{lipc, lua, libuv}`", text = "."},
      {"lipc.inspect(value: any, opts?: {depth: integer}): string",
       text = [[a readable one-line picture of any value, as Node's
`util.inspect`: strings quoted, tables with their contents (the sequence,
then the other keys sorted), `<cycle>` for a table met inside itself,
`{...}` past `opts.depth` (default 4), 100 entries a table and 10,000
bytes a string at most (the rest counted). The
prompt prints values with it.]]},
      {"lipc.null: lightuserdata",
       text = [[a message that is nil, as `receive()` and `message` listeners
give it (so that `receive()` returns nil only at a channel's end); sent, it
is nil. It is `cjson.null` (NULL as a light userdata).]]},
      {"lipc.exit(code?: integer|boolean)", text = [[inside a task: stops the running code at once,
flushes queued writes, exits with `code` (default 0; `true`/`false` as
in `os.exit`). `os.exit` is the same function.]]},
      {"lipc.handles(): {kind: string, active: boolean, id: lightuserdata, object: any}[]",
       ret = "the open handles as `{kind, active, id, object}`",
       text = [[(`lipc test` uses it to find leaks). Handles with no object of
their own (the timer of a task in `lipc.sleep` or `cond:wait`, the runtime's
SIGCHLD watcher) have only `id`, which tells them apart.]]},
      {"lipc.fds(): table<integer, string>",
       ret = "this process's open file descriptors: `{[fd] = what}`, `what` as `/proc/self/fd` "
         .. "says (`\"socket:[123]\"`, `\"pipe:[45]\"`, a path)", text = "."},
      {"lipc.mkdtemp(prefix?: string): string", ret = "path of a new private directory."},
      {"lipc.stream_from_fd(fd: integer): lipc.stream",
       ret = "a stream over an fd a parent handed down (a pipe, socket, tty or file).",
       text = "The stream owns `fd`: closing the stream closes it (or the copy it reads through: the original is closed at once)."},
      {"lipc.on_uncaught(fn?: fun(err: any, report: string)): function?",
       ret = "the handler it replaces",
       text = [[makes `fn` the handler of uncaught errors (an error
thrown by a task, listener or timer callback, an `error` event nobody
listens to): `fn(err, report)` gets the error value and the report that
would have been printed (message and traceback), and the process goes on
instead of exiting with status 1. `nil` restores the default. The handler
runs outside a task (start one with `lipc.go` to wait); an error in it is
reported with the original one, and the process exits with status 1.
`lipc test` uses it to fail the spec that was running.]]},
      {"lipc.poll(setting?: boolean|string|{max_us?: integer, mode?: string}): lipc.poll_state",
       ret = "the poll's state after the setting",
       text = [[the adaptive poll: after a loop turn that read
something and wrote something, the loop polls for more without blocking, for up to `max_us`
microseconds (default 50) since the last read, before it sleeps, so a peer
that answers at once finds it awake (README, "Performance"). `false` turns
it off, `true` on everywhere, `"auto"` (the default) on only where it can
win: more than one CPU to run on and a load average no higher than their
count. A table sets `max_us` (1-10000) and `mode` (`"on"`, `"off"`,
`"auto"`; default `"on"`). The state: `mode`, `max_us`, `budget_us` (the
window it adapted to: it grows while polls find data, stays whole when a
spin that found data waits out its window, halves after one that found
none and drops to 0), and counts: `spins` (polls started), `hits` (reads found
while polling), `misses` (polls that ended without one), `turns` (loop
turns spent polling), `collects` (Lua collector steps run while polling),
`empty_us` (microseconds in polling turns that found nothing: the CPU the
poll cost beyond what a sleep would).
`LIPC_POLL=0` (or `off`), `1` (`on`), `auto` or a
number of microseconds (on) sets it at start.]]},
      {"lipc.run(): integer", text = [[with stock `lua5.4` (`require "lipc"` through the
`lipc.so` module): runs the event loop until nothing is pending and
returns the exit status. Raises when the loop is already running. A
script that sets up timers, tasks or I/O and never calls it gets a warning
on stderr when the state closes (nothing of it ran).]]},
    },
[[### Standard streams
`lipc.stdin`, `lipc.stdout`, `lipc.stderr` are streams, made on first use.
stdout and stderr are written synchronously (as Node does on Linux), so an
fd shared with children stays blocking and nothing is lost at exit; they
flush Lua's own `print`/`io.write` buffer first so output stays in order.
stdin reads from a tty, a pipe (reopened so that making it non-blocking
does not affect other processes sharing it) or a file.]],
    {list = true,
      {"lipc.stdin: lipc.stream", "lipc.stdout: lipc.stream", "lipc.stderr: lipc.stream",
       text = "the standard streams."},
    },
[[## Streams

One stream type serves stdio, pipes, Unix and TCP sockets and child
processes' stdio.]],
    {table = {"method", "meaning"},
      {"s:write(data: string|string[], cb?: fun(err?: string)): boolean?, string?, string?",
       text = [[`data` is a string or an array of strings (one `writev`); returns `true` while the
queue is under the high-water mark (1 MiB), `false` over it (`drain` follows), `nil, msg, code`
after shutdown/close (`ERR_STREAM_WRITE_AFTER_END`) or on error. `cb(err)` runs when written.]]},
      {"s:shutdown(cb?: fun(err?: string))",
       text = "flush, then end our side (Node's `end`): sockets half-close, pipes close"},
      {"s:close()", text = "close now (idempotent; also `__close`, so `local s <close> = ...`)"},
      {"s:pause()", "s:resume()", text = "stop/start `data` events"},
      {"s:pipe(dest: lipc.stream, opts?: table): lipc.stream",
       sig = "`s:pipe(dest[, {[\"end\"] = false}])`",
       text = "copy to `dest` honouring backpressure; ends `dest` at the end unless told not to"},
      {"s:read(): string?, string?, string?", task = true,
       text = "next chunk, `nil` at the end, `nil, msg, code` on error"},
      {"s:lines(): fun(): string?", task = true, text = "iterator over lines (without `\"\\n\"`)"},
      {"s:read_all(): string?, string?, string?", task = true,
       text = "the rest of the stream as one string"},
      {"s:drain()", task = true,
       text = "wait until the write queue is under the high-water mark (several tasks may wait)"},
      {"s:set_high_water(bytes: integer)", "s:set_half_open(on: boolean)",
       sig = "`s:set_high_water(bytes)`, `s:set_half_open(bool)`",
       text = "tuning; half-open keeps a socket writable after the peer's end"},
      {"s:state(): table", text = "`{open, ended, shut, readable, writable, flowing, queued, high_water}`"},
      {"s:stats(): lipc.stream_stats",
       text = [[counters: `{bytes_read, bytes_written, reads, writes, queued, pending_writes,
high_water_hits}` (reads/writes are calls; `queued` bytes not yet written; `high_water_hits`
how often a write went over the high-water mark)]]},
      {"s:fileno(): integer", "s:ref()", "s:unref()", text = ""},
      {"s:set_raw_mode(on: boolean): true?, string?, string?",
       text = "a terminal's raw mode (no line editing or echo; ^C arrives as a byte), as Node's "
         .. "`setRawMode`; `nil, msg, \"ENOTTY\"` on other streams. The mode lipc found comes back "
         .. "when it ends"},
      {"s:channel(opts?: table): lipc.channel",
       text = "a message channel over this stream (see fork: Channel API)"},
    },
[[Events: `data(chunk)`, `end`, `drain`, `error(msg, code)`, `close`.
A `data` listener puts the stream in flowing mode (as in Node). A stream
reads from the kernel only while somebody wants bytes — a task in `read()`,
a flowing stream, or a message channel — so a slow consumer makes the
writer on the other side feel backpressure rather than growing memory.
After the peer ends (`end`) a stream closes by itself once its own writes
are flushed, unless it is half-open.]],
  },
}
