-- The pipe module (section "pipe-net" of docs/api.md). Format: tools/gendocs.lua.
return {
  section = "pipe-net",
  module = "pipe",
  module_text = "Unix sockets, FIFOs, anonymous pipes.",
  classes = {
    {name = "lipc.pipe.server", extends = "lipc.server", text = "A Unix socket server."},
    {name = "lipc.pipe.socket", extends = "lipc.stream",
     text = "A Unix socket (or FIFO stream): the stream API plus addresses and idle timeouts.",
     events = {"data(chunk: string)", "end()", "drain()", "error(msg: string, code: string)", "close()",
               "connect()", "open()", "timeout()"}},
  },
  doc = {
[[## `pipe` — Unix sockets, FIFOs, anonymous pipes]],
    {table = {"function", "returns"},
      {"pipe.create_server(opts?: {allow_half_open: boolean, max_connections: integer}, on_connection?: fun(sock: lipc.pipe.socket)): lipc.pipe.server",
       sig = "`pipe.create_server([opts,] [on_connection])`",
       text = "a server; `on_connection(sock)` is a `connection` listener. `opts.allow_half_open` keeps "
         .. "accepted sockets writable after the peer's end; `opts.max_connections` as for `net`"},
      {"server:listen(path: string, opts?: {mode: string|integer, backlog: integer}): lipc.pipe.server?, string?, string?",
       class = "lipc.pipe.server",
       text = [[`server`, or `nil, msg, code`. `opts.mode` (octal string `"0660"` or integer; default
`"0600"`, owner only), `opts.backlog` (511). `path` may be a Linux abstract name `"\0name"` (no file)]]},
      {"pipe.connect(path: string, on_connect?: function): lipc.pipe.socket?, string?, string?",
       text = "in a task: the connected socket or `nil, msg, code`, and `connect` on the next turn; "
         .. "elsewhere, or with `on_connect` (Node's form, a `once(\"connect\")`), the socket at "
         .. "once, which emits `connect` or `error`"},
      {"pipe.mkfifo(path: string, mode?: string|integer): true?, string?, string?",
       text = "`true` or `nil, msg, code`; mode default `\"0600\"`, exact (not masked by the umask)"},
      {"pipe.open(path: string, mode: \"r\"|\"w\"): lipc.pipe.socket?, string?, string?",
       sig = "`pipe.open(path, \"r\"|\"w\")`",
       text = "a stream over a FIFO, or `nil, msg, code` (`ENOENT`, `EINVAL` \"not a FIFO\"). "
         .. "`\"w\"` waits for a reader: in a task `open` returns then; elsewhere the stream comes "
         .. "at once and writes wait. Either way it emits `open` (on the next turn)"},
      {"pipe.new(): lipc.stream, lipc.stream",
       text = "`reader, writer`: a `pipe(2)` pair, close-on-exec (for spawn stdio, or between tasks)"},
    },
[[- **listen** binds, sets the mode, *then* listens: nobody can connect
  while the file has other rights. A socket file left by a dead server
  (nothing answers on it) is replaced; a live one, or a path that is not a
  socket, gives `EADDRINUSE`. `server:close()` removes the file it made (if
  it is still the same file). A path longer than the platform's limit (107
  bytes on Linux) is `ENAMETOOLONG`, never silently truncated.
- **FIFOs.** `open(path, "r")` opens at once; `data` comes while writers
  write and `end` when the last writer goes (no writer yet is not an end).
  `open(path, "w")` must wait for a reader: it polls with a non-blocking
  open (1 ms, backing off to 32 ms) instead of a blocking open, so neither
  the loop nor a thread-pool thread is held. In a task it returns once a
  reader came; elsewhere it returns the stream at once and emits `open`
  (what is written before that waits and goes out once a reader came).
  Closing it ends the wait.]],
    {list = true, class = "lipc.pipe.socket",
      {"sock:address(): string?", "sock:remote_address(): string?",
       "sock:set_timeout(ms: integer, fn?: function): lipc.pipe.socket",
       sig = "Pipe sockets and FIFO streams have the stream API plus `sock:address()` and "
         .. "`sock:remote_address()`",
       text = "(socket paths) and `sock:set_timeout(ms[, fn])` (as for TCP sockets, below)."},
    },
  },
}
