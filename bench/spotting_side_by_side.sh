#!/usr/bin/env bash
# Spotting speed side by side: vemo (PP-OCR module) and RapidOCR 3.10 (onnxruntime, angle
# classifier off, as vemo runs) on the same ICDAR 2015 dev scenes, alternated, whole process,
# N pairs. Prints each run's wall seconds, CPU seconds (user + sys), peak RSS and the scenes/s
# each tool reports (model loading excluded), then the medians.
# Usage: bench/spotting_side_by_side.sh ICDAR_DIR [SCENES=20] [PAIRS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
source infra/env.sh
data=${1:?ICDAR 2015 folder (holds dev/ and train-crops/)}
scenes=${2:-20}
pairs=${3:-3}
log=$(mktemp -d)
run() { # name command...
  local name=$1; shift
  /usr/bin/time -f "%e %U %S %M" -o "$log/time" "$@" > "$log/out" 2>&1
  local rate
  rate=$(grep -oE '[0-9.]+ (images|scenes)/s' "$log/out" | head -1 | cut -d' ' -f1)
  read -r wall user sys rss < "$log/time"
  echo "$name wall_s=$wall cpu_s=$(awk -v u="$user" -v s="$sys" 'BEGIN {print u + s}') peak_rss_mb=$((rss / 1024)) scenes_per_s=$rate"
}
for _ in $(seq "$pairs"); do
  run vemo "$VEMO" eval spotting --scenes "$data/dev" --limit "$scenes" --module ppocr
  run rapidocr python3 bench/rapidocr_icdar.py --data "$data" --scenes "$scenes" --crops 0 \
    --no-cls --threads 2 --out "$log/pred.json"
done | tee "$log/runs"
for name in vemo rapidocr; do
  for key in wall_s cpu_s peak_rss_mb scenes_per_s; do
    grep "^$name " "$log/runs" | grep -oE "$key=[0-9.]+" | cut -d= -f2 | sort -n |
      awk -v n="$name" -v k="$key" '{v[NR]=$1} END {printf "median %s %s %s\n", n, k, v[int((NR+1)/2)]}'
  done
done
