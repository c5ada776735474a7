#!/usr/bin/env bash
# The GPU check of vemo: parity CPU vs GPU, per-tower throughput against the PyTorch anchors,
# and decode -> encode from JPEGs, printed as one set of Markdown tables.
#
# Here (no GPU):      infra/gpu/check.sh build
#   builds the CUDA flavour of vemo-bench (infra/gpu/build.sh) and copies it, with a sample
#   of JPEGs when a folder is given as $2, into target-gpu/ (ignored by git, carried).
# On the GPU machine: infra/gpu/check.sh run
#   with the device tool: run(command="infra/gpu/check.sh run", carry=["target-gpu"],
#   timeout_s=480). Writes the tables to $OUT/gpu-check.md too.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"

case "${1:-}" in
build)
  infra/gpu/build.sh
  mkdir -p target-gpu
  cp "${VEMO_CUDA_TARGET:-$HOME/.cache/vemo-target-cuda}/gpu/vemo-bench" target-gpu/
  if [ -n "${2:-}" ]; then
    mkdir -p target-gpu/jpegs
    # ~160 KB each: 48 photos (~8 MB) keep them and the 49 MiB binary under the 64 MiB a
    # call carries.
    find "$2" -iname '*.jpg' | sort | head -48 | xargs -I{} cp {} target-gpu/jpegs/
  fi
  du -sh target-gpu
  ;;
run)
  BIN=target-gpu/vemo-bench
  # The CUDA 13 libraries (cuBLAS, cuRAND, cudart, NVRTC) of the machine's PyTorch.
  NV=$(python3 -c "import nvidia, os; print(os.path.dirname(nvidia.__path__[0]))")
  LIBS=$(find "$NV/nvidia" -maxdepth 3 -type d -name lib | tr '\n' ':')
  export LD_LIBRARY_PATH=$LIBS${LD_LIBRARY_PATH:-}
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  IMAGES=()
  [ -d target-gpu/jpegs ] && IMAGES=(--images target-gpu/jpegs)
  "$BIN" --device cuda all --batch-sizes 32,256,1024 --seconds 3 --parity-batch 16 \
    --count 16384 --e2e-batch 512 "${IMAGES[@]}" | tee "${OUT:-/tmp}/gpu-check.md"
  ;;
*)
  echo "usage: infra/gpu/check.sh build [JPEG_DIR] | run" >&2
  exit 2
  ;;
esac
