#!/usr/bin/env bash
# How long a load-generator run over the binary protocol takes when it hardly runs: a fresh
# release `svault serve`, then a 1-second batched run over CARDS cards, timed whole. What is
# left is the setup (opening and funding every card) and the money check's two read-backs of
# every card (GET_CARD frames), so this measures how fast a frame of reads is answered.
#
#   bench/readback.sh                               # 1 M cards
#   CARDS=200000 bench/readback.sh
#   SVAULT=/path/to/other/svault bench/readback.sh  # the same on another build
#
# Everything started is stopped by PID; the scratch directory is removed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
. bench/lib.sh

CARDS=${CARDS:-1000000}

start_scratch_server readback

started=$(date +%s.%N)
"$LOADGEN" --cards "$CARDS" --profile steady --rate 0 --duration 1s --warmup 0s --quiet \
  --target "tcp://$TCP" --admin "$HTTP" --batch 1024 --connections 2 --pipeline 4 \
  --out "$WORK/run.json" >"$WORK/lg.out"
ended=$(date +%s.%N)
reads=$(curl -s "http://$HTTP/metrics" | awk '/^svault_shard_queries_total/ { s += $2 } END { print s }')
setup=$(python3 -c "import json, sys; print(round(json.load(open(sys.argv[1]))['setup_seconds'], 2))" "$WORK/run.json")
echo "$CARDS cards ($SVAULT): whole run $(echo "$ended - $started" | bc) s, of which setup ${setup} s and 1 s of load; $reads reads"
