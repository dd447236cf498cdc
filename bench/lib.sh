# What the bench scripts share (sourced, not run; ROOT is the repository root): the release
# binaries, starting svault and reading its addresses, stopping what they started by PID.

# Builds the release server and load generator; sets SVAULT and LOADGEN.
build_release() {
  echo "== building (release)" >&2
  cargo build --release -p svault-server -p svault-loadgen >&2
  local target=${CARGO_TARGET_DIR:-$ROOT/target}
  SVAULT=$target/release/svault
  LOADGEN=$target/release/svault-loadgen
}

# stop_pid PID [SIGNAL]: sends SIGNAL (TERM) to PID if it still runs and waits up to 30 s.
stop_pid() {
  local pid=$1 sig=${2:-TERM}
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "-$sig" "$pid" 2>/dev/null || true
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    wait "$pid" 2>/dev/null || true
  fi
}

# wait_listening PID OUT_LOG: waits up to 60 s for the `svault listening` line the server with
# PID prints to OUT_LOG and sets HTTP and TCP to its addresses; fails if the server exits first
# or never says it.
wait_listening() {
  local pid=$1 log=$2 line=""
  for _ in $(seq 1200); do
    line=$(grep -m1 '^svault listening' "$log" 2>/dev/null) && break
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.05
  done
  [ -n "$line" ] || return 1
  HTTP=$(echo "$line" | sed -n 's/.*http=\([^ ]*\).*/\1/p')
  TCP=$(echo "$line" | sed -n 's/.*tcp=\([^ ]*\).*/\1/p')
}

# start_scratch_server NAME [SERVE_ARGS...]: one release `svault serve --durability group` on a
# scratch directory (/tmp/svault-NAME.XXXXXX, in WORK), stopped and removed when the script
# exits. A SVAULT set before the call names another build to run instead. Sets WORK,
# SVAULT_PID, HTTP and TCP (and SVAULT and LOADGEN, by build_release).
start_scratch_server() {
  local name=$1 other=${SVAULT:-}
  shift
  WORK=$(mktemp -d "/tmp/svault-$name.XXXXXX")
  SVAULT_PID=""
  trap 'stop_pid "$SVAULT_PID"; rm -rf "$WORK"' EXIT
  build_release
  [ -z "$other" ] || SVAULT=$other
  "$SVAULT" serve --data "$WORK/data" --http 127.0.0.1:0 --tcp 127.0.0.1:0 --durability group \
    "$@" >"$WORK/out.log" 2>"$WORK/err.log" &
  SVAULT_PID=$!
  wait_listening "$SVAULT_PID" "$WORK/out.log" || { cat "$WORK/err.log" >&2; exit 1; }
}

# cpu_ticks: the machine's CPU time so far, in ticks: "TOTAL STOLEN". Stolen is what the
# hypervisor ran elsewhere while this guest's CPUs wanted to run (`/proc/stat`'s steal): on a
# shared host it slows every run, and the load average does not show it.
cpu_ticks() {
  awk '$1 == "cpu" { print $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9, $9; exit }' /proc/stat
}

# stolen_percent BEFORE AFTER: the share of CPU time stolen between two `cpu_ticks` readings,
# in percent with one decimal.
stolen_percent() {
  echo "$1 $2" | awk '{ t = $3 - $1; printf "%.1f", (t > 0 ? 100 * ($4 - $2) / t : 0) }'
}
