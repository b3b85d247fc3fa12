#!/usr/bin/env bash
# bench/remote.sh - what a launcher costs: ipc_pingpong's and ipc_stream's
# work (bench/lipc/remote.lua) to a worker that is a local fork, one
# started through `sh` (the launcher model, no network), and one reached
# through ssh to 127.0.0.1 (Debian's sshd, started here in the foreground
# with keys made for this run in a temp dir, and ended after it).
#
#   bash bench/remote.sh
#
# Environment: LIPC=build/lipc, BENCH_SCALE=1 (counts), BENCH_OUT=build/bench.
# The table is also written to build/bench/remote.tsv. Without sshd or
# root the ssh column is n/a.
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
LIPC=${LIPC:-build/lipc}
[[ $LIPC == /* ]] || LIPC="$ROOT/$LIPC"
SCALE=${BENCH_SCALE:-1}
OUT=${BENCH_OUT:-$ROOT/build/bench}
mkdir -p "$OUT"
PP=$(awk "BEGIN { n = int(20000 * $SCALE); print n < 10 ? 10 : n }")
ST=$(awk "BEGIN { n = int(300000 * $SCALE); print n < 100 ? 100 : n }")

TMP=$(mktemp -d)
SSHD_PID=
cleanup() {
  [[ -n $SSHD_PID ]] && kill "$SSHD_PID" 2>/dev/null && wait "$SSHD_PID" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT

# sshd on 127.0.0.1 at a free port; SSH is then the launcher argv.
SSH=()
start_sshd() {
  [[ -x /usr/sbin/sshd && $(id -u) == 0 ]] || return 1
  mkdir -p /run/sshd
  ssh-keygen -q -t ed25519 -N '' -f "$TMP/host_key" || return 1
  ssh-keygen -q -t ed25519 -N '' -f "$TMP/user_key" || return 1
  cp "$TMP/user_key.pub" "$TMP/authorized_keys"
  local port
  port=$("$LIPC" -e 'local s = require("net").create_server()
    assert(s:listen(0, "127.0.0.1")) print(s:address().port) s:close()')
  echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$TMP/host_key.pub")" >"$TMP/known_hosts"
  cat >"$TMP/sshd_config" <<CFG
Port $port
ListenAddress 127.0.0.1
HostKey $TMP/host_key
PidFile none
AuthorizedKeysFile $TMP/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UseDNS no
SetEnv SHLVL=1
LogLevel ERROR
CFG
  /usr/sbin/sshd -D -e -f "$TMP/sshd_config" 2>"$TMP/sshd.log" &
  SSHD_PID=$!
  SSH=(ssh -T -F /dev/null -p "$port" -i "$TMP/user_key" -o IdentitiesOnly=yes
       -o BatchMode=yes -o StrictHostKeyChecking=yes
       -o "UserKnownHostsFile=$TMP/known_hosts" -o LogLevel=ERROR root@127.0.0.1)
  local i
  for i in $(seq 50); do
    "${SSH[@]}" true 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# run MODE COUNT [launcher...] -> the figure, or n/a
run() {
  local r
  r=$(LIPC_REMOTE_EXEC="$LIPC" timeout 300 "$LIPC" bench/lipc/remote.lua "$@" 2>>"$OUT/remote.log" |
      awk '/^RESULT/ { print $3 }')
  echo "${r:-n/a}"
}

have_ssh=no
start_sshd && have_ssh=yes
printf 'case\tunit\tlocal fork\tthrough sh\tthrough ssh 127.0.0.1\n' >"$OUT/remote.tsv"
for mode in pingpong stream; do
  if [[ $mode == pingpong ]]; then n=$PP unit=rt/s; else n=$ST unit=msg/s; fi
  loc=$(run "$mode" "$n")
  viash=$(run "$mode" "$n" sh -c 'exec "$@"' sh)
  viassh=n/a
  [[ $have_ssh == yes ]] && viassh=$(run "$mode" "$n" "${SSH[@]}")
  printf 'remote_%s\t%s\t%s\t%s\t%s\n' "$mode" "$unit" "$loc" "$viash" "$viassh" >>"$OUT/remote.tsv"
done
column -t -s $'\t' "$OUT/remote.tsv"
[[ $have_ssh == yes ]] || echo "(no sshd or not root: the ssh column is n/a)"
exit 0
