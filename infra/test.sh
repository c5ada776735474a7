#!/usr/bin/env bash
# README command (2): the whole test suite. Installs what is missing, pulls the bundle and the
# sample corpus (tests that need them fail, not skip, here), builds, and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
source infra/env.sh

ensure_system_deps
build_vemo
ensure_bundle_and_sample
echo "== launcher tests (hostfiles and flags from sample Slurm / Kubernetes environments)"
bash infra/tests/launchers.sh
echo "== Slurm for real: a one-node cluster on this machine, sbatch, scancel, resubmit"
bash infra/tests/slurm.sh
echo "== the search notebook (jobs/notebooks/search.ipynb), headless"
bash infra/tests/notebook.sh
echo "== cargo test"
# --show-output: the figures tests print (crash counts, parity maxima) appear in the log.
VEMO_REQUIRE_BUNDLE=1 cargo test --workspace -- --show-output
