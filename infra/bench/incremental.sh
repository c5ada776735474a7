#!/usr/bin/env bash
# Incremental re-indexing benchmark: a full index of a synthetic corpus, then a no-change
# rerun, a rerun after 1% of the captions changed, and `vemo plan`, each timed; prints a table.
#
#   infra/bench/incremental.sh ITEMS [text|full]
#
# `text` (default) indexes with the bundle's text tower only (a copy of the bundle manifest
# without its image and spotting sections), so that a full index of 100k items fits in minutes
# on a small CPU machine; `full` uses the whole bundle (about 14 items/s on 2 cores).
# Env: VEMO_BIN (default: the debug build), VEMO_BENCH_DIR (default: a temp dir, removed).
set -euo pipefail
items=${1:?usage: incremental.sh ITEMS [text|full]}
towers=${2:-text}
root=$(cd "$(dirname "$0")/../.." && pwd)
vemo=${VEMO_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/vemo}
home=${VEMO_HOME:-$HOME/.cache/vemo}
bundle=$home/models/vemo-mini
dir=${VEMO_BENCH_DIR:-$(mktemp -d)}
[[ -n ${VEMO_BENCH_DIR:-} ]] || trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir"

if [[ $towers == text ]]; then
  # The text tower alone: the same weights, a manifest without [image*] and [spotting*].
  mkdir -p "$dir/bundle"
  for part in text ner exit_heads.safetensors; do
    [[ -e $bundle/$part ]] && ln -sfn "$bundle/$part" "$dir/bundle/$part"
  done
  awk '/^\[/{skip = ($0 ~ /^\[(image|spotting)/)} !skip' "$bundle/bundle.toml" >"$dir/bundle/bundle.toml"
  bundle=$dir/bundle
  exits='text = [6]'
else
  exits='text = [6]
image = [7]'
fi

"$vemo" corpus synth --items "$items" --output "$dir/corpus" --size 32 >/dev/null
cat >"$dir/job.toml" <<TOML
[input]
uri = "$dir/corpus"
[output]
uri = "$dir/out"
[model]
bundle = "$bundle"
[model.exits]
$exits
[run]
batch_size = 32
shard_size = 256
vector_index_min_rows = 1000000000
TOML

# Runs `vemo index` and prints "seconds encoded items_version".
run() {
  local start end summary
  start=$(date +%s.%N)
  summary=$(VEMO_LOG=warn "$vemo" index --job "$dir/job.toml" --no-progress "$@" 2>"$dir/last.log")
  end=$(date +%s.%N)
  python3 -c 'import json,sys; s=json.loads(sys.argv[1]); t=float(sys.argv[3])-float(sys.argv[2]); print("%.1f %d %d" % (t, s["encoded"], s["items_version"]))' \
    "$summary" "$start" "$end"
}

read -r full_s full_n full_v < <(run --job-id full)
read -r same_s same_n same_v < <(run --job-id no-change)
start=$(date +%s.%N)
VEMO_LOG=warn "$vemo" plan --job "$dir/job.toml" --json >"$dir/plan0.json" 2>/dev/null
plan_s=$(python3 -c "import sys; print(f'{float(sys.argv[2])-float(sys.argv[1]):.1f}')" "$start" "$(date +%s.%N)")
# Change 1% of the captions.
python3 - "$dir/corpus/manifest.jsonl" "$items" <<'PY'
import json, sys
path, n = sys.argv[1], int(sys.argv[2])
lines = [json.loads(l) for l in open(path)]
step = max(1, 100)
for line in lines[::step]:
    line["caption"] += " Edited."
open(path, "w").write("".join(json.dumps(l) + "\n" for l in lines))
PY
read -r one_s one_n one_v < <(run --job-id one-percent)

cpus=$(nproc)
echo "incremental re-indexing, $items items ($towers towers), $cpus CPUs, $(git -C "$root" rev-parse --short HEAD)"
printf '| run | seconds | items encoded | items/s of corpus | items version |\n| --- | --- | --- | --- | --- |\n'
for row in "full index|$full_s|$full_n|$full_v" "no-change rerun|$same_s|$same_n|$same_v" \
  "1% captions changed|$one_s|$one_n|$one_v"; do
  IFS='|' read -r name s n v <<<"$row"
  printf '| %s | %s | %s | %.0f | %s |\n' "$name" "$s" "$n" "$(python3 -c "print($items/$s)")" "$v"
done
printf '| vemo plan (no change) | %s | 0 | %.0f | |\n' "$plan_s" "$(python3 -c "print($items/$plan_s)")"
