#!/usr/bin/env bash
# svault side by side with Postgres and Redis doing the same work, on this machine, in one run.
#
#   bench/compare.sh                      # 1 M cards, steady profile
#   CARDS=100000 DURATION=10s bench/compare.sh
#
# Installs Postgres and Redis from Debian's packages when missing, starts them on loopback in a
# temporary directory (Postgres: synchronous_commit=on; Redis: appendonly, appendfsync always),
# starts svault (release build, --durability group) on a temporary data directory, runs the same
# profile against every system — first as fast as each answers (closed loop), then at one fixed
# open-loop rate that all of them can hold — stops everything it started by PID, and writes:
#   bench/results/compare-*.json    one report per run
#   bench/results/compare.html      every run on one page
#   bench/RESULTS.md                the side-by-side table with date, commit and machine
#                                   (between the compare.sh markers)
# Every system shares the machine's cores with the load generator.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

CARDS=${CARDS:-1000000}
PROFILE=${PROFILE:-steady}
DURATION=${DURATION:-20s}
WARMUP=${WARMUP:-5s}
SEED=${SEED:-1}
# The fixed open-loop rate; empty = half the slowest system's maximum, rounded down to 100.
FIXED_RATE=${FIXED_RATE:-}
OUT=${OUT:-$ROOT/bench/results}

WORK=$(mktemp -d /tmp/svault-compare.XXXXXX)
export SERVICES_DIR=$WORK/services
SVAULT_PID=""

cleanup() {
  if [ -n "$SVAULT_PID" ] && kill -0 "$SVAULT_PID" 2>/dev/null; then
    kill -TERM "$SVAULT_PID" 2>/dev/null || true
    for _ in $(seq 300); do kill -0 "$SVAULT_PID" 2>/dev/null || break; sleep 0.1; done
  fi
  "$ROOT/bench/services.sh" stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "== building (release)" >&2
cargo build --release -p svault-engine -p svault-loadgen >&2
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
SVAULT=$TARGET/release/svault
LOADGEN=$TARGET/release/svault-loadgen

echo "== starting Postgres and Redis" >&2
eval "$("$ROOT/bench/services.sh" start)"

echo "== starting svault (group durability)" >&2
mkdir -p "$WORK/svault"
"$SVAULT" serve --data "$WORK/svault/data" --http 127.0.0.1:0 --tcp 127.0.0.1:0 --durability group \
  >"$WORK/svault/out.log" 2>"$WORK/svault/err.log" &
SVAULT_PID=$!
for _ in $(seq 600); do
  grep -q '^svault listening' "$WORK/svault/out.log" 2>/dev/null && break
  kill -0 "$SVAULT_PID" 2>/dev/null || { cat "$WORK/svault/err.log" >&2; exit 1; }
  sleep 0.1
done
LINE=$(grep '^svault listening' "$WORK/svault/out.log")
HTTP=$(echo "$LINE" | sed -n 's/.*http=\([^ ]*\).*/\1/p')
TCP=$(echo "$LINE" | sed -n 's/.*tcp=\([^ ]*\).*/\1/p')
echo "svault pid $SVAULT_PID http=$HTTP tcp=$TCP" >&2

mkdir -p "$OUT"
rm -f "$OUT"/compare-*.json
RUN=$(date +%s)
N=0
COMMON=(--cards "$CARDS" --profile "$PROFILE" --duration "$DURATION" --warmup "$WARMUP" --seed "$SEED" --quiet)
SV=(--durability-note "group: fsync before every reply, shared by the requests that arrive together")

# run NAME RATE ARGS...: one load test, report in $OUT/compare-NN-NAME.json
run() {
  local name=$1 rate=$2
  shift 2
  N=$((N + 1))
  local file
  file=$(printf '%s/compare-%02d-%s.json' "$OUT" "$N" "$name")
  echo "== $name, rate $rate" >&2
  "$LOADGEN" "${COMMON[@]}" --rate "$rate" --run-id $((RUN * 100 + N)) --label "$name" --out "$file" "$@" >&2
}

all_systems() {
  local rate=$1 tag=$2
  run "svault-tcp-batch1024$tag" "$rate" --target "tcp://$TCP" --admin "$HTTP" --batch 1024 --connections 2 --pipeline 4 "${SV[@]}"
  run "svault-tcp-batch1$tag" "$rate" --target "tcp://$TCP" --admin "$HTTP" --batch 1 --connections 50 "${SV[@]}"
  run "svault-http$tag" "$rate" --target "http://$HTTP" --setup-via "tcp://$TCP" --connections 64 "${SV[@]}"
  run "redis$tag" "$rate" --target "$LOADGEN_REDIS_URL" --connections 50
  run "redis-pipelined16$tag" "$rate" --target "$LOADGEN_REDIS_URL" --connections 4 --pipeline 16
  run "postgres$tag" "$rate" --target "$LOADGEN_POSTGRES_URL" --connections 16
}

all_systems 0 ""

if [ -z "$FIXED_RATE" ]; then
  FIXED_RATE=$(python3 - "$OUT" <<'PY'
import json, glob, sys
t = [json.load(open(f))["throughput_per_s"] for f in glob.glob(sys.argv[1] + "/compare-*.json")]
print(max(100, int(min(t) * 0.5) // 100 * 100))
PY
)
fi
echo "== fixed open-loop rate: $FIXED_RATE/s" >&2
all_systems "$FIXED_RATE" "@$FIXED_RATE"

"$LOADGEN" compare "$OUT"/compare-*.json --html "$OUT/compare.html" --markdown "$WORK/table.md" >&2

COMMIT=$(git rev-parse --short HEAD)
DIRTY=$(git diff --quiet HEAD -- . 2>/dev/null && echo "" || echo " (with local changes)")
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
MEM=$(free -g | awk '/Mem:/ {print $2}')
SECTION=$WORK/section.md
{
  echo "<!-- compare.sh:begin -->"
  echo "## Side by side: svault, Postgres, Redis (bench/compare.sh)"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%MZ), commit \`$COMMIT\`$DIRTY, $(nproc) cores ($CPU), ${MEM} GiB, $(uname -r);"
  echo "load average when the runs ended: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "Command: \`CARDS=$CARDS PROFILE=$PROFILE DURATION=$DURATION WARMUP=$WARMUP bench/compare.sh\`."
  echo "Profile \`$PROFILE\` on $CARDS cards for every system; the load generator shares the cores with the system"
  echo "under test. First as fast as each answers (closed loop), then open loop at $FIXED_RATE/s, latency"
  echo "from each request's intended send time. Page with every curve: \`bench/results/compare.html\`."
  echo
  cat "$WORK/table.md"
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
