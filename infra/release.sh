#!/usr/bin/env bash
# Release build: optimised, stripped, with the cloud object stores (s3://, gs://, az://) on.
# Measured on 2 cores: ~60 min cold (lance alone ~21 min), peak ~10 GiB; never run two at once.
# The binary lands in $CARGO_TARGET_DIR/release/vemo.
set -euo pipefail
cd "$(dirname "$0")/.."
source infra/env.sh
ensure_system_deps
cargo build --release -p vemo-jobs --bin vemo --features cloud
ls -l "$CARGO_TARGET_DIR/release/vemo"
