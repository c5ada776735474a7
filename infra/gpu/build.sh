#!/usr/bin/env bash
# Builds the CUDA flavour of vemo here, on a machine without a GPU (the recipe of the team's
# GPU notes): the CUDA 13.0 toolkit from the Python index into a venv, unversioned library
# links, a link-time stub of the driver (libcuda.so.1, which only the GPU machine has), then
# cargo with `--features cuda` in a target folder of its own (turning `cuda` on recompiles the
# whole dependency graph).
#
#   infra/gpu/build.sh            # the lean benchmark: target-cuda/gpu/vemo-bench (~40 MB)
#   infra/gpu/build.sh --vemo     # also vemo itself (with Lance: ~16 min, 8 GB, too big to carry)
#
# Environment: VEMO_CUDA_VENV (default ~/.cache/vemo-cuda), VEMO_CUDA_TARGET (default
# ~/.cache/vemo-target-cuda), CUDA_COMPUTE_CAP (default 90: H100/H200).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VENV=${VEMO_CUDA_VENV:-$HOME/.cache/vemo-cuda}
CU=$VENV/lib/python3.11/site-packages/nvidia/cu13

if [ ! -x "$CU/bin/nvcc" ]; then
  echo "Installing the CUDA 13.0 toolkit into $VENV (~1.2 GB)..."
  python3 -m venv "$VENV"
  # 13.0, not a newer 13.x: candle loads PTX at run time, and PTX newer than the GPU
  # machine's driver fails with CUDA_ERROR_UNSUPPORTED_PTX_VERSION.
  "$VENV/bin/pip" install -q "cuda-toolkit[nvcc,cudart,nvrtc,cublas,curand,cccl]==13.0.3.0"
fi

# The wheels ship versioned sonames only; the linker looks for libX.so.
for lib in cublas cublasLt cudart nvrtc; do ln -sf "lib$lib.so.13" "$CU/lib/lib$lib.so"; done
ln -sf libcurand.so.10 "$CU/lib/libcurand.so"

# The driver is in no wheel: a stub with its symbols (taken from cudarc's bindings) satisfies
# the linker; at run time the GPU machine's libcuda.so.1 is loaded instead.
STUB=$CU/lib/stubs/libcuda.so
if [ ! -f "$STUB" ]; then
  (cd "$ROOT" && cargo fetch -q)
  BINDINGS=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.*/src/driver/sys/mod.rs | tail -1)
  mkdir -p "$(dirname "$STUB")"
  grep -oE "pub (unsafe )?fn cu[A-Za-z0-9_]+" "$BINDINGS" | awk '{print "void " $NF "(void) {}"}' \
    | sort -u > "$CU/lib/stubs/libcuda_stub.c"
  cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$STUB" "$CU/lib/stubs/libcuda_stub.c"
fi

export CUDA_ROOT=$CU CUDA_HOME=$CU CUDA_PATH=$CU PATH=$CU/bin:$PATH
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export LIBRARY_PATH=$CU/lib:$CU/lib/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}
export CARGO_TARGET_DIR=${VEMO_CUDA_TARGET:-$HOME/.cache/vemo-target-cuda}

cd "$ROOT"
cargo build --profile gpu -p vemo-bench --features cuda
ls -la "$CARGO_TARGET_DIR/gpu/vemo-bench"
if [ "${1:-}" = "--vemo" ]; then
  cargo build -p vemo-jobs --features cuda
  ls -la "$CARGO_TARGET_DIR/debug/vemo"
fi
