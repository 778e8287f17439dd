#!/bin/bash
# One device call: GPU kernel tests (FP8 GEMM variants included), tune the block-FP8 GEMM for R1 at TP 1, then the
# R1 8-layer step profile with the tuned tables (VDEPLOY_HOME) and without them (an empty home: the heuristic).
OUT=${OUT:-/tmp/vdeploy-out}; mkdir -p "$OUT" /tmp/shim /tmp/empty-home
ln -sfn "$PWD/kernels" /tmp/shim/vdeploy_kernels && ln -sfn "$PWD/profiles" vdeploy/profiles_data
export PYTHONPATH=/tmp/shim:$PWD TRITON_INTERPRET=0 PYTHONUNBUFFERED=1 VDEPLOY_HOME=/tmp/vdeploy-home
REV=${VDEPLOY_GIT_REV:-unknown}
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/deepseek/test_deepseek_kernels_gpu.py 2>&1 | tail -4 \
  | tee "$OUT/gpu-tests-deepseek.txt"
timeout 260 python3 benchmarks/kernels/tune_fp8_gemm.py --tp 1 --report "$OUT/tune_fp8_gemm.json" 2>&1 \
  | grep -v Warning | tail -40
cp "$VDEPLOY_HOME"/kernel_configs/fp8_block_gemm/*.json "$OUT/" 2>/dev/null
for home in /tmp/vdeploy-home /tmp/empty-home; do
  tag=$([ "$home" = /tmp/empty-home ] && echo heuristic || echo tuned)
  VDEPLOY_HOME=$home timeout 90 python3 benchmarks/deepseek_kernel_profile.py --model r1-8l --batches 1 64 256 \
    --git-rev "$REV" --out "$OUT/profile_r1-8l_$tag.json" 2>&1 | grep -v Warning | tail -8
done
