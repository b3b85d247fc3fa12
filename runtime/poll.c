/*
 * poll.c - the adaptive poll: while traffic is hot, the loop looks for
 * I/O without blocking for a short while before it sleeps in epoll_wait.
 *
 * A peer that answers within a few tens of microseconds then finds the
 * loop awake: no sleep, no wake-up on another CPU (about 20 us each way
 * on a VM), at about the CPU that the sleep and the wake-up cost. Where
 * the peer needs this CPU, or no answer comes, the poll only burns time,
 * so it adapts and turns itself off:
 *
 *   - A check handle runs after every poll phase and sees whether the
 *     turn read anything (rt->io_seen, bumped by stream.c's read
 *     callback) and wrote anything (rt->io_written). After a turn that
 *     did both, a request answered or an answer followed by the next
 *     request, it starts a spin: an idle handle is made active, and
 *     while one is active uv_run polls with a zero timeout. A turn that
 *     only reads (a stream flowing in, a child's output) or only writes
 *     starts none: there the peer sends on without waiting for this
 *     process, and a spin can only burn CPU and take reads in smaller
 *     pieces. Each turn that reads something during the spin is a hit
 *     and starts the window again; a window of budget_us without I/O is
 *     a miss and ends the spin (the idle handle stops, the loop sleeps).
 *   - The budget grows by a quarter of max_us on a hit. A miss after a
 *     spin with hits (the traffic paused: a preempted peer, the end of a
 *     burst) sets it back to max_us, so the next wake-up polls as long as
 *     the one that found data; a miss after a spin without one halves it,
 *     and below an eighth of max_us it drops to zero. At zero, the second
 *     wake-up in a row with I/O that came within max_us of the loop going
 *     to sleep starts a spin of max_us again (a poll would have found
 *     them: the peer answers that fast, and a hiccup, a preempted peer,
 *     ended the spin; any longer sleep, a timer's too, starts the count
 *     again), and so does every PROBE_EVERY-th wake-up with I/O (a probe,
 *     half of max_us long); a probe that misses goes straight back to
 *     zero. So an idle process never spins (no I/O, no spin), and a bursty
 *     one spends ~25 us per PROBE_EVERY messages (ipc_bursty: ~1 us of
 *     polling per round trip in both processes, counted by empty_ns).
 *   - "auto" (the default) spins only where it can win: more than one
 *     CPU to run on (sched_getaffinity), and a load average (/proc/loadavg,
 *     read at most once a second) no higher than that CPU count.
 *
 * Each poll is a whole loop turn (epoll_wait with a zero timeout), not a
 * poll(2) on the epoll fd spun outside the turn: that saves only libuv's
 * ~400 instructions a turn against a ~1-2 us system call on a VM, and
 * adds a system call to every message (the poll(2) that sees it, then
 * the turn's epoll_wait); measured slower (README, "Two ways to poll").
 *
 * LIPC_POLL=0 turns it off, 1 on everywhere (no CPU or load check), <us>
 * on everywhere with that max_us; unset or "auto": auto. lipc.poll() sets
 * and reads it from Lua. The handles are unreferenced: they never keep
 * the process alive.
 */
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define POLL_DEFAULT_US 50
#define POLL_MAX_US 10000 /* the most lipc.poll / LIPC_POLL accept */
#define PROBE_EVERY 32
#define GUARD_MS 1000 /* how long a CPU and load check holds */

enum { MODE_OFF, MODE_AUTO, MODE_ON };
static const char *const MODES[] = {"off", "auto", "on", NULL};

