# the third lease, second call (carries .peer/vllm026.part01), H200 — issue 19: the W4A16 sweep at 2 and 4 rows
# (factored tiles of up to 4 rows against the engine's choice and the dequantizing kernel's tiles), the 7B's layers
source "$(dirname "$0")/common.sh"
el sweep-m; timeout 80 python3 benchmarks/kernels/quant_gemm_check.py --w4a16-factored-sweep --models r1-distill-qwen-7b \
  --sweep-m 2 4 --budget-s 55 --out $OUT/sweep-m 2>&1 | grep -v Warn | tail -9
el done
