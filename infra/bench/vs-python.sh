#!/usr/bin/env bash
# vemo against the Python pipeline a user would run instead (infra/bench/python_reference.py),
# per task, on the same photos: alternated, whole process, PAIRS pairs; prints each run's wall
# and CPU seconds and peak RSS (/usr/bin/time), then the medians and vemo's speed ratio.
# Corpus: the 80 COCO photos of coco-mini-train and the first N - 80 photos of flickr8k-dev
# (COCO-sized JPEGs, their first caption), absolute paths, written to a manifest here.
# Usage: infra/bench/vs-python.sh SHARED_DATA_DIR [PHOTOS=320] [PAIRS=3] [TASKS="semantic spotting all"]
set -euo pipefail
cd "$(dirname "$0")/../.."
source infra/env.sh
data=$(cd "${1:?the shared data folder (holds coco-mini-train and flickr8k-dev)}" && pwd)
photos=${2:-320}
pairs=${3:-3}
tasks=${4:-semantic spotting all}
work=$(mktemp -d)
bundle="${VEMO_HOME:-$HOME/.cache/vemo}/models/vemo-mini"
python3 - "$data" "$photos" "$work/manifest.jsonl" <<'PY'
import json, sys
data, photos, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rows = []
for folder, name in [("coco-mini-train", "captions_train2017.json"), ("flickr8k-dev", "captions_dev.json")]:
    coco = json.load(open(f"{data}/{folder}/{name}"))
    first = {}
    for a in coco["annotations"]:
        first.setdefault(a["image_id"], a["caption"].strip())
    for image in sorted(coco["images"], key=lambda i: i["file_name"]):
        if image["id"] in first:
            rows.append({"id": f"{folder}/{image['file_name']}",
                         "image": f"{data}/{folder}/images/{image['file_name']}",
                         "caption": first[image["id"]]})
with open(out, "w") as f:
    for row in rows[:photos]:
        f.write(json.dumps(row) + "\n")
print(f"corpus: {min(photos, len(rows))} photos in {out}", file=sys.stderr)
PY
job() { # task -> job file (the exits of the issue's comparison: text 6, image 7)
  local tasks_toml
  case $1 in
    semantic) tasks_toml='["semantic"]' ;;
    spotting) tasks_toml='["spotting"]' ;;
    all) tasks_toml='["semantic", "entities", "spotting"]' ;;
  esac
  cat > "$work/$1.toml" <<TOML
[input]
uri = "$work/manifest.jsonl"
format = "manifest"
[output]
uri = "$work/out-$1"
[model]
bundle = "vemo-mini"
tasks = $tasks_toml
[model.exits]
text = [6]
image = [7]
[run]
batch_size = 32
vector_index_min_rows = 1000000
TOML
}
run() { # name command...
  local name=$1; shift
  /usr/bin/time -f "%e %U %S %M" -o "$work/time" "$@" > "$work/log" 2>&1 || { cat "$work/log"; exit 1; }
  read -r wall user sys rss < "$work/time"
  echo "$name wall_s=$wall cpu_s=$(awk -v u="$user" -v s="$sys" 'BEGIN {print u + s}') peak_rss_mb=$((rss / 1024))"
}
for task in $tasks; do
  job "$task"
  for _ in $(seq "$pairs"); do
    rm -rf "$work/out-$task" "$work/py-$task.lance"
    run "vemo-$task" "$VEMO" index --job "$work/$task.toml" --workers 2
    run "python-$task" python3 infra/bench/python_reference.py --manifest "$work/manifest.jsonl" \
      --bundle "$bundle" --out "$work/py-$task.lance" --task "$task" --threads 2 --workers 2
  done | tee "$work/runs-$task"
  for name in "vemo-$task" "python-$task"; do
    for key in wall_s cpu_s peak_rss_mb; do
      grep "^$name " "$work/runs-$task" | grep -oE "$key=[0-9.]+" | cut -d= -f2 | sort -n |
        awk -v n="$name" -v k="$key" '{v[NR]=$1} END {printf "median %s %s %s\n", n, k, v[int((NR+1)/2)]}'
    done
  done | tee "$work/medians-$task"
  awk -v t="$task" '$3 == "wall_s" {w[$2]=$4} END {printf "%s: vemo speed / python = %.2fx (wall)\n", t, w["python-" t] / w["vemo-" t]}' "$work/medians-$task"
done
echo "work folder: $work"
