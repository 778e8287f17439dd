# H100 call 6 (run inline, no carry): the R1-8L profile on vLLM's draw, then the quantized-GEMM check
source benchmarks/results/2026-12-06d-h100/calls/common.sh
el profile-r1; timeout 190 python3 benchmarks/deepseek_kernel_profile.py --model r1-8l --batches 1 256 --dummy-weights uniform --git-rev d348f68 --out $OUT/profile_r1-8l_uniform.json 2>&1 | grep -v Warn | tail -3
el quant; timeout 110 python3 benchmarks/kernels/quant_gemm_check.py --out $OUT 2>&1 | grep -v Warn | grep -E "int8|fp8|ok|FAIL" | tail -30
el done
