# a second, short lease after the rope fix (0a6afce): the GPU tests that failed in g1.sh, then rope_store_check again
source benchmarks/results/2026-12-06e-h100/calls/common.sh
nvidia-smi --query-gpu=name --format=csv,noheader | tee $OUT/gpu-k1.txt
el tests; timeout 200 python3 -m pytest -q -p no:cacheprovider tests/worker/test_model_runner_cuda_worker.py tests/models/test_quant_gpu.py \
  2>&1 | grep -v Warn | tail -15 > $OUT/gpu-tests-after-fix.txt; tail -4 $OUT/gpu-tests-after-fix.txt
el rope-store; timeout 40 python3 benchmarks/kernels/rope_store_check.py --tokens 1 8192 --out $OUT/rope_store_check_after_fix.json 2>&1 | grep -v Warn | tail -4
el done
