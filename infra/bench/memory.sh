#!/usr/bin/env bash
# Peak memory of `vemo index` on large photos against small ones (issue 16): the same number
# of items, the same job settings; the runbook's formula bounds both.
#
#   infra/bench/memory.sh [PHOTOS_DIR] [COUNT] [TASKS]
#
# PHOTOS_DIR: JPEG photos to build both corpora from (default: synthetic gradients); COUNT:
# items per corpus (default 20); TASKS: a TOML list (default ["semantic"]). The large corpus
# holds COUNT copies of one 6000 x 4000 JPEG (24 MP, the first photo upscaled); the small one
# COUNT 640 x 480 photos. Each `vemo index` runs under /usr/bin/time -v, 1 worker, defaults
# otherwise (read_concurrency 16, decode_concurrency = cores, shard_size 256).
# Env: VEMO_BIN (default: the debug build), VEMO_BENCH_DIR (default: a temp dir, removed),
# VEMO_BENCH_RUN (extra `[run]` lines, e.g. "spotting_max_side = 1280").
# Needs Pillow (pinned below) to write the JPEGs.
set -euo pipefail
photos=${1:-}
count=${2:-20}
tasks=${3:-'["semantic"]'}
root=$(cd "$(dirname "$0")/../.." && pwd)
vemo=${VEMO_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/vemo}
dir=${VEMO_BENCH_DIR:-$(mktemp -d)}
[[ -n ${VEMO_BENCH_DIR:-} ]] || trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir"
python3 -c "import PIL" 2>/dev/null || python3 -m pip install --quiet "Pillow==11.3.0"

python3 - "$dir" "$count" "$photos" <<'PY'
import json, os, sys
from PIL import Image
out, count, photos = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if photos:
    names = sorted(n for n in os.listdir(photos) if n.lower().endswith((".jpg", ".jpeg")))
    sources = [Image.open(os.path.join(photos, n)).convert("RGB") for n in names[:count]]
else:
    sources = [Image.linear_gradient("L").convert("RGB").resize((640, 480)) for _ in range(count)]
for name, size in (("large", (6000, 4000)), ("small", (640, 480))):
    os.makedirs(f"{out}/{name}/images", exist_ok=True)
    if name == "large":
        sources[0].resize(size, Image.BICUBIC).save(f"{out}/large/images/big.jpg", quality=92)
    with open(f"{out}/{name}/manifest.jsonl", "w") as f:
        for i in range(count):
            image = "images/big.jpg"
            if name == "small":
                image = f"images/{i:04d}.jpg"
                sources[i % len(sources)].resize(size).save(f"{out}/small/{image}", quality=92)
            f.write(json.dumps({"id": f"{name}-{i:04d}", "image": image,
                                "caption": "A photo of a street with people."}) + "\n")
PY

printf '| corpus | items | wall s | peak RSS MiB |\n| --- | --- | --- | --- |\n'
for name in small large; do
  cat >"$dir/$name.toml" <<TOML
[input]
uri = "$dir/$name"
[output]
uri = "$dir/out-$name"
[model]
tasks = $tasks
[run]
${VEMO_BENCH_RUN:-}
TOML
  /usr/bin/time -v "$vemo" index --job "$dir/$name.toml" -w 1 --no-progress \
    >"$dir/$name.json" 2>"$dir/$name.time"
  rss=$(awk -F': ' '/Maximum resident set size/ {print int($2 / 1024)}' "$dir/$name.time")
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$dir/$name.time")
  printf '| %s | %s | %s | %s |\n' "$name" "$count" "$wall" "$rss"
done
