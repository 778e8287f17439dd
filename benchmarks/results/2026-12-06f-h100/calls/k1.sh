# (ran as a command line, after x5) the moe_align GPU tests, the one-launch small-batch path's first GPU run
source benchmarks/results/2026-12-06f-h100/calls/common.sh; timeout 100 python3 -m pytest -q -p no:cacheprovider tests/deepseek/test_deepseek_kernels_gpu.py -k "moe_align or fused_moe_with_shared or fused_moe_r1" 2>&1 | tail -4 | tee $OUT/gpu-tests-moe-align.txt
