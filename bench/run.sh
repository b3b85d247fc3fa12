#!/usr/bin/env bash
# bench/run.sh - side-by-side benchmarks: lipc, Node and raw C.
#
#   bash bench/run.sh [case...]        (no case: all of them)
#
# Builds the C programs into build/bench/, runs every case for lipc, Node and
# C in turn and prints one table. Cases: ipc_pingpong ipc_stream ipc_bulk
# fork_ready spawn_seq spawn_par8 stdout_read tcp_echo_rr tcp_bulk unix_bulk
# startup. Four cases also get a floor, printed under the table: the same
# work in C shaped as an event loop (ipc_pingpong, tcp_echo_rr,
# stdout_read), or Lua's values with no IPC at all (ipc_stream); the two
# latency cases a second one, that loop with lipc's poll (evpoll).
#
# The lipc column runs with the adaptive poll on (LIPC_POLL=1); a second
# lipc column, lipcoff, runs every case with it off (LIPC_POLL=0), and a
# table of the two follows, with the CPU (user + sys) that all processes
# of a run spent per round trip, message or MB. Two cases run only there:
# ipc_idle (CPU of an idle pair with open channels) and ipc_bursty (a
# round trip every ms, CPU per round trip).
#
# Environment:
#   LIPC=build/lipc      the lipc binary (missing: every lipc cell is n/a)
#   NODE=node            the node binary (missing: every node cell is n/a)
#   BENCH_SCALE=1        scales every count and time budget (CI: 0.05)
#   BENCH_IMPLS="lipc lipcoff node c"   which columns to run
#   BENCH_POLL=1         LIPC_POLL of the lipc column (pinned: auto, lipc's
#                        default, which is off on one CPU)
#   BENCH_REPEAT=1       runs per cell at the final count, in rounds over the
#                        case's columns; the median is kept
#   BENCH_TIMEOUT=120    seconds before one run is killed (its cell is n/a)
#   BENCH_PIN=           a CPU list (e.g. 0): run everything under taskset -c,
#                        so both processes of a case share that CPU
#   CC=cc
#   BENCH_OUT=build/bench   where the logs and the table go
# Every run's stdout and stderr are kept in build/bench/logs/; the table is
# also written to build/bench/results.tsv.
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
build_c

# ---- the cases --------------------------------------------------------------
# case | unit | base count | calibrate? | lipc argv | node argv | C argv
# {N} is replaced by the count. Base counts are sized so Node (the slowest
# column) runs a case in ~2-3 s; a run that ends in under MIN_SECS is redone
# with the count raised towards TARGET_SECS (at most x MAX_MULT), so fast
# implementations are measured over a similar time and not over 20 ms.
CASES=(
  "ipc_pingpong|rt/s|30000|yes|ipc_pingpong.lua {N}|ipc_pingpong.js {N}|ipc_pingpong {N}"
  "ipc_stream|msg/s|1000000|yes|ipc_stream.lua {N}|ipc_stream.js {N}|ipc_stream {N}"
  "ipc_bulk|MB/s|500|yes|ipc_bulk.lua {N}|ipc_bulk.js {N}|ipc_bulk {N}"
  "fork_ready|ms|20|no|fork_ready.lua {N}|fork_ready.js {N}|fork_ready {N}"
  "spawn_seq|spawns/s|2000|yes|spawn_rate.lua {N} seq|spawn_rate.js {N} seq|spawn_rate {N} seq"
  "spawn_par8|spawns/s|2000|yes|spawn_rate.lua {N} par8|spawn_rate.js {N} par8|spawn_rate {N} par8"
  "stdout_read|MB/s|1073741824|yes|stdout_read.lua {N}|stdout_read.js {N}|stdout_read {N}"
  "tcp_echo_rr|rt/s|30000|yes|tcp_echo_rr.lua {N}|tcp_echo_rr.js {N}|tcp_echo_rr {N}"
  "tcp_bulk|MB/s|1073741824|yes|net_bulk.lua tcp {N}|net_bulk.js tcp {N}|net_bulk tcp {N}"
  "unix_bulk|MB/s|1073741824|yes|net_bulk.lua unix {N}|net_bulk.js unix {N}|net_bulk unix {N}"
)