struct lipc__poll {
  uv_idle_t idle;   /* active while spinning: uv_run does not block */
  uv_check_t check; /* after every poll phase */
  int mode;
  unsigned max_us;
  unsigned budget_us; /* the adapted window, 0 or max_us/8..max_us */
  unsigned seen;      /* rt->io_seen at the last check */
  unsigned written;   /* rt->io_written at the last check */
  unsigned probe;     /* wake-ups with I/O until the next probe */
  int spinning, probing;
  unsigned spin_hits; /* hits since the spin started */
  int allowed;        /* the last CPU and load check (auto) */
  uint64_t guard_at;  /* uv_now of that check, 0: never */
  uint64_t since;     /* hrtime the window started */
  uint64_t slept;     /* hrtime of the last check: the loop slept after it */
  unsigned quick;     /* wake-ups with I/O in a row after sleeps <= max_us */
  uint64_t spins, hits, misses, turns;
  uint64_t empty_ns; /* in polling turns that found nothing: its cost */
  size_t gc_base;    /* Lua's heap after the last collection the spin ran */
  uint64_t collects;
  int closing;
};

static void on_idle(uv_idle_t *h) {
  (void)h; /* its being active is what matters */
}

/* The CPUs this process may run on. */
static int cpu_count(void) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0)
    return CPU_COUNT(&set);
  return (int)sysconf(_SC_NPROCESSORS_ONLN);
}

/* The 1-minute load average, or -1 when it cannot be read. */
static double load_average(void) {
  char buf[64];
  ssize_t n;
  int fd = open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0)
    return -1;
  buf[n] = '\0';
  return strtod(buf, NULL);
}

/* Whether a spin may start now: auto asks the machine, at most once a
 * second (a spin where the peer needs this CPU, or where other work
 * already fills them all, takes their time and wins nothing). */
static int allowed(lipc__poll *p, uv_loop_t *loop) {
  uint64_t now;
  int cpus;
  double load;
  if (p->mode != MODE_AUTO)
    return p->mode == MODE_ON;
  now = uv_now(loop);
  if (p->guard_at != 0 && now - p->guard_at < GUARD_MS)
    return p->allowed;
  p->guard_at = now == 0 ? 1 : now;
  cpus = cpu_count();
  load = load_average();
  p->allowed = cpus > 1 && load <= (double)cpus;
  return p->allowed;
}

static void spin_start(lipc__poll *p, uint64_t now) {
  p->spinning = 1;
  p->since = now;
  p->spin_hits = 0;
  p->spins++;
  uv_idle_start(&p->idle, on_idle);
}

static void spin_stop(lipc__poll *p) {
  p->spinning = 0;
  p->probing = 0;
  uv_idle_stop(&p->idle);
}

static void on_hit(lipc__poll *p, uint64_t now) {
  p->hits++;
  p->spin_hits++;
  p->probing = 0;
  p->since = now;
  p->budget_us += p->max_us / 4 + 1;
  if (p->budget_us > p->max_us)
    p->budget_us = p->max_us;
}

static void on_miss(lipc__poll *p) {
  p->misses++;
  if (p->spin_hits > 0) { /* traffic paused: the next wake-up polls again */
    p->budget_us = p->max_us;
    spin_stop(p);
    return;
  }
  p->budget_us = p->probing ? 0 : p->budget_us / 2;
  if (p->budget_us < p->max_us / 8 + 1) {
    p->budget_us = 0;
    p->probe = PROBE_EVERY;
  }
  spin_stop(p);
}

/* A wake-up with I/O, not spinning: spin, unless the budget is spent, the
 * last sleeps were longer than a spin waits, and no probe is due. */
static void on_wake(lipc__poll *p, uv_loop_t *loop, uint64_t now) {
  if (!allowed(p, loop))
    return;
  if (p->budget_us == 0) {
    if (p->quick >= 2) {
      p->budget_us = p->max_us;
    } else if (p->probe > 1) {
      p->probe--;
      return;
    } else {
      p->probing = 1;
    }
  }
  spin_start(p, now);
}

/* Lua's heap in bytes. */
static size_t heap_bytes(lua_State *L) {
  return (size_t)lua_gc(L, LUA_GCCOUNT) * 1024 +
         (size_t)lua_gc(L, LUA_GCCOUNTB);
}

