#!/usr/bin/env bash
# The latency a server's clients see while large snapshots are written: one release
# `svault serve` (group durability) that snapshots every SNAP_RECORDS records per shard (so
# snapshots follow each other through the whole run), HTTP open loop at RATE/s on 64
# connections over CARDS cards, DURATION measured.
#
#   bench/snapshot_tail.sh                         # 3 M cards, 4 000/s, 60 s
#   CARDS=1000000 RATE=2000 bench/snapshot_tail.sh
#   SVAULT=/path/to/other/svault bench/snapshot_tail.sh   # the same run on another build
#
# Prints the load generator's summary, how many snapshots were frozen and written, and the
# slow batches the server logged in the measured part (their parts add up where a shard's time
# went). Everything started is stopped by PID; the scratch directory is removed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
. bench/lib.sh

CARDS=${CARDS:-3000000}
RATE=${RATE:-4000}
DURATION=${DURATION:-60s}
SNAP_RECORDS=${SNAP_RECORDS:-100000}

start_scratch_server snaptail --snapshot-every-records "$SNAP_RECORDS"
echo "svault pid $SVAULT_PID http=$HTTP tcp=$TCP ($SVAULT)" >&2

"$LOADGEN" --cards "$CARDS" --profile steady --duration "$DURATION" --warmup 5s --seed 1 \
  --target "http://$HTTP" --setup-via "tcp://$TCP" --connections 64 --rate "$RATE" \
  --label snapshot-tail >"$WORK/lg.out"
MEASURED_FROM=$(date -u -d "-${DURATION%s} seconds" +%Y-%m-%dT%H:%M:%S)
cat "$WORK/lg.out"
echo "snapshots frozen: $(grep -c 'snapshot frozen' "$WORK/err.log"), written: $(grep -c 'snapshot written' "$WORK/err.log")"
awk -v from="$MEASURED_FROM" '/slow batch/ && $1 >= from' "$WORK/err.log" >"$WORK/slow.log"
echo "slow batches in the measured part: $(wc -l <"$WORK/slow.log")"
sort -t= -k2 -n -r <(grep -o 'total_us=[0-9]*.*' "$WORK/slow.log") | head -5
