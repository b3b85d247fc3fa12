-- The net module and servers (section "pipe-net" of docs/api.md).
-- Format: tools/gendocs.lua.
return {
  section = "pipe-net",
  module = "net",
  module_text = "TCP servers and clients.",
  classes = {
    {name = "lipc.server", extends = "lipc.handle", var = "server", text = "A server (pipe or net).",
     events = {"listening()", "connection(sock: lipc.stream)", "close()", "error(msg: string, code: string)",
               "drop(remote?: net.address|string)",
               "client_error(msg: string, code: string, sock: lipc.stream)"}},
    {name = "lipc.net.server", extends = "lipc.server", text = "A TCP server."},
    {name = "lipc.net.socket", extends = "lipc.stream", text = "A TCP socket.",
     events = {"data(chunk: string)", "end()", "drain()", "error(msg: string, code: string)", "close()",
               "connect()", "timeout()"}},
    {name = "net.connect_options",
     fields = {"host: string", "port: integer", "local_address: string", "timeout: integer",
               "no_delay: boolean", "keep_alive: boolean", "allow_half_open: boolean",
               "cancel: lipc.task|lipc.scope"}},
    {name = "net.address", fields = {"address: string", "port: integer", "family: \"IPv4\"|\"IPv6\""}},
  },
  doc = {
[[## `net` — TCP]],
    {table = {"function", "returns"},
      {"net.create_server(opts?: {no_delay: boolean, keep_alive: boolean, allow_half_open: boolean, "
         .. "max_connections: integer}, on_connection?: fun(sock: lipc.net.socket)): lipc.net.server",
       sig = "`net.create_server([opts,] [on_connection])`",
       text = "a server. `opts.no_delay` (default `true`), `opts.keep_alive` (`false`), "
         .. "`opts.allow_half_open` (`false`) apply to accepted sockets; `opts.max_connections` "
         .. "sets `server.max_connections`"},
      {"server:listen(port: integer, host?: string, opts?: {backlog: integer, ipv6_only: boolean, reuse_port: boolean}): lipc.net.server?, string?, string?",
       class = "lipc.net.server",
       text = [[`server`, or `nil, msg, code`. **Without `host` only loopback (`127.0.0.1`) hears
it**; `"0.0.0.0"` / `"::"` expose it. `port` 0 picks a free port. `opts.backlog` (511),
`opts.ipv6_only`, `opts.reuse_port` (`SO_REUSEPORT`)]]},
      {"net.connect(opts: net.connect_options|integer, host?: string|function, on_connect?: function): "
         .. "lipc.net.socket?, string?, string?",
       sig = "`net.connect{host=, port=[, local_address=, timeout=, no_delay=, keep_alive=, "
         .. "allow_half_open=]}[, on_connect]` or `net.connect(port[, host][, on_connect])`",
       text = "in a task: the connected socket, or `nil, msg, code`, and `connect` on the next turn "
         .. "(so a listener added after the call runs); elsewhere, or with `on_connect` (Node's "
         .. "form, a `once(\"connect\")`), the socket at once, which emits `connect` or `error`. "
         .. "`host` defaults to `\"localhost\"`"},
      {"net.is_ip(s: string): integer", text = "`4`, `6` or `0`"},
    },
[[- **Names** are resolved by `uv_getaddrinfo` on the thread pool; every
  address is tried in turn (`"localhost"` means 127.0.0.1 then ::1
  without asking the resolver). A `host` that is a name in `listen` works
  the same way (a task waits; elsewhere `listen` returns the server and
  emits `listening` or `error`).
- `timeout` (ms) bounds the whole connect: `nil, "ETIMEDOUT: connection
  timed out (host:port)", "ETIMEDOUT"`.
- `cancel` (a task or a scope): when it is cancelled the socket is closed,
  while connecting (`nil, "ECANCELED: ...", "ECANCELED"`) or after; one
  cancelled already fails the connect at once. A connect is also ended
  when the task that waits in it is cancelled.
- Outside a task, what is written before the connection is up waits for
  it and goes out in order once connected, a `shutdown()` after it (as in
  Node); when the connect fails, the writes' callbacks get its error.
  `data` listeners added early start reading once connected.
- **TCP_NODELAY is on by default** (Node turns Nagle off only on request):
  lipc is for request/response IPC, where Nagle's delayed small writes
  cost a round trip each; bulk transfers use large writes and lose
  nothing. Turn it off with `no_delay = false` or `sock:set_nodelay(false)`.

### Sockets (TCP)

The stream API (`write`, `read`, `lines`, `read_all`, `shutdown` —
half-close, `drain`, `pipe`, `pause`/`resume`, `close`, events `data`,
`end`, `drain`, `error`, `close`) and `sock:channel([opts])`, plus:]],
    {table = {"method", ""}, class = "lipc.net.socket",
      {"sock:set_nodelay(on?: boolean): lipc.net.socket",
       "sock:set_keepalive(on?: boolean, delay_ms?: integer): lipc.net.socket", text = "return `sock`"},
      {"sock:set_timeout(ms: integer, fn?: function): lipc.net.socket",
       text = "emit `timeout` once the socket has been idle (no read, no write) for `ms`; once per idle "
         .. "period; `0` turns it off; `fn` is a `once(\"timeout\")`. The socket stays open: close it yourself"},
      {"sock:remote_address(): string?", "sock:remote_port(): integer?", "sock:remote_family(): string?",
       text = "the peer"},
      {"sock:local_address(): string?", "sock:local_port(): integer?", text = "our end"},
      {"sock:address(): net.address?", "sock:remote(): net.address?",
       text = "`{address=, port=, family=\"IPv4\"\\|\"IPv6\"}` of our end / of the peer"},
      {"sock:reset()",
       text = "close with an RST (`SO_LINGER` 0): the peer's reads and writes fail with `ECONNRESET`"},
    },
[[### Servers (pipe and net)]],
    {table = {"method / event", ""},
      {"server:accept(): lipc.stream?, string?, string?", task = true,
       text = "the next connection's socket, or `nil, msg, code` (`ECANCELED` when the server closes); "
         .. "several tasks may wait, each connection goes to one, the longest-waiting first"},
      {"server:address(): net.address|string?",
       text = "TCP: `{address=, port=, family=}`; Unix: the path (`\"\\0name\"` for abstract names); "
         .. "`nil` when not listening"},
      {"server:close(fn?: function)",
       text = "stop accepting (open connections stay); `fn` is a `once(\"close\")`; the socket file goes"},
      {"server:listening(): boolean", "server:ref()", "server:unref()", text = ""},
      {"server.max_connections: integer?",
       text = "as Node's `maxConnections`: once this many accepted sockets are open, a new "
         .. "connection is closed at once and the server emits `drop(remote)` (the peer's "
         .. "address); nil or 0: no limit. May be changed at any time"},
      {sig = "`listening`, `connection(sock)`, `close`, `error(msg, code)`, `drop(remote)`, `client_error(msg, code, sock)`",
       text = "events; `listening` is emitted on the next loop turn, so a listener added after `listen()` hears it; "
         .. "`client_error`: below"},
    },
[[- A server accepts only while somebody takes connections: a `connection`
  listener or a task in `accept()`. Otherwise the kernel's backlog holds
  them, and clients feel the backpressure.
- **listen() failures** (`EADDRINUSE`, `EACCES`, `ENAMETOOLONG`...) return
  `nil, msg, code` and close the server; the server also emits `error` on
  the next turn when it has `error` listeners by then (one added right
  after the call, Node's shape, too), or always when `listen` was called
  outside a task (then nobody else would see it).
- **A client cannot take its server down.** An error on an accepted socket
  (`ECONNRESET` from a client that reset, a write to one that went) that
  nobody handles (no task waiting in `read()`/`drain()`, no `error`
  listener on the socket) closes that socket and is emitted on its server
  as `client_error(msg, code, sock)`, as Node's HTTP server reports
  `clientError`; it is traced under `LIPC_TRACE=net`, and it is never an
  uncaught error, whether or not the server listens. The same holds for a
  channel over an accepted socket (`sock:channel()`) whose peer breaks the
  protocol (`ERR_IPC_BAD_MESSAGE`...) while the channel has no `error`
  listener. An `error` listener on the socket or channel takes precedence.
- A server received over a message channel (handle passing) is bound
  already: it starts accepting when it gets a `connection` listener or on
  `server:listen()` / `server:accept()` without an address.]],
  },
}
