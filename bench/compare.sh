#!/usr/bin/env bash
# svault side by side with Postgres and Redis doing the same work, on this machine, in one run.
#
#   bench/compare.sh                      # 1 M cards, steady profile
#   CARDS=100000 DURATION=10s bench/compare.sh
#   MIX=spend=100 bench/compare.sh        # spends only
#
# Installs Postgres and Redis from Debian's packages when missing, starts them on loopback in a
# temporary directory (Postgres: synchronous_commit=on; Redis: appendonly, appendfsync always),
# starts a fresh svault (release build, --durability group) for each of its runs, runs the same
# profile against every system — first as fast as each answers (closed loop), then at one fixed
# open-loop rate that all of them can hold, then svault's doors at half their own maximum
# (HALF_REPEATS runs each, 3 by default, with the median quoted) — stops everything it started
# by PID, and writes:
#   bench/results/compare-*.json    one report per run
#   bench/results/compare.html      every run on one page
#   bench/RESULTS.md                the side-by-side table with date, commit and machine
#                                   (between the compare.sh markers)
# Every system shares the machine's cores with the load generator.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
. bench/lib.sh

CARDS=${CARDS:-1000000}
PROFILE=${PROFILE:-steady}
DURATION=${DURATION:-20s}
WARMUP=${WARMUP:-5s}
SEED=${SEED:-1}
# Your own mix instead of the profile's (e.g. spend=100); empty = the profile's.
MIX=${MIX:-}
# The fixed open-loop rate; empty = half the slowest system's maximum, rounded down to 100.
FIXED_RATE=${FIXED_RATE:-}
# How many times each svault door runs at half its own maximum (the median run is quoted).
HALF_REPEATS=${HALF_REPEATS:-3}
OUT=${OUT:-$ROOT/bench/results}

WORK=$(mktemp -d /tmp/svault-compare.XXXXXX)
# Postgres runs as its own user (it refuses root), which must reach its directory inside.
chmod 755 "$WORK"
export SERVICES_DIR=$WORK/services
SVAULT_PID=""

cleanup() {
  stop_pid "$SVAULT_PID"
  "$ROOT/bench/services.sh" stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# Whether the binaries are built from local changes: asked before the runs write their reports
# into bench/results, which are tracked files themselves.
DIRTY=$(git diff --quiet HEAD -- . 2>/dev/null && echo "" || echo " (with local changes)")
build_release

echo "== starting Postgres and Redis" >&2
eval "$("$ROOT/bench/services.sh" start)"
: "${LOADGEN_POSTGRES_URL:?Postgres and Redis did not start (bench/services.sh start)}"

# Every svault run gets a fresh server on a fresh data directory, as Postgres and Redis start
# each run from an empty schema or key space (the load generator drops its tables and keys at
# the end of a run; svault cannot delete cards). Without this the later svault runs served 10 M
# cards and wrote their multi-gigabyte snapshots, not the 1 M cards of the run.
# (bench/snapshot_tail.sh measures a server that keeps growing.)
SVAULT_N=0
# start_svault: a fresh server; sets SVAULT_PID, HTTP and TCP.
start_svault() {
  SVAULT_N=$((SVAULT_N + 1))
  local dir=$WORK/svault/$SVAULT_N
  mkdir -p "$dir"
  "$SVAULT" serve --data "$dir/data" --http 127.0.0.1:0 --tcp 127.0.0.1:0 --durability group \
    >"$dir/out.log" 2>"$dir/err.log" &
  SVAULT_PID=$!
  wait_listening "$SVAULT_PID" "$dir/out.log" || { cat "$dir/err.log" >&2; exit 1; }
}
# stop_svault LABEL: notes the server's peak RSS for the run LABEL, stops it, frees its disk.
stop_svault() {
  echo "$1 $(awk '$1 == "VmHWM:" { printf "%d", $2 / 1024 }' "/proc/$SVAULT_PID/status")" >>"$WORK/svault-rss.txt"
  stop_pid "$SVAULT_PID"
  SVAULT_PID=""
  rm -rf "$WORK/svault/$SVAULT_N/data"
}

mkdir -p "$OUT"
rm -f "$OUT"/compare-*.json
RUN=$(date +%s)
N=0
COMMON=(--cards "$CARDS" --profile "$PROFILE" --duration "$DURATION" --warmup "$WARMUP" --seed "$SEED" --quiet)
[ -z "$MIX" ] || COMMON+=(--mix "$MIX")
SV=(--durability-note "group: fsync before every reply, shared by the requests that arrive together")

# run NAME RATE ARGS...: one load test, report in $OUT/compare-NN-NAME.json
run() {
  local name=$1 rate=$2
  shift 2
  N=$((N + 1))
  local file
  file=$(printf '%s/compare-%02d-%s.json' "$OUT" "$N" "$name")
  echo "== $name, rate $rate (load average $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  cut -d' ' -f1 /proc/loadavg >>"$WORK/load.txt"
  local rc=0 ticks
  ticks=$(cpu_ticks)
  "$LOADGEN" "${COMMON[@]}" --rate "$rate" --run-id $((RUN * 100 + N)) --label "$name" --out "$file" "$@" >&2 || rc=$?
  cut -d' ' -f1 /proc/loadavg >>"$WORK/load.txt"
  echo "$(stolen_percent "$ticks" "$(cpu_ticks)") $name" >>"$WORK/stolen.txt"
  case $rc in
    0) ;;
    3) echo "!! $name: MONEY CHECK FAILED (report kept, the table says MISMATCH)" >&2; MISMATCH=1 ;;
    *) echo "!! $name failed (exit $rc)" >&2; exit "$rc" ;;
  esac
}
MISMATCH=0

