#!/usr/bin/env bash
# Executes jobs/notebooks/search.ipynb headless on a fresh index of the sample corpus (the
# sample job, as command (1) runs it, into a temporary folder); fails on any cell error.
set -euo pipefail
cd "$(dirname "$0")/../.."
source infra/env.sh
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
"$VEMO" index --job jobs/examples/sample.toml --output "$out/sample" --no-progress >/dev/null 2>"$out/index.log" \
  || { cat "$out/index.log"; exit 1; }
VEMO="$VEMO" VEMO_SAMPLE_OUT="$out/sample" python3 infra/tests/run_notebook.py jobs/notebooks/search.ipynb 2>&1 \
  | grep -v "Kernel is running over TCP"
