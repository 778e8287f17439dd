# carry: nothing — issue 19: the factored W4A16 decode kernel's tiles and K splits at M = 1 on the 7B's layers, as
# CUDA graphs over weight copies cycled past the L2 (the shipped tile first); qkv and o ran at 0.55-0.65 TB/s and
# gate_up / down at 1.6 / 1.07 TB/s in 2026-12-06e. Tables (best tile >= 1.05x the shipped) land in $OUT/tables/w4a16/:
# copy them to kernels/configs/w4a16/, then run c1.sh's W4A16 pair end to end
source benchmarks/results/2026-12-07b-h100/calls/common.sh
el sweep; timeout 170 python3 benchmarks/kernels/quant_gemm_check.py --w4a16-factored-sweep --models r1-distill-qwen-7b \
  --budget-s 140 --out $OUT 2>&1 | grep -v Warn | tail -8
el done
