#!/usr/bin/env bash
# Scaling benchmark (not a test): the same synthetic corpus indexed by 1, 2 and 4 processes on
# this host with the same total worker count (4), so the cost of timely's network exchange and
# of loading the bundle per process shows. Prints items/s per layout: run_s and items/s from
# the first shard to the last commit (the summary's figures), wall_s with start-up included.
#   infra/bench/scaling.sh [ITEMS]     (default 400)
set -euo pipefail
cd "$(dirname "$0")/../.."
source infra/env.sh
items="${1:-400}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$VEMO" corpus synth --items "$items" --output "$work/corpus" --size 128 >/dev/null
cat > "$work/job.toml" <<JOB
[input]
uri = "$work/corpus"
[output]
uri = "$work/out"
[model]
bundle = "vemo-mini"
[run]
shard_size = 16
JOB
printf '%-22s %8s %10s %10s %10s\n' layout items run_s items/s wall_s
for layout in "1 4" "2 2" "4 1"; do
  set -- $layout
  rm -rf "$work/out"
  start=$(date +%s.%N)
  VEMO_CLUSTER_DIR="$work/run-$1" infra/local/cluster.sh "$1" "$2" "$work/job.toml" \
    --output "$work/out" > "$work/summary.json" 2>"$work/cluster.err" || { cat "$work/cluster.err" >&2; exit 1; }
  wall=$(python3 -c "import time; print(time.time() - $start)")
  python3 - "$1" "$2" "$work/summary.json" "$wall" <<'PY'
import json, sys
s = json.load(open(sys.argv[3]))
n = s["items_written"] + s["errors_written"]
print(f"{sys.argv[1]} process(es) x {sys.argv[2]:<2} {n:8d} {s['elapsed_s']:10.1f} "
      f"{s['items_per_s']:10.1f} {float(sys.argv[4]):10.1f}")
PY
done
