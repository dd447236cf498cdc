#!/usr/bin/env bash
# Overload: svault offered OVERLOAD_FACTOR (3) times its capacity for OVERLOAD_SECS (30 s) over
# HTTP, and what happens when the load drops.
#
#   bench/overload.sh
#   OVERLOAD_CAPACITY=20000 OVERLOAD_SECS=30 bench/overload.sh
#   OVERLOAD_PIN=1 bench/overload.sh   # server on CPU 0, load generators on CPU 1 (taskset)
#   OVERLOAD_DURABILITY=sync OVERLOAD_PIN=1 bench/overload.sh   # a server slow enough to flood
#
# On a 2-core machine the load generator, sharing the cores, cannot offer 3 × what the server
# does on both of them; pinned, the server's capacity is what it does on one core and the load
# generators have the other one to themselves, so the offered 3 × is really sent.
#
# One release `svault serve` (group durability, --queue-depth OVERLOAD_QUEUE per shard) on a
# scratch directory. Capacity: OVERLOAD_CAPACITY, or measured first by a closed-loop run
# (OVERLOAD_CONNECTIONS connections, 10 s). Then two load generators at once:
#   A  open loop at OVERLOAD_FACTOR × capacity for OVERLOAD_SECS, on OVERLOAD_FLOOD_CONNECTIONS
#      connections (more requests at once than the queues hold, so the excess is refused);
#   B  closed loop on OVERLOAD_CONNECTIONS connections for OVERLOAD_SECS + 15 s: its per-second
#      timeline shows throughput and p99 during the overload and in the seconds after it.
# The server's VmRSS is sampled every second (and VmHWM, its peak, read at the end). Prints
# A's accepted rate, refused count, p99 of the accepted requests, max RSS, and B's throughput
# and p99 in the 10 s after A stopped. Both money checks must pass. Reports stay in
# OVERLOAD_OUT (default bench/results/overload-*.json).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
. bench/lib.sh

OVERLOAD_CAPACITY=${OVERLOAD_CAPACITY:-}
OVERLOAD_FACTOR=${OVERLOAD_FACTOR:-3}
OVERLOAD_SECS=${OVERLOAD_SECS:-30}
OVERLOAD_QUEUE=${OVERLOAD_QUEUE:-64}
OVERLOAD_CONNECTIONS=${OVERLOAD_CONNECTIONS:-32}
OVERLOAD_FLOOD_CONNECTIONS=${OVERLOAD_FLOOD_CONNECTIONS:-512}
OVERLOAD_CARDS=${OVERLOAD_CARDS:-100000}
OUT=${OVERLOAD_OUT:-$ROOT/bench/results}
OVERLOAD_PIN=${OVERLOAD_PIN:-0}
OVERLOAD_DURABILITY=${OVERLOAD_DURABILITY:-group}
SERVER_CPU=() LOADGEN_CPU=()
if [ "$OVERLOAD_PIN" = 1 ]; then
  command -v taskset >/dev/null || { echo "OVERLOAD_PIN=1 needs taskset (util-linux)" >&2; exit 1; }
  SERVER_CPU=(taskset -c 0) LOADGEN_CPU=(taskset -c 1)
fi

WORK=$(mktemp -d /tmp/svault-overload.XXXXXX)
SVAULT_PID="" SAMPLER_PID="" A_PID="" B_PID=""
cleanup() {
  for p in "$A_PID" "$B_PID" "$SAMPLER_PID" "$SVAULT_PID"; do stop_pid "$p"; done
  rm -rf "$WORK"
}
trap cleanup EXIT

build_release

"${SERVER_CPU[@]}" "$SVAULT" serve --data "$WORK/data" --http 127.0.0.1:0 --tcp 127.0.0.1:0 \
  --durability "$OVERLOAD_DURABILITY" --queue-depth "$OVERLOAD_QUEUE" >"$WORK/out.log" 2>"$WORK/err.log" &
SVAULT_PID=$!
wait_listening "$SVAULT_PID" "$WORK/out.log" || { cat "$WORK/err.log" >&2; exit 1; }
echo "svault pid $SVAULT_PID http=$HTTP, --queue-depth $OVERLOAD_QUEUE" >&2
RUN=$(( $(date +%s) % 100 * 1000 ))
rss() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$SVAULT_PID/status"; }

mkdir -p "$OUT"
if [ -z "$OVERLOAD_CAPACITY" ]; then
  echo "== capacity: closed loop, $OVERLOAD_CONNECTIONS connections, 10 s" >&2
  "${LOADGEN_CPU[@]}" "$LOADGEN" --target "http://$HTTP" --setup-via "tcp://$TCP" --cards "$OVERLOAD_CARDS" --rate 0 \
    --connections "$OVERLOAD_CONNECTIONS" --duration 10s --warmup 3s --seed 1 --run-id "$RUN" \
    --quiet --out "$OUT/overload-capacity.json" >&2
  OVERLOAD_CAPACITY=$(jq -r '.throughput_per_s | floor' "$OUT/overload-capacity.json")
