#!/usr/bin/env bash
# README command (1): installs what is missing, builds vemo, pulls the default bundle and the
# sample corpus, indexes the sample corpus and opens the result with pylance.
# Usage: infra/setup.sh [OUTPUT_DIR]   (default out/sample)
set -euo pipefail
cd "$(dirname "$0")/.."
source infra/env.sh
OUT="${1:-out/sample}"

ensure_system_deps
build_vemo
ensure_bundle_and_sample
echo "== indexing the sample corpus into $OUT"
"$VEMO" index --job jobs/examples/sample.toml --output "$OUT" -w 2
echo "== opening it with pylance"
python3 infra/check_output.py "$OUT"
cat <<MSG

Output: $OUT/items.lance (Lance) and $OUT/parquet/ (Parquet). Query it from Python:

  python3 -c "import lance; ds = lance.dataset('$OUT/items.lance'); \\
q = ds.to_table(filter=\"id = 'chelsea'\")['text_emb_e6'][0].as_py(); \\
print(ds.to_table(nearest={'column': 'text_emb_e6', 'q': q, 'k': 3}, columns=['id', 'caption']))"

Inspect it:  $VEMO inspect $OUT
MSG
