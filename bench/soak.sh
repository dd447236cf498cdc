#!/usr/bin/env bash
# Soak: svault under steady load at 70 % of its capacity for a long time, killed with SIGKILL
# and restarted again and again; after every round the money must add up.
#
#   bench/soak.sh                                   # 30 minutes, rounds of 60 s
#   SOAK_SECS=300 SOAK_ROUND_SECS=30 bench/soak.sh  # 5 minutes
#   SOAK_CAPACITY=20000 bench/soak.sh               # skip the capacity measurement
#
# One release `svault serve` (group durability) on a scratch data directory that lives for the
# whole soak. Capacity: SOAK_CAPACITY requests/s, or measured first by a closed-loop run of
# the load generator (SOAK_CAPACITY_SECS). Then rounds of SOAK_ROUND_SECS until SOAK_SECS
# have passed. Each round:
#   1. svault-loadgen runs open loop at SOAK_LOAD_PCT % of capacity (its own program and
#      cards, a new run id per round) over SOAK_DOOR (http or tcp);
#   2. somewhere in the middle of it (20–60 % of the round) the server is killed with
#      SIGKILL under load and restarted at once on the same ports; the load generator's
#      connections fail and reconnect;
#   3. the load generator ends with its money check against the restarted server: every
#      approved request's effect is in the balances (requests cut by the kill, whose outcome
#      is unknown, are the only tolerance; requests refused or never sent while the server
#      was down count nothing); it exits 3 on a mismatch;
#   4. the server is killed again, now quiet, and restarted: the round's program must hold
#      exactly the money the load generator read at its end (GET /v1/float).
# The first failure stops the soak with a non-zero exit and the server's log. At the end a
# summary: rounds, kills, requests, acknowledged (approved + declined), refused, failures.
# Everything started is stopped by PID; the scratch directory is removed (SOAK_KEEP=1 keeps it).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
. bench/lib.sh

SOAK_SECS=${SOAK_SECS:-1800}
SOAK_ROUND_SECS=${SOAK_ROUND_SECS:-60}
SOAK_CAPACITY=${SOAK_CAPACITY:-}
SOAK_CAPACITY_SECS=${SOAK_CAPACITY_SECS:-10}
SOAK_LOAD_PCT=${SOAK_LOAD_PCT:-70}
SOAK_DOOR=${SOAK_DOOR:-http}
SOAK_CARDS=${SOAK_CARDS:-10000}
SOAK_CONNECTIONS=${SOAK_CONNECTIONS:-32}
SOAK_KEEP=${SOAK_KEEP:-0}

WORK=$(mktemp -d /tmp/svault-soak.XXXXXX)
DATA=$WORK/data
SVAULT_PID=""
LOADGEN_PID=""

