#!/usr/bin/env bash
# bench/plot.sh - draws the scaling curves of a bench/scale.sh run as SVG
# files, one per curve: lipc, Node and C on one plot, the x axis on a log
# scale, the date, the machine and the load under the title (a "; " in
# the machine's description starts a line). The table goes beside them as
# scale.tsv.
#
#   bash bench/plot.sh [table.tsv] [dir]   (build/bench/scale.tsv, docs/bench)
#
# Needs gnuplot (gnuplot-nox on Debian; `make deps` installs it).
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TSV=${1:-$ROOT/build/bench/scale.tsv}
DIR=${2:-$ROOT/docs/bench}
GNUPLOT=${GNUPLOT:-gnuplot}

if [[ ! -r $TSV ]]; then
  echo "plot.sh: no table at $TSV (run make bench-scale first)" >&2
  exit 1
fi
if ! command -v "$GNUPLOT" >/dev/null 2>&1; then
  echo "plot.sh: gnuplot not found (apt-get install gnuplot-nox)" >&2
  exit 1
fi
mkdir -p "$DIR" || exit 1
TMP=$(mktemp -d "${TMPDIR:-/tmp}/lipc-plot.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT

DATE=$(sed -n 's/^# date: //p' "$TSV")
MACHINE=$(sed -n 's/^# machine: //p' "$TSV")
VERSIONS=$(sed -n 's/^# versions: //p' "$TSV")
LOAD=$(sed -n 's/^# load: //p' "$TSV")

# x tick label: 1024 -> 1Ki, 67108864 -> 64Mi (bytes); counts stay as they are
tick() {
  awk -v v="$1" -v bytes="$2" 'BEGIN {
    if (bytes && v >= 1048576 && v % 1048576 == 0) printf "%dMi", v / 1048576
    else if (bytes && v >= 1024 && v % 1024 == 0) printf "%dKi", v / 1024
    else printf "%d", v }'
}

# gnuplot strings are in double quotes here: escape what could end them
gq() { printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g'; }

curves=$(awk -F'\t' '!/^#/ && NR > 1 && $1 != "curve" && !seen[$1]++ { print $1 }' "$TSV")
made=0
for curve in $curves; do
  data="$TMP/$curve.dat"
  # x lipc node c (n/a where a column has no figure)
  awk -F'\t' -v c="$curve" '$1 == c { print $2, $4, $5, $6 }' "$TSV" >"$data"
  IFS=$'\t' read -r unit xlabel title < <(awk -F'\t' -v c="$curve" \
    '$1 == c { print $3 "\t" $11 "\t" $12; exit }' "$TSV")
  bytes=0
  [[ $xlabel == bytes ]] && bytes=1
  tics=""
  while read -r x _; do
    tics+="${tics:+, }\"$(tick "$x" "$bytes")\" $x"
  done <"$data"
  # curves spanning orders of magnitude between columns get a log y axis
  logy=$(awk '{ for (i = 2; i <= 4; i++) if ($i != "n/a" && $i > 0) {
                  if (min == "" || $i < min) min = $i; if ($i > max) max = $i } }
              END { print (min != "" && max / min > 50) ? 1 : 0 }' "$data")
  ylog="set yrange [0:*]"
  [[ $logy == 1 ]] && ylog="set logscale y 10"
  cols=""
  for i in 2 3 4; do
    case $i in 2) name=lipc; style="lc rgb '#1f77b4' pt 7" ;;
               3) name=Node; style="lc rgb '#d62728' pt 5" ;;
               4) name=C; style="lc rgb '#555555' pt 9 dt 2" ;; esac
    # a column with no figure at all is left out of the plot
    awk -v i=$i '$i != "n/a" { found = 1 } END { exit !found }' "$data" || continue
    cols+="${cols:+, }'$data' using 1:$i with linespoints lw 2 ps 1 $style title '$name'"
  done
  [[ -z $cols ]] && continue
  "$GNUPLOT" <<GP || exit 1
set terminal svg size 800,480 dynamic noenhanced font "sans,12" background rgb "white"
set output "$DIR/$curve.svg"
set datafile missing "n/a"
set title "$(gq "$curve: $title")\n$(gq "$DATE, $MACHINE" | sed 's/; /\\n/g')\n$(gq "$VERSIONS")${LOAD:+\\n$(gq "$LOAD")}" font "sans,12"
set xlabel "$(gq "$xlabel")"
set ylabel "$(gq "$unit")"
set logscale x 2
set xtics ($tics)
$ylog
set grid
set key outside right top
set offsets graph 0.03, graph 0.03, graph 0.05, 0
plot $cols
GP
  made=$((made + 1))
done
# the figures the plots show, beside them
[[ $TSV -ef $DIR/scale.tsv ]] || cp "$TSV" "$DIR/scale.tsv"
echo "plot.sh: $made plots and their table (scale.tsv) in ${DIR#"$ROOT"/}/"