# The shapes of each system: svault's binary protocol batched (1024 requests per frame), one
# request per frame on 50 connections and with 16 frames in flight on each of 4 connections;
# HTTP keep-alive on 64 connections; Redis unpipelined on 50 connections and 16 in flight on 4;
# Postgres on 16 connections.
# svault_run NAME RATE ARGS...: `run` on a fresh svault server ($HTTP and $TCP in ARGS are
# expanded once it listens).
svault_run() {
  local name=$1 rate=$2
  shift 2
  start_svault
  run "$name" "$rate" $(eval echo "$*") "${SV[@]}"
  stop_svault "$name"
}
svault_tcp_batched() { svault_run "svault-tcp-batch$3$2" "$1" --target 'tcp://$TCP' --admin '$HTTP' --batch "$3" --connections 2 --pipeline 4; }
svault_tcp_1() { svault_run "svault-tcp-batch1$2" "$1" --target 'tcp://$TCP' --admin '$HTTP' --batch 1 --connections 50; }
svault_tcp_1p16() { svault_run "svault-tcp-batch1-pipelined16$2" "$1" --target 'tcp://$TCP' --admin '$HTTP' --batch 1 --connections 4 --pipeline 16; }
svault_http() { svault_run "svault-http$2" "$1" --target 'http://$HTTP' --setup-via 'tcp://$TCP' --connections 64; }

all_systems() {
  local rate=$1 tag=$2 batch=$3
  svault_tcp_batched "$rate" "$tag" "$batch"
  svault_tcp_1 "$rate" "$tag"
  svault_tcp_1p16 "$rate" "$tag"
  svault_http "$rate" "$tag"
  run "redis$tag" "$rate" --target "$LOADGEN_REDIS_URL" --connections 50
  run "redis-pipelined16$tag" "$rate" --target "$LOADGEN_REDIS_URL" --connections 4 --pipeline 16
  run "postgres$tag" "$rate" --target "$LOADGEN_POSTGRES_URL" --connections 16
}

