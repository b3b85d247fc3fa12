#!/usr/bin/env bash
# bench/scale.sh - how cost grows with work: the scaling curves of lipc,
# Node and C, measured side by side in one run, printed as one table per
# curve and written to build/bench/scale.tsv (`make bench-plot` draws it).
#
#   bash bench/scale.sh [curve...]        (no curve: all of them)
#
# Curves (x: what grows):
#   pool_empty  fork.pool calls/s, empty calls           x: workers (1 .. 2 x cores)
#   pool_cpu    fork.pool calls/s, WORK_US of CPU a call x: workers; C: that many
#               independent processes doing the work with no IPC
#   spawn       spawns of /bin/true per second           x: spawns in flight (1 .. 16)
#   conns       echo round trips/s and the server's RSS per idle connection
#                                                         x: clients (10 .. 10,000)
#   msg_size    fork channel MB/s and msg/s              x: bytes a message (16 B .. 64 MiB)
#   fanout      messages delivered/s, one parent to W workers   x: workers (1 .. 64)
# Every point runs for BENCH_POINT_MS (default 1000 x BENCH_SCALE) and is
# bounded by BENCH_TIMEOUT.
#
# Environment (besides run.sh's LIPC NODE BENCH_SCALE BENCH_IMPLS
# BENCH_TIMEOUT BENCH_PIN BENCH_OUT CC):
#   BENCH_POINT_MS       milliseconds a point runs (default 1000 x BENCH_SCALE, at least 20)
#   BENCH_WORK_US=160    CPU microseconds of work per call in pool_cpu
#   BENCH_WORKERS        pool worker counts (default 1 2 4 .. up to 2 x cores, and the core count)
#   BENCH_SPAWNS="1 2 4 8 16"   BENCH_CLIENTS="10 100 1000 10000"
#   BENCH_SIZES="16 256 4096 65536 1048576 16777216 67108864"
#   BENCH_FANOUT="1 2 4 8 16 32 64"
#   BENCH_MACHINE        a description of the machine for the table and the plots
#                        (default: CPU model, cores, memory, kernel)
#
# It needs bash, awk and coreutils; a C compiler only to build bench/c (a
# bundle from `make bench-bundle` carries the programs built, and no
# bench/c), Node only for the Node column.
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
build_c

CORES=$(nproc)
POINT_MS=${BENCH_POINT_MS:-$(icalc "1000 * $SCALE < 20 ? 20 : 1000 * $SCALE")}
WORK_US=${BENCH_WORK_US:-160}
default_workers() {
  local w=1 max=$((2 * CORES)) list=""
  while ((w < max)); do list+="$w "; w=$((w * 2)); done
  list+="$max"
  # the core count itself, where it is not a power of two
  # shellcheck disable=SC2086
  [[ " $list " == *" $CORES "* ]] || list=$(printf '%s\n' $list "$CORES" | sort -n | tr '\n' ' ')
  echo "$list"
}
WORKERS=${BENCH_WORKERS:-$(default_workers)}
SPAWNS=${BENCH_SPAWNS:-1 2 4 8 16}
CLIENTS=${BENCH_CLIENTS:-10 100 1000 10000}
SIZES=${BENCH_SIZES:-16 256 4096 65536 1048576 16777216 67108864}
FANOUT=${BENCH_FANOUT:-1 2 4 8 16 32 64}

machine() {
  local model mem
  model=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null)
  mem=$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo 2>/dev/null)
  local vm=""
  grep -qw hypervisor /proc/cpuinfo 2>/dev/null && vm=", a virtual machine"
  echo "${model:-unknown CPU}, $CORES cores, ${mem:-? GiB}, $(uname -sr)$vm"
}
MACHINE=${BENCH_MACHINE:-$(machine)}