/*
** A spin turn that found nothing is waiting time: Lua's collector runs
** there, before it is due, instead of inside the next message's
** handling, where its young collection (a few microseconds every few
** dozen messages) delays the answer the peer waits for. The generational
** collector runs a minor collection once the heap grew by genminormul
** (20%) since the last one; at three quarters of that, the spin adds
** the debt still missing, so Lua's own step runs now, major or minor as
** it would have chosen. Never when the script stopped the collector.
*/
static void collect_ahead(lipc_runtime *rt, lipc__poll *p) {
  lua_State *L = rt->L;
  size_t total, grown, due;
  if (L == NULL || rt->exiting || !lua_gc(L, LUA_GCISRUNNING))
    return;
  total = heap_bytes(L);
  if (total < p->gc_base) { /* a collection ran meanwhile */
    p->gc_base = total;
    return;
  }
  grown = total - p->gc_base;
  due = p->gc_base / 5;
  if (grown < due - due / 4)
    return;
  lua_gc(L, LUA_GCSTEP, (int)((grown < due ? due - grown : 0) / 1024 + 1));
  p->gc_base = heap_bytes(L);
  p->collects++;
}

static void on_check(uv_check_t *c) {
  lipc_runtime *rt = c->data;
  lipc__poll *p = rt->poll;
  int io = rt->io_seen != p->seen, wrote = rt->io_written != p->written;
  uint64_t now, window;
  p->seen = rt->io_seen;
  p->written = rt->io_written;
  if (p->mode == MODE_OFF)
    return;
  now = uv_hrtime();
  if (!p->spinning) {
    if (now - p->slept > (uint64_t)p->max_us * 1000)
      p->quick = 0;
    else if (io)
      p->quick++;
    if (io && wrote)
      on_wake(p, c->loop, now);
    p->slept = now;
    return;
  }
  p->turns++;
  if (!io)
    p->empty_ns += now - p->slept;
  p->slept = now;
  if (io) {
    on_hit(p, now);
    return;
  }
  window = (uint64_t)(p->probing ? p->max_us / 2 : p->budget_us) * 1000;
  if (now - p->since >= window)
    on_miss(p);
  else
    collect_ahead(rt, p);
}

static void set_mode(lipc__poll *p, int mode, unsigned max_us) {
  if (p->spinning)
    spin_stop(p);
  p->mode = mode;
  p->max_us = max_us;
  p->budget_us = mode == MODE_OFF ? 0 : max_us;
  p->probe = 0;
  p->guard_at = 0;
}

/* LIPC_POLL: 0/off, 1/on, auto (or unset), or microseconds (on). */
static void from_env(lipc__poll *p) {
  const char *s = getenv("LIPC_POLL");
  char *end;
  long us;
  if (s == NULL || *s == '\0' || strcmp(s, "auto") == 0)
    return;
  if (strcmp(s, "off") == 0 || strcmp(s, "on") == 0) {
    set_mode(p, s[1] == 'n' ? MODE_ON : MODE_OFF, POLL_DEFAULT_US);
    return;
  }
  us = strtol(s, &end, 10);
  if (*end != '\0' || us < 0 || us > POLL_MAX_US) {
    fprintf(stderr,
            "lipc: LIPC_POLL: expected 0, 1, auto or microseconds "
            "(2-%d), got '%s'; using auto\n",
            POLL_MAX_US, s);
    return;
  }
  if (us == 0)
    set_mode(p, MODE_OFF, POLL_DEFAULT_US);
  else
    set_mode(p, MODE_ON, us == 1 ? POLL_DEFAULT_US : (unsigned)us);
}

void lipc__poll_init(lipc_runtime *rt) {
  lipc__poll *p = calloc(1, sizeof(*p));
  if (p == NULL)
    return; /* no poll: the loop sleeps as it always did */
  if (uv_idle_init(rt->loop, &p->idle) != 0 ||
      uv_check_init(rt->loop, &p->check) != 0) {
    free(p);
    return;
  }
  p->check.data = rt;
  p->idle.data = p;
  uv_unref((uv_handle_t *)&p->idle);
  uv_unref((uv_handle_t *)&p->check);
  set_mode(p, MODE_AUTO, POLL_DEFAULT_US);
  from_env(p);
  uv_check_start(&p->check, on_check);
  rt->poll = p;
}

