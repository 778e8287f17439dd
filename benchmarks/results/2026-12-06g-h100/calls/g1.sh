# carry: .whl .peer/models — GPU tests of changes 32/33 (two-step FP8 GEMM summing its splits in-launch; pre_quant),
# the H200's FP8 decode sweep at M = 1 (tables to $OUT and $VDEPLOY_HOME: this warm machine's later runs read them),
# R1-8L's step profile at batch 1 and 256 (shared experts on the side stream and inline), ours: R1-8L batch 1
source benchmarks/results/2026-12-06g-h100/calls/common.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee $OUT/gpu.txt
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl >/dev/null 2>&1 || echo PIP-FAILED
mkdir -p /tmp/peer/models && cp -r .peer/models/* /tmp/peer/models/
el tests; timeout 120 python3 -m pytest -q -p no:cacheprovider \
  tests/deepseek/test_deepseek_kernels_gpu.py -k "fused_decode or w8a8 or quant or side_stream" \
  2>&1 | grep -v Warn | tail -20 > $OUT/gpu-tests.txt; tail -6 $OUT/gpu-tests.txt
el fp8-decode-check; timeout 150 python3 benchmarks/kernels/fp8_decode_check.py --sweep --sweep-m ${SWEEP_M:-1} --git-rev $REV --out $OUT 2>&1 | grep -v Warn | tail -60
mkdir -p $VDEPLOY_HOME/kernel_configs/fp8_block_gemm && cp $OUT/fp8_block_gemm/*.json $VDEPLOY_HOME/kernel_configs/fp8_block_gemm/ 2>/dev/null
el r1-profile; timeout 150 python3 benchmarks/deepseek_kernel_profile.py --model r1-8l --batches 1 256 --dummy-weights uniform --git-rev $REV --out $OUT/profile_r1-8l.json 2>&1 | grep -v Warn | tail -4
el r1lat; timeout 120 bash benchmarks/same_lease.sh r1lat
el done