# ---- the curves -------------------------------------------------------------
# curve | x label | points | RESULT name | lipc argv | node argv | C argv | title
# {X} is the point, {MS} the time of a point, {W} BENCH_WORK_US; an empty
# argv means that column has no peer. conns also yields conns_rss (the
# same runs), msg_size also msg_rate.
CURVES=(
  "pool_empty|workers|$WORKERS|pool|pool.lua {X} 0 {MS}|pool.js {X} 0 {MS}||fork.pool, empty calls, 4 callers a worker"
  "pool_cpu|workers|$WORKERS|pool|pool.lua {X} {W} {MS}|pool.js {X} {W} {MS}|pool_limit {X} {W} {MS}|fork.pool, {W} us of CPU a call, 4 callers a worker; C: X processes, no IPC"
  "spawn|in flight|$SPAWNS|spawn_par{X}|spawn_rate.lua 1000000 par{X} {MS}|spawn_rate.js 1000000 par{X} {MS}|spawn_rate 1000000 par{X} {MS}|spawning /bin/true, X at once"
  "conns|clients|$CLIENTS|conns_rt|echo_server.lua|echo_server.js|echo_server|echo server, 64-byte round trips, every client at once"
  "msg_size|bytes|$SIZES|msg_size|msg_size.lua {X} {MS}|msg_size.js {X} {MS}|msg_size {X} {MS}|fork channel, one way, strings of X bytes"
  "fanout|workers|$FANOUT|fanout|fanout.lua {X} {MS}|fanout.js {X} {MS}|fanout {X} {MS}|one parent publishing small tables to X workers"
)
# the second figure some curves give, from the same runs:
# curve | RESULT name | title
EXTRA=(
  "conns|conns_rss|echo server, RSS per idle connection (after one round trip each)"
  "msg_size|msg_rate|fork channel, one way, strings of X bytes"
)

# Targets: "column op threshold [x-condition]"; the ratio is lipc/column.
declare -A TARGET=(
  [pool_cpu]="c >= 0.85 x<=$CORES"
  [spawn]="c >= 0.9"
  [conns_rss]="node <= 0.25 x>=1000"
  [msg_size]="c >= 0.5 x>=65536"
)

CURVE_NAMES=()
for entry in "${CURVES[@]}"; do CURVE_NAMES+=("${entry%%|*}"); done
SELECTED=("$@")
for c in "${SELECTED[@]}"; do
  if [[ " ${CURVE_NAMES[*]} " != *" $c "* ]]; then
    echo "scale.sh: unknown curve '$c' (curves: ${CURVE_NAMES[*]})" >&2
    exit 2
  fi