# The cases of the poll table only (lipc and lipcoff; the figure is CPU,
# lower is better). Same fields, no node or C argv.
POLL_CASES=(
  "ipc_idle|%|10000|no|ipc_idle.lua {N}"
  "ipc_bursty|us/rt|2000|no|ipc_bursty.lua {N}"
)

# Floors: the same work in the shape lipc must have, in C, run after the
# case's other columns (the C column is the bare machine; a floor is what
# an event-loop runtime, or Lua's values, can reach on it). The notes under
# the table give lipc/floor (the poll on) and off/floor (lipcoff).
# case | floor's name | C argv | what it is
FLOORS=(
  "ipc_pingpong|ipc_pingpong|ipc_pingpong {N} evloop|C with epoll_wait before every read, as an event loop reads"
  "ipc_pingpong|ipc_pingpong+poll|ipc_pingpong {N} evpoll|the same, polling epoll_wait(0) up to 50 us first (lipc's poll)"
  "ipc_pingpong|ipc_pingpong+poll+lua|lua_floor pingpong {N} evpoll|the same poll, each side also doing the Lua work any Lua runtime must: table from the bytes through the C API, a Lua function, lua_next walk"
  "ipc_stream|ipc_stream|lua_floor {N}|Lua's values alone, no IPC: build the table and read it through the C API, and back"
  "stdout_read|stdout_read|stdout_read {N} evloop|C reading as lipc does (epoll_wait, read on to 32 KiB), each chunk copied once"
  "tcp_echo_rr|tcp_echo_rr|tcp_echo_rr {N} evloop|C with epoll_wait before every read, as an event loop reads"
  "tcp_echo_rr|tcp_echo_rr+poll|tcp_echo_rr {N} evpoll|the same, polling epoll_wait(0) up to 50 us first (lipc's poll)"
)
# The poll's targets against floors: lipc (poll on) / floor
declare -A FLOOR_TARGET=(
  [ipc_pingpong+poll]=">= 0.9"
  [ipc_pingpong+poll+lua]=">= 0.9"
  [tcp_echo_rr]=">= 1.0"
)

# What a case's count counts, for CPU per op: "name divisor" (n / divisor
# ops). The throughput cases: on/off of the poll table must stay >= 0.95.
declare -A OP=(
  [ipc_pingpong]="rt 1" [ipc_stream]="msg 1" [ipc_bulk]="MiB 1" [fork_ready]="fork 1"
  [spawn_seq]="spawn 1" [spawn_par8]="spawn 1" [stdout_read]="MB 1e6" [tcp_echo_rr]="rt 1"
  [tcp_bulk]="MB 1e6" [unix_bulk]="MB 1e6"
)
THROUGHPUT="ipc_stream ipc_bulk spawn_seq spawn_par8 stdout_read tcp_bulk unix_bulk"

# Targets: "ratio-column op threshold" pairs, the ratio being lipc/that column.
declare -A TARGET=(
  [ipc_pingpong]="node >= 2 c >= 0.65"
  [ipc_stream]="node >= 10"
  [ipc_bulk]="node >= 5 c >= 0.4"
  [fork_ready]="node <= 0.0333"
  [spawn_seq]="node >= 2 c >= 0.85"
  [spawn_par8]="node >= 2 c >= 0.85"
  [stdout_read]="c >= 0.95"
  [tcp_echo_rr]="c >= 0.9"
  [tcp_bulk]="c >= 0.95"
  [unix_bulk]="c >= 0.95"
  [startup_wall]="c <= 1.3"
  [startup_rss]="c <= 1.3"
)

MIN_SECS=$(fcalc "1.0 * $SCALE")
TARGET_SECS=$(fcalc "2.0 * $SCALE")
MAX_MULT=64

declare -A VAL UNIT NOTE FLOOR_WHAT CPUOP

# argv_for IMPL "SPEC" N : fills ARGV with the command line of one run.
argv_for() {
  local impl=$1 spec=${2//\{N\}/$3}
  local -a words
  read -r -a words <<<"$spec"
  case $impl in
    lipc) ARGV=(env "LIPC_POLL=$POLL" "$LIPC" "$ROOT/bench/lipc/${words[0]}" "${words[@]:1}") ;;
    lipcoff) ARGV=(env LIPC_POLL=0 "$LIPC" "$ROOT/bench/lipc/${words[0]}" "${words[@]:1}") ;;
    node) ARGV=("$NODE" "$ROOT/bench/node/${words[0]}" "${words[@]:1}") ;;
    c | floor) ARGV=("$OUT/${words[0]}" "${words[@]:1}") ;;
  esac
}

