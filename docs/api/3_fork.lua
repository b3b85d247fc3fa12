-- The fork module and message channels (section "fork" of docs/api.md).
-- Format: tools/gendocs.lua.
return {
  section = "fork",
  module = "fork",
  module_text = "Child lipc (or Node) processes with a message channel; worker pools.",
  module_call = "fork(script: string, args?: string[], opts?: fork.options): lipc.fork.child?, string?, string?",
  classes = {
    {name = "fork.options", extends = "spawn.options", text = "Options of `fork` (and of `fork.pool`)."},
    {name = "lipc.channel", extends = "lipc.emitter", var = "ch",
     text = "A message channel (fork children, `fork.parent`, `stream:channel()`).",
     events = {"message(msg: any, handle?: userdata)", "disconnect()", "drain()",
               "error(msg: string, code: string)", "control(kind: integer, value: any)"}},
    {name = "lipc.channel_stats", text = "What `channel:stats()` returns.",
     fields = {"messages_sent: integer", "messages_received: integer", "bytes_sent: integer",
               "bytes_received: integer", "queued: integer", "pending: integer", "high_water_hits: integer",
               "receive_held: boolean", "pending_bytes: integer"}},
    {name = "lipc.fork.child", extends = "lipc.child",
     text = "A forked child: spawn's child plus the channel API.",
     events = {"spawn()", "exit(code?: integer, signal?: string)", "close(code?: integer, signal?: string)",
               "message(msg: any, handle?: userdata)", "disconnect()", "drain()",
               "error(msg: string, code: string)"}},
    {name = "lipc.fork.pool", extends = "lipc.emitter", var = "pool", text = "A pool of forked workers."},
    {name = "fork.pool_options", extends = "fork.options",
     fields = {"size: integer", "per_worker: integer", "args: string[]", "hosts: string[][]",
               "backoff: integer", "backoff_max: integer"}},
  },
  doc = {
[[## fork

### `fork(script[, args][, opts]) -> child | nil, msg, code`
Runs a child (`opts.exec_path`; `node` for a `.js`/`.mjs`/`.cjs` script;
else this lipc executable, or in an embedder the embedder itself when its
`main()` calls `lipc_worker_main`, and otherwise (an embedder, stock
`lua5.4`) the `lipc` executable that comes with the library: see
"Embedding" in the README) on `script` with `args`, and a
message channel on an `"ipc"` stdio entry (added at fd 3 unless `opts.stdio`
has one). The child finds it through `LIPC_CHANNEL_FD` (native) or
`NODE_CHANNEL_FD` + `NODE_CHANNEL_SERIALIZATION_MODE=json` (JSON mode).
A script that cannot be read (missing, unreadable, a directory; relative
paths against `opts.cwd`) starts nothing: `nil, msg, code` (`ENOENT`,
`EACCES`, `EISDIR`).
`opts`: everything `spawn` takes, plus the options below. A bad option
raises before anything starts, naming `fork` and its argument
(`bad argument #3 to 'fork' (opts.exec_path: string expected, got number)`),
spawn's options included.]],
    {list = true, options = "fork.options",
      {"exec_path: string", text = "the program to run (default: this lipc, or `node`)."},
      {"exec_argv: string[]", text = "arguments before the script."},
      {"serialization: \"lipc\"|\"json\"", sig = "`serialization`",
       text = "`\"lipc\"` default, `\"json\"`; automatic for Node scripts."},
      {"max_message: integer", text = "bytes of one value (a handle's marker is not counted), default 64 MiB, enforced both ways."},
      {"high_water: integer", text = "bytes of unsent frames before `send` returns false, default 64 KiB."},
      {"receive_high_water: integer", text = [[bytes of received messages nobody took yet before
the channel stops reading from the child, default 1 MiB (receive backpressure, below).]]},
      {"max_decoded: integer", text = [[bytes the Lua values of one received message may
take, estimated before any is built (64 a table, 16 an array element, 32 a map entry, 40 + its
length a string); default twice `max_message`, at least 16 MiB. A frame or JSON line over it
ends the channel with `ERR_IPC_MESSAGE_TOO_LARGE`, as one over `max_message` does: a 1-byte
empty map would otherwise take ~80 bytes, 8 MB of them 640 MB. A frame of 64 KiB or more
is checked and built in slices of 16 384 values, one a loop turn, so that other peers are
served meanwhile (8 MB of small integers took a second at once); the channel reads no more
until its message is delivered, in order. A channel closed meanwhile drops it. A JSON line
of 64 KiB or more is read the same way (a slice of tokens a turn).]]},
      {"via: string[]", text = [[a launcher: the worker runs on the far side of it (section
"Workers through a launcher" below).]]},
      {"ship: boolean", text = "with `via`: send the script and its modules (default true); false: `script` is a path over there."},
      {"modules: string[]", text = "with `via`: more modules to send, by name (found in `package.path`)."},
      {"start_timeout: integer", text = "with `via`: ms to wait for the worker's hello, default 30000."},
    },
[[The child object is spawn's child (pid, stdio, kill, wait, `spawn`, `exit`,
`close`, `error`) plus the channel API below and the field `channel`.
Events: `message(msg, handle)`, `disconnect` (after `exit` when the child
ended; at once after our own `disconnect()`), `drain`, `error(msg, code)`.]],
    {list = true, class = "lipc.fork.child",
      {"child.channel: lipc.channel", text = "its message channel."},
      {"child.process: lipc.child", text = "the process object underneath (spawn's child)."},
      {"child.connected: boolean", text = "whether the channel is open."},
      {"child:send(value: any, handle?: userdata, opts?: table, cb?: fun(err?: string, code?: string)): boolean",
       "child:drain(): boolean", "child:disconnect()", "child:pending(): integer",
       sig = "`child:send(...)`, `child:drain()`, `child:disconnect()`, `child:pending()`",
       text = "the channel's (below)."},
      {"child:receive(): any, userdata|string?, string?", task = true,
       text = [[the channel's (below), except that when the child ends the
channel, it waits for its exit and tells how it ended: `nil` after
status 0 (or our own `disconnect()`), `nil, msg, "ERR_WORKER_EXIT"` after
another status or a signal, with the script, pid and status in `msg` (a
worker with a syntax error, an uncaught error or a crash is not taken for
one that finished), and the first line of the worker's error when its
script failed (`"fork: worker w.lua (pid 812) exited with code 1:
w.lua:3: boom"`; the worker sends it as a control frame,
docs/wire-format.md).]]},
      {"child:stats(): table",
       text = [[counters of the child: `{messages_sent, messages_received, bytes_sent,
bytes_received, queued, high_water_hits, channel = ch:stats(), stdin = ..., stdout = ...,
stderr = ...}` (the channel's counters, and each stdio stream's `stats()`).]]},
    },
[[### Channel API (fork children, `fork.parent`, `stream:channel([opts])`)]],
    {list = true, class = "lipc.channel",
      {"send(value: any, handle?: userdata, opts?: table, cb?: fun(err?: string, code?: string)): boolean",
       sig = "`send(value[, handle[, opts]][, cb]) -> bool`",
       text = [[queues one message; false when
the unsent bytes are over the high-water mark (`drain` follows). Raises
on a value that cannot be sent (the message names the key path) or is
over `max_message`. `handle`: a net/pipe server or socket, passed with
SCM_RIGHTS (native mode, IPC pipes only). A sent socket is then ours no
more: it is paused at once and closed once its fd is written, as Node
does, unless `opts.keep_open` is true; a sent server stays open here too.
`cb(err, code)` runs once the frame (and its handle) is written. On a closed channel (our `disconnect()`, or the peer
gone): `cb("...", "ERR_IPC_CHANNEL_CLOSED")`, or without `cb` an `error`
event with that code on the child (or the channel), which is an uncaught
error when nobody listens, as in Node; returns false.]]},
      {"receive(): any, userdata|string?, string?", task = true, sig = "`receive()`",
       ret = "`msg, handle`",
       text = [[the next message; `nil` once
disconnected; `nil, msg, code` when the peer broke the protocol (after
the messages that came before the fault). A message that is nil (or
JSON `null`) arrives as `lipc.null`, here and at `message` listeners, and
`lipc.null` sends as nil: `nil` is only ever the end, so `local m =
ch:receive(); if m == nil then break end` reads every message (a `false`
message is one, so test `== nil`, not `not m`). Messages that arrive while
nobody receives and nobody listens for `message` wait in order, checked
but still encoded, and are built when taken (`pending()` counts them);
they stay to be taken after the channel closed. Several tasks may wait in
`receive()` on one channel: each message goes to one of them, the
longest-waiting first. **Listeners and `receive()` together:** a message
goes to every `message` listener *and* to the task waiting in
`receive()`, if one waits (as Node's `on("message")` beside `await
once(child, "message")`); while a listener exists, a message that
arrives with no task waiting is the listeners' only and is not kept for a
later `receive()` (a listener that only watches never piles messages up).]]},
      {"drain(): boolean", task = true, ret = "`bool`",
       text = "waits until the unsent bytes are under the high-water mark (several tasks may wait)."},
      {"disconnect()", "connected: boolean",
       sig = "`disconnect()`",
       text = [[sends what is queued, then closes; the peer's
`receive()` returns nil. `connected` is a boolean field.]]},
      {"pending(): integer", text = "messages received that nobody took yet."},
      {"stats(): lipc.channel_stats",
       text = [[counters: `{messages_sent, messages_received, bytes_sent, bytes_received,
queued, pending, high_water_hits, receive_held, pending_bytes}` (bytes are frame bytes; `queued`
unsent bytes; `high_water_hits` how often a `send` went over the high-water mark; `pending_bytes`
the frame bytes of the `pending` messages; `receive_held` whether the channel has stopped reading
from its peer for now, below).]]},
      {"ref()", "unref()", text = [[whether the channel keeps the process alive (by default it does
only while a task waits in `receive()` or a `message` listener exists).]]},
      {"stream(): lipc.stream?", text = "the stream the channel runs over."},
      {"deliver_queued()",
       text = "hands queued messages to `message` listeners (fork's child objects call it); internal."},
      {"bound(): function, function",
       text = "`send` and `receive` as closures over the channel that ignore their first argument (fork's child objects use them as their methods); internal."},
      {"exit_on_disconnect: boolean", sig = "`exit_on_disconnect`", text = "see `fork.parent`."},
      {"close()", text = [[closes the channel and its stream at once: what the stream still
reads (more bytes, the peer's end in the middle of a frame) is dropped, with no `message` or
`error` after it.]]},
      {"send_control(kind: integer, value: any): boolean",
       text = [[sends a control frame (docs/wire-format.md section 8) of
`kind` (1..255) carrying `value`; the peer's channel emits `control(kind, value)` on its target
instead of a message. A launched worker's hello and bye; internal.]]},
    },
[[- `stream:channel(opts)`: `serialization`, `max_message`, `high_water`,
  `receive_high_water`, `max_decoded`, `handles` (false: `send` refuses handles; for a
  stream that leaves the host).
- **Receive backpressure.** Once the messages nobody took yet (in
  `receive()` or through `message` listeners) weigh more than
  `receive_high_water` bytes (default 1 MiB; frame bytes, as
  `stats().pending_bytes` counts them), the channel stops reading from its
  stream; it reads on as they are taken. The peer's writes then wait in
  its kernel buffer and its own queue: its `send` returns false and its
  `drain()` waits, as for any slow reader. Nothing is lost, and the order
  is kept. What may come past the mark is one read (up to the socket
  buffer). Two peers that each wait in `drain()` and never receive
  meanwhile now wait for each other: receive in another task (or in a
  `message` listener) while sending. A forked child's leftovers are read
  once it has exited, so its `close` and `disconnect` come as before.
  Byte streams already behaved so: a stream reads only while a task waits
  in `read()`, or while it flows (`data` listeners, `resume()`); one
  nobody reads fills the kernel buffer and the writer's `write` turns
  false.
- Errors closing a channel: `ERR_IPC_MESSAGE_TOO_LARGE`,
  `ERR_IPC_BAD_MESSAGE` (garbage, truncated value, bad JSON),
  `ERR_IPC_BAD_HANDLE` (an fd the peer passed is not the kind it claims:
  a TCP listener sent as a pipe server, a connected socket as a server),
  `ERR_IPC_TRUNCATED` (the peer's stream ended inside a frame or line: it
  died or closed mid-write; told after the messages before it, to
  `receive()` and to `error` listeners, and never uncaught).

### Workers through a launcher (`opts.via`)
`fork(script, args, {via = {"ssh", "-T", "host"}})` *(task)* runs
`<via...> lipc --stdio-channel` (`opts.exec_path`: the lipc over there,
default `lipc` on its `PATH`) with the channel on the launcher's stdin and
stdout; `kubectl exec -i pod --`, `srun`, `docker exec -i c` and
`ip netns exec ns` are launchers too. The parent sends a hello with its
lipc version, the script's source, its arguments and the modules it
requires (`require "name"` literally, found in `package.path`, and those
they require; `opts.modules` adds more); the worker answers with its own.
`fork` returns once the worker said hello, or `nil, msg, code`:
`ERR_LAUNCH_FAILED` (the launcher ended first, with the end of its
stderr in `msg`: a refused key, an unknown host, lipc missing; or no
hello within `start_timeout`), `ERR_IPC_HANDSHAKE` (the launcher's stdout
carried something else, a login banner), `ERR_LIPC_VERSION` (the two
lipc versions differ; both are named), or spawn's error for a launcher
that cannot start. The launcher's stderr is passed on to ours.

The child object is a local fork's over the launcher process:
`wait()` gives the launcher's exit status (ssh's is the worker's),
`kill()` ends the launcher and through it the worker, `child.remote` is
`{pid, lipc, via, shipped, modules}`: the worker's pid and lipc version,
the launcher, whether the script was sent and the names of the modules
sent with it. When the worker's script ends it sends
a bye after its last message; a channel that ends without one makes
`receive()` return `nil, msg, "ERR_IPC_LINK_LOST"` (the connection
dropped or the worker died), and a child with `message` or `error`
listeners gets `error(msg, "ERR_IPC_LINK_LOST")` before `disconnect`
(without them it is left to `receive()`: an unheard `error` would raise);
after the bye `receive()` ends as a local
fork's (`nil`, or `ERR_WORKER_EXIT` for a status other than 0). Handles
cannot cross hosts: `send` with a handle raises on both sides.
Environment variables do not cross ssh: `opts.env` is the launcher's.

### `fork.parent`]],
    {list = true,
      {"fork.parent: lipc.channel?", sig = "`fork.parent`", text = [[
The channel to the process that forked us, or nil. It keeps the process
alive only while a task waits in `receive()` or a `message` listener
exists. When the parent goes away the child exits with status 0 unless it
listens for `disconnect`, was waiting in `receive()`, or set
`fork.parent.exit_on_disconnect = false`. `LIPC_CHANNEL_FD` (or
`NODE_CHANNEL_FD`) is read and removed from the environment as the runtime
starts, whether or not the script uses `fork.parent`, and the channel fd is
close-on-exec: the processes the child starts (`os.execute` included) inherit
neither. A value that names no open Unix stream socket (a stale number, a
file) makes `require "fork"` raise `fork.parent: LIPC_CHANNEL_FD=3 is not a
socket ...`.]]},
    },
[[### Pools]],
    {list = true,
      {"fork.pool(script: string, opts?: fork.pool_options): lipc.fork.pool",
       sig = "`fork.pool(script, {size = 4, per_worker = 2, args = {...}, ...fork opts}) -> pool`",
       text = [[`per_worker`: calls a worker may have in flight. With 2 (the default) a
busy worker finds its next call already in its channel when it answers
one, instead of waiting a round trip through the parent for it; every
worker gets a call before any gets two. 1: each call waits for an idle
worker (a long call then never delays one queued behind it). A worker
that ends is started again; one that ended within a second of its start
is started again after `backoff` ms (default 100), doubling up to
`backoff_max` (default 5000) while its successors do the same, so a script
that cannot run makes no storm of processes.]]},
      {"pool:call(msg: any): any, string?, string?", task = true, sig = "`pool:call(msg)`",
       text = [[`-> reply | nil, msg, code` - on a worker with a free slot (waits
for one); `ERR_WORKER_CRASHED` when the worker died with the call in flight
(every call queued on it fails so; it is replaced), with its exit status and
the first line of its error when its script raised, `ERR_WORKER_ERROR`
when the handler raised, `ERR_POOL_CLOSED`; `ERR_WORKER_EXIT` at once when
no worker is up and the last failed at its start (its script raised, with
its error line, or it ended before any call): the pool does not wait out
the backoff for it; across hosts also
`ERR_HOST_LOST` (the link to the worker's host dropped with the call in
flight, or no host is reachable: each host's last error is named).]]},
      {"pool:close()", task = true, text = [[waits for calls in flight, disconnects every
worker and waits for them to exit.]]},
      {"pool.workers: table", text = "the workers: keys `{child = ..., busy = ...}`, for monitoring."},
      {"pool:started(timeout_ms?: integer): boolean?, string?", task = true,
       sig = "`pool:started([timeout_ms])`",
       text = [[`-> true | nil, "timeout"`: once every host has its workers up or
failed since its last success; at once for a local pool.]]},
      {"pool:hosts(): table[]?", text = [[`{{name, workers, failures, error, quick_exits}, ...}` of a pool
across hosts, in the order of `opts.hosts` (`name` is the launcher's last word, the host);
nil for a local pool.]]},
      {"fork.serve(fn: fun(msg: any): any)", sig = "`fork.serve(fn)` in the worker",
       text = [[answers each call with `fn(msg)` until
the parent disconnects.]]},
    },
[[**Across hosts.** `fork.pool(script, {hosts = {via1, via2, ...}, size = n})`
starts worker i through `hosts[(i - 1) % #hosts + 1]` (each a launcher, as
`fork`'s `opts.via`; the other fork options apply to all). Workers start
in tasks of their own and take calls as soon as each said hello
(`pool:started()` waits for all). A worker that ends is started again on
its host; a start that fails is tried again after `backoff` ms (default
100), doubling up to `backoff_max` (default 5000) while the host keeps
failing, and a worker that ends within a second of its start is started
again after the same growing delay (`quick_exits` counts them), so a
script that cannot run makes no storm of connections. Example: scripts/remote_pool.lua.]],
[[### Others]],
    {list = true,
      {"fork.socketpair(): lipc.stream, lipc.stream", sig = "`fork.socketpair() -> a, b`",
       text = "two connected IPC pipe streams (tests, in-process channels)."},
    },
[[### Wire format
Native frame: 4-byte big-endian length of the rest, then optionally the
handle marker `d4 01 <kind>` (MessagePack fixext1, type 1; kind 1 TCP
server, 2 TCP socket, 3 pipe server, 4 pipe socket; the fd travels as
SCM_RIGHTS with the first byte of the frame), then one MessagePack value.
The length covers marker and value: the value may not exceed `max_message`
(the 3 bytes more are the marker's alone), on either side.
JSON mode (Node): one JSON text + `"\n"` per message; lines that decode to
`{"cmd": "NODE_..."}` are Node's own and are ignored, but for Node's handle
message: servers and sockets travel to and from Node as Node passes them
(`NODE_HANDLE`, acknowledged). Values are written
as `JSON.stringify` writes them: integers exact, floats in the fewest
digits that read back the same, NaN and infinities as `null`; strings must
be UTF-8 (else `send` raises naming the key path); a table with keys 1..n
is an array, any other an object (an empty one is `{}`). JSON numbers with
integral values arrive as Lua integers; Node's `null` arrives as
`cjson.null` (which is `lipc.null`), inside a value or as the whole
message, and sends back as `null`.]],
  },
}