# throughput LABEL: the measured throughput of the closed-loop run LABEL, per second.
throughput() {
  python3 - "$OUT" "$1" <<'PY'
import json, glob, sys
for f in glob.glob(sys.argv[1] + "/compare-*.json"):
    r = json.load(open(f))
    if r["label"] == sys.argv[2]:
        print(int(r["throughput_per_s"]))
PY
}
# half RATE: half of RATE rounded down to a hundred (at least 100).
half() { echo $(( $1 / 200 * 100 > 100 ? $1 / 200 * 100 : 100 )); }

all_systems 0 "" 1024

if [ -z "$FIXED_RATE" ]; then
  FIXED_RATE=$(python3 - "$OUT" <<'PY'
import json, glob, sys
t = [json.load(open(f))["throughput_per_s"] for f in glob.glob(sys.argv[1] + "/compare-*.json")]
print(max(100, int(min(t) * 0.5) // 100 * 100))
PY
)
fi
echo "== fixed open-loop rate: $FIXED_RATE/s" >&2
# At a fixed rate a frame of 1024 would wait for its last request for 1024/rate seconds: the
# batched client sends about one frame per millisecond instead.
all_systems "$FIXED_RATE" "@$FIXED_RATE" $(( FIXED_RATE / 1000 > 1 ? FIXED_RATE / 1000 : 1 ))

# svault's doors at half their own maximum (the latency targets are set there), HALF_REPEATS
# times each, alternating: a tail on a shared 2-core machine moves several-fold between
# identical runs, so the targets are read from the median run (table below the runs).
HTTP_HALF=$(half "$(throughput svault-http)")
TCP1_HALF=$(half "$(throughput svault-tcp-batch1)")
BATCH_HALF=$(half "$(throughput svault-tcp-batch1024)")
for i in $(seq "$HALF_REPEATS"); do
  tag=$([ "$HALF_REPEATS" = 1 ] && echo "" || echo "#$i")
  svault_http "$HTTP_HALF" "@$HTTP_HALF$tag"
  svault_tcp_1 "$TCP1_HALF" "@$TCP1_HALF$tag"
  svault_tcp_batched "$BATCH_HALF" "@$BATCH_HALF$tag" $(( BATCH_HALF / 1000 > 1 ? BATCH_HALF / 1000 : 1 ))
done

"$LOADGEN" compare "$OUT"/compare-*.json --html "$OUT/compare.html" --markdown "$WORK/table.md" >&2

# svault's memory: the largest peak RSS of its servers (each served one run: its own cards, and
# every request left an idempotency key).
SVAULT_PEAK=$(sort -k2 -n "$WORK/svault-rss.txt" | tail -1)
SVAULT_RUNS=$(wc -l <"$WORK/svault-rss.txt")

# half_load_medians: per svault door, its runs at half its own maximum and their medians (a
# markdown table; nothing when HALF_REPEATS is 1).
half_load_medians() {
  [ "$HALF_REPEATS" != 1 ] || return 0
  python3 - "$OUT" <<'PY'
import json, glob, re, statistics, sys
runs = {}
for f in sorted(glob.glob(sys.argv[1] + "/compare-*.json")):
    r = json.load(open(f))
    m = re.fullmatch(r"(svault-[a-z0-9-]+)@(\d+)#\d+", r["label"])
    if m:
        runs.setdefault((m.group(1), int(m.group(2))), []).append(r)
print(f"svault's doors at half their own maximum, {max(map(len, runs.values()), default=0)} runs each, alternating;")
print("latency in ms, the median of the runs' figures (each run's in brackets):")
print()
print("| door | rate/s | p99 | p99.9 | max | not sent |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
for (door, rate), rs in sorted(runs.items()):
    def cell(key):
        xs = [r["latency_us"][key] / 1000 for r in rs]
        return f"{statistics.median(xs):.1f} ({' / '.join(f'{x:.1f}' for x in xs)})"
    unsent = " / ".join(str(r["not_sent"]) for r in rs)
    print(f"| {door} | {rate} | {cell('p99')} | {cell('p999')} | {cell('max')} | {unsent} |")
PY
}

COMMIT=$(git rev-parse --short HEAD)
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
MEM=$(free -g | awk '/Mem:/ {print $2}')
SECTION=$WORK/section.md
{
  echo "<!-- compare.sh:begin -->"
  echo "## Side by side: svault, Postgres, Redis (bench/compare.sh)"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%MZ), commit \`$COMMIT\`$DIRTY, $(nproc) cores ($CPU), ${MEM} GiB, $(uname -r);"
  echo "1-minute load average before and after each run: $(sort -n "$WORK/load.txt" | head -1)–$(sort -n "$WORK/load.txt" | tail -1)"
  echo "(2 cores: above 2 means something else was running too); at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "CPU time stolen by the hypervisor during each run (\`/proc/stat\`): $(sort -n "$WORK/stolen.txt" | head -1 | cut -d' ' -f1)–$(sort -n "$WORK/stolen.txt" | tail -1 | cut -d' ' -f1) %;"
  echo "most in $(sort -rn "$WORK/stolen.txt" | head -3 | awk '{ printf "%s%s (%s %%)", (NR > 1 ? ", " : ""), $2, $1 }')."
  echo "Stolen, run by run in the order of the table: $(awk '{ printf "%s%s", (NR > 1 ? ", " : ""), $1 }' "$WORK/stolen.txt") %."
  echo "Command: \`CARDS=$CARDS PROFILE=$PROFILE${MIX:+ MIX=$MIX} DURATION=$DURATION WARMUP=$WARMUP bench/compare.sh\`."
  echo "Profile \`$PROFILE\`${MIX:+ with mix \`$MIX\`} on $CARDS cards for every system; the load generator shares the cores with"
  echo "the system under test. First as fast as each answers (closed loop), then open loop at $FIXED_RATE/s"
  echo "(half the slowest system's maximum), then svault's doors open loop at half their own maximum;"
  echo "open-loop latency from each request's intended send time. Page with every curve:"
  echo "\`bench/results/compare.html\`."
  echo
  cat "$WORK/table.md"
  echo
  half_load_medians
  echo
  echo "svault: a fresh server for each of its $SVAULT_RUNS runs (Postgres and Redis start each run from an"
  echo "empty schema or key space); the largest peak RSS of one server (its $CARDS cards, and every request left"
  echo "an idempotency key): ${SVAULT_PEAK#* } MiB, in run \`${SVAULT_PEAK% *}\`."
  echo
  echo "Durability: svault \`--durability group\` (fsync before each reply, shared by the requests of one"
  echo "batch); Postgres \`synchronous_commit=on\`, \`fsync=on\`; Redis \`appendonly yes\`, \`appendfsync always\`."
  echo "Not expressed on Postgres/Redis (listed in each report): svault's idempotency keys, ladder bonus,"
  echo "discounts and reversals; the binary protocol has no reversal either."
  echo "<!-- compare.sh:end -->"
} >"$SECTION"
python3 - "$ROOT/bench/RESULTS.md" "$SECTION" <<'PY'
import sys, re
path, section = sys.argv[1], open(sys.argv[2]).read().strip() + "\n"
text = open(path).read()
pat = re.compile(r"<!-- compare.sh:begin -->.*?<!-- compare.sh:end -->\n?", re.S)
if pat.search(text):
    text = pat.sub(lambda m: section, text, count=1)
else:
    # After the title and the "current figures" table (the first blank line after it), else at the top.
    m = re.search(r"<!-- targets:end -->\n", text)
    at = m.end() if m else text.find("\n## ") + 1
    text = text[:at] + "\n" + section + "\n" + text[at:]
open(path, "w").write(text)
PY
cat "$SECTION"
if [ "$MISMATCH" != 0 ]; then
  echo "compare.sh: a money check failed (see the table)" >&2
  exit 3
fi