cleanup() {
  stop_pid "$LOADGEN_PID" TERM
  stop_pid "$SVAULT_PID" TERM
  if [ "$SOAK_KEEP" = 1 ]; then echo "scratch kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

build_release

HTTP=127.0.0.1:0
TCP=127.0.0.1:0
STARTS=0
# Starts the server on $DATA; the first start picks free ports, later ones reuse them.
start_server() {
  STARTS=$((STARTS + 1))
  local log=$WORK/out.$STARTS.log
  for _ in $(seq 50); do
    "$SVAULT" serve --data "$DATA" --http "$HTTP" --tcp "$TCP" --durability group \
      >"$log" 2>>"$WORK/err.log" &
    SVAULT_PID=$!
    wait_listening "$SVAULT_PID" "$log" && return 0
    # A port still held a moment after a kill: try again.
    stop_pid "$SVAULT_PID" KILL
    sleep 0.2
  done
  echo "svault did not start; its log:" >&2
  tail -n 30 "$WORK/err.log" >&2
  exit 1
}

kill9_and_restart() {
  kill -KILL "$SVAULT_PID" 2>/dev/null || true
  wait "$SVAULT_PID" 2>/dev/null || true
  KILLS=$((KILLS + 1))
  start_server
}

fail() {
  echo "SOAK FAILED in round $ROUND: $*" >&2
  echo "--- server log (last 30 lines)" >&2
  tail -n 30 "$WORK/err.log" >&2
  summary
  exit 1
}

ROUNDS=0 KILLS=0 REQUESTS=0 ACKED=0 REFUSED=0 FAILED=0
summary() {
  echo "soak: $ROUNDS rounds in $SECONDS s, $KILLS kill -9 restarts; load generator: $REQUESTS requests, $ACKED acknowledged (approved or declined), $REFUSED refused (overloaded), $FAILED failed (the kills' and restarts' cut connections)"
}

# Run ids (and so card ids, which take the run id modulo 100 000) distinct for every run on
# this data directory: the capacity run is round 0.
RUN_BASE=$(( $(date +%s) % 100 * 1000 ))
start_server
echo "svault pid $SVAULT_PID http=$HTTP tcp=$TCP data=$DATA" >&2

if [ "$SOAK_DOOR" = tcp ]; then
  DOOR=(--target "tcp://$TCP" --admin "$HTTP")
else
  DOOR=(--target "http://$HTTP" --setup-via "tcp://$TCP")
fi

if [ -z "$SOAK_CAPACITY" ]; then
  echo "== capacity: closed loop for ${SOAK_CAPACITY_SECS}s" >&2
  "$LOADGEN" "${DOOR[@]}" --cards "$SOAK_CARDS" --rate 0 --connections "$SOAK_CONNECTIONS" \
    --duration "${SOAK_CAPACITY_SECS}s" --warmup 2s --seed 1 --run-id "$RUN_BASE" --quiet \
    --out "$WORK/capacity.json" >"$WORK/capacity.txt"
  SOAK_CAPACITY=$(jq -r '.throughput_per_s | floor' "$WORK/capacity.json")
fi
RATE=$((SOAK_CAPACITY * SOAK_LOAD_PCT / 100))
echo "== soak: ${SOAK_SECS}s in rounds of ${SOAK_ROUND_SECS}s at $RATE/s ($SOAK_LOAD_PCT % of $SOAK_CAPACITY/s) over $SOAK_DOOR" >&2

SECONDS=0
ROUND=0
while [ "$SECONDS" -lt "$SOAK_SECS" ]; do
  ROUND=$((ROUND + 1))
  RUN_ID=$((RUN_BASE + ROUND))
  REPORT=$WORK/round-$ROUND.json
  "$LOADGEN" "${DOOR[@]}" --cards "$SOAK_CARDS" --rate "$RATE" --connections "$SOAK_CONNECTIONS" \
    --duration "${SOAK_ROUND_SECS}s" --warmup 0s --seed "$ROUND" --run-id "$RUN_ID" \
    --out "$REPORT" >"$WORK/round-$ROUND.txt" 2>&1 &
  LOADGEN_PID=$!
  # Kill under load once setup is over (the load generator says so), at 20-60 % of the round.
  for _ in $(seq 6000); do
    grep -q 'setup done' "$WORK/round-$ROUND.txt" 2>/dev/null && break
    kill -0 "$LOADGEN_PID" 2>/dev/null || break
    sleep 0.05
  done
  sleep $(( SOAK_ROUND_SECS * (20 + RANDOM % 41) / 100 ))
  if kill -0 "$LOADGEN_PID" 2>/dev/null; then
    kill9_and_restart
  fi
  set +e
  wait "$LOADGEN_PID"
  STATUS=$?
  set -e
  LOADGEN_PID=""
  [ "$STATUS" -eq 0 ] || fail "the load generator exited $STATUS: $(grep -i 'money check\|error' "$WORK/round-$ROUND.txt" | tail -n 3)"
  [ "$(jq -r '.check.ok' "$REPORT")" = true ] || fail "money check: $(jq -r '.check.message' "$REPORT")"
  HELD=$(jq -r '.check.actual_minor' "$REPORT")
  PROGRAM="loadgen-$RUN_ID"
  # Quiet kill: what the load generator read must be exactly what recovery finds.
  kill9_and_restart
  AFTER=$(curl -sf "http://$HTTP/v1/float" | jq -r --arg p "$PROGRAM" \
    '.programs[] | select(.program == $p) | (.principal, .bonus)' |
    python3 -c 'import sys, decimal; print(sum(int(decimal.Decimal(l) * 100) for l in sys.stdin))')
  [ "$AFTER" = "$HELD" ] || fail "after a kill -9 the program $PROGRAM holds $AFTER fen, the load generator read $HELD"
  ROUNDS=$ROUND
  REQUESTS=$((REQUESTS + $(jq '.requests + .refused' "$REPORT")))
  ACKED=$((ACKED + $(jq '.approved + .declined' "$REPORT")))
  REFUSED=$((REFUSED + $(jq '.refused' "$REPORT")))
  FAILED=$((FAILED + $(jq '.errors' "$REPORT")))
  echo "round $ROUND: $(jq -r '"\(.requests) requests, \(.approved) approved, \(.declined) declined, \(.refused) refused, \(.errors) failed; p99 \(.latency_us.p99 / 1000) ms; \(.check.message)"' "$REPORT"); after kill -9: $PROGRAM holds $AFTER fen as read" >&2
done
summary
