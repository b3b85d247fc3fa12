# bench/lib.sh - what bench/run.sh and bench/scale.sh share (sourced, not
# run): the settings from the environment, building the C programs, one
# bounded run of one program, and small number helpers.
#
# Before sourcing: ROOT (the tree holding bench/ and build/). After it:
# LIPC NODE CC SCALE IMPLS REPEAT TIMEOUT PIN, OUT (the C programs), RES
# (tables; BENCH_OUT, default OUT), LOGS, BENCH_TMP, and the functions below.
# shellcheck shell=bash
# (the settings and R_* results are read by the scripts that source this)
# shellcheck disable=SC2034

LIPC=${LIPC:-build/lipc}
case $LIPC in /*) ;; *) LIPC="$ROOT/$LIPC" ;; esac
NODE=${NODE:-node}
CC=${CC:-cc}
SCALE=${BENCH_SCALE:-1}
IMPLS=${BENCH_IMPLS:-lipc lipcoff node c}
REPEAT=${BENCH_REPEAT:-1}
TIMEOUT=${BENCH_TIMEOUT:-120}
PIN=${BENCH_PIN:-}
# LIPC_POLL of the lipc column (run.sh; lipcoff runs with 0): on, unless
# pinned, where the default (auto: off on one CPU) is what lipc does
POLL=${BENCH_POLL:-}
[[ -z $POLL ]] && { [[ -n $PIN ]] && POLL=auto || POLL=1; }
OUT="$ROOT/build/bench"
RES=${BENCH_OUT:-$OUT}
LOGS="$RES/logs"

export BENCH_SCALE=$SCALE
export BENCH_WRITER="$OUT/writer"

mkdir -p "$OUT" "$RES" "$LOGS" || exit 1
BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/lipc-bench.XXXXXX") || exit 1
export BENCH_TMP
CUR_PID=
trap 'rm -rf "$BENCH_TMP"' EXIT
# a run lives in its own process group, out of reach of the terminal's ^C
trap '[[ -n $CUR_PID ]] && kill -TERM -- "-$CUR_PID" 2>/dev/null; exit 130' INT TERM

NOTES=()

fcalc() { awk "BEGIN { print $1 }"; }
icalc() { awk "BEGIN { printf \"%.0f\", $1 }"; }  # integers: print would give 6.87195e+10

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }

# build_c: the C programs of bench/c into build/bench/ (those not up to date).
# Where there is no bench/c or no compiler (a bundle made by `make
# bench-bundle`), the programs already in build/bench/ are used as they are.
build_c() {
  local src name extra deps d fresh
  [[ -d $ROOT/bench/c ]] && command -v "$CC" >/dev/null 2>&1 || return 0
  local -a cflags=(-O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror)
  for src in "$ROOT"/bench/c/*.c; do
    name=$(basename "$src" .c)
    # up to date: newer than its source, common.h, this file (and for
    # lua_floor the allocator it links)
    deps=("$src" "$ROOT/bench/c/common.h" "$ROOT/bench/lib.sh")
    [[ $name == lua_floor ]] && deps+=("$ROOT"/runtime/alloc.c "$ROOT"/runtime/*.h)
    fresh=yes
    for d in "${deps[@]}"; do [[ $OUT/$name -nt $d ]] || fresh=no; done
    [[ $fresh == yes ]] && continue
    extra=()
    # lua_floor runs Lua in lipc's own allocator: Lua's and libuv's headers
    # (alloc.c includes the runtime's), and liblua
    # shellcheck disable=SC2207
    [[ $name == lua_floor ]] && extra=($(pkg-config --cflags lua5.4 libuv) -I"$ROOT"/runtime
                                        "$ROOT"/runtime/alloc.c $(pkg-config --libs lua5.4))
    if ! "$CC" "${cflags[@]}" -o "$OUT/$name" "$src" "${extra[@]}"; then
      echo "bench: building $src failed" >&2
      exit 1
    fi
  done
}

have_impl() {
  case $1 in
    lipc | lipcoff) [[ -x $LIPC ]] ;;
    node) command -v "$NODE" >/dev/null 2>&1 ;;
    c | floor) true ;;
  esac
}

# note_missing_impls: a note for each wanted column that cannot run
note_missing_impls() {
  local impl
  for impl in $IMPLS; do
    have_impl "$impl" && continue
    case $impl in
      lipc) NOTES+=("lipc: no executable at $LIPC (build it, or set LIPC=)") ;;
      node) NOTES+=("node: '$NODE' not found") ;;
    esac
  done
}

# children_cpu: sets R_CCPU to the CPU seconds (user + sys) of this
# shell's children that ended, from the builtin times (wait4's rusage: a
# run's whole process tree, as each level waits for its own children).
# Not in a $(...): a subshell has no children of its own yet.
children_cpu() {
  times >"$BENCH_TMP/times"
  R_CCPU=$(awk 'NR == 2 { s = 0
    for (i = 1; i <= NF; i++) { split($i, p, "m"); sub("s", "", p[2]); s += p[1] * 60 + p[2] }
    print s }' "$BENCH_TMP/times")
}

# run_one IMPL NAME ARGV... : one timed run in its own process group; its
# output goes to $LOGS/IMPL-NAME.{out,err}. Sets R_WALL (seconds), R_CPU
# (CPU seconds of all its processes), and R_VALUE and R_UNIT from the line
# "RESULT <R_RESULT or NAME> <value> <unit>" (empty on failure, with a
# note saying why).
run_one() {
  local impl=$1 name=$2
  shift 2
  local log="$LOGS/$impl-$name" key=${R_RESULT:-$name}
  local t0 t1 pid rc c0
  children_cpu
  c0=$R_CCPU
  t0=$(date +%s%N)
  # timeout puts itself and the benchmark in a new process group and, on
  # expiry, signals the whole group (forked children included).
  local -a pin=()
  [[ -n $PIN ]] && pin=(taskset -c "$PIN")
  timeout -k 5 "$TIMEOUT" "${pin[@]}" "$@" </dev/null >"$log.out" 2>"$log.err" &
  pid=$!
  CUR_PID=$pid
  wait "$pid"
  rc=$?
  CUR_PID=
  t1=$(date +%s%N)
  R_WALL=$(fcalc "($t1 - $t0) / 1e9")
  children_cpu
  R_CPU=$(fcalc "$R_CCPU - $c0")
  # anything still alive in that group was left behind by the benchmark
  if kill -0 -- "-$pid" 2>/dev/null; then
    sleep 0.2
    if kill -0 -- "-$pid" 2>/dev/null; then
      NOTES+=("$impl $name: left processes running after it ended (killed)")
      kill -KILL -- "-$pid" 2>/dev/null
    fi
  fi
  R_VALUE=$(awk -v c="$key" '$1 == "RESULT" && $2 == c { print $3; exit }' "$log.out")
  R_UNIT=$(awk -v c="$key" '$1 == "RESULT" && $2 == c { print $4; exit }' "$log.out")
  if [[ -z $R_VALUE ]]; then
    local why
    if [[ $rc -eq 124 || $rc -eq 137 ]]; then why="timed out after ${TIMEOUT}s"
    else why="exit $rc: $(grep -v '^\s*$' "$log.err" | head -n 1 | cut -c1-160)"; fi
    NOTES+=("$impl $name: $why (see ${log#"$ROOT"/}.err)")
  fi
}

# result_of IMPL NAME KEY: another RESULT line of the last run's output
result_of() {
  awk -v c="$3" '$1 == "RESULT" && $2 == c { print $3; exit }' "$LOGS/$1-$2.out"
}

# check VALUE OP THRESHOLD -> "ok" / "MISS"
check() { awk "BEGIN { print (($1 $2 $3) ? \"ok\" : \"MISS\") }"; }

# ratio_of A B: A / B to 3 digits, or n/a
ratio_of() {
  local a=$1 b=$2
  if [[ -z $a || -z $b || $a == n/a || $b == n/a ]] || awk "BEGIN { exit !($b == 0) }"; then
    echo "n/a"
    return
  fi
  fcalc "sprintf(\"%.3g\", $a / $b)"
}