fi
RATE=$((OVERLOAD_CAPACITY * OVERLOAD_FACTOR))
echo "== capacity $OVERLOAD_CAPACITY/s; offering $RATE/s for ${OVERLOAD_SECS}s" >&2

RSS_BEFORE=$(rss VmRSS)
( while kill -0 "$SVAULT_PID" 2>/dev/null; do rss VmRSS; sleep 1; done ) >"$WORK/rss.txt" &
SAMPLER_PID=$!
# B first, so that it is measuring when A starts; both do their (untimed) setup before.
"${LOADGEN_CPU[@]}" "$LOADGEN" --target "http://$HTTP" --cards 10000 --rate 0 --connections "$OVERLOAD_CONNECTIONS" \
  --duration "$((OVERLOAD_SECS + 30))s" --warmup 0s --seed 2 --run-id "$((RUN + 1))" \
  --out "$OUT/overload-steady.json" >"$WORK/b.txt" 2>&1 &
B_PID=$!
for _ in $(seq 600); do grep -q 'setup done' "$WORK/b.txt" 2>/dev/null && break; sleep 0.1; done
B_START=$(date +%s.%N)
"${LOADGEN_CPU[@]}" "$LOADGEN" --target "http://$HTTP" --setup-via "tcp://$TCP" --cards "$OVERLOAD_CARDS" --rate "$RATE" \
  --connections "$OVERLOAD_FLOOD_CONNECTIONS" --duration "${OVERLOAD_SECS}s" --warmup 0s --seed 3 \
  --run-id "$((RUN + 2))" --out "$OUT/overload-flood.json" >"$WORK/a.txt" 2>&1 &
A_PID=$!
for _ in $(seq 6000); do grep -q 'setup done' "$WORK/a.txt" 2>/dev/null && break; sleep 0.1; done
A_START=$(date +%s.%N)
wait "$A_PID"; A_PID=""
A_END=$(date +%s.%N)
wait "$B_PID"; B_PID=""
stop_pid "$SAMPLER_PID"; SAMPLER_PID=""
RSS_PEAK=$(rss VmHWM)
RSS_MAX_SAMPLED=$(sort -n "$WORK/rss.txt" | tail -n 1)

A=$OUT/overload-flood.json B=$OUT/overload-steady.json
[ "$(jq -r .check.ok "$A")" = true ] || { echo "flood money check: $(jq -r .check.message "$A")" >&2; exit 3; }
[ "$(jq -r .check.ok "$B")" = true ] || { echo "steady money check: $(jq -r .check.message "$B")" >&2; exit 3; }
# B's timeline seconds: A ran from A_START to A_END (B's clock starts at B_START).
FROM=$(python3 -c "print(int($A_START - $B_START))")
TO=$(python3 -c "print(int($A_END - $B_START))")
echo "capacity (closed loop, $OVERLOAD_CONNECTIONS conn): $OVERLOAD_CAPACITY/s"
jq -r --arg r "$RATE" '"flood: offered \($r)/s for \(.measured_seconds) s: accepted \(.requests) = \(.throughput_per_s | floor)/s, refused (503 + Retry-After) \(.refused) = \(.refused_per_s | floor)/s, errors \(.errors), not sent \(.not_sent); accepted p50 \(.latency_us.p50/1000) ms, p99 \(.latency_us.p99/1000) ms, p99.9 \(.latency_us.p999/1000) ms, max \(.latency_us.max/1000) ms; money: \(.check.message)"' "$A"
echo "server RSS: $RSS_BEFORE KiB before, max sampled $RSS_MAX_SAMPLED KiB, peak (VmHWM) $RSS_PEAK KiB"
jq -r --argjson from "$FROM" --argjson to "$TO" '
  def avg(f): if length == 0 then 0 else (map(f) | add) / length end;
  [.timeline[] | select(.t >= $from and .t < $to)] as $during
  | [.timeline[] | select(.t >= $to and .t < $to + 10)] as $after
  | [.timeline[] | select(.t < $from)] as $before
  | "steady closed loop: before the flood \($before | avg(.requests) | floor)/s (p99 \($before | avg(.p99_us) / 1000 | floor) ms); during it \($during | avg(.requests) | floor)/s accepted, \($during | avg(.refused) | floor)/s refused (p99 \($during | avg(.p99_us) / 1000 | floor) ms); the 10 s after it \($after | avg(.requests) | floor)/s (p99 \($after | avg(.p99_us) / 1000 | floor) ms), by second: \($after | map(.requests) | join(" "))"' "$B"
