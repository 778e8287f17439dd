# no carry, if device time is left — H200: vLLM's V2-Lite prefill alone, then the R1 profile on vLLM's workload
source benchmarks/results/2026-12-06d-h100/calls/common.sh
el vllm-dsv2-prefill-only; N=500 OUTLEN=1 TAG=_prefill_500 timeout 200 bash /tmp/peer/bench.sh dsv2tp 2>&1 | grep -E "Throughput|Error|error" | tail -5
el profile-r1; timeout 250 python3 benchmarks/deepseek_kernel_profile.py --model r1-8l --batches 1 256 --dummy-weights uniform --git-rev "$REV" --out $OUT/profile_r1-8l_uniform.json 2>&1 | grep -v Warn | tail -5
el done
