-- The spawn module (section "spawn" of docs/api.md). Format: tools/gendocs.lua.
return {
  section = "spawn",
  module = "spawn",
  module_text = "Child processes: `spawn(file[, args][, opts])` starts one.",
  module_call = "spawn(file: string, args?: (string|number)[], opts?: spawn.options): lipc.child",
  classes = {
    {name = "spawn.options", text = "Options of `spawn`, `spawn.run` and `spawn.exec`."},
    {name = "lipc.child", extends = "lipc.handle", var = "child", text = "A child process.",
     events = {"spawn()", "exit(code?: integer, signal?: string)", "close(code?: integer, signal?: string)",
               "error(msg: string, code: string)"}},
    {name = "lipc.child_stdio", extends = "lipc.stream",
     text = "A child's stdio stream (`child.stdin`, `child.stdout`...): a stream."},
    {name = "spawn.pty_options", text = "`opts.pty` as a table: the terminal's window size.",
     fields = {"cols: integer?", "rows: integer?"}},
    {name = "spawn.result", text = "What `spawn.run` returns.",
     fields = {"code: integer?", "signal: string?", "stdout: string", "stderr: string", "pid: integer",
               "timed_out: boolean"}},
  },
  doc = {
[[## `spawn` — child processes

`spawn(file[, args][, opts]) -> child`, also `spawn.spawn(...)`. Starts
`file` (searched on the child's `PATH` when it has no `/`) with the
arguments `args` (strings or numbers). No shell is involved, so arguments
reach the program exactly as given. Starting failures do not raise: they
come as the child's `error` event (a missing program is `ENOENT`, a file
that is not executable `EACCES`) and as `nil, msg, code` from `wait()` and
`run()`. A failure with no `error` listener is not an uncaught error: it
is kept for `wait()`, however late that comes (and traced under
`LIPC_TRACE=spawn`). An executable file with no `#!` line (which exec refuses) runs
under `/bin/sh`, as execvp and Node's spawn run it. Wrong argument types raise `bad argument #n to 'spawn' (...)`.]],
    {list = true,
      {"spawn.spawn(file: string, args?: (string|number)[], opts?: spawn.options): lipc.child",
       text = "the same as calling the module."},
    },
    {table = {"option", "meaning"}, options = "spawn.options",
      {"cwd: string", text = "working directory of the child (a missing one is `ENOENT`, naming it)"},
      {"env: table<string, string|false>",
       text = "variables merged over the current environment; a value `false` unsets one"},
      {"clear_env: boolean", text = "`true`: the child gets only `env`"},
      {"stdio: string|(string|integer|false|lipc.stream)[]",
       text = "three (or more) entries, or one word for all three; default `\"pipe\"` for 0-2"},
      {"shell: boolean|string",
       text = "`true` (`/bin/sh`) or a shell path: `file` is a command line; `args` are appended quoted"},
      {"input: string",
       text = "a string written to stdin, which is then closed (an `EPIPE` from a child that does "
         .. "not read is ignored)"},
      {"timeout: integer", text = "ms; then the child is sent `kill_signal` and `child.timed_out` is `true`"},
      {"kill_signal: string|integer",
       text = "for `timeout` (and `run`'s `max_buffer`); name or number, default `\"SIGTERM\"`"},
      {"detached: boolean", text = "the child leads a new session (`setsid`)"},
      {"process_group: boolean",
       text = "the child leads a new process group (`setpgid(0, 0)`), so `kill(sig, {tree = true})` "
         .. "reaches everything it starts, even after it exited (with `uid`/`gid`: a new session)"},
      {"kill_tree: boolean",
       text = "`kill()`, the `timeout` and `cancel` signal the whole tree (as `{tree = true}`)"},
      {"die_with_parent: boolean|string",
       text = "the child gets this signal (`true`: `SIGKILL`) when lipc dies, even by `SIGKILL` "
         .. "(Linux `PR_SET_PDEATHSIG`; not with `uid`/`gid`)"},
      {"pty: boolean|spawn.pty_options",
       text = "a terminal for the child: its stdin, stdout, stderr and controlling terminal; "
         .. "`child.pty` is our end. `{cols =, rows =}` (1-65535) sets the window size, default 80x24"},
      {"uid: integer", "gid: integer",
       text = "run as this user/group (needs privileges; uses `uv_spawn` instead of `posix_spawn`)"},
      {"argv0: string", text = "`argv[0]` of the child (default `file`)"},
      {"max_buffer: integer", text = "`spawn.run` only: the most bytes of stdout or stderr it collects"},
      {"cancel: lipc.task|lipc.scope",
       text = "when it is cancelled the child is sent `kill_signal` and `child.cancelled` is `true` (at "
         .. "once when it is cancelled already); `spawn.run` then returns `nil, msg, \"ECANCELED\"`"},
    },
[[**stdio entries.** Entry `i` becomes fd `i - 1` in the child.
- `"pipe"`: a real `pipe(2)`, not a socketpair. Fd 0 is written by the
  parent (`child.stdin`); every other fd is read by it (`child.stdout`,
  `child.stderr`, `child.stdio[4]`...).
- `"ipc"`: a duplex Unix socketpair, wrapped in the parent as a pipe
  stream opened with ipc (handles can be passed over it); `fork` builds its
  message channel on it.
- `"inherit"`: the parent's own fd of that number; `"ignore"` (or `false`):
  `/dev/null` for 0-2, not open for 3 and up; a number: that fd of the
  parent, shared.
- a lipc stream: its fd is handed to the child and the parent closes its
  own copy (so `{a.stdout, ...}` wires `a`'s output into this child with no
  data passing through Lua). lipc's own `lipc.stdin/stdout/stderr` are
  shared, not closed.
- `"stdout"` (entry 3 and up): whatever the child's fd 1 is, as the
  shell's `2>&1`. `{"ignore", "pipe", "stdout"}` gives one pipe for both
  outputs, so `child.stdout` (and `spawn.run`'s `stdout`) holds them in
  the order the child wrote them; `child.stderr` is then nil.
The child receives exactly these fds: everything else is closed.

**A terminal: `opts.pty`.** `spawn(file, args, {pty = true})` (or
`{pty = {cols = 120, rows = 40}}`) runs the child in a new session with a
pseudo-terminal as its stdin, stdout, stderr and controlling terminal, so
`tty`, `stty`, job control, `^C` (`"\3"` sends SIGINT), line editing and
programs that buffer differently on a terminal (`bc`, `python3 -i`,
`sh -i`) behave as they do for a user. `child.pty` is one stream over our
end (the master, non-blocking, close-on-exec): write keystrokes to it,
read what the child writes (the terminal's own echo and `\r\n` line ends
included). `child:resize(cols, rows)` sets the window size; the kernel
sends the child SIGWINCH. `child.stdin`, `.stdout` and `.stderr` are nil;
`opts.stdio` may still give entries from 4 on. `spawn.run` with `pty`
collects the terminal's output as `stdout`. When the child and what it
started have all closed the terminal, `child.pty` reads what is left and
then ends (the master's `EIO` is the terminal's end of file, not an
error): `exit`, the pty's `end`, then `close`, with nothing lost. Past
its end the master stays open until the child has exited, as closing it
would hang the terminal up: a child that closes its terminal before it
exits (`cat` closes stdin, stdout and stderr at its end of file) exits as
it would, not by SIGHUP. Read the
pty to its end (`read_all()`, a `data` listener) before `wait()`, as for
any output stream that was read. Closing `child.pty` (or the child, early)
hangs the terminal up: the child gets SIGHUP; so does `child.pty:shutdown()`
(a terminal has no half-close), after the queued writes. To end a child's
input, type what a user would: `"\4"` (end of file at a line's start) or
`"\3"` (SIGINT). Where no terminal can be had
(no `/dev/ptmx`, no devpts) the child does not start: its `error` event
and `wait()` give, for example, `nil, "ENOENT: no such file or directory
(spawn sh: no pseudo-terminal from /dev/ptmx)", "ENOENT"`. `pty` cannot be
combined with `uid`/`gid`.

**The child object**]],
    {table = {"field / method", "meaning"},
      {"child.pid: integer?", text = "process id (nil when starting failed)"},
      {"child.stdin: lipc.child_stdio?", "child.stdout: lipc.child_stdio?", "child.stderr: lipc.child_stdio?",
       sig = "`child.stdin`, `.stdout`, `.stderr`", text = "streams for `\"pipe\"` entries 1-3, else nil"},
      {"child.stdio: (lipc.stream|false)[]", sig = "`child.stdio[i]`",
       text = "the stream of entry `i` (1-based: `stdio[1]` is fd 0), or `false`"},
      {"child.exit_code: integer?", "child.signal_code: string?", sig = "`child.exit_code`, `.signal_code`",
       text = "set at exit; `exit_code` is nil when a signal killed it"},
      {"child.killed: boolean", "child.timed_out: boolean", sig = "`child.killed`, `.timed_out`",
       text = "`false` until `kill` sent a signal / the timeout fired, then `true` (as Node's `killed`)"},
      {"child.cancelled: boolean?", text = "`true` once `opts.cancel` (or `spawn.run`'s task) killed it"},
      {"child:kill(signal?: string|integer, opts?: {tree?: boolean}): true?, string?, string?",
       text = "names (`\"SIGKILL\"`, `\"KILL\"`) or numbers, default `SIGTERM`; `true` or "
         .. "`nil, msg, \"ESRCH\"` once it has exited. `{tree = true}` (default: `opts.kill_tree`) "
         .. "signals everything the child started too: its process group when it leads one "
         .. "(`process_group`, `detached`; also once the child itself has exited), else the child "
         .. "and its descendants found in `/proc` (each stopped before its children are read, so "
         .. "none escapes by forking; `ESRCH` once the child has exited: its children went to init)"},
      {"child:wait(): integer?, string?, string?", task = true,
       text = "`code, signal` once `close` came; `nil, msg, code` when it could not start"},
      {"child:ref()", "child:unref()", text = "an unref'd child does not keep the process alive"},
      {"child:close()", text = "stop watching it: close its stdio streams; it is still reaped"},
      {"child.pty: lipc.child_stdio?", text = "the terminal's master with `opts.pty`, else nil"},
      {"child:resize(cols: integer, rows: integer): true?, string?, string?",
       text = "the window size of its `pty` (SIGWINCH to the child); raises without one, "
         .. "`nil, msg, \"EBADF\"` once it is closed"},
      {"child:stats(): table",
       text = "counters summed over its stdio streams: `{bytes_read, bytes_written, queued, "
         .. "high_water_hits, stdin, stdout, stderr, stdio = {[i] = stream:stats()}}`"},
    },
[[Events, in Node's order: `spawn`; output (`data` on the streams);
`exit(code, signal)` — `code` nil and `signal` a name like `"SIGKILL"`
when a signal ended it; `close(code, signal)` once the child has exited
and every output stream being read has ended. Output streams nobody read
are then closed if empty, or left open (their data can still be read
after `wait()`); stdin is ended. An output stream nobody reads but with
an `end` listener is drained instead, as Node drains stdio nobody reads:
its bytes are dropped, `end` fires, then the child's `close`. A child that could not start emits
`error(msg, code)` and then `close(nil, nil)`, never `exit`; its pipe
streams exist and simply end. Writing to the stdin of a child that exited
gives `error(msg, "EPIPE")` on that stream.

**Helpers** (tasks)]],
    {list = true,
      {"spawn.run(file: string, args?: (string|number)[], opts?: spawn.options): spawn.result?, string?, string?, spawn.result?",
       sig = "`spawn.run(file[, args][, opts]) -> {code, signal, stdout, stderr, pid, timed_out}`",
       text = [[collects stdout and stderr (stdin is `/dev/null` unless
`input` is given). Returns `nil, msg, code, partial` when the program
could not start, on `timeout` (`ETIMEDOUT`), or when stdout or stderr
passes `opts.max_buffer` bytes (default 16 MiB; `ENOBUFS`, the message
says which stream, and the child is killed); `partial` then holds
exactly the first `max_buffer` bytes of that stream, as Node's
`maxBuffer` does. When the task running it is cancelled, or `opts.cancel`
is, the child is sent `kill_signal`; `run` waits for its exit (not for
its output pipes, which processes it started may hold) and returns
`nil, "ECANCELED: ...", "ECANCELED", partial`.]]},
      {"spawn.exec(command_line: string, opts?: spawn.options): spawn.result?, string?, string?, spawn.result?",
       text = "`run(\"/bin/sh\", {\"-c\", command_line}, opts)`."},
      {"spawn.child_methods: table",
       text = "the methods table of the child class (`fork` builds on it); not for scripts."},
    },
[[**Process trees.** A shell or a build tool started with `kill()` in mind
orphans its own children when only it is killed; `process_group = true`
with `kill(sig, {tree = true})` (or `kill_tree = true`, which the
`timeout` and `cancel` use too) ends them all. `die_with_parent` makes a
child die with lipc even when lipc is killed with `SIGKILL`: such a child
starts through `fork()` (posix_spawn cannot call `prctl`), where the child
sets `PR_SET_PDEATHSIG`, checks that its parent is still there, does
posix_spawn's file actions and execs, and an exec failure comes back
through a close-on-exec pipe, so `ENOENT` and the rest are reported as
usual. The signal is tied to the thread that spawned, lipc's loop thread.

**lipc as PID 1.** In a container, or under `unshare --pid --fork`, lipc
is the init of its PID namespace: every orphan reparented to it is reaped
(each `SIGCHLD` also reaps the exited children in `/proc` that are
neither spawn's nor libuv's), and `SIGTERM`, which init otherwise
ignores, is passed on to its children (to the group of a child that
leads one); scripts may also watch it with `lipc.on_signal`. This starts
with the first spawn.

**How it works.** Children start through `posix_spawn` (glibc:
`clone(CLONE_VM|CLONE_VFORK)`), with signal mask and dispositions reset,
`cwd` via `addchdir_np`, `detached` via `POSIX_SPAWN_SETSID` and the fds
closed from `#stdio` up. `pty` opens the master with `posix_openpt`,
`grantpt`, `unlockpt` and `ptsname_r`; the child starts with
`POSIX_SPAWN_SETSID` and a file action that opens the terminal on fd 0
(dup'd onto 1 and 2): libc makes the session before the file actions, and
a session leader that opens a terminal gets it as its controlling one, as
`setsid(); open(); ioctl(TIOCSCTTY)` would in a forked child. The PATH search is done in the parent with the
child's `PATH`. Every fd the parent creates is `O_CLOEXEC`. One `uv_signal_t`
on SIGCHLD per runtime calls `waitpid(pid, WNOHANG)` on spawn's own
children only, so it coexists with libuv's watcher for `uv_spawn` children
(used only for `uid`/`gid`). Children still running when lipc exits are
left running; their zombies go to init.]],
  },
}