# cpu_op CASE N: CPU microseconds per op of the last run (empty: no OP)
cpu_op() {
  local opd
  read -r -a opd <<<"${OP[$1]:-}"
  [[ ${#opd[@]} -eq 2 ]] || return 0
  fcalc "sprintf(\"%.4g\", $R_CPU * 1e6 / ($2 / ${opd[1]}))"
}

# A case's runs go in rounds: every implementation (and floor) of the case
# is calibrated and measured once, then each further round
# (BENCH_REPEAT - 1) runs all of them again in turn. The host's other VMs
# make this machine faster or slower for seconds at a time, and a drift
# then moves every column of the case alike; with each column's runs one
# after another it moved the last ones measured (ipc_stream on/off 0.64 in
# one such run, 0.92-1.10 interleaved).
declare -A JOB_ARGV JOB_VALS JOB_CPUS JOB_N

# first IMPL CASE BASE CALIBRATE SPEC KEY: calibrated, measured once
first() {
  local impl=$1 name=$2 base=$3 calib=$4 spec=$5 key=$6
  local n mult
  n=$(icalc "(int($base * $SCALE) < 1 ? 1 : int($base * $SCALE))")
  argv_for "$impl" "$spec" "$n"
  run_one "$impl" "$name" "${ARGV[@]}"
  [[ -z $R_VALUE ]] && return
  if [[ $calib == yes ]] && awk "BEGIN { exit !($R_WALL < $MIN_SECS) }"; then
    mult=$(awk "BEGIN { w = $R_WALL; if (w < 0.001) w = 0.001; m = $TARGET_SECS / w
                        if (m > $MAX_MULT) m = $MAX_MULT; print m }")
    n=$(icalc "int($n * $mult)")
    argv_for "$impl" "$spec" "$n"
    run_one "$impl" "$name" "${ARGV[@]}"
    [[ -z $R_VALUE ]] && return
  fi
  JOB_ARGV[$impl,$key]=$(printf '%q ' "${ARGV[@]}")
  JOB_N[$impl,$key]=$n
  JOB_VALS[$impl,$key]=$R_VALUE
  JOB_CPUS[$impl,$key]=$(cpu_op "$name" "$n")
  [[ -n $R_UNIT ]] && UNIT[$name]=$R_UNIT
  NOTE[$impl,$key]="n=$n"
}

# again IMPL CASE KEY: one more run of a measured job
again() {
  local impl=$1 name=$2 key=$3
  [[ -n ${JOB_ARGV[$impl,$key]:-} ]] || return 0
  eval "ARGV=(${JOB_ARGV[$impl,$key]})"
  run_one "$impl" "$name" "${ARGV[@]}"
  [[ -z $R_VALUE ]] && return 0
  JOB_VALS[$impl,$key]+=" $R_VALUE"
  JOB_CPUS[$impl,$key]+=" $(cpu_op "$name" "${JOB_N[$impl,$key]}")"
}

# measure_case CASE BASE CALIBRATE JOB...: JOB is "IMPL|SPEC|KEY"; sets
# VAL[IMPL,KEY] and CPUOP[IMPL,KEY] to the medians of the rounds
measure_case() {
  local name=$1 base=$2 calib=$3 job impl spec key round
  shift 3
  for job in "$@"; do
    IFS='|' read -r impl spec key <<<"$job"
    echo "run.sh: $key: $impl ..." >&2
    first "$impl" "$name" "$base" "$calib" "$spec" "$key"
  done
  for ((round = 1; round < REPEAT; round++)); do
    echo "run.sh: $name: round $((round + 1)) of $REPEAT ..." >&2
    for job in "$@"; do
      IFS='|' read -r impl spec key <<<"$job"
      again "$impl" "$name" "$key"
    done
  done
  for job in "$@"; do
    IFS='|' read -r impl spec key <<<"$job"
    [[ -n ${JOB_VALS[$impl,$key]:-} ]] || continue
    # shellcheck disable=SC2086
    VAL[$impl,$key]=$(printf '%s\n' ${JOB_VALS[$impl,$key]} | median)
    # shellcheck disable=SC2086
    CPUOP[$impl,$key]=$(printf '%s\n' ${JOB_CPUS[$impl,$key]} | median)
  done
}

wanted() {
  local c
  [[ ${#SELECTED[@]} -eq 0 ]] && return 0
  for c in "${SELECTED[@]}"; do [[ $c == "$1" ]] && return 0; done
  return 1
}

SELECTED=("$@")
for c in "${SELECTED[@]}"; do
  known=no
  [[ $c == startup ]] && known=yes
  for entry in "${CASES[@]}" "${POLL_CASES[@]}"; do [[ ${entry%%|*} == "$c" ]] && known=yes; done
  if [[ $known == no ]]; then
    echo "run.sh: unknown case '$c'" >&2
    exit 2
  fi
done
note_missing_impls

ROWS=()
FLOORS_RUN=()
for entry in "${CASES[@]}"; do
  IFS='|' read -r name unit base calib s_lipc s_node s_c <<<"$entry"
  wanted "$name" || continue
  ROWS+=("$name")
  UNIT[$name]=$unit
  jobs=()
  for impl in $IMPLS; do
    have_impl "$impl" || continue
    case $impl in lipc | lipcoff) spec=$s_lipc ;; node) spec=$s_node ;; c) spec=$s_c ;; esac
    jobs+=("$impl|$spec|$name")
  done
  for floor in "${FLOORS[@]}"; do
    IFS='|' read -r fname fid fspec fwhat <<<"$floor"
    [[ $fname == "$name" && " $IMPLS " == *" c "* ]] || continue
    jobs+=("floor|$fspec|$fid")
    FLOOR_WHAT[$fid]=$fwhat
    FLOORS_RUN+=("$fid|$name")
  done
  measure_case "$name" "$base" "$calib" "${jobs[@]}"
done

POLL_ROWS=()
for entry in "${POLL_CASES[@]}"; do
  IFS='|' read -r name unit base calib s_lipc <<<"$entry"
  wanted "$name" || continue
  POLL_ROWS+=("$name")
  UNIT[$name]=$unit
  jobs=()
  for impl in lipc lipcoff; do
    if [[ " $IMPLS " != *" $impl "* ]] || ! have_impl "$impl"; then continue; fi
    jobs+=("$impl|$s_lipc|$name")
  done
  [[ ${#jobs[@]} -gt 0 ]] && measure_case "$name" "$base" "$calib" "${jobs[@]}"
done

# startup: median of 20 runs of wall time and peak RSS. The C column holds
# bare `lua5.4 -e ''`, the baseline of the target.
if wanted startup; then
  ROWS+=(startup_wall startup_rss)
  UNIT[startup_wall]=ms
  UNIT[startup_rss]=KiB
  runs=20
  for impl in $IMPLS; do
    have_impl "$impl" || continue
    case $impl in
      lipc) cmd=("$LIPC" -e '') ;;
      node) cmd=("$NODE" -e 0) ;;
      c) cmd=(lua5.4 -e '') ;;
    esac
    echo "run.sh: startup: ${cmd[0]} ..." >&2
    run_one "$impl" startup_wall "$OUT/startup" startup "$runs" "${cmd[@]}"
    if [[ -n $R_VALUE ]]; then
      VAL[$impl,startup_wall]=$R_VALUE
      VAL[$impl,startup_rss]=$(awk '$1 == "RESULT" && $2 == "startup_rss" { print $3; exit }' \
        "$LOGS/$impl-startup_wall.out")
    fi
  done
fi

# ---- the table --------------------------------------------------------------
# ratio COLUMN CASE [OVER]: OVER's figure (lipc's by default) / COLUMN's
ratio() { ratio_of "${VAL[${3:-lipc},$2]:-}" "${VAL[$1,$2]:-}"; }

TSV="$RES/results.tsv"
printf 'case\tunit\tlipc\tnode\tc\tlipc/node\tlipc/c\ttarget\tmet\tcounts\n' >"$TSV"
fmt='%-26s %12s %12s %12s %10s %10s  %-24s %s\n'
echo
echo "BENCH_SCALE=$SCALE  lipc=${LIPC#"$ROOT"/} (LIPC_POLL=$POLL)  node=$("$NODE" --version 2>/dev/null || echo n/a)" \
  " $(nproc) cores${PIN:+, pinned to CPU $PIN}, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
# shellcheck disable=SC2059
printf "$fmt" "case" "lipc" "node" "C" "lipc/node" "lipc/C" "target" "met"
printf '%.0s-' {1..118}
echo
for name in "${ROWS[@]}"; do
  rn=$(ratio node "$name")
  rc=$(ratio c "$name")
  target="" met=""
  read -r -a t <<<"${TARGET[$name]:-}"
  for ((i = 0; i + 2 < ${#t[@]}; i += 3)); do
    col=${t[i]} op=${t[i + 1]} thr=${t[i + 2]}
    r=$rn
    [[ $col == c ]] && r=$rc
    label=$col
    [[ $col == c ]] && label=C
    target+="${target:+, }$label $op $thr"
    if [[ $r == n/a ]]; then m="-"; else m=$(check "$r" "$op" "$thr"); fi
    met+="${met:+,}$m"
  done
  label="$name (${UNIT[$name]:-})"
  lv=${VAL[lipc,$name]:-n/a} nv=${VAL[node,$name]:-n/a} cv=${VAL[c,$name]:-n/a}
  # shellcheck disable=SC2059
  printf "$fmt" "$label" "$lv" "$nv" "$cv" "$rn" "$rc" "$target" "$met"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "${UNIT[$name]:-}" "$lv" "$nv" "$cv" \
    "$rn" "$rc" "$target" "$met" \
    "lipc ${NOTE[lipc,$name]:-} node ${NOTE[node,$name]:-} c ${NOTE[c,$name]:-}" >>"$TSV"
done
if [[ ${#FLOORS_RUN[@]} -gt 0 ]]; then
  echo
  echo "floors (same run): what the case's work reaches in the shape lipc must have"
  echo "(lipc/floor: lipc with the poll on; off/floor: with it off)"
  for entry in "${FLOORS_RUN[@]}"; do
    IFS='|' read -r fid name <<<"$entry"
    fv=${VAL[floor,$fid]:-n/a}
    rf=$(ratio_of "${VAL[lipc,$name]:-}" "$fv") ro=$(ratio_of "${VAL[lipcoff,$name]:-}" "$fv")
    fn=$(ratio_of "$fv" "${VAL[node,$name]:-}")
    tg=${FLOOR_TARGET[$fid]:-} m="" met=""
    read -r top tthr <<<"$tg"
    [[ -n $tg && $rf != n/a ]] && met=$(check "$rf" "$top" "$tthr") && m=" (target $tg: $met)"
    printf '  %-22s %12s %-6s lipc/floor %-6s off/floor %-6s floor/node %-6s %s%s\n' "$fid" "$fv" \
      "${UNIT[$name]:-}" "$rf" "$ro" "$fn" "${FLOOR_WHAT[$fid]}" "$m"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "${fid}_floor" "${UNIT[$name]:-}" \
      "${VAL[lipc,$name]:-n/a}" "${VAL[node,$name]:-n/a}" "$fv" "-" "$rf" "$tg" "$met" \
      "floor ${NOTE[floor,$fid]:-}" >>"$TSV"
  done
fi

# ---- the poll, on and off ---------------------------------------------------
PTSV="$RES/poll.tsv"
if [[ " $IMPLS " == *" lipc "* && " $IMPLS " == *" lipcoff "* ]]; then
  printf 'case\tunit\ton\toff\ton/off\tcpu_on\tcpu_off\tcpu_per\n' >"$PTSV"
  pfmt='%-26s %12s %12s %8s %12s %12s  %s\n'
  echo
  echo "the poll (same run): lipc with LIPC_POLL=$POLL (on) and LIPC_POLL=0 (off); CPU: user + sys"
  echo "of every process of a run (startup included), per op; ipc_idle and ipc_bursty are CPU figures"
  # shellcheck disable=SC2059
  printf "$pfmt" "case" "on" "off" "on/off" "CPU on" "CPU off" "per"
  slower=()
  for name in "${ROWS[@]}" "${POLL_ROWS[@]}"; do
    [[ $name == startup_* ]] && continue
    on=${VAL[lipc,$name]:-n/a} off=${VAL[lipcoff,$name]:-n/a}
    r=$(ratio lipcoff "$name")
    read -r -a opa <<<"${OP[$name]:-- 1}"
    per="us/${opa[0]}"
    [[ ${opa[0]} == - ]] && per=""
    # shellcheck disable=SC2059
    printf "$pfmt" "$name (${UNIT[$name]:-})" "$on" "$off" "$r" "${CPUOP[lipc,$name]:--}" \
      "${CPUOP[lipcoff,$name]:--}" "$per"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "${UNIT[$name]:-}" "$on" "$off" "$r" \
      "${CPUOP[lipc,$name]:-}" "${CPUOP[lipcoff,$name]:-}" "$per" >>"$PTSV"
    if [[ " $THROUGHPUT " == *" $name "* && $r != n/a && $(check "$r" ">=" 0.95) == MISS ]]; then
      slower+=("$name $r")
    fi
  done
  echo
  echo "the poll's targets (lipc with the poll on):"
  pt() {
    local m=-
    [[ $2 != n/a ]] && m=$(check "$2" "$3" "$4")
    printf '  %-52s %8s  %s\n' "$1" "$2" "$m"
  }
  if wanted ipc_pingpong; then
    pt "ipc_pingpong lipc/node >= 2" "$(ratio node ipc_pingpong)" ">=" 2
    pt "ipc_pingpong lipc/(C loop with the same poll) >= 0.9" \
      "$(ratio_of "${VAL[lipc,ipc_pingpong]:-}" "${VAL[floor,ipc_pingpong+poll]:-}")" ">=" 0.9
    # what that C loop allows a Lua runtime at all: its Lua floor over it
    pt "  (the same loop with Lua's floor)/(C loop with the same poll)" \
      "$(ratio_of "${VAL[floor,ipc_pingpong+poll+lua]:-}" "${VAL[floor,ipc_pingpong+poll]:-}")" ">=" 0.9
    pt "ipc_pingpong lipc/(the same loop with Lua's floor) >= 0.9" \
      "$(ratio_of "${VAL[lipc,ipc_pingpong]:-}" "${VAL[floor,ipc_pingpong+poll+lua]:-}")" ">=" 0.9
  fi
  if wanted tcp_echo_rr; then
    pt "tcp_echo_rr lipc/(C loop, no poll) >= 1.0" \
      "$(ratio_of "${VAL[lipc,tcp_echo_rr]:-}" "${VAL[floor,tcp_echo_rr]:-}")" ">=" 1.0
  fi
  if wanted ipc_idle; then pt "ipc_idle CPU % <= 0.1" "${VAL[lipc,ipc_idle]:-n/a}" "<=" 0.1; fi
  if wanted ipc_bursty; then
    pt "ipc_bursty CPU on/off <= 1.05" "$(ratio lipcoff ipc_bursty)" "<=" 1.05
    # the same, counted: the poll's turns that found nothing, both processes
    bp=$(result_of lipc ipc_bursty ipc_bursty_poll)
    pt "  (polling that found nothing)/(CPU off) <= 0.05" \
      "$(ratio_of "${bp:-}" "${VAL[lipcoff,ipc_bursty]:-}")" "<=" 0.05
  fi
  if [[ ${#slower[@]} -eq 0 ]]; then
    echo "  no throughput case slower with the poll (on/off >= 0.95, the noise between runs here)"
  else
    echo "  throughput cases slower with the poll (on/off < 0.95): ${slower[*]}"
  fi
fi
echo
echo "startup: the C column is bare 'lua5.4 -e \"\"'; node is 'node -e 0'."
echo "ratios are lipc/node and lipc/C; fork_ready and startup are lower-is-better."
if [[ ${#NOTES[@]} -gt 0 ]]; then
  echo
  echo "notes:"
  printf '  %s\n' "${NOTES[@]}"
fi
echo "logs: ${LOGS#"$ROOT"/}/  table: ${TSV#"$ROOT"/}"