done
wanted() {
  [[ ${#SELECTED[@]} -eq 0 || " ${SELECTED[*]} " == *" $1 "* ]]
}
note_missing_impls

# argv_of IMPL SPEC X : fills ARGV (empty when the column has no peer)
argv_of() {
  local impl=$1 spec=$2 x=$3 curve=$4
  spec=${spec//\{X\}/$x}
  spec=${spec//\{MS\}/$POINT_MS}
  spec=${spec//\{W\}/$WORK_US}
  ARGV=()
  [[ -z $spec ]] && return
  local -a words
  read -r -a words <<<"$spec"
  case $impl in
    lipc) ARGV=("$LIPC" "$ROOT/bench/lipc/${words[0]}" "${words[@]:1}") ;;
    node) ARGV=("$NODE" "$ROOT/bench/node/${words[0]}" "${words[@]:1}") ;;
    c) ARGV=("$OUT/${words[0]}" "${words[@]:1}") ;;
  esac
  # the connection curve's servers run under the one load program
  [[ $curve == conns ]] && ARGV=("$OUT/conn_load" "$x" "$POINT_MS" -- "${ARGV[@]}")
}

declare -A VAL UNIT XLABEL TITLE POINTS
ROWS=()
for entry in "${CURVES[@]}"; do
  IFS='|' read -r curve xlabel points rname s_lipc s_node s_c title <<<"$entry"
  wanted "$curve" || continue
  ROWS+=("$curve")
  XLABEL[$curve]=$xlabel
  TITLE[$curve]=${title//\{W\}/$WORK_US}
  POINTS[$curve]=$points
  extras=()
  for e in "${EXTRA[@]}"; do
    IFS='|' read -r ec ename etitle <<<"$e"
    [[ $ec == "$curve" ]] || continue
    extras+=("$ename")
    ROWS+=("$ename")
    XLABEL[$ename]=$xlabel
    TITLE[$ename]=$etitle
    POINTS[$ename]=$points
  done
  for x in $points; do
    for impl in $IMPLS; do
      have_impl "$impl" || continue
      case $impl in lipc) spec=$s_lipc ;; node) spec=$s_node ;; c) spec=$s_c ;; *) continue ;; esac
      argv_of "$impl" "$spec" "$x" "$curve"
      [[ ${#ARGV[@]} -eq 0 ]] && continue
      echo "scale.sh: $curve $x: $impl ..." >&2
      R_RESULT=${rname//\{X\}/$x} run_one "$impl" "$curve-$x" "${ARGV[@]}"
      [[ -z $R_VALUE ]] && continue
      VAL[$impl,$curve,$x]=$R_VALUE
      UNIT[$curve]=$R_UNIT
      for ename in "${extras[@]}"; do
        VAL[$impl,$ename,$x]=$(result_of "$impl" "$curve-$x" "$ename")
        UNIT[$ename]=$(awk -v c="$ename" '$1 == "RESULT" && $2 == c { print $4; exit }' \
          "$LOGS/$impl-$curve-$x.out")
      done
    done
  done
done

# ---- the tables -------------------------------------------------------------
# met CURVE X RATIO_NODE RATIO_C -> "target<TAB>met" for that point
met_of() {
  local curve=$1 x=$2 rn=$3 rc=$4 col op thr cond r
  read -r col op thr cond <<<"${TARGET[$curve]:-}"
  [[ -z ${col:-} ]] && { printf '\t'; return; }
  if [[ -n ${cond:-} ]] && ! awk -v x="$x" "BEGIN { exit !(${cond}) }"; then
    printf '\t'
    return
  fi
  r=$rn
  [[ $col == c ]] && r=$rc
  local label=$col
  [[ $col == c ]] && label=C
  if [[ $r == n/a ]]; then printf '%s\t-' "$label $op $thr"
  else printf '%s\t%s' "$label $op $thr" "$(check "$r" "$op" "$thr")"; fi
}

TSV="$RES/scale.tsv"
DATE=$(date -u +%Y-%m-%d)
NODEV=$("$NODE" --version 2>/dev/null || echo n/a)
LIPCV=$("$LIPC" -e 'print(require("lipc").version)' 2>/dev/null || echo n/a)
{
  echo "# date: $DATE"
  echo "# machine: $MACHINE"
  echo "# versions: lipc $LIPCV, node $NODEV; point: ${POINT_MS} ms; pool_cpu work: ${WORK_US} us"
  echo "# load: load average $(cut -d' ' -f1-3 /proc/loadavg) at the end of the run"
  printf 'curve\tx\tunit\tlipc\tnode\tc\tlipc/node\tlipc/c\ttarget\tmet\txlabel\ttitle\n'
} >"$TSV"
echo
echo "scaling curves, $DATE: $MACHINE"
echo "lipc $LIPCV (${LIPC#"$ROOT"/}), node $NODEV,  ${POINT_MS} ms a point${PIN:+, pinned to CPU $PIN}," \
  "load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
fmt='%-12s %12s %12s %12s %10s %10s  %-22s %s\n'
for row in "${ROWS[@]}"; do
  echo
  echo "$row (${UNIT[$row]:-}): ${TITLE[$row]}"
  # shellcheck disable=SC2059
  printf "$fmt" "${XLABEL[$row]}" lipc node C lipc/node lipc/C target met
  for x in ${POINTS[$row]}; do
    lv=${VAL[lipc,$row,$x]:-n/a} nv=${VAL[node,$row,$x]:-n/a} cv=${VAL[c,$row,$x]:-n/a}
    rn=$(ratio_of "$lv" "$nv") rc=$(ratio_of "$lv" "$cv")
    IFS=$'\t' read -r target met <<<"$(met_of "$row" "$x" "$rn" "$rc")"
    # shellcheck disable=SC2059
    printf "$fmt" "$x" "$lv" "$nv" "$cv" "$rn" "$rc" "${target:-}" "${met:-}"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$row" "$x" "${UNIT[$row]:-}" \
      "$lv" "$nv" "$cv" "$rn" "$rc" "${target:-}" "${met:-}" "${XLABEL[$row]}" "${TITLE[$row]}" >>"$TSV"
  done
done
if [[ ${#NOTES[@]} -gt 0 ]]; then
  echo
  echo "notes:"
  printf '  %s\n' "${NOTES[@]}"
fi
echo
echo "logs: ${LOGS#"$ROOT"/}/  table: ${TSV#"$ROOT"/}  (make bench-plot draws it)"