static void closed(uv_handle_t *h) {
  lipc__poll *p = h->data;
  if (--p->closing == 0)
    free(p);
}

/* Both handles closed; the memory goes with the second close callback
 * (the loop may be the embedder's, and outlive the runtime). */
void lipc__poll_close(lipc_runtime *rt) {
  lipc__poll *p = rt->poll;
  if (p == NULL)
    return;
  rt->poll = NULL;
  p->closing = 2;
  p->check.data = p;
  uv_close((uv_handle_t *)&p->idle, closed);
  uv_close((uv_handle_t *)&p->check, closed);
}

static void set_integer(lua_State *L, const char *key, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, key);
}

static void push_state(lua_State *L, const lipc__poll *p) {
  lua_createtable(L, 0, 10);
  lua_pushstring(L, p ? MODES[p->mode] : "off");
  lua_setfield(L, -2, "mode");
  set_integer(L, "max_us", p ? (lua_Integer)p->max_us : 0);
  set_integer(L, "budget_us", p ? (lua_Integer)p->budget_us : 0);
  set_integer(L, "spins", p ? (lua_Integer)p->spins : 0);
  set_integer(L, "hits", p ? (lua_Integer)p->hits : 0);
  set_integer(L, "misses", p ? (lua_Integer)p->misses : 0);
  set_integer(L, "turns", p ? (lua_Integer)p->turns : 0);
  set_integer(L, "collects", p ? (lua_Integer)p->collects : 0);
  set_integer(L, "empty_us", p ? (lua_Integer)(p->empty_ns / 1000) : 0);
}

static const char FNAME[] = "lipc.poll";

/* lipc.poll{max_us=, mode=}: a missing max_us keeps the current one,
 * a missing mode is "on". p may be NULL (no poll: checked, then
 * ignored). */
static void set_from_table(lua_State *L, lipc__poll *p) {
  lua_Integer us = p ? p->max_us : POLL_DEFAULT_US;
  int mode = MODE_ON;
  if (lua_getfield(L, 1, "max_us") != LUA_TNIL) {
    if (!lua_isinteger(L, -1))
      lipc__argerror(L, 1, FNAME, "max_us: integer expected, got %s",
                     luaL_typename(L, -1));
    us = lua_tointeger(L, -1);
    if (us < 1 || us > POLL_MAX_US)
      lipc__argerror(L, 1, FNAME, "max_us: must be 1-%d, got %d", POLL_MAX_US,
                     (int)us);
  }
  if (lua_getfield(L, 1, "mode") != LUA_TNIL) {
    const char *m = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
    for (mode = 0; MODES[mode] && strcmp(MODES[mode], m) != 0; mode++)
      ;
    if (MODES[mode] == NULL)
      lipc__argerror(L, 1, FNAME, "mode: 'on', 'off' or 'auto' expected");
  }
  lua_pop(L, 2);
  if (p)
    set_mode(p, mode, (unsigned)us);
}

/* lipc.poll([setting]) -> the poll's state after the setting: false
 * (off), true (on), "auto", or {max_us=, mode=}. */
int lipc__poll_l(lua_State *L) {
  lipc__poll *p = lipc__rt(L)->poll;
  int t = lua_type(L, 1);
  if (t == LUA_TBOOLEAN) {
    if (p)
      set_mode(p, lua_toboolean(L, 1) ? MODE_ON : MODE_OFF, p->max_us);
  } else if (t == LUA_TSTRING) {
    if (strcmp(lua_tostring(L, 1), "auto") != 0)
      lipc__argerror(L, 1, FNAME, "'auto', a boolean or a table expected");
    if (p)
      set_mode(p, MODE_AUTO, p->max_us);
  } else if (t == LUA_TTABLE) {
    set_from_table(L, p);
  } else if (t != LUA_TNONE && t != LUA_TNIL) {
    lipc__typeerror(L, 1, FNAME, "boolean, 'auto' or table");
  }
  push_state(L, p);
  return 1;
}
