#!/usr/bin/env bash
# Build the CUDA-enabled `cocolm` for a GPU machine that has no Rust toolchain, strip it
# and compress it (xz) so it can be copied over with the repository:
#
#   scripts/build-cuda-binary.sh [CUDA_VERSION] [OUT]
#
# CUDA_VERSION is cudarc's form of the CUDA release the target driver supports (12080 for
# 12.8, 13000 for 13.0; default 13000): it picks the bindings and the library names
# loaded at run time. OUT defaults to dist/cocolm-cuda.xz (dist/ is git-ignored).
# scripts/gpu-check.sh unpacks and runs it there.
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-13000}
out=${2:-dist/cocolm-cuda.xz}
CUDARC_CUDA_VERSION=$version cargo build --release --locked --features cuda
mkdir -p "$(dirname "$out")"
strip -o dist/cocolm-cuda target/release/cocolm
xz -T0 -6 -c dist/cocolm-cuda > "$out"
ls -l dist/cocolm-cuda "$out"
